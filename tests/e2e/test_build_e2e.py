"""The six end-to-end scenarios of the pipeline, for real."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from e2e.helpers import E2E, BackgroundBuild, lian

from lian_build.testing.cli import validate_envelopes

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _app(tmp: Path, base: str, body: str, name: str = "app") -> Path:
    ctx = tmp / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\n{body}")
    (ctx / "hello.txt").write_text("hello from lian\n")
    (ctx / ".dockerignore").write_text("node_modules\n")
    (ctx / "node_modules").mkdir()
    (ctx / "node_modules" / "big.bin").write_bytes(b"x" * 100_000)
    return ctx


def _manifest(e2e: E2E, repo: str, ref: str) -> tuple[str, dict]:
    r = httpx.get(f"{e2e.registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    r.raise_for_status()
    return "sha256:" + hashlib.sha256(r.content).hexdigest(), r.json()


def _file_from_image(e2e: E2E, repo: str, ref: str, path: str) -> bytes:
    _digest, manifest = _manifest(e2e, repo, ref)
    for layer in reversed(manifest["layers"]):
        blob = httpx.get(f"{e2e.registry.url}/v2/{repo}/blobs/{layer['digest']}").content
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == path.lstrip("/"):
                    data = tar.extractfile(member)
                    assert data is not None
                    return data.read()
    raise AssertionError(f"{path} not in {repo}:{ref}")


def test_build_push_and_digest_matches_registry(e2e, tmp_path, workspace):
    ctx = _app(
        tmp_path, e2e.base_image, "COPY hello.txt /hello.txt\nRUN wc -c /hello.txt > /size\n"
    )
    image = f"{e2e.registry.host}/apps/{workspace}:1.0"
    # builder "auto" asks the runner: this image has buildah and no buildkitd.
    run = lian(e2e.flags(workspace, ctx, image, "--tag", "latest", builder="auto"))
    assert run.returncode == 0, run.stderr
    env = run.envelope
    assert env["status"] == "ok" and env["command"] == "build"
    # The success envelope as printed passes the shipped contract, checked by Nickel.
    validate_envelopes([env])
    result = env["result"]
    assert result["cache"]["mode"] == "ci" and result["duration_s"] > 0
    assert result["size"]["reason"]
    digest, _ = _manifest(e2e, f"apps/{workspace}", "1.0")
    assert result["digest"] == digest
    assert _manifest(e2e, f"apps/{workspace}", "latest")[0] == digest
    assert result["tags"] == [image, f"{e2e.registry.host}/apps/{workspace}:latest"]
    assert result["retries"] == 0 and result["tiers_tried"] == [result["tier"]]
    assert result["builder"] == "buildah"
    assert set(result["phases"]) >= {"provision", "ssh", "sync", "build", "destroy", "verify"}
    assert result["sync"]["files"] >= 3  # Dockerfile, .dockerignore, hello.txt
    assert result["sync"]["bytes_sent"] < 100_000  # node_modules/ stayed home
    assert _file_from_image(e2e, f"apps/{workspace}", "1.0", "/hello.txt") == b"hello from lian\n"
    assert not e2e.runners(workspace=workspace)
    # What the build used is recorded for history-based sizing, measured in the runner.
    from lian_build.history import default_store

    samples = default_store().recent(workspace)
    assert [s.session_id for s in samples] == [result["session_id"]]
    assert samples[0].succeeded and samples[0].peak_memory_bytes
    assert samples[0].peak_memory_bytes > 1_000_000


def test_rebuild_on_fresh_runner_hits_registry_cache(e2e, tmp_path, workspace):
    body = "RUN sleep 3 && echo expensive > /expensive\nCOPY hello.txt /hello.txt\n"
    ctx = _app(tmp_path, e2e.base_image, body)
    image = f"{e2e.registry.host}/apps/{workspace}:1"
    first = lian(e2e.flags(workspace, ctx, image))
    assert first.returncode == 0, first.stderr
    second = lian(e2e.flags(workspace, ctx, image))
    assert second.returncode == 0, second.stderr
    cache = second.envelope["result"]["cache"]
    assert cache["cached_steps"] >= 1, second.stderr
    assert "Using cache" in second.stderr
    assert cache["imports"] == [f"{e2e.registry.host}/ci/{workspace}/{workspace}:buildcache"]
    assert first.envelope["result"]["session_id"] != second.envelope["result"]["session_id"]


def test_oom_on_first_tier_retries_on_the_next(e2e, tmp_path, workspace):
    ctx = _app(
        tmp_path,
        e2e.base_image,
        "RUN head -c 400m /dev/zero | tail > /dev/null && echo survived > /ok\n",
    )
    directives = tmp_path / "oom.ncl"
    directives.write_text(
        f"""
let D = import "build_directives.ncl" in
{{
  workspace = "{workspace}",
  context = "{ctx}",
  artifact = {{ image = "{e2e.registry.host}/apps/{workspace}:oom" }},
  compute = {{
    provider = "docker-local",
    image = "{e2e.runner_image}",
    tiers = [
      {{ name = "tiny", cpu = 1, memory_gb = 0.2 }},
      {{ name = "roomy", cpu = 1, memory_gb = 1.5 }},
    ],
  }},
  registry = {{ provider = "zot", url = "http://{e2e.registry.host}" }},
  builder = "buildah",
  runner = {{ tier = "tiny" }},
}} | D.BuildDirectives
"""
    )
    run = lian(["build", "--directives", str(directives), "--ssh-key", str(e2e.ssh_key)])
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    assert result["tiers_tried"] == ["tiny", "roomy"]
    assert result["retries"] == 1 and result["tier"] == "roomy"
    assert "out of memory on tiny" in run.stderr
    assert not e2e.runners(workspace=workspace)


def test_sigterm_mid_build_destroys_runner_and_reports_cancelled(e2e, tmp_path, workspace):
    ctx = _app(tmp_path, e2e.base_image, "RUN sleep 120\n")
    image = f"{e2e.registry.host}/apps/{workspace}:slow"
    build = BackgroundBuild.start(e2e.flags(workspace, ctx, image))
    build.read_until("build: buildah")
    assert e2e.runners(workspace=workspace), "".join(build.seen)
    time.sleep(2)  # inside the RUN step
    build.proc.send_signal(signal.SIGTERM)
    stdout, text = build.finish()
    assert build.proc.returncode == 130, text
    envelope = json.loads(stdout)
    assert envelope["status"] == "cancelled"
    assert envelope["error"]["code"] == "CANCELLED"
    assert not e2e.runners(workspace=workspace)


def test_session_reads_ci_cache_and_writes_only_dev(e2e, tmp_path, workspace):
    body = "RUN sleep 2 && echo layer > /layer\nCOPY hello.txt /hello.txt\n"
    ctx = _app(tmp_path, e2e.base_image, body)
    image = f"{e2e.registry.host}/apps/{workspace}:ci"
    ci = lian(e2e.flags(workspace, ctx, image))
    assert ci.returncode == 0, ci.stderr
    ci_cache_repo = f"ci/{workspace}/{workspace}"
    tags_before = httpx.get(f"{e2e.registry.url}/v2/{ci_cache_repo}/tags/list").json()["tags"]

    (ctx / "hello.txt").write_text("alice was here\n")  # a new layer for the session to export
    session_image = f"{e2e.registry.host}/apps/{workspace}:dev"
    dev = lian(e2e.flags(workspace, ctx, session_image, "--mode", "session", "--actor", "alice"))
    assert dev.returncode == 0, dev.stderr
    cache = dev.envelope["result"]["cache"]
    assert cache["exports"] == [f"{e2e.registry.host}/dev/alice-{workspace}/{workspace}:buildcache"]
    assert f"{e2e.registry.host}/{ci_cache_repo}:buildcache" in cache["imports"]
    assert cache["cached_steps"] >= 1  # read from ci/
    catalog = httpx.get(f"{e2e.registry.url}/v2/_catalog?n=1000").json()["repositories"]
    assert f"dev/alice-{workspace}/{workspace}" in catalog
    tags_after = httpx.get(f"{e2e.registry.url}/v2/{ci_cache_repo}/tags/list").json()["tags"]
    assert sorted(tags_after) == sorted(tags_before)  # the session wrote nothing under ci/


def test_metacharacters_arrive_literally(e2e, tmp_path, workspace):
    nasty = "$(touch /pwned); `id` 'single' \"double\" \\ & | > ; * ?\nsecond line"
    ctx_root = tmp_path / "ctx $(echo x) 'q'"
    ctx_root.mkdir()
    ctx = _app(ctx_root, e2e.base_image, 'ARG NASTY\nRUN printf "%s" "$NASTY" > /nasty\n')
    image = f"{e2e.registry.host}/apps/{workspace}:v1.0_rc-1"
    run = lian(e2e.flags(workspace, ctx, image, "--build-arg", f"NASTY={nasty}"))
    assert run.returncode == 0, run.stderr
    assert _file_from_image(e2e, f"apps/{workspace}", "v1.0_rc-1", "/nasty") == nasty.encode()
    # A tag with shell metacharacters is not a valid reference: refused before anything runs.
    bad = lian(e2e.flags(workspace, ctx, image, "--tag", "x;rm -rf /"))
    assert bad.returncode == 2
    assert bad.envelope["error"]["code"] == "INVALID_INPUT"
    assert bad.envelope["error"]["field"] == "artifact.tags"
    assert not e2e.runners(workspace=workspace)


def test_private_registry_password_never_leaks(e2e, oci_registry_auth, tmp_path, workspace):
    """The password reaches the runner only in a private DOCKER_CONFIG; no output holds it."""
    ctx = tmp_path / "private"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (ctx / "hello.txt").write_text("private\n")
    host = oci_registry_auth.host
    image = f"{host}/private/{workspace}:1"
    flags = e2e.flags(workspace, ctx, image)
    flags[flags.index(f"url=http://{e2e.registry.host}")] = f"url=http://{host}"
    flags += [
        "--registry-opt",
        f"username={oci_registry_auth.username}",
        "--registry-opt",
        "password_ref=env:LIAN_E2E_REGISTRY_PASSWORD",
    ]
    flags.insert(0, "-vv")  # debug logging on: the password must still not show
    run = lian(flags, env={"LIAN_E2E_REGISTRY_PASSWORD": oci_registry_auth.password})
    assert run.returncode == 0, run.stderr
    assert oci_registry_auth.password not in run.stdout
    assert oci_registry_auth.password not in run.stderr
    r = httpx.get(
        f"http://{host}/v2/private/{workspace}/manifests/1",
        headers={"Accept": ACCEPT},
        auth=(oci_registry_auth.username, oci_registry_auth.password),
    )
    assert r.status_code == 200
    # Wrong password: a clear registry error before any runner is spawned.
    bad = lian(flags, env={"LIAN_E2E_REGISTRY_PASSWORD": "wrong-password-123"})
    assert bad.returncode == 6, bad.stderr
    assert bad.envelope["error"]["code"].startswith("REGISTRY")
    assert "wrong-password-123" not in bad.stdout + bad.stderr
    assert not e2e.runners(workspace=workspace)


@pytest.mark.parametrize("phase", ["provision:", "sync:"])
def test_sigint_in_early_phases_leaves_no_runner(e2e, tmp_path, workspace, phase):
    """Ctrl-C while the runner is being created or synced: the session's runner is found
    by its label (even if its id never reached lian) and destroyed."""
    ctx = _app(tmp_path, e2e.base_image, "COPY hello.txt /hello.txt\n")
    image = f"{e2e.registry.host}/apps/{workspace}:int"
    build = BackgroundBuild.start(e2e.flags(workspace, ctx, image))
    build.read_until(phase)
    build.proc.send_signal(signal.SIGINT)
    stdout, text = build.finish()
    if build.proc.returncode == 0:
        pytest.fail(f"the build finished before the signal landed:\n{text}")
    assert build.proc.returncode == 130, text
    assert json.loads(stdout)["status"] == "cancelled"
    assert "Traceback" not in text
    assert not e2e.runners(workspace=workspace)


def test_build_secret_reaches_the_build_and_nothing_else(e2e, tmp_path, workspace):
    """A secret by reference is mounted for one RUN step; it is in no layer and no output."""
    secret = "npm-token-" + workspace + "-Zq9"
    ctx = _app(
        tmp_path,
        e2e.base_image,
        "RUN --mount=type=secret,id=npm wc -c < /run/secrets/npm > /secret-length\n",
    )
    image = f"{e2e.registry.host}/apps/{workspace}:secret"
    run = lian(
        ["-vv", *e2e.flags(workspace, ctx, image, "--secret", "npm=env:LIAN_E2E_NPM_TOKEN")],
        env={"LIAN_E2E_NPM_TOKEN": secret},
    )
    assert run.returncode == 0, run.stderr
    length = _file_from_image(e2e, f"apps/{workspace}", "secret", "/secret-length")
    assert int(length.strip()) == len(secret)
    assert secret not in run.stdout + run.stderr
    _digest, manifest = _manifest(e2e, f"apps/{workspace}", "secret")
    for layer in manifest["layers"]:
        blob = httpx.get(f"{e2e.registry.url}/v2/apps/{workspace}/blobs/{layer['digest']}").content
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member) if member.isfile() else None
                assert data is None or secret.encode() not in data.read()
    assert not e2e.runners(workspace=workspace)
