"""How big a runner a build needs: three sources, first match wins.

1. Explicit: ``.build-spec.ncl`` in the build context (checked by the BuildSpec contract).
2. History: the P95 of measured use over recent successful builds, x 1.2, floored at
   2 cpu / 4 GB (see ``from_history``).
3. Language defaults: the table below; every build gets an answer here.

The directives' runner override is applied on top of whichever source answered.
The sources are wired as pluggy hooks in ``lian_build.builtin.sizing``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from lian_build.api import BuildMetrics, RunnerSize
from lian_build.errors import InvalidInput

log = logging.getLogger("lian.sizing")

BUILD_SPEC_FILE = ".build-spec.ncl"

# (cpu, memory GB, time budget minutes); keys are lowercase language names.
DEFAULT_SIZE: tuple[int, int, int] = (2, 4, 30)
LANGUAGE_DEFAULTS: dict[str, tuple[int, int, int]] = {
    "rust": (4, 8, 60),
    "go": (2, 4, 30),
    "java": (4, 8, 45),
    "kotlin": (4, 8, 45),
    "scala": (4, 8, 45),
}

HISTORY_MIN_SAMPLES = 3
HISTORY_HEADROOM = Fraction(6, 5)  # x 1.2, exact: float 1.2 would round 2.5 x 1.2 up to 4
HISTORY_TIME_FACTOR = Fraction(3, 2)
FLOOR_CPU = 2
FLOOR_MEMORY_GB = 4
TIME_BUDGET_MIN = 10
TIME_BUDGET_MAX = 1440  # the BuildSpec contract's bound
CPU_MAX = 256  # the BuildSpec contract's bound
GIB = 1024**3


def language_default(language: str | None) -> RunnerSize:
    """The seed table's size for ``language`` (case-insensitive); unknown -> the default."""
    key = (language or "").strip().lower()
    if key in LANGUAGE_DEFAULTS:
        cpu, memory_gb, minutes = LANGUAGE_DEFAULTS[key]
        reason = f"language default for {key}"
    else:
        cpu, memory_gb, minutes = DEFAULT_SIZE
        reason = (
            f"default size (no table entry for language {language!r})"
            if key
            else "default size (language unknown)"
        )
    return RunnerSize(cpu, memory_gb, minutes, source="language", reason=reason)


def p95(values: Sequence[Fraction]) -> Fraction:
    """Nearest-rank 95th percentile: the smallest value with >= 95% of values at or below.

    Nearest rank never invents a value between observations, so a P95 is always a use
    some build actually had; with fewer than 20 samples it is the maximum.
    """
    if not values:
        raise ValueError("p95 of no values")
    ordered = sorted(values)
    rank = math.ceil(Fraction(95, 100) * len(ordered))
    return ordered[rank - 1]


def usable(sample: BuildMetrics) -> bool:
    """Succeeded, not OOM, with a peak-memory measurement and a positive duration."""
    return (
        sample.succeeded
        and not sample.oom
        and sample.peak_memory_bytes is not None
        and sample.duration_s > 0
    )


def _cores_used(sample: BuildMetrics) -> Fraction:
    # Without a CPU measurement, assume the build used every core it had.
    if sample.cpu_seconds is None:
        return Fraction(sample.cpu)
    return Fraction(sample.cpu_seconds) / Fraction(sample.duration_s)


def from_history(samples: Sequence[BuildMetrics]) -> RunnerSize | None:
    """P95 of measured use x 1.2, or None with fewer than 3 usable samples.

    Usable: succeeded, not OOM, with a peak-memory measurement. CPU is average cores
    (``cpu_seconds / duration_s``; the allocated cpu when not measured); memory is the
    peak in GiB. Each is rounded up to whole cpu / GB, then floored at 2 cpu and 4 GB.

    The time budget comes from history too: P95 duration x 1.5, rounded up to whole
    minutes and clamped to 10..1440. Measured durations beat a per-language guess, and
    this source does not know the language.
    """
    usable_samples = [s for s in samples if usable(s)]
    if len(usable_samples) < HISTORY_MIN_SAMPLES:
        return None
    cpu_p95 = p95([_cores_used(s) for s in usable_samples])
    mem_p95 = p95([Fraction(s.peak_memory_bytes or 0) for s in usable_samples])
    duration_p95 = p95([Fraction(s.duration_s) for s in usable_samples])

    cpu = min(CPU_MAX, max(FLOOR_CPU, math.ceil(cpu_p95 * HISTORY_HEADROOM)))
    memory_gb = max(FLOOR_MEMORY_GB, math.ceil(mem_p95 * HISTORY_HEADROOM / GIB))
    minutes = math.ceil(duration_p95 * HISTORY_TIME_FACTOR / 60)
    minutes = min(TIME_BUDGET_MAX, max(TIME_BUDGET_MIN, minutes))
    reason = (
        f"P95 of {len(usable_samples)} successful builds ({float(cpu_p95):.2f} cores, "
        f"{float(mem_p95 / GIB):.2f} GiB, {float(duration_p95 / 60):.1f} min) with 20% headroom"
    )
    return RunnerSize(cpu, memory_gb, minutes, source="history", reason=reason)


def explicit(context_dir: Path) -> RunnerSize | None:
    """The size in ``<context>/.build-spec.ncl``, or None when there is no such file.

    A file that breaks the BuildSpec contract raises ``ContractViolation``.
    """
    spec_path = context_dir / BUILD_SPEC_FILE
    if not spec_path.is_file():
        return None
    from lian_build.ncl import load_build_spec  # Nickel only when a spec exists

    spec = load_build_spec(spec_path)
    return RunnerSize(
        spec.cpu,
        spec.memory_gb,
        spec.time_budget_min,
        source="explicit",
        reason=f"explicit size from {BUILD_SPEC_FILE}",
    )


def _positive(value: int | None, field: str, maximum: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{field} must be a positive integer (got {value!r})", field=field)
    if maximum is not None and value > maximum:
        raise InvalidInput(f"{field} must be at most {maximum} (got {value})", field=field)
    return value


def apply_override(
    size: RunnerSize,
    cpu: int | None = None,
    memory_gb: int | None = None,
    time_budget_min: int | None = None,
) -> RunnerSize:
    """The directives' runner override wins field by field; unset fields keep ``size``."""
    cpu = _positive(cpu, "runner.cpu", CPU_MAX)
    memory_gb = _positive(memory_gb, "runner.memory_gb", None)
    time_budget_min = _positive(time_budget_min, "runner.time_budget_min", TIME_BUDGET_MAX)
    overridden = [
        name
        for name, value in (
            ("cpu", cpu),
            ("memory_gb", memory_gb),
            ("time_budget_min", time_budget_min),
        )
        if value is not None
    ]
    if not overridden:
        return size
    return RunnerSize(
        cpu if cpu is not None else size.cpu,
        memory_gb if memory_gb is not None else size.memory_gb,
        time_budget_min if time_budget_min is not None else size.time_budget_min,
        source="override",
        reason=f"runner override of {', '.join(overridden)} on top of the {size.source} size",
    )
