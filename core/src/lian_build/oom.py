"""Out-of-memory classification and the walk up a provider's tier ladder.

A build that ran out of memory is retried once on the next bigger tier
(``MAX_OOM_RETRIES``, a hard bound). Exit code 137 alone is not enough: buildah
reports a killed RUN step as "subprocess exited on killed" and exits 1, while the
runner itself keeps running. The runner's memory cgroup ``oom_kill`` counter is the
most reliable signal, so it is checked first.

Hetzner's ladder is cx23 -> cx33 -> cx43 -> cx53 (the cx22 family is deprecated).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import attrs

from lian_build.api import RunnerSize, RunnerState, Tier
from lian_build.errors import InvalidInput, PluginError

log = logging.getLogger("lian.oom")

MAX_OOM_RETRIES = 1
SIGKILL_EXIT = 137  # 128 + SIGKILL: what the OOM killer leaves behind

# "Word-ish": no letter directly before or after, so "skilled" and "room" do not match
# while "oom_kill", "OOMKilled" and "Killed: 9" do.
_OOM_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        # oom_score_adj is a process setting runtimes print, not an event.
        ("OOM", r"(?<![a-z])oom(?:kill(?:ed|er)?)?(?![a-z])(?!_score)"),
        ("Killed", r"(?<![a-z])killed(?![a-z])"),
        ("cannot allocate memory", r"cannot\s+allocate\s+memory"),
        ("ResourceExhausted", r"(?<![a-z])resource\s*exhausted(?![a-z])"),
        # No trailing boundary: Java's OutOfMemoryError counts too.
        ("out of memory", r"(?<![a-z])out[\s_-]*of[\s_-]*memory"),
        ("ENOMEM", r"(?<![a-z])enomem(?![a-z])"),
    )
)


@attrs.frozen
class OomVerdict:
    is_oom: bool
    reason: str
    # The runner itself went away (connection lost, machine gone or stopped, sshd
    # gone) with no sign of memory trouble: an infrastructure failure, never an OOM.
    runner_lost: bool = False


def _stderr_signal(stderr: str) -> str | None:
    for label, pattern in _OOM_PATTERNS:
        if pattern.search(stderr):
            return label
    return None


def lost_reason(runner_state: RunnerState | None, *, connection_lost: bool) -> str | None:
    """Why the runner is gone, or None while it still looks alive and reachable."""
    if runner_state is not None and not runner_state.exists:
        return "the runner no longer exists (destroyed or deleted from outside)"
    if runner_state is not None and not runner_state.running:
        code = runner_state.exit_code
        shown = "" if code is None else f", exit code {code}"
        return f"the runner stopped mid-build (killed or shut down from outside{shown})"
    if connection_lost:
        if runner_state is None:
            return "the SSH connection was lost and the provider could not say why"
        return "the SSH connection was lost while the runner kept running (sshd gone?)"
    return None


def classify(
    exit_code: int | None,
    stderr: str,
    *,
    oom_kills: int | None = None,
    runner_state: RunnerState | None = None,
    connection_lost: bool = False,
    memory_limited: bool = True,
) -> OomVerdict:
    """Decide whether a failed build ran out of memory; strongest evidence first.

    ``oom_kills`` is how much the runner's cgroup ``oom_kill`` counter went up during
    the build. A lost connection alone is not evidence: the runner may have been
    killed, stopped or lost its sshd, so without a counter or the provider saying
    "OOM" it is a lost runner (``runner_lost``). ``memory_limited`` is kept for
    callers; it no longer turns a lost connection into an OOM.
    """
    del memory_limited
    if oom_kills is not None and oom_kills > 0:
        return OomVerdict(True, f"the runner's memory cgroup recorded {oom_kills} OOM kill(s)")
    if runner_state is not None and runner_state.oom_killed:
        return OomVerdict(True, "the compute provider reports the runner was OOM-killed")
    lost = lost_reason(runner_state, connection_lost=connection_lost)
    if lost is not None:
        # A runner killed from outside also "exits 137": that is not the OOM killer.
        return OomVerdict(False, lost, runner_lost=True)
    if exit_code == SIGKILL_EXIT:
        return OomVerdict(True, "the build exited with 137 (killed, typically by the OOM killer)")
    signal = _stderr_signal(stderr or "")
    if signal is not None:
        return OomVerdict(True, f"the build output reports {signal!r}")
    shown = "unknown" if exit_code is None else str(exit_code)
    return OomVerdict(False, f"exit code {shown} with no sign of running out of memory")


# ----------------------------------------------------------------- registry failures

# What buildah/buildkit print when the registry is not there: dial/connect errors,
# gateway answers of a proxy in front of a dead registry, TLS handshakes cut short.
_UNREACHABLE = re.compile(
    r"connection refused|connection reset|no route to host|no such host|i/o timeout"
    r"|network is unreachable|dial tcp|(?-i:\bEOF\b)|server misbehaving|tls: handshake"
    r"|50[234] (?:Bad Gateway|Service Unavailable|Gateway Timeout)",
    re.IGNORECASE,
)


def registry_line(log_tail: str, registry_host: str) -> str | None:
    """The last builder line saying the registry ``registry_host`` cannot be reached
    (a failed push, cache import/export or base image pull from it); None when the
    failure has nothing to do with the registry."""
    host = registry_host.lower()
    for line in reversed(log_tail.splitlines()):
        lowered = line.lower()
        if host in lowered and _UNREACHABLE.search(line):
            return line.strip()[-400:]
    return None


# ----------------------------------------------------------------- cgroup files


# ----------------------------------------------------------------- the ladder


def _describe(tier: Tier) -> str:
    return f"{tier.name} ({tier.cpu} cpu, {tier.memory_gb:g} GB)"


def choose_tier(ladder: Sequence[Tier], size: RunnerSize, *, start: str | None = None) -> Tier:
    """The smallest tier that fits ``size`` (``ladder`` is smallest first).

    ``start`` names a tier explicitly (the runner override): it is used as given, even
    when the sizing asks for more, because the caller chose it on purpose.
    """
    if not ladder:
        raise PluginError("the compute provider offers no tiers")
    if start is not None:
        for tier in ladder:
            if tier.name == start:
                if not tier.fits(size):
                    log.warning(
                        "tier %s is smaller than the sized %d cpu / %d GB; using it as requested",
                        tier.name,
                        size.cpu,
                        size.memory_gb,
                    )
                return tier
        names = ", ".join(t.name for t in ladder)
        raise InvalidInput(
            f"runner.tier {start!r} is not one of this provider's tiers: {names}",
            field="runner.tier",
        )
    for tier in ladder:
        if tier.fits(size):
            return tier
    largest = max(ladder, key=lambda t: (t.memory_gb, t.cpu))
    raise InvalidInput(
        f"no tier fits {size.cpu} cpu / {size.memory_gb} GB ({size.source} sizing); "
        f"the largest is {_describe(largest)}",
        field="runner",
    )


def next_tier(ladder: Sequence[Tier], current: Tier) -> Tier | None:
    """The first tier above ``current`` with more memory, or None at the top."""
    names = [t.name for t in ladder]
    above = ladder[names.index(current.name) + 1 :] if current.name in names else ladder
    for tier in above:
        if tier.memory_gb > current.memory_gb:
            return tier
    return None


def attempt_plan(
    ladder: Sequence[Tier],
    size: RunnerSize,
    start: str | None = None,
    max_retries: int = MAX_OOM_RETRIES,
) -> list[Tier]:
    """The tiers a build may run on: the first choice, then at most one bigger tier."""
    if not 0 <= max_retries <= MAX_OOM_RETRIES:
        raise InvalidInput(
            f"max_oom_retries must be between 0 and {MAX_OOM_RETRIES} (got {max_retries})",
            field="max_oom_retries",
        )
    plan = [choose_tier(ladder, size, start=start)]
    for _ in range(max_retries):
        bigger = next_tier(ladder, plan[-1])
        if bigger is None:
            break
        plan.append(bigger)
    return plan
