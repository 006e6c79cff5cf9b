"""The registry cache on fresh runners, counted from what the builder did: CI builds of
an ARG Dockerfile hit, a session reads ci/ and then its own dev/, an ephemeral session
leaves no dev/ cache behind, and `lian cache` lists and prunes what the builds wrote."""

from __future__ import annotations

from pathlib import Path

import httpx
from e2e.helpers import E2E, lian

# ARG before the expensive RUN: buildah 1.28 (bookworm) never hit the remote cache here.
DOCKERFILE = """FROM {base}
ARG N=1
RUN sleep 2 && echo "expensive $N" > /expensive
COPY hello.txt /hello.txt
"""


def _ctx(tmp: Path, base: str, extra: str = "") -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base) + extra)
    (ctx / "hello.txt").write_text("hello\n")
    return ctx


def _build(e2e: E2E, workspace: str, ctx: Path, tag: str, *extra: str) -> dict:
    image = f"{e2e.registry.host}/apps/{workspace}:{tag}"
    run = lian(e2e.flags(workspace, ctx, image, *extra))
    assert run.returncode == 0, run.stderr
    result: dict = run.envelope["result"]
    result["_stderr"] = run.stderr
    return result


def _refs(e2e: E2E, workspace: str, actor: str | None = None) -> tuple[str, str]:
    host = e2e.registry.host
    ci = f"{host}/ci/{workspace}/{workspace}:buildcache"
    dev = f"{host}/dev/{actor}-{workspace}/{workspace}:buildcache" if actor else ""
    return ci, dev


def test_ci_rebuild_of_an_arg_dockerfile_hits_on_a_fresh_runner(e2e, tmp_path, workspace):
    ctx = _ctx(tmp_path, e2e.base_image)
    first = _build(e2e, workspace, ctx, "1")
    second = _build(e2e, workspace, ctx, "2")
    ci_ref, _ = _refs(e2e, workspace)
    assert first["session_id"] != second["session_id"]  # two runners, no shared storage
    # FROM, ARG, RUN, COPY: the first build computed the three cacheable steps ...
    assert (first["cache"]["cached_steps"], first["cache"]["total_steps"]) == (0, 4)
    assert first["cache"]["served_by"] == []
    # ... the second took all three from the registry, the RUN step included.
    assert (second["cache"]["cached_steps"], second["cache"]["total_steps"]) == (3, 4)
    assert second["cache"]["served_by"] == [ci_ref], second["_stderr"]
    assert "Cache pulled from remote" in second["_stderr"]
    assert "expensive" not in _run_output(second["_stderr"])


def _run_output(stderr: str) -> str:
    """Lines a RUN step printed (none when it came from the cache)."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("expensive"))


def test_session_reads_ci_then_its_own_dev_layer(e2e, tmp_path, workspace):
    ctx = _ctx(tmp_path, e2e.base_image)
    _build(e2e, workspace, ctx, "ci")
    ci_ref, dev_ref = _refs(e2e, workspace, "alice")
    session = ("--mode", "session", "--actor", "alice")

    # A step CI never built: only the session's dev/ layer will have it.
    ctx = _ctx(tmp_path, e2e.base_image, 'RUN echo "dev only" > /dev-only\n')
    first = _build(e2e, workspace, ctx, "dev1", *session)
    assert first["cache"]["imports"] == [dev_ref, ci_ref]
    assert first["cache"]["exports"] == [dev_ref]
    assert (first["cache"]["cached_steps"], first["cache"]["total_steps"]) == (3, 5)
    assert first["cache"]["served_by"] == [ci_ref]  # dev/ was still empty

    second = _build(e2e, workspace, ctx, "dev2", *session)
    assert (second["cache"]["cached_steps"], second["cache"]["total_steps"]) == (4, 5)
    # The dev-only step can only have come from dev/, which is tried first.
    assert dev_ref in second["cache"]["served_by"]
    assert "removed" not in second["cache"]  # flags keep the session's cache


def test_ephemeral_session_removes_its_dev_cache_and_cache_ls_prune(e2e, tmp_path, workspace):
    ci_ref, dev_ref = _refs(e2e, workspace, "bob")
    _build(e2e, workspace, _ctx(tmp_path, e2e.base_image), "ci")
    # A step CI does not have, so the session exports a layer of its own to dev/.
    ctx = _ctx(tmp_path, e2e.base_image, "RUN echo bob > /bob\n")
    directives = tmp_path / "build.ncl"
    directives.write_text(
        'let D = import "defaults/build_directives.ncl" in\n'
        "D.make_directives {\n"
        f'  workspace = "{workspace}",\n'
        f'  context = "{ctx}",\n'
        '  builder = "buildah",\n'
        f'  artifact = D.make_artifact "{e2e.registry.host}/apps/{workspace}:bob",\n'
        f'  compute = D.make_compute "docker-local" {{ image = "{e2e.runner_image}" }},\n'
        f'  registry = D.make_registry "zot" {{ url = "{e2e.registry.url}" }},\n'
        '  cache = D.session_cache_policy "bob" & { disposition = \'ephemeral },\n'
        "}\n"
    )
    run = lian(["build", "--directives", str(directives), "--ssh-key", str(e2e.ssh_key)])
    assert run.returncode == 0, run.stderr
    cache = run.envelope["result"]["cache"]
    assert cache["exports"] == [dev_ref]
    assert cache["removed"], run.stderr
    dev_repo = f"dev/bob-{workspace}/{workspace}"
    assert all(
        ref.startswith(f"{e2e.registry.host}/{dev_repo}@sha256:") for ref in cache["removed"]
    )
    tags = httpx.get(f"{e2e.registry.url}/v2/{dev_repo}/tags/list").json().get("tags") or []
    left = [
        t
        for t in tags
        if httpx.head(
            f"{e2e.registry.url}/v2/{dev_repo}/manifests/{t}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).status_code
        == 200
    ]
    assert left == []

    # lian cache ls sees the ci/ namespace this workspace wrote, with a size and an age.
    registry = ["--registry", "zot", "--registry-opt", f"url={e2e.registry.url}"]
    listed = lian(["cache", "ls", "--workspace", workspace, "--json", *registry])
    assert listed.returncode == 0, listed.stderr
    rows = {row["repository"]: row for row in listed.envelope["result"]["namespaces"]}
    ci_row = rows[ci_ref.rsplit(":", 1)[0]]
    assert ci_row["layer"] == "ci" and ci_row["manifests"] >= 1
    assert ci_row["size_bytes"] > 0 and ci_row["age_s"] is not None
    # Nothing is left to prune under dev/ for bob; ci/ is never touched by --dev.
    pruned = lian(
        ["cache", "prune", "--dev", "--actor", "bob", "--workspace", workspace, *registry]
    )
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.envelope["result"]["deleted"] == []
    again = lian(["cache", "ls", "--workspace", workspace, "--json", *registry])
    assert again.envelope["result"]["namespaces"][0]["manifests"] == ci_row["manifests"]
