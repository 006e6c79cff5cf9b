"""The sizing time budget is enforced: a build that runs past it is stopped, reported as
TIME_BUDGET_EXCEEDED (exit 7) and its runner destroyed."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.helpers import E2E, lian

from lian_build.errors import EXIT_TIMEOUT

pytestmark = pytest.mark.e2e


def test_build_past_its_time_budget_is_stopped(e2e: E2E, tmp_path: Path, workspace: str) -> None:
    ctx = tmp_path / "slow"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {e2e.base_image}\nRUN sleep 300\n")
    directives = tmp_path / "budget.ncl"
    directives.write_text(
        f"""
let D = import "build_directives.ncl" in
{{
  workspace = "{workspace}",
  context = "{ctx}",
  artifact = {{ image = "{e2e.registry.host}/apps/{workspace}:budget" }},
  compute = {{ provider = "docker-local", image = "{e2e.runner_image}" }},
  registry = {{ provider = "zot", url = "http://{e2e.registry.host}" }},
  builder = "buildah",
  runner = {{ time_budget_min = 1 }},
}} | D.BuildDirectives
"""
    )
    # The test's own timeout is far above the budget: a budget that is not enforced
    # shows up as the sleep finishing (exit 0) or as this timeout, not as a pass.
    run = lian(
        ["build", "--directives", str(directives), "--ssh-key", str(e2e.ssh_key)], timeout=280
    )
    assert run.returncode == EXIT_TIMEOUT, run.stderr
    envelope = run.envelope
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "TIME_BUDGET_EXCEEDED"
    assert envelope["error"]["details"] == {"time_budget_min": 1}
    assert "lian build: error [TIME_BUDGET_EXCEEDED]" in run.stderr
    partial = envelope["result"]
    assert partial["workspace"] == workspace
    assert partial["size"]["time_budget_min"] == 1
    # Normally stopped while building; on a very loaded machine the budget can run out
    # earlier (it covers the whole session), which is enforcement all the same.
    assert set(partial["phases"]) & {"provision", "ssh", "sync", "build"}, run.stderr
    assert not e2e.runners(workspace=workspace)
