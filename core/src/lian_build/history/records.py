"""One build record as JSON: the format of every store, the spool and ``lian history``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from lian_build.api import BuildMetrics

_INT_FIELDS = ("cpu", "memory_gb")
_STR_FIELDS = ("workspace", "session_id", "provider", "tier")
_BOOL_FIELDS = ("succeeded", "oom")


def metrics_to_json(metrics: BuildMetrics) -> dict[str, Any]:
    data = attrs.asdict(metrics)
    data["finished_at"] = metrics.finished_at.isoformat()
    return data


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number")
    return float(value)


def metrics_from_json(data: Any) -> BuildMetrics:
    """Parse one stored line; raise ValueError when a field is missing or mistyped."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    for name in _STR_FIELDS:
        if not isinstance(data.get(name), str):
            raise ValueError(f"{name} is not a string")
    for name in _INT_FIELDS:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} is not an integer")
    for name in _BOOL_FIELDS:
        if not isinstance(data.get(name), bool):
            raise ValueError(f"{name} is not a boolean")
    peak = data.get("peak_memory_bytes")
    if peak is not None and (isinstance(peak, bool) or not isinstance(peak, int)):
        raise ValueError("peak_memory_bytes is not an integer")
    cpu_seconds = data.get("cpu_seconds")
    finished_at = data.get("finished_at")
    if not isinstance(finished_at, str):
        raise ValueError("finished_at is not a string")
    return BuildMetrics(
        workspace=data["workspace"],
        session_id=data["session_id"],
        provider=data["provider"],
        tier=data["tier"],
        cpu=data["cpu"],
        memory_gb=data["memory_gb"],
        peak_memory_bytes=peak,
        cpu_seconds=None if cpu_seconds is None else _number(cpu_seconds, "cpu_seconds"),
        duration_s=_number(data.get("duration_s"), "duration_s"),
        succeeded=data["succeeded"],
        oom=data["oom"],
        finished_at=dt.datetime.fromisoformat(finished_at),
    )
