"""Load: 8 concurrent builds writing one history, and concurrent session actors of one
workspace. Every build succeeds, no runner is left, no marker leaks, no history
record is lost."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from reliability.harness import Case

BUILDS = 8
ACTORS = 4


def _run_all(cases: list[Case]) -> None:
    for case in cases:
        case.start()
    for case in cases:
        case.finish(timeout=900)


def test_concurrent_builds(new_case: Any, tmp_path: Path) -> None:
    shared = tmp_path / "shared-state"
    cases = [new_case() for _ in range(BUILDS)]
    for case in cases:
        case.shared_state = shared
    _run_all(cases)
    for case in cases:
        assert case.returncode == 0, case.stderr
        assert case.envelope["status"] == "ok"
        assert case.runners_left() == []
        assert case.leaked() == []
    sessions = {case.envelope["result"]["session_id"] for case in cases}
    recorded = {record["session_id"] for record in cases[0].history()}
    assert recorded == sessions  # no record lost to a concurrent writer


@pytest.mark.parametrize("mode", ["session"])
def test_concurrent_session_actors(new_case: Any, mode: str) -> None:
    workspace = "rel-" + uuid.uuid4().hex[:10]
    cases = []
    for index in range(ACTORS):
        case = new_case(workspace=workspace, extra=["--mode", mode, "--actor", f"actor{index}"])
        case.tag = f"actor{index}"
        cases.append(case)
    _run_all(cases)
    for case in cases:
        assert case.returncode == 0, case.stderr
        assert case.leaked() == []
        cache = case.envelope["result"]["cache"]
        actor = case.tag
        # each actor exports only into its own namespace of the workspace
        assert all(actor in ref and workspace in ref for ref in cache["exports"]), cache
    assert cases[0].runners_left() == []
