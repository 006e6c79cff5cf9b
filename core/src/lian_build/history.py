"""A local store of measured builds: one JSON line per build attempt.

It feeds the history sizing source. Writers append under an exclusive ``flock`` with
a single ``write`` on an ``O_APPEND`` descriptor, so concurrent ``lian`` processes
never interleave lines; readers take a shared lock and skip lines they cannot parse.
Metrics carry no secrets, so the file holds none.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from lian_build.api import BuildMetrics

log = logging.getLogger("lian.history")

STATE_DIR_ENV = "LIAN_STATE_DIR"
HISTORY_FILE = "history.jsonl"


def state_dir() -> Path:
    """``$LIAN_STATE_DIR``, else ``$XDG_STATE_HOME/lian``, else ``~/.local/state/lian``."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "lian"
    return Path.home() / ".local" / "state" / "lian"


def default_store() -> HistoryStore:
    return HistoryStore(state_dir() / HISTORY_FILE)


# ----------------------------------------------------------------- (de)serialisation

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


# ----------------------------------------------------------------- the store


class HistoryStore:
    """Append-only JSON-lines file of ``BuildMetrics``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, metrics: BuildMetrics) -> None:
        line = (json.dumps(metrics_to_json(metrics), sort_keys=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            written = os.write(fd, line)
            if written != len(line):  # a short write on a full disk: say so, keep going
                log.warning(
                    "history: short write to %s (%d of %d bytes)", self.path, written, len(line)
                )
        finally:
            os.close(fd)  # closing releases the lock

    def samples(self, workspace: str, limit: int = 50) -> list[BuildMetrics]:
        """The newest ``limit`` records for ``workspace``, oldest first."""
        try:
            with self.path.open("rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                raw_lines = handle.read().splitlines()
        except FileNotFoundError:
            return []
        found: list[BuildMetrics] = []
        for number, raw in enumerate(raw_lines, start=1):
            if not raw.strip():
                continue
            try:
                metrics = metrics_from_json(json.loads(raw))
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("history: skipping corrupt line %d of %s: %s", number, self.path, exc)
                continue
            if metrics.workspace == workspace:
                found.append(metrics)
        return found[-limit:] if limit > 0 else []
