"""Two-platform builds on docker-local (emulated runners turned on): a native amd64 runner and an arm64 runner under
QEMU emulation, in parallel, each pushing its own manifest; lian assembles the index.

Needs QEMU's aarch64 binfmt_misc handler, the arm64 runner image
(``lian runner-image build --arch arm64``) and an arm64 static busybox (Debian's
busybox-static:arm64; path in LIAN_TEST_BUSYBOX_ARM64). CI sets these up; a machine
that refuses emulation fails here loudly under CI=true.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E, lian

from fixtures.require import require

BUSYBOX_ARM64 = Path(os.environ.get("LIAN_TEST_BUSYBOX_ARM64", "/usr/local/lib/lian/busybox-arm64"))
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
PLATFORMS = "linux/amd64,linux/arm64"
# Emulated runners are opt-in on docker-local; RUN steps cannot run in them under Debian
# 12's QEMU (buildah re-executes /proc/self/exe), so these builds COPY only on arm64.
EMULATED = ("--compute-opt", "emulated_runners=true")


@pytest.fixture(scope="module")
def arm64_ready(e2e: E2E) -> str:
    import docker

    require(platform.machine() == "x86_64", "an amd64 host (the arm64 runner is emulated)")
    enabled = BINFMT.exists() and BINFMT.read_text().splitlines()[0].strip() == "enabled"
    require(enabled, "QEMU binfmt_misc for aarch64 (qemu-user-static, binfmt-support)")
    require(BUSYBOX_ARM64.exists(), f"an arm64 static busybox at {BUSYBOX_ARM64}")
    image = f"{e2e.runner_image}-arm64"
    try:
        e2e.docker.images.get(image)
        have = True
    except docker.errors.ImageNotFound:
        have = False
    require(have, f"the arm64 runner image {image} (lian runner-image build --arch arm64)")
    return image


def _context(tmp_path: Path, *steps: str, arm64: bool = True) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    sources = [("amd64", Path("/bin/busybox"))] + ([("arm64", BUSYBOX_ARM64)] if arm64 else [])
    for arch, source in sources:
        (ctx / f"busybox-{arch}").write_bytes(source.read_bytes())
        (ctx / f"busybox-{arch}").chmod(0o755)
    lines = ["FROM scratch", "ARG TARGETARCH", "COPY busybox-${TARGETARCH} /bin/busybox"]
    lines += [f'RUN ["/bin/busybox", "sh", "-c", {json.dumps(step)}]' for step in steps]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    return ctx


def _get(url: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(url, headers=headers, timeout=30)
    response.raise_for_status()
    return response


def test_two_platforms_build_in_parallel_and_push_one_index(
    e2e: E2E, arm64_ready: str, tmp_path: Path, workspace: str
) -> None:
    ctx = _context(tmp_path)
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
    for status in result["platforms"]:
        assert status["state"] == "succeeded"
        assert status["runner_id"] and status["tier"] and status["duration_s"] > 0
    assert by_platform["linux/arm64"]["mode"] == "emulated"
    assert not e2e.runners(workspace=workspace)


def test_one_platform_failing_cancels_the_other_and_leaves_nothing(
    e2e: E2E, arm64_ready: str, tmp_path: Path, workspace: str
) -> None:
    # The context has no arm64 busybox: arm64 fails at its COPY; amd64 passes it and
    # would sleep for ten minutes.
    ctx = _context(tmp_path, "/bin/busybox sleep 600", arm64=False)
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
