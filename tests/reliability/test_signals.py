"""SIGINT, SIGTERM and SIGKILL at each phase of a build.

INT/TERM: exit 130, one CANCELLED envelope (or success when the build had already
ended), the runner destroyed by lian itself, and after the push the envelope still
carries the digest. KILL: no envelope, but no key copy on disk, no orphan rsync/ssh,
and the next sweep on this host (`lian reap --workspace`, not --all) destroys the
runner at once because its owner process is dead. No case leaks a secret.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from reliability.harness import Case, RegistryCut

PHASES = ("provision", "ssh", "sync", "build", "push", "verify", "destroy")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def _drive_to(
    case: Case, phase: str, cut: RegistryCut, send: Callable[[], None]
) -> threading.Event:
    """Start the build and call ``send`` once it is in ``phase``: the push and lian's
    verification are caught at the registry proxy, the others on stderr."""
    fired = threading.Event()
    repo = f"/v2/apps/{case.workspace}/"

    def on_request(method: str, path: str, head: str) -> None:
        if fired.is_set():
            return
        if phase == "push" and method == "POST" and path.startswith(repo + "blobs/uploads"):
            fired.set()
            send()
            time.sleep(0.5)  # hold the upload back while the signal lands
        if (
            phase == "verify"
            and method in ("GET", "HEAD")
            and path.startswith(repo + "manifests/")
            and "python-httpx" in head.lower()
            and any(m == "PUT" and p.startswith(repo + "manifests/") for m, p in cut.requests)
        ):
            fired.set()
            send()
            time.sleep(0.5)

    cut.on_request = on_request
    case.start()
    if phase not in ("push", "verify"):
        assert case.phase(phase), case.stderr
        fired.set()
        send()
    return fired


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_at_phase(new_case: Any, e2e: Any, phase: str, signum: int) -> None:
    cut = RegistryCut(e2e.registry.host)
    case = new_case(registry_host=cut.host)
    fired = _drive_to(case, phase, cut, lambda: case.signal(signum))
    case.finish()
    assert fired.is_set(), f"the build never reached {phase}:\n{case.stderr}"

    if signum == signal.SIGKILL:
        assert case.returncode == -signal.SIGKILL
        assert not case.stdout.strip()
        assert case.key_copies() == []
        assert case.orphans() == []
        case.sweep()  # the next sweep on this host: the owner is dead, no waiting
    else:
        finished = case.returncode == 0
        # Only after the image was pushed can the build end before the signal lands.
        assert case.returncode == 130 or (finished and phase in ("verify", "destroy")), (
            case.returncode,
            case.stderr,
        )
        if not finished:
            envelope = case.envelope
            assert envelope["status"] == "cancelled"
            assert case.code == "CANCELLED"
            assert "Traceback" not in case.stderr
            if phase in ("verify", "destroy"):
                details = envelope["error"].get("details", {})
                assert "pushed" in details, (envelope, case.stderr)
                assert details["pushed"] is True
                assert details["digest"].startswith("sha256:")
        assert case.key_copies() == []
        assert case.orphans() == []
    assert case.runners_left() == []
    assert case.leaked() == []
