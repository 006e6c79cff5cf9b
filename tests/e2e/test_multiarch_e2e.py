"""Two-platform builds on docker-local (emulated runners turned on): a native amd64 runner and an arm64 runner under
QEMU emulation, in parallel, each pushing its own manifest; lian assembles the index.

Needs QEMU's aarch64 binfmt_misc handler, the arm64 runner image
(``lian runner-image build --arch arm64``) and an arm64 static busybox (Debian's
busybox-static:arm64; path in LIAN_TEST_BUSYBOX_ARM64). CI sets these up; a machine
that refuses emulation fails here loudly under CI=true.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E, lian

from fixtures.require import require

BUSYBOX_ARM64 = Path(os.environ.get("LIAN_TEST_BUSYBOX_ARM64", "/usr/local/lib/lian/busybox-arm64"))
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
PLATFORMS = "linux/amd64,linux/arm64"
# Emulated runners are opt-in on docker-local.
EMULATED = ("--compute-opt", "emulated_runners=true")
# A RUN step records the machine it ran on; only an arm64 machine fails the second one.
RECORD_MACHINE = "/bin/busybox uname -m > /built-on"
FAIL_ON_ARM64 = '[ "$(/bin/busybox uname -m)" != aarch64 ] || exit 3; /bin/busybox sleep 600'
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}


def require_emulation() -> None:
    """What an emulated arm64 runner needs on this host (fails loudly under CI)."""
    require(platform.machine() == "x86_64", "an amd64 host (the arm64 runner is emulated)")
    enabled = BINFMT.exists() and BINFMT.read_text().splitlines()[0].strip() == "enabled"
    require(enabled, "QEMU binfmt_misc for aarch64 (qemu-user-static, binfmt-support)")
    require(BUSYBOX_ARM64.exists(), f"an arm64 static busybox at {BUSYBOX_ARM64}")
    # QEMU_VERSION makes the QEMU that runs arm64 programs print its version: RUN steps
    # in an emulated runner need 8.1 or newer.
    probe = subprocess.run(
        [str(BUSYBOX_ARM64), "true"], env={"QEMU_VERSION": "1"}, capture_output=True, text=True
    )
    found = re.match(r"qemu-aarch64 version (\d+)\.(\d+)", probe.stdout)
    version = (int(found[1]), int(found[2])) if found else (0, 0)
    require(version >= (8, 1), f"QEMU 8.1+ for arm64 binaries (found {probe.stdout[:40]!r})")


@pytest.fixture(scope="module")
def arm64_ready(e2e: E2E) -> str:
    import docker

    require_emulation()
    image = f"{e2e.runner_image}-arm64"
    try:
        e2e.docker.images.get(image)
        have = True
    except docker.errors.ImageNotFound:
        have = False
    require(have, f"the arm64 runner image {image} (lian runner-image build --arch arm64)")
    return image


def _context(tmp_path: Path, *steps: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    sources = [("amd64", Path("/bin/busybox")), ("arm64", BUSYBOX_ARM64)]
    for arch, source in sources:
        (ctx / f"busybox-{arch}").write_bytes(source.read_bytes())
        (ctx / f"busybox-{arch}").chmod(0o755)
    lines = ["FROM scratch", "ARG TARGETARCH", "COPY busybox-${TARGETARCH} /bin/busybox"]
    lines += [f'RUN ["/bin/busybox", "sh", "-c", {json.dumps(step)}]' for step in steps]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    return ctx


def _file_in_layer(blob: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as layer:
        for member in layer.getmembers():
            if member.name.lstrip("./") == name:
                extracted = layer.extractfile(member)
                return extracted.read() if extracted else None
    return None


def _get(url: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(url, headers=headers, timeout=30)
    response.raise_for_status()
    return response


def test_two_platforms_build_in_parallel_and_push_one_index(
    e2e: E2E, arm64_ready: str, tmp_path: Path, workspace: str
) -> None:
    ctx = _context(tmp_path, RECORD_MACHINE)
    image = f"{e2e.registry.host}/multi/{workspace}:1"

    default = lian(["plan", *e2e.flags(workspace, ctx, image, "--platforms", PLATFORMS)[1:]])
    assert default.envelope["result"]["multiplatform"]["strategy"] == "single-runner"
    plan = lian(
        ["plan", *e2e.flags(workspace, ctx, image, "--platforms", PLATFORMS, *EMULATED)[1:]]
    )
    assert plan.returncode == 0, plan.stderr
    section = plan.envelope["result"]["multiplatform"]
    assert section["strategy"] == "per-platform"
    modes = {p["platform"]: p["mode"] for p in section["platforms"]}
    assert modes == {"linux/amd64": "native", "linux/arm64": "emulated"}
    caches = {p["architecture"]: p["cache"]["exports"] for p in section["platforms"]}
    for arch in ("amd64", "arm64"):  # an amd64 rebuild never overwrites the arm64 cache
        assert caches[arch] == [f"{e2e.registry.host}/ci/{workspace}/{workspace}-{arch}:buildcache"]

    run = lian(
        e2e.flags(workspace, ctx, image, "--tag", "latest", "--platforms", PLATFORMS, *EMULATED)
    )
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    assert "[linux/arm64]" in run.stderr and "[linux/amd64]" in run.stderr

    base = f"http://{e2e.registry.host}/v2/multi/{workspace}"
    index_raw = _get(f"{base}/manifests/1", "application/vnd.oci.image.index.v1+json")
    assert index_raw.headers["Docker-Content-Digest"] == result["digest"] == result["index_digest"]
    latest = _get(f"{base}/manifests/latest", "application/vnd.oci.image.index.v1+json")
    assert latest.headers["Docker-Content-Digest"] == result["digest"]
    index = index_raw.json()
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    listed = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert set(listed) == {"amd64", "arm64"}
    by_platform = {p["platform"]: p for p in result["platforms"]}
    for arch, entry in listed.items():
        assert entry["platform"]["os"] == "linux"
        assert by_platform[f"linux/{arch}"]["digest"] == entry["digest"]
        manifest = _get(f"{base}/manifests/{entry['digest']}", entry["mediaType"]).json()
        config = _get(f"{base}/blobs/{manifest['config']['digest']}").json()
        assert config["architecture"] == arch  # the image really is that architecture
        assert config["os"] == "linux"
        # The RUN step ran on a machine of that architecture (arm64: the emulated runner).
        top = _get(f"{base}/blobs/{manifest['layers'][-1]['digest']}").content
        assert _file_in_layer(top, "built-on") == f"{UNAME[arch]}\n".encode()
    for status in result["platforms"]:
        assert status["state"] == "succeeded"
        assert status["runner_id"] and status["tier"] and status["duration_s"] > 0
    assert by_platform["linux/arm64"]["mode"] == "emulated"
    assert not e2e.runners(workspace=workspace)


def test_one_platform_failing_cancels_the_other_and_leaves_nothing(
    e2e: E2E, arm64_ready: str, tmp_path: Path, workspace: str
) -> None:
    # The RUN step fails on arm64 only; on amd64 it would sleep for ten minutes.
    ctx = _context(tmp_path, FAIL_ON_ARM64)
    image = f"{e2e.registry.host}/multi/{workspace}:1"
    run = lian(e2e.flags(workspace, ctx, image, "--platforms", PLATFORMS, *EMULATED))
    assert run.returncode == 5, run.stderr
    error: dict[str, Any] = run.envelope["error"]
    assert error["code"] == "BUILD_FAILED"
    assert error["message"].startswith("linux/arm64: ")
    assert error["details"]["platform"] == "linux/arm64"
    states = {p["platform"]: p["state"] for p in error["details"]["platforms"]}
    assert states == {"linux/arm64": "failed", "linux/amd64": "cancelled"}
    assert not e2e.runners(workspace=workspace)
    missing = httpx.head(f"http://{e2e.registry.host}/v2/multi/{workspace}/manifests/1", timeout=30)
    assert missing.status_code == 404  # no index under the requested tag
