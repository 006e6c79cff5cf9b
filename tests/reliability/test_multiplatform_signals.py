"""Interrupts during a two-platform build (linux/amd64 + linux/arm64): one runner per
platform, the arm64 one emulated on docker-local (``emulated_runners=true``) and a cax
server through the Hetzner imitation.

Each phase is reached by holding a runner's pull of its base image at the registry
proxy (``PlatformGate``), never by sleeping: a held platform is in its build phase and
stays there until the case releases it.

INT/TERM: exit 130, one ``CANCELLED`` envelope naming every platform cancelled, both
runners destroyed by lian, no index under the requested tag. KILL: no envelope, and
`lian reap --workspace W` finds both runners by their labels and destroys them.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability.harness import PLATFORMS, Case, PlatformGate, RegistryCut, platform_context

from fixtures.require import require

BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
ARCHS = tuple(p.split("/")[1] for p in PLATFORMS)


@pytest.fixture
def arm64_ready(e2e: Any) -> None:
    enabled = BINFMT.exists() and BINFMT.read_text().splitlines()[0].strip() == "enabled"
    require(enabled, "QEMU binfmt_misc for aarch64 (qemu-user-static, binfmt-support)")
    images = e2e.docker.images.list(name=f"{e2e.runner_image}-arm64")
    require(bool(images), f"the arm64 runner image {e2e.runner_image}-arm64")


def _start(new_case: Any, e2e: Any, hold: set[str], extra: list[str] | None = None) -> Any:
    """A two-platform build whose runners are held at their base pull as ``hold`` says."""
    cut = RegistryCut(e2e.registry.host)
    case: Case = new_case(registry_host=cut.host, extra=["--platforms", ",".join(PLATFORMS)])
    if case.provider.name == "docker-local":
        case.extra += ["--compute-opt", "emulated_runners=true"]
    case.extra += list(extra or [])
    gate = PlatformGate.push(e2e.registry.url, f"base/{case.workspace}")
    gate.hold = set(hold)
    cut.on_request = gate.on_request
    case.context = platform_context(case.tmp, gate.reference(cut.host))
    case.start()
    return case, gate


def _statuses(case: Case) -> dict[str, dict[str, Any]]:
    result = case.envelope.get("result") or {}
    return {s["platform"]: s for s in result.get("platforms", [])}


def _no_index_under_the_tag(e2e: Any, case: Case) -> None:
    """The requested tag is absent: never an index listing only some platforms."""
    found = httpx.get(
        f"{e2e.registry.url}/v2/apps/{case.workspace}/manifests/{case.tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        timeout=30,
    )
    assert found.status_code == 404, found.text


def _check_cancelled(case: Case, e2e: Any, signame: str, cancelled: set[str]) -> None:
    assert case.returncode == 130, case.stderr
    envelope = case.envelope  # exactly one line on stdout
    assert envelope["status"] == "cancelled"
    assert case.code == "CANCELLED"
    error = envelope["error"]
    assert error["message"].startswith(f"cancelled by {signame}; "), error
    assert "no index was pushed" in error["message"]
    assert sorted(error["details"]["cancelled"]) == sorted(cancelled), error
    statuses = _statuses(case)
    assert {p for p, s in statuses.items() if s["state"] == "cancelled"} == cancelled, statuses
    for platform in cancelled:  # each platform says why it stopped: the signal
        assert statuses[platform]["error"]["message"].endswith(f"lian received {signame}")
    assert f"error [CANCELLED]: {error['message']}" in case.stderr
    assert "Traceback" not in case.stderr
    assert "lost the SSH connection" not in case.stderr  # stopped, not lost
    assert case.key_copies() == []
    assert case.orphans() == []
    assert case.runners_left() == []  # both runners: the workspace is this case's
    _no_index_under_the_tag(e2e, case)
    assert case.leaked() == []
    # History: no platform recorded a success it did not have.
    sessions = {s["session_id"]: s for s in statuses.values()}
    for record in case.history():
        assert record["session_id"] in sessions, record
        if record["succeeded"]:
            assert sessions[record["session_id"]]["state"] == "succeeded", record


def _events(collector: Any) -> list[tuple[str, dict[str, Any]]]:
    import json

    out = []
    for subject, raw in collector.messages:
        payload = json.loads(raw)
        out.append((subject.rsplit(".", 1)[1], dict(payload.get("data") or {})))
    return out


@pytest.mark.parametrize("signum", (signal.SIGINT, signal.SIGTERM), ids=lambda s: s.name)
def test_mp_signal_while_both_build(
    new_case: Any,
    e2e: Any,
    arm64_ready: None,
    nats_server: Any,
    nats_collector: Any,
    signum: signal.Signals,
) -> None:
    collector = nats_collector(nats_server.url, "lian.>")
    case, gate = _start(new_case, e2e, set(ARCHS), ["--nats-url", nats_server.url])
    try:
        gate.wait_arrived(case, *ARCHS)  # both runners are inside their build step
        case.signal(signum)
        case.finish()
    finally:
        gate.release.set()
    _check_cancelled(case, e2e, signum.name, set(PLATFORMS))
    # Events: each platform's own cancel, then the build's; nothing completed.
    events = _events(collector)
    for _ in range(100):
        if any(k == "cancelled" and "platform" not in d for k, d in events):
            break
        time.sleep(0.1)
        events = _events(collector)
    kinds = [(k, d.get("platform")) for k, d in events]
    assert [p for k, p in kinds if k == "cancelled"].count(None) == 1, kinds
    assert sorted(p for k, p in kinds if k == "cancelled" and p) == list(PLATFORMS), kinds
    assert not [k for k, _ in kinds if k == "completed"], kinds
    last = next(d for k, d in events if k == "cancelled" and "platform" not in d)
    assert last["code"] == "CANCELLED"
    assert {p["platform"]: p["state"] for p in last["platforms"]} == dict.fromkeys(
        PLATFORMS, "cancelled"
    )


def test_mp_second_sigint_during_cleanup(new_case: Any, e2e: Any, arm64_ready: None) -> None:
    case, gate = _start(new_case, e2e, set(ARCHS))
    try:
        gate.wait_arrived(case, *ARCHS)
        case.signal(signal.SIGINT)
        # The coordinator's cleanup has begun: it destroys the runners one by one.
        assert case.wait_for(": destroyed runner "), case.stderr
        case.signal(signal.SIGINT)
        case.finish()
    finally:
        gate.release.set()
    _check_cancelled(case, e2e, "SIGINT", set(PLATFORMS))


def test_mp_sigint_after_one_platform_pushed(new_case: Any, e2e: Any, arm64_ready: None) -> None:
    """amd64 built, pushed its staging tag and destroyed its runner; arm64 is held in
    its build: the index is not assembled, the requested tag never appears."""
    case, gate = _start(new_case, e2e, {"arm64"})
    try:
        gate.wait_arrived(case, "arm64")
        assert case.wait_for("[linux/amd64] destroy done"), case.stderr
        case.signal(signal.SIGINT)
        case.finish()
    finally:
        gate.release.set()
    _check_cancelled(case, e2e, "SIGINT", {"linux/arm64"})
    statuses = _statuses(case)
    amd64 = statuses["linux/amd64"]
    assert amd64["state"] == "succeeded" and amd64["digest"].startswith("sha256:")
    staging = f"{case.registry_host}/apps/{case.workspace}:{case.tag}-amd64"
    assert amd64["pushed"] == staging
    details = case.envelope["error"]["details"]
    assert details["staged"] == {"linux/amd64": staging}
    assert "pushed" not in details  # the requested tags hold nothing
    base = f"{e2e.registry.url}/v2/apps/{case.workspace}/manifests"
    found = httpx.get(
        f"{base}/{case.tag}-amd64",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )
    assert found.status_code == 200  # a complete single-platform image, as reported
    assert found.headers["Docker-Content-Digest"] == amd64["digest"]
    assert httpx.head(f"{base}/{case.tag}-arm64", timeout=30).status_code == 404


def test_mp_sigkill_then_reap_finds_both_runners(
    new_case: Any, e2e: Any, arm64_ready: None
) -> None:
    case, gate = _start(new_case, e2e, set(ARCHS))
    try:
        gate.wait_arrived(case, *ARCHS)
        case.signal(signal.SIGKILL)
        case.finish()
        assert case.returncode == -signal.SIGKILL
        assert not case.stdout.strip()
        assert case.key_copies() == []
        assert case.orphans() == []
        left = case.runners()
        assert len(left) == 2, left  # one runner per platform outlived lian
        if case.provider.name == "docker-local":
            sessions = sorted(
                e2e.docker.containers.get(r).labels["lian.session"].rsplit("-", 1)[1] for r in left
            )
            assert sessions == sorted(ARCHS)
        reap = case.sweep()["result"]  # the owner is dead: no waiting for expiry
    finally:
        gate.release.set()
    assert reap["found"] == 2, reap
    assert len(reap["destroyed"]) == 2, reap
    if case.provider.name == "docker-local":
        assert sorted(reap["destroyed"]) == sorted(left), reap
    assert reap["failed"] == [] and reap["kept"] == [], reap
    assert case.runners_left() == []
    _no_index_under_the_tag(e2e, case)
