"""`lian build --provider proxmox` end to end: the Proxmox VE imitation clones a VM that
is a real runner container (sshd, rsync, buildah), the plugin pins its host key through
the guest agent, the image is pushed to the real registry and its digest verified;
failures end in one error envelope with no VM left (the imitation's inventory)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E, lian
from e2e.pve import ServedPve, served_pve

pytestmark = pytest.mark.e2e


@pytest.fixture
def pve(e2e: E2E, docker_client: Any, tmp_path: Path) -> Iterator[ServedPve]:
    cert_dir = tmp_path / "pve"
    cert_dir.mkdir()
    with served_pve(docker_client, e2e.runner_image, cert_dir) as served:
        yield served


def _flags(e2e: E2E, pve: ServedPve, workspace: str, ctx: Path, image: str) -> list[str]:
    flags = e2e.flags(workspace, ctx, image)
    i = flags.index("--provider")
    flags[i + 1] = "proxmox"
    # The VM comes from the template, not from a runner image.
    j = flags.index("--runner-image")
    del flags[j : j + 2]
    return [*flags, *pve.compute_opts()]


def _context(tmp_path: Path, e2e: E2E, run: str) -> Path:
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {e2e.base_image}\nRUN {run}\n")
    (ctx / "hello.txt").write_text("hello from a proxmox runner\n")
    return ctx


def test_build_through_proxmox_pushes_a_verified_image(
    e2e: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    ctx = _context(tmp_path, e2e, "echo built > /built.txt")
    image = f"{e2e.registry.host}/apps/{workspace}:pve"
    run = lian(_flags(e2e, pve, workspace, ctx, image), env=pve.env)
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    assert result["provider"] == "proxmox"
    digest = result["digest"]
    assert digest.startswith("sha256:")
    # The registry serves exactly that manifest under the tag.
    r = httpx.get(
        f"{e2e.registry.url}/v2/apps/{workspace}/manifests/pve",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    assert r.status_code == 200
    assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest
    # One VM was cloned, booted and destroyed; its container went with it.
    assert len(pve.fake.calls("POST", r"/clone$")) == 1
    assert pve.fake.calls("DELETE", r"/qemu/\d+$")
    assert not pve.fake.guests()


def test_a_failed_build_on_proxmox_leaves_no_vm(
    e2e: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    ctx = _context(tmp_path, e2e, "exit 3")
    image = f"{e2e.registry.host}/apps/{workspace}:fails"
    run = lian(_flags(e2e, pve, workspace, ctx, image), env=pve.env)
    assert run.returncode == 5, run.stderr
    assert run.envelope["error"]["code"] == "BUILD_FAILED"
    assert not pve.fake.guests()


def test_a_clone_collision_and_a_warning_still_build(
    e2e: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    pve.fake.clone_races = 1
    pve.fake.task_errors["qmstart"] = "WARNINGS: 1"
    ctx = _context(tmp_path, e2e, "true")
    image = f"{e2e.registry.host}/apps/{workspace}:race"
    run = lian(_flags(e2e, pve, workspace, ctx, image), env=pve.env)
    assert run.returncode == 0, run.stderr
    [other] = [vm for vm in pve.fake.guests().values() if vm.foreign]
    assert other.name == "someone-elses-vm"  # the other client's VM is untouched


def test_a_failed_first_boot_is_one_error_envelope_and_no_vm(
    e2e: E2E, pve: ServedPve, tmp_path: Path, workspace: str
) -> None:
    ctx = _context(tmp_path, e2e, "true")
    image = f"{e2e.registry.host}/apps/{workspace}:noboot"
    pve.fake.boot_status = 1  # cloud-init reports an error
    run = lian(_flags(e2e, pve, workspace, ctx, image), env=pve.env)
    assert run.returncode == 4, run.stderr
    assert run.envelope["error"]["code"] == "RUNNER_NOT_READY"
    assert not pve.fake.guests()
    assert pve.fake.token not in run.stdout + run.stderr


def test_runner_image_check_boots_a_clone_and_reports_one_envelope(pve: ServedPve) -> None:
    # `runner-image` is a command of lian-build-docker-local: installed here, not in the
    # proxmox plugin's own session.
    args = ["runner-image", "check", "--provider", "proxmox", *pve.compute_opts()]
    run = lian(args, env=pve.env)
    assert run.returncode == 0, run.stderr
    assert (run.envelope["command"], run.envelope["status"]) == ("runner-image check", "ok")
    result = run.envelope["result"]
    assert (result["provider"], result["booted"], result["problems"]) == ("proxmox", True, [])
    assert result["tools"]["sshd"] == "/usr/sbin/sshd"
    # The runner image is trixie (buildah 1.39): no warning; bookworm's 1.28 would get one.
    version = result["tools"]["buildah_version"]
    old = tuple(int(part) for part in version.split(".")[:2]) < (1, 39)
    assert any("1.39" in w for w in result["warnings"]) == old
    assert len(pve.fake.calls("POST", r"/clone$")) == 1
    assert pve.fake.token not in run.stdout + run.stderr
