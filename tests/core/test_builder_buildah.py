"""BuildahBuilder: exact command lines, output parsing, and real builds with the host's
buildah pushing to a real registry (small FROM scratch images, a busybox base)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from core.build_jobs import REG, job
from core.localremote import LocalRemote

from fixtures.registry import RegistryServer
from fixtures.require import require_binary
from lian_build import api
from lian_build.builders import reference_host, repository_of
from lian_build.builders.buildah import BuildahBuilder
from lian_build.builders.progress import count_buildah_cache_hits, parse_digest_file

NASTY = "a b;c $(touch /tmp/pwned) `id` \"dq\" 'sq' \\ $HOME, end"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


# --------------------------------------------------------------------------- commands


def test_single_platform_commands_are_exact():
    build_job = job(
        dockerfile="docker/Dockerfile.prod",
        tags=(f"{REG}/app:1", "ghcr.io/org/app:1"),
        target="runtime",
        build_args={"VERSION": "1.2"},
        secrets=(api.BuildSecret("npm", "/tmp/lian/work/secrets/npm"),),
        cache_imports=(f"{REG}/cache/dev/me-ws/app:main", f"{REG}/cache/ci/ws/app:main"),
        cache_exports=(f"{REG}/cache/ci/ws/app:main",),
        insecure_registries=frozenset({REG}),
    )
    assert BuildahBuilder().commands(build_job) == [
        [
            "buildah", "--storage-driver", "vfs", "build",
            "--isolation", "chroot", "--layers", "--format", "oci",
            "-f", "/tmp/lian/ctx/docker/Dockerfile.prod",
            "--target", "runtime",
            "--build-arg", "VERSION=1.2",
            "--secret", "id=npm,src=/tmp/lian/work/secrets/npm",
            "--cache-from", f"{REG}/cache/dev/me-ws/app",
            "--cache-from", f"{REG}/cache/ci/ws/app",
            "--cache-to", f"{REG}/cache/ci/ws/app",
            "--tls-verify=false",
            "-t", f"{REG}/app:1", "-t", "ghcr.io/org/app:1",
            "/tmp/lian/ctx",
        ],
        [
            "buildah", "--storage-driver", "vfs", "push", "--format", "oci",
            "--tls-verify=false", "--digestfile", "/tmp/lian/work/digest-0",
            f"{REG}/app:1", f"docker://{REG}/app:1",
        ],
        [
            "buildah", "--storage-driver", "vfs", "push", "--format", "oci",
            "--digestfile", "/tmp/lian/work/digest-1",
            "ghcr.io/org/app:1", "docker://ghcr.io/org/app:1",
        ],
    ]  # fmt: skip


def test_multi_platform_builds_a_manifest_list_and_pushes_it_all():
    build_job = job(
        tags=(f"{REG}/app:1", f"{REG}/app:latest"),
        platforms=("linux/amd64", "linux/arm64"),
    )
    build, *pushes = BuildahBuilder().commands(build_job)
    assert build[-3:] == ["--manifest", f"{REG}/app:1", "/tmp/lian/ctx"]
    assert build[build.index("--platform") + 1] == "linux/amd64,linux/arm64"
    assert build[build.index("--manifest") + 1] == f"{REG}/app:1"
    assert "-t" not in build
    assert pushes == [
        [
            "buildah", "--storage-driver", "vfs", "manifest", "push", "--all", "--format", "oci",
            "--digestfile", f"/tmp/lian/work/digest-{i}", f"{REG}/app:1", f"docker://{tag}",
        ]
        for i, tag in enumerate(build_job.tags)
    ]  # fmt: skip


def test_one_platform_is_a_plain_image():
    build, push = BuildahBuilder().commands(job(platforms=("linux/arm64",)))
    assert build[build.index("--platform") + 1] == "linux/arm64"
    assert "--manifest" not in build and "-t" in build
    assert push[3] == "push"


def test_storage_root_adds_root_and_runroot():
    builder = BuildahBuilder(storage_root="/var/tmp/lian store")
    for argv in builder.commands(job()):
        assert argv[:7] == [
            "buildah", "--root", "/var/tmp/lian store/root",
            "--runroot", "/var/tmp/lian store/runroot", "--storage-driver", "vfs",
        ]  # fmt: skip


def test_no_push_means_build_only():
    assert len(BuildahBuilder().commands(job(push=False))) == 1


def test_secure_job_keeps_tls_verification():
    commands = BuildahBuilder().commands(job(tags=("ghcr.io/org/app:1",)))
    assert not any("--tls-verify=false" in argv for argv in commands)


def test_metacharacters_stay_single_argv_elements():
    (build, _push) = BuildahBuilder().commands(
        job(context_dir="/tmp/a b;$(c)", build_args={"NASTY": NASTY})
    )
    assert f"NASTY={NASTY}" in build
    assert build[-1] == "/tmp/a b;$(c)"


def test_registry_auth_file_comes_from_the_docker_config_dir():
    builder = BuildahBuilder()
    assert builder.environment(job()) == {}
    assert builder.environment(job(docker_config_dir="/tmp/lian/docker")) == {
        "REGISTRY_AUTH_FILE": "/tmp/lian/docker/config.json"
    }


@pytest.mark.parametrize(
    ("reference", "repository", "host"),
    [
        (f"{REG}/cache/app:ci", f"{REG}/cache/app", REG),
        (f"{REG}/cache/app", f"{REG}/cache/app", REG),
        (f"{REG}/cache/app@sha256:{'a' * 64}", f"{REG}/cache/app", REG),
        ("ghcr.io/org/cache:dev-me", "ghcr.io/org/cache", "ghcr.io"),
        ("localhost/app:1", "localhost/app", "localhost"),
        ("library/alpine:3", "library/alpine", "docker.io"),
        ("alpine", "alpine", "docker.io"),
    ],
)
def test_reference_parts(reference, repository, host):
    assert repository_of(reference) == repository
    assert reference_host(reference) == host


# Captured from buildah 1.28 (a second build from empty storage, layer cache in a registry).
BUILDAH_CACHED_OUTPUT = f"""\
STEP 1/3: FROM {REG}/test/base:1
Trying to pull {REG}/test/base:1...
Getting image source signatures
Copying blob sha256:8ebdeb2935f3eb2161fef7d5cd139e60d0cdd5b5f34e20fcfa74f1c0010e4abf
Copying config sha256:95f7f192a499208796f05260f50fd59c69bc43e5352f34c37220e7000f972fda
Writing manifest to image destination
Storing signatures
STEP 2/3: RUN echo one > /one.txt
--> Cache pulled from remote {REG}/cache/app2:dcf28c692a8097c83a16395adec76f04f82d88b8bd0f94e2
--> Using cache 668366ef15071edbf16839aa8831c0e912d30ef4c6cb5034789f80b2334ba5b4
--> 668366ef150
STEP 3/3: RUN echo two > /two.txt
--> Cache pulled from remote {REG}/cache/app2:e05c931d0f7d5493957edceba66d83d08d659eba10c78b0f
--> Using cache ad1b56d1a509c6a89e2fdfa4fb671f27bc9467b3d65dd596a3f1158f1e5d3b10
COMMIT {REG}/test/app2:1
--> ad1b56d1a50
Successfully tagged {REG}/test/app2:1
ad1b56d1a509c6a89e2fdfa4fb671f27bc9467b3d65dd596a3f1158f1e5d3b10
"""

BUILDAH_MULTI_PLATFORM_OUTPUT = """\
[linux/arm64] STEP 1/2: FROM scratch
[linux/arm64] STEP 2/2: COPY f.txt /f.txt
[linux/arm64] COMMIT
--> edf021330c7
[linux/amd64] STEP 1/2: FROM scratch
[linux/amd64] STEP 2/2: COPY f.txt /f.txt
--> Using cache edf021330c778c8f5137ee1590ec89f1c7efe2c6b482c2fe151930da00f39c63
--> edf021330c7
"""


def test_count_buildah_cache_hits():
    assert count_buildah_cache_hits(BUILDAH_CACHED_OUTPUT.splitlines()) == (2, 3)
    assert count_buildah_cache_hits(BUILDAH_MULTI_PLATFORM_OUTPUT.splitlines()) == (1, 4)
    assert count_buildah_cache_hits(["STEPS 1/2: no", "Using cache x"]) == (0, 0)


def test_parse_digest_file():
    digest = "sha256:" + "0" * 64
    assert parse_digest_file(digest.encode()) == digest
    assert parse_digest_file((digest + "\n").encode()) == digest
    assert parse_digest_file(b"") is None
    assert parse_digest_file(b"sha256:zz") is None


# --------------------------------------------------------------------------- real builds


def fetch_manifest(
    registry: RegistryServer, reference: str, auth: tuple[str, str] | None = None
) -> tuple[bytes, dict[str, Any]]:
    repository, _, tag = reference.removeprefix(registry.host + "/").rpartition(":")
    response = httpx.get(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        auth=auth,
    )
    response.raise_for_status()
    return response.content, response.json()


def file_in_image(registry: RegistryServer, reference: str, path: str) -> bytes:
    """A file's content from the image's layers (last layer holding it wins)."""
    repository = reference.removeprefix(registry.host + "/").rpartition(":")[0]
    _, manifest = fetch_manifest(registry, reference)
    found = None
    for layer in manifest["layers"]:
        blob = httpx.get(f"{registry.url}/v2/{repository}/blobs/{layer['digest']}")
        blob.raise_for_status()
        with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == path.lstrip("/"):
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    found = extracted.read()
    assert found is not None, f"{path} not in {reference}"
    return found


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique(registry: RegistryServer, name: str) -> str:
    return f"{registry.host}/lian-test/{name}-{uuid.uuid4().hex[:8]}"


def context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).write_text(text)
    return ctx


def run_build(
    tmp_path: Path, build_job: api.BuildJob, remote: LocalRemote | None = None
) -> tuple[api.BuildOutcome, list[str]]:
    lines: list[str] = []
    builder = BuildahBuilder(storage_root=str(tmp_path / f"storage-{uuid.uuid4().hex[:6]}"))
    outcome = builder.build(build_job, remote or LocalRemote(), lines.append)
    return outcome, lines


def real_job(ctx: Path, tmp_path: Path, registry: RegistryServer, **kw: object) -> api.BuildJob:
    fields: dict[str, object] = {
        "context_dir": str(ctx),
        "dockerfile": "Dockerfile",
        "work_dir": str(tmp_path / f"work-{uuid.uuid4().hex[:6]}"),
        "insecure_registries": frozenset({registry.host}),
    }
    fields.update(kw)
    return api.BuildJob(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base_image(oci_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image (``/bin/sh`` is busybox) pushed to the registry, for RUN steps."""
    require_binary("buildah")
    busybox = "/bin/busybox"
    if not Path(busybox).exists():
        require_binary("busybox")
        busybox = shutil.which("busybox") or busybox
    tmp = tmp_path_factory.mktemp("base")
    ctx = context(
        tmp,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\n",
    )
    shutil.copy(busybox, ctx / "busybox")
    reference = unique(oci_registry, "busybox") + ":1"
    outcome, lines = run_build(tmp, real_job(ctx, tmp, oci_registry, tags=(reference,)))
    assert outcome.exit_code == 0, "\n".join(lines)
    return reference


def test_build_and_push_digest_matches_the_registry(
    base_image: str, oci_registry: RegistryServer, tmp_path: Path
):
    ctx = context(
        tmp_path,
        f"FROM {base_image}\nCOPY hello.txt /hello.txt\nRUN echo built > /built.txt\n",
        {"hello.txt": "hello\n"},
    )
    repo = unique(oci_registry, "app")
    tags = (f"{repo}:1", f"{repo}:latest")
    outcome, lines = run_build(tmp_path, real_job(ctx, tmp_path, oci_registry, tags=tags))
    assert outcome.exit_code == 0, outcome.stderr_tail
    assert any(line.startswith("STEP 3/3: RUN") for line in lines)
    body, manifest = fetch_manifest(oci_registry, tags[0])
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert outcome.digest == sha256(body)
    assert sha256(fetch_manifest(oci_registry, tags[1])[0]) == outcome.digest
    assert (outcome.cached_steps, outcome.total_steps) == (0, 3)
    assert file_in_image(oci_registry, tags[0], "/built.txt") == b"built\n"


def test_second_build_from_empty_storage_hits_the_registry_cache(
    base_image: str, oci_registry: RegistryServer, tmp_path: Path
):
    ctx = context(
        tmp_path,
        f"FROM {base_image}\nCOPY hello.txt /hello.txt\nRUN echo one > /one.txt\n"
        "RUN echo two > /two.txt\n",
        {"hello.txt": "hello\n"},
    )
    cache = unique(oci_registry, "cache") + ":ci"  # the tag is stripped for buildah
    repo = unique(oci_registry, "cached")
    first, _ = run_build(
        tmp_path,
        real_job(ctx, tmp_path, oci_registry, tags=(f"{repo}:1",), cache_exports=(cache,)),
    )
    assert first.exit_code == 0, first.stderr_tail
    assert first.cached_steps == 0
    # A fresh storage root: nothing local, every hit must come from the registry.
    second, lines = run_build(
        tmp_path,
        real_job(
            ctx,
            tmp_path,
            oci_registry,
            tags=(f"{repo}:2",),
            cache_imports=(cache,),
            cache_exports=(cache,),
        ),
    )
    assert second.exit_code == 0, second.stderr_tail
    assert (second.cached_steps, second.total_steps) == (3, 4)
    assert any("Cache pulled from remote" in line for line in lines)
    assert second.digest == first.digest  # same layers, same config: same manifest


def test_failing_run_reports_exit_code_and_error(
    base_image: str, oci_registry: RegistryServer, tmp_path: Path
):
    ctx = context(tmp_path, f"FROM {base_image}\nRUN echo boom-error-42 >&2; exit 3\n")
    reference = unique(oci_registry, "fails") + ":1"
    outcome, _ = run_build(tmp_path, real_job(ctx, tmp_path, oci_registry, tags=(reference,)))
    assert outcome.exit_code == 3
    assert outcome.digest is None
    assert "boom-error-42" in outcome.stderr_tail
    assert "exit status 3" in outcome.stderr_tail
    with pytest.raises(httpx.HTTPStatusError):  # stopped before any push
        fetch_manifest(oci_registry, reference)


def test_build_arg_with_metacharacters_arrives_literally(
    base_image: str, oci_registry: RegistryServer, tmp_path: Path
):
    pytest.importorskip("lian_build.remote.quoting")
    ctx = context(tmp_path, f'FROM {base_image}\nARG NASTY\nRUN printf "%s" "$NASTY" > /arg.txt\n')
    reference = unique(oci_registry, "args") + ":1"
    # Through a real shell with the core's quoting, as over SSH.
    outcome, _ = run_build(
        tmp_path,
        real_job(ctx, tmp_path, oci_registry, tags=(reference,), build_args={"NASTY": NASTY}),
        LocalRemote(through_shell=True),
    )
    assert outcome.exit_code == 0, outcome.stderr_tail
    assert file_in_image(oci_registry, reference, "/arg.txt") == NASTY.encode()


def test_multi_platform_pushes_an_index(oci_registry: RegistryServer, tmp_path: Path):
    require_binary("buildah")
    # COPY only: no emulation needed for the foreign platform.
    ctx = context(
        tmp_path,
        "FROM scratch\nARG TARGETARCH\nCOPY f-${TARGETARCH}.txt /f.txt\n",
        {"f-amd64.txt": "amd64\n", "f-arm64.txt": "arm64\n"},
    )
    reference = unique(oci_registry, "multi") + ":1"
    outcome, _ = run_build(
        tmp_path,
        real_job(
            ctx, tmp_path, oci_registry, tags=(reference,), platforms=("linux/amd64", "linux/arm64")
        ),
    )
    assert outcome.exit_code == 0, outcome.stderr_tail
    body, index = fetch_manifest(oci_registry, reference)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert outcome.digest == sha256(body)
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]


def test_auth_registry_through_registry_auth_file(
    oci_registry_auth: RegistryServer, tmp_path: Path
):
    require_binary("buildah")
    assert oci_registry_auth.username and oci_registry_auth.password
    ctx = context(tmp_path, "FROM scratch\nCOPY a.txt /a.txt\n", {"a.txt": "a\n"})
    reference = unique(oci_registry_auth, "private") + ":1"

    denied, _ = run_build(tmp_path, real_job(ctx, tmp_path, oci_registry_auth, tags=(reference,)))
    assert denied.exit_code != 0
    assert denied.digest is None
    assert "authentication required" in denied.stderr_tail.lower()

    docker_config = tmp_path / "docker"
    docker_config.mkdir(mode=0o700)
    token = base64.b64encode(
        f"{oci_registry_auth.username}:{oci_registry_auth.password}".encode()
    ).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {oci_registry_auth.host: {"auth": token}}})
    )
    allowed, _ = run_build(
        tmp_path,
        real_job(
            ctx,
            tmp_path,
            oci_registry_auth,
            tags=(reference,),
            docker_config_dir=str(docker_config),
        ),
    )
    assert allowed.exit_code == 0, allowed.stderr_tail
    body, _ = fetch_manifest(
        oci_registry_auth,
        reference,
        auth=(oci_registry_auth.username, oci_registry_auth.password),
    )
    assert allowed.digest == sha256(body)
    assert oci_registry_auth.password not in allowed.stderr_tail


LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max processes             96369                96369                processes
Max open files            20000                20000                files
"""


def test_runner_limits_become_ulimit_flags_for_buildah_1_29_and_later():
    from lian_build.builders.buildah import parse_limits, raises_limits

    limits = parse_limits(LIMITS)
    assert limits == {"nofile": "20000:20000", "nproc": "96369:96369"}
    argv = BuildahBuilder().commands(job(), limits)[0]
    flags = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ulimit"]
    assert sorted(flags) == ["nofile=20000:20000", "nproc=96369:96369"]
    assert "--ulimit" not in BuildahBuilder().commands(job())[0]
    unlimited = LIMITS.replace("96369                96369", "unlimited            unlimited")
    assert parse_limits(unlimited) == {"nofile": "20000:20000", "nproc": "-1:-1"}
    assert parse_limits("Max open files 1024 4096 files\n") is None  # nproc missing
    assert raises_limits("buildah version 1.39.3 (image-spec 1.1.0, runtime-spec 1.2.0)\n")
    assert raises_limits("buildah version 1.43.0 (image-spec 1.1.1)\n")
    assert not raises_limits("buildah version 1.28.2 (image-spec 1.0.2-dev)\n")
    assert not raises_limits("sh: buildah: not found\n")


def test_cache_pull_lines_name_the_ref_that_served_the_hit():
    from lian_build.builders.progress import BuildahStepCounter

    counter = BuildahStepCounter()
    for line in [
        "STEP 2/4: ARG N=1",
        f"--> Cache pulled from remote {REG}/dev/alice-ws/app:abc123:abc123",
        "--> Using cache 1f2e",
        "STEP 3/4: RUN make",
        f"--> Cache pulled from remote {REG}/ci/ws/app:def456:def456",
        "--> Using cache 3a4b",
    ]:
        counter.feed(line)
    assert counter.result() == (2, 2)
    assert counter.pulled_from == [f"{REG}/dev/alice-ws/app", f"{REG}/ci/ws/app"]
