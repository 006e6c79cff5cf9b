"""Two-platform builds through the Proxmox VE imitation: an amd64 template on node
``pve`` and an arm64 template (``arch: aarch64``) on node ``pve-arm``, each clone a real
runner container (the arm one the arm64 runner image under QEMU emulation), in
parallel, each pushing its manifest; lian assembles the index. After each test the
imitation holds no VM lian made and no runner container is left (``served_pve``).

Needs what the docker-local two-platform tests need (QEMU's aarch64 binfmt_misc
handler, the arm64 runner image, an arm64 static busybox): CI sets these up; a machine
that refuses emulation fails here loudly under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E, lian
from e2e.pve import ServedPve, served_pve
from e2e.test_multiarch_e2e import (
    FAIL_ON_ARM64,
    PLATFORMS,
    RECORD_MACHINE,
    UNAME,
    _context,
    _file_in_layer,
    _get,
)

pytestmark = pytest.mark.e2e
INDEX = "application/vnd.oci.image.index.v1+json"
ARM_NODE = "pve-arm"
ARM_TEMPLATE = 9001


@pytest.fixture
def env(oci_registry: Any, runner_image: str, ssh_key: Path, docker_client: Any) -> E2E:
    # No base image: the contexts start FROM scratch.
    return E2E(oci_registry, runner_image, ssh_key, "", docker_client)


@pytest.fixture(scope="module")
def arm64_image(docker_client: Any, runner_image: str) -> str:
    """The same checks as the docker-local two-platform tests (fails loudly in CI)."""
    from e2e.test_multiarch_e2e import BINFMT, BUSYBOX_ARM64

    from fixtures.require import require

    enabled = BINFMT.exists() and BINFMT.read_text().splitlines()[0].strip() == "enabled"
    require(enabled, "QEMU binfmt_misc for aarch64 (qemu-user-static, binfmt-support)")
    require(BUSYBOX_ARM64.exists(), f"an arm64 static busybox at {BUSYBOX_ARM64}")
    image = f"{runner_image}-arm64"
    require(
        bool(docker_client.images.list(name=image)),
        f"the arm64 runner image {image} (lian runner-image build --arch arm64)",
    )
    return image


@pytest.fixture
def pve(env: E2E, arm64_image: str, docker_client: Any, tmp_path: Path) -> Iterator[ServedPve]:
    cert_dir = tmp_path / "pve"
    cert_dir.mkdir()
    with served_pve(
        docker_client,
        env.runner_image,
        cert_dir,
        arm_image=arm64_image,
        nodes={ARM_NODE: "x86_64"},  # an x86 node: the template's arch makes it arm
    ) as served:
        served.fake.add_template(ARM_TEMPLATE, node=ARM_NODE, arch="aarch64")
        yield served


def _opts(pve: ServedPve) -> list[str]:
    return pve.compute_opts(templates=f"arm64={ARM_TEMPLATE}", nodes=f"arm64={ARM_NODE}")


def _args(
    command: str,
    env: E2E,
    pve: ServedPve,
    workspace: str,
    ctx: Path,
    image: str,
    opts: list[str] | None = None,
) -> list[str]:
    flags = env.flags(workspace, ctx, image, "--platforms", PLATFORMS)
    flags[0] = command
    flags[flags.index("docker-local")] = "proxmox"
    at = flags.index("--runner-image")
    del flags[at : at + 2]  # the VM comes from the template
    return [*flags, *(_opts(pve) if opts is None else opts)]


def test_plan_names_each_platforms_template_and_node(
    env: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    image = f"{env.registry.host}/multi/{workspace}:1"
    plan = lian(_args("plan", env, pve, workspace, _context(tmp_path), image), env=pve.env)
    assert plan.returncode == 0, plan.stderr
    section = plan.envelope["result"]["multiplatform"]
    assert section["strategy"] == "per-platform"
    by_arch = {p["architecture"]: p for p in section["platforms"]}
    assert by_arch["amd64"]["compute"] == {"template_id": pve.fake.template_id, "node": "pve"}
    assert by_arch["arm64"]["compute"] == {"template_id": ARM_TEMPLATE, "node": ARM_NODE}
    assert {a: p["mode"] for a, p in by_arch.items()} == {"amd64": "native", "arm64": "native"}
    assert pve.fake.requests == []  # planning never calls the API

    # Without the arm64 template: one runner, and plan and stderr say why.
    one = _args("plan", env, pve, workspace, tmp_path / "ctx", image, pve.compute_opts())
    single = lian(one, env=pve.env)
    assert single.returncode == 0, single.stderr
    fallback = single.envelope["result"]["multiplatform"]
    assert fallback["strategy"] == "single-runner"
    assert "proxmox has no arm64 runners" in fallback["reason"]


def test_two_platforms_on_an_amd64_and_an_arm64_clone_push_one_index(
    env: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    image = f"{env.registry.host}/multi/{workspace}:1"
    ctx = _context(tmp_path, RECORD_MACHINE)
    run = lian(_args("build", env, pve, workspace, ctx, image), env=pve.env)
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    assert result["provider"] == "proxmox" and result["strategy"] == "per-platform"

    # One clone per architecture, each of its template on its node, both alive at once.
    clones = [r.path for r in pve.fake.calls("POST", r"/clone$")]
    # (A clone may be retried: both platforms can read the same /cluster/nextid.)
    assert set(clones) == {
        f"/nodes/pve/qemu/{pve.fake.template_id}/clone",
        f"/nodes/{ARM_NODE}/qemu/{ARM_TEMPLATE}/clone",
    }
    calls = [(r.method, r.path) for r in pve.fake.requests]
    starts = [i for i, (m, p) in enumerate(calls) if m == "POST" and p.endswith("/status/start")]
    deletes = [i for i, (m, p) in enumerate(calls) if m == "DELETE"]
    assert len(starts) == 2 and len(deletes) == 2
    assert max(starts) < min(deletes)  # in parallel

    base = f"http://{env.registry.host}/v2/multi/{workspace}"
    index_raw = _get(f"{base}/manifests/1", INDEX)
    assert index_raw.headers["Docker-Content-Digest"] == result["digest"] == result["index_digest"]
    listed = {m["platform"]["architecture"]: m for m in index_raw.json()["manifests"]}
    assert set(listed) == {"amd64", "arm64"}
    by_platform = {p["platform"]: p for p in result["platforms"]}
    for arch, entry in listed.items():
        assert by_platform[f"linux/{arch}"]["digest"] == entry["digest"]
        manifest = _get(f"{base}/manifests/{entry['digest']}", entry["mediaType"]).json()
        config = _get(f"{base}/blobs/{manifest['config']['digest']}").json()
        assert config["architecture"] == arch and config["os"] == "linux"
        top = _get(f"{base}/blobs/{manifest['layers'][-1]['digest']}").content
        assert _file_in_layer(top, "built-on") == f"{UNAME[arch]}\n".encode()
    for status in result["platforms"]:
        assert status["state"] == "succeeded" and status["mode"] == "native"
        assert status["tier"] == "2c-4g"
    assert pve.fake.token not in run.stderr + run.stdout


def test_one_platform_failing_cancels_the_other_clone(
    env: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    # The RUN step fails in the arm64 clone only; in the amd64 one it would sleep for
    # ten minutes.
    ctx = _context(tmp_path, FAIL_ON_ARM64)
    image = f"{env.registry.host}/multi/{workspace}:1"
    run = lian(_args("build", env, pve, workspace, ctx, image), env=pve.env)
    assert run.returncode == 5, run.stderr
    error: dict[str, Any] = run.envelope["error"]
    assert error["code"] == "BUILD_FAILED"
    assert error["details"]["platform"] == "linux/arm64"
    states = {p["platform"]: p["state"] for p in error["details"]["platforms"]}
    assert states == {"linux/arm64": "failed", "linux/amd64": "cancelled"}
    clones = {r.path for r in pve.fake.calls("POST", r"/clone$")}
    assert clones == {
        f"/nodes/pve/qemu/{pve.fake.template_id}/clone",
        f"/nodes/{ARM_NODE}/qemu/{ARM_TEMPLATE}/clone",
    }
    assert not pve.fake.leftovers()
    missing = httpx.head(f"http://{env.registry.host}/v2/multi/{workspace}/manifests/1", timeout=30)
    assert missing.status_code == 404  # no index under the requested tag
    # served_pve then checks that no VM and no runner container is left.


def test_runner_image_check_checks_each_template(env: E2E, pve: ServedPve) -> None:
    pve.fake.add_template(9002, node=ARM_NODE)  # no arch: runs as its x86_64 node
    run = lian(["runner-image", "check", "--provider", "proxmox", *_opts(pve)], env=pve.env)
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    by_arch = {t["architecture"]: t for t in result["templates"]}
    assert by_arch["arm64"]["node"] == ARM_NODE and by_arch["arm64"]["vm_arch"] == "aarch64"
    assert by_arch["amd64"]["node"] == "pve" and by_arch["amd64"]["vm_arch"] == "x86_64"
    for checked in by_arch.values():
        assert checked["booted"] is True and checked["problems"] == []
        assert checked["tools"]["buildah"] and checked["tools"]["sshd"]
    assert result["problems"] == []
    # An x86_64 VM named as the arm64 template: a problem, exit 4, nothing booted for it.
    wrong = pve.compute_opts(templates="arm64=9002", nodes=f"arm64={ARM_NODE}")
    bad = lian(["runner-image", "check", "--provider", "proxmox", *wrong], env=pve.env)
    assert bad.returncode == 4, bad.stderr
    assert "arm64: VM 9002 is an x86_64 VM" in bad.envelope["error"]["message"]
