"""Faults: each ends in its own documented code, with no runner left and no secret
leaked. The registry goes away before the start, at build start, during the push and
before lian verifies the push; the runner loses sshd or is killed; the engine is
unreachable; NATS never answers; parts of the context cannot be read; the local disk
is full."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from reliability.harness import BlackHole, Case, RegistryCut, app_context

from fixtures.ports import free_port
from fixtures.require import require


def _common(case: Case, code: str | None, exit_code: int) -> None:
    assert case.returncode == exit_code, (case.returncode, case.stderr)
    assert case.code == code, (case.envelope, case.stderr)
    assert "Traceback" not in case.stderr
    assert case.runners_left() == []
    assert case.leaked() == []
    assert case.key_copies() == []


def _never_provisioned(case: Case) -> None:
    assert "] provision:" not in case.stderr


def test_registry_down_before_start(new_case: Any) -> None:
    case = new_case(registry_host=f"127.0.0.1:{free_port()}").run()
    _common(case, "REGISTRY_UNREACHABLE", 6)
    _never_provisioned(case)


@pytest.mark.parametrize("when", ["build-start", "push", "before-verify"])
def test_registry_goes_away(new_case: Any, e2e: Any, when: str) -> None:
    cut = RegistryCut(e2e.registry.host)
    case = new_case(registry_host=cut.host)
    repo = f"/v2/apps/{case.workspace}/"
    if when == "push":
        cut.when = lambda m, p: m == "POST" and p.startswith(repo + "blobs/uploads")
    elif when == "before-verify":

        def pushed():
            return any(
                m == "PUT" and p.startswith(repo + "manifests/") for m, p in cut.requests[:-1]
            )

        cut.when = lambda m, p: m in ("GET", "HEAD") and "manifests/" in p and pushed()
    case.start()
    if when == "build-start":
        assert case.phase("build")
        cut.cut()
    case.finish()
    assert cut.down.is_set(), case.stderr
    _common(case, "REGISTRY_UNREACHABLE", 6)
    message = case.envelope["error"]["message"].lower()
    assert "refused" in message or "unreachable" in message, message
    if when == "before-verify":
        details = case.envelope["error"]["details"]
        assert details["pushed"] is True
        assert details["digest"].startswith("sha256:")


@pytest.mark.parametrize("fault", ["sshd-killed", "runner-killed"])
def test_a_lost_runner_is_not_out_of_memory(new_case: Any, e2e: Any, fault: str) -> None:
    case = new_case()
    case.context = app_context(case.tmp, e2e.base_image, sleep=30)
    case.start()
    assert case.wait_for("STEP 3/4"), case.stderr  # the RUN step that sleeps
    time.sleep(2)
    (runner,) = case.runners()
    if fault == "sshd-killed":
        case.provider.kill_sshd(e2e, runner)
    else:
        case.provider.kill_runner(e2e, runner)
    case.finish()
    _common(case, "RUNNER_LOST", 4)
    assert "out of memory" not in case.stderr.lower()
    result = case.envelope["result"]
    assert len(result["tiers_tried"]) == 1  # no retry on a bigger tier
    (record,) = case.history()
    assert record["oom"] is False
    assert record["succeeded"] is False


def test_docker_engine_unreachable(new_case: Any, tmp_path: Path) -> None:
    case = new_case()
    case.extra += case.provider.dead_engine(tmp_path)
    case.run()
    assert case.returncode == 4, case.stderr
    assert case.code is not None and case.code.startswith("PROVISION")
    assert "Traceback" not in case.stderr
    assert case.leaked() == []


def test_nats_black_hole_costs_a_warning(new_case: Any) -> None:
    hole = BlackHole()
    try:
        case = new_case(extra=["--nats-url", f"nats://127.0.0.1:{hole.port}"]).run()
    finally:
        hole.close()
    _common(case, None, 0)
    assert "NATS events disabled" in case.stderr


@pytest.mark.parametrize("part", ["directory", "file"])
def test_unreadable_context_parts(new_case: Any, e2e: Any, part: str) -> None:
    case = new_case()
    case.context = app_context(case.tmp, e2e.base_image)
    locked = case.context / "private"
    if part == "directory":
        locked.mkdir()
        (locked / "x").write_text("x")
    else:
        locked.write_text("x")
    locked.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that allow it
        require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    try:
        case.start(prefix=prefix).finish()
    finally:
        locked.chmod(0o755)
    _common(case, "INVALID_INPUT", 2)
    _never_provisioned(case)
    assert "private" in case.envelope["error"]["message"]


def test_local_disk_full(new_case: Any, tmp_path: Path) -> None:
    """State dir and $TMPDIR on a full file system: the build itself still succeeds,
    and the lost history record is said on stderr, not hidden."""
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "root to mount a tmpfs")
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    require(mounted.returncode == 0, f"a tmpfs mount ({mounted.stderr.strip()})")
    try:
        (full / "state").mkdir()
        (full / "tmpdir").mkdir()
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={full}/filler", "bs=4k"], capture_output=True, check=False
        )
        case = new_case()
        case.shared_state = full / "state"
        case.tmp.joinpath("tmpdir").symlink_to(full / "tmpdir")
        case.run()
        assert case.returncode == 0, case.stderr
        assert case.code is None
        assert "history" in case.stderr.lower()  # the record that could not be written
        assert case.runners_left() == []
        assert case.leaked() == []
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)
