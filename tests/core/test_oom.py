"""OOM classification, cgroup parsing and the tier-ladder walk."""

from __future__ import annotations

import pytest

from lian_build import oom
from lian_build.api import RunnerSize, RunnerState, Tier
from lian_build.errors import InvalidInput, PluginError

# Hetzner's current ladder (the cx22 family is deprecated).
HETZNER = (
    Tier("cx23", 2, 4, 40),
    Tier("cx33", 4, 8, 80),
    Tier("cx43", 8, 16, 160),
    Tier("cx53", 16, 32, 320),
)


def size(cpu: int, memory_gb: int) -> RunnerSize:
    return RunnerSize(cpu, memory_gb, 30, source="language")


def test_max_oom_retries_is_one():
    assert oom.MAX_OOM_RETRIES == 1


@pytest.mark.parametrize(
    "stderr",
    [
        "error: subprocess exited on killed",  # buildah, exit code 1 (verified)
        "Killed",
        "/bin/sh: line 1:    12 Killed                  ./alloc",
        "fatal: OOM while linking",
        "container was OOMKilled",
        "memory cgroup oom_kill event",
        "Invoked oom-killer: gfp_mask=0x0",
        "fork: Cannot allocate memory",
        "rpc error: code = ResourceExhausted desc = grpc: received message larger",
        "rustc: out of memory allocating 1048576 bytes",
        "Exception in thread main java.lang.OutOfMemoryError: Java heap space",
        "mmap failed: ENOMEM",
    ],
)
def test_stderr_signals_are_oom_even_with_exit_code_1(stderr):
    verdict = oom.classify(1, f"step 3/7\n{stderr}\nmore output")
    assert verdict.is_oom, stderr
    assert verdict.reason


@pytest.mark.parametrize(
    "stderr",
    [
        "highly skilled engineers wrote this",
        "unskilled labour",
        "make: *** [Makefile:3: room] Error 1",
        "zoom/bloom filter failed",
        "writing oom_score_adj: permission denied",
        "timeout of memory barrier",
        "resourceexhaustedness",  # not a word boundary on the right
        "error: failed to solve: process did not complete successfully: exit code: 2",
        "",
    ],
)
def test_no_false_positives(stderr):
    verdict = oom.classify(2, stderr)
    assert not verdict.is_oom, stderr
    assert "2" in verdict.reason


def test_exit_137_is_oom():
    assert oom.classify(137, "").is_oom
    assert "137" in oom.classify(137, "").reason


def test_cgroup_counter_is_the_strongest_signal():
    verdict = oom.classify(1, "nothing here", oom_kills=1)
    assert verdict.is_oom
    assert "cgroup" in verdict.reason
    assert not oom.classify(1, "nothing here", oom_kills=0).is_oom


def test_runner_state_signals():
    assert oom.classify(None, "", runner_state=RunnerState(exists=True, oom_killed=True)).is_oom
    # `docker kill` leaves exit code 137 without the engine's OOMKilled flag: not an OOM.
    killed = oom.classify(None, "", runner_state=RunnerState(exists=True, exit_code=137))
    assert not killed.is_oom
    assert killed.runner_lost
    assert "stopped" in killed.reason
    gone = oom.classify(None, "", runner_state=RunnerState(exists=False, exit_code=1))
    assert not gone.is_oom
    assert gone.runner_lost


def test_a_lost_connection_is_a_lost_runner_not_an_oom():
    # sshd killed inside a still running runner
    alive = RunnerState(exists=True, running=True)
    verdict = oom.classify(None, "", connection_lost=True, runner_state=alive)
    assert not verdict.is_oom
    assert verdict.runner_lost
    assert "sshd" in verdict.reason
    # with no answer from the provider either
    assert oom.classify(None, "", connection_lost=True).runner_lost
    # the cgroup counter or the provider's OOM flag still win
    assert oom.classify(None, "", connection_lost=True, oom_kills=2).is_oom
    flagged = RunnerState(exists=True, running=False, exit_code=137, oom_killed=True)
    assert oom.classify(None, "", connection_lost=True, runner_state=flagged).is_oom


def test_a_failing_build_on_a_live_runner_is_not_lost():
    alive = RunnerState(exists=True, running=True)
    assert not oom.classify(1, "error: step failed", runner_state=alive).runner_lost
    assert oom.classify(137, "", runner_state=alive).is_oom


# ----------------------------------------------------------------- cgroup files

CGROUP_V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"
CGROUP_V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"


# ----------------------------------------------------------------- the ladder


@pytest.mark.parametrize(
    ("cpu", "memory_gb", "expected"),
    [
        (2, 4, "cx23"),
        (1, 1, "cx23"),
        (4, 8, "cx33"),
        (3, 5, "cx33"),
        (2, 9, "cx43"),
        (9, 4, "cx53"),
    ],
)
def test_choose_smallest_fitting_tier(cpu, memory_gb, expected):
    assert oom.choose_tier(HETZNER, size(cpu, memory_gb)).name == expected


def test_choose_tier_none_fits_names_the_largest():
    with pytest.raises(InvalidInput) as err:
        oom.choose_tier(HETZNER, size(16, 64))
    assert "cx53" in err.value.message
    assert err.value.field == "runner"


def test_choose_tier_explicit_start():
    assert oom.choose_tier(HETZNER, size(2, 4), start="cx43").name == "cx43"
    # Explicit wins even below the sized need.
    assert oom.choose_tier(HETZNER, size(8, 16), start="cx23").name == "cx23"
    with pytest.raises(InvalidInput) as err:
        oom.choose_tier(HETZNER, size(2, 4), start="cx22")
    assert err.value.field == "runner.tier"
    assert "cx23, cx33, cx43, cx53" in err.value.message


def test_empty_ladder_is_a_plugin_error():
    with pytest.raises(PluginError):
        oom.choose_tier([], size(2, 4))


def test_next_tier():
    assert oom.next_tier(HETZNER, HETZNER[0]) == HETZNER[1]
    assert oom.next_tier(HETZNER, HETZNER[2]) == HETZNER[3]
    assert oom.next_tier(HETZNER, HETZNER[3]) is None
    # A rung with the same memory is no help after an OOM: skip it.
    ladder = (Tier("a", 2, 4), Tier("b", 4, 4), Tier("c", 4, 8))
    assert oom.next_tier(ladder, ladder[0]) == ladder[2]
    # A tier not on the ladder: the first one with more memory.
    assert oom.next_tier(HETZNER, Tier("custom", 4, 10)) == HETZNER[2]


def test_attempt_plan_is_first_tier_plus_one_bigger():
    assert [t.name for t in oom.attempt_plan(HETZNER, size(2, 4))] == ["cx23", "cx33"]
    assert [t.name for t in oom.attempt_plan(HETZNER, size(16, 32))] == ["cx53"]
    assert [t.name for t in oom.attempt_plan(HETZNER, size(2, 4), start="cx43")] == [
        "cx43",
        "cx53",
    ]
    assert [t.name for t in oom.attempt_plan(HETZNER, size(2, 4), max_retries=0)] == ["cx23"]
    for bad in (-1, 2):
        with pytest.raises(InvalidInput) as err:
            oom.attempt_plan(HETZNER, size(2, 4), max_retries=bad)
        assert err.value.field == "max_oom_retries"
