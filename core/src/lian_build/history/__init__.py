"""Build history: what finished builds used, behind one ``HistoryStore`` interface.

Stores:

- ``sqlite`` (default): ``history.sqlite3`` in the state directory, WAL mode with a busy
  timeout so several ``lian`` processes on one machine can write at once. An existing
  ``history.jsonl`` (the previous format) is imported once.
- ``jetstream``: a NATS JetStream stream shared by a fleet of CI machines, selected by
  ``LIAN_HISTORY_URL=nats://...`` or ``tls://...`` (see ``jetstream.py``).

History is best effort, like events. ``append`` never raises for an unreachable store:
the record goes to a local spool (``history-spool.jsonl`` in the state directory) and is
sent before the next record. ``recent``/``p95`` raise ``HistoryUnavailable``; the sizing
source turns that into one warning and falls back to the next source. Metrics carry no
secrets, so no store holds any.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from lian_build import sizing
from lian_build.api import BuildMetrics, RunnerSize
from lian_build.history.records import metrics_from_json, metrics_to_json

log = logging.getLogger("lian.history")

STATE_DIR_ENV = "LIAN_STATE_DIR"
HISTORY_URL_ENV = "LIAN_HISTORY_URL"
LEGACY_FILE = "history.jsonl"
SQLITE_FILE = "history.sqlite3"
SPOOL_FILE = "history-spool.jsonl"
# How many of a workspace's newest builds the P95 looks at.
DEFAULT_WINDOW = 50

__all__ = [
    "DEFAULT_WINDOW",
    "HISTORY_URL_ENV",
    "STATE_DIR_ENV",
    "HistoryP95",
    "HistoryStore",
    "HistoryUnavailable",
    "default_store",
    "metrics_from_json",
    "metrics_to_json",
    "open_history_store",
    "p95_of",
    "state_dir",
]


class HistoryUnavailable(Exception):
    """The store cannot be reached or read right now (never fatal to a build)."""


@attrs.frozen
class HistoryP95:
    """The size the history source would give now, and the builds it looked at.

    ``size`` is None with fewer than ``sizing.HISTORY_MIN_SAMPLES`` usable builds.
    ``samples`` are the newest ``window`` records (oldest first); ``used`` the usable
    ones among them (succeeded, not OOM, with a memory measurement)."""

    workspace: str
    size: RunnerSize | None
    samples: tuple[BuildMetrics, ...]
    used: tuple[BuildMetrics, ...]


@runtime_checkable
class HistoryStore(Protocol):
    """One place builds are recorded and read back; every store implements this."""

    name: str  # "sqlite", "jetstream", "unavailable"
    location: str  # where, for humans: a path or scheme://host:port (never credentials)

    def append(self, metrics: BuildMetrics) -> bool:
        """Record one build attempt. True when stored now; False when it was kept in the
        local spool (store unreachable) to be sent later. Never raises for an
        unreachable store."""
        ...

    def recent(self, workspace: str, n: int = DEFAULT_WINDOW) -> list[BuildMetrics]:
        """The newest ``n`` records of ``workspace``, oldest first.
        Raises ``HistoryUnavailable``."""
        ...

    def p95(self, workspace: str, n: int = DEFAULT_WINDOW) -> HistoryP95:
        """What the history sizing source answers now (``p95_of(self.recent(...))``).
        Raises ``HistoryUnavailable``."""
        ...

    def workspaces(self) -> list[str]:
        """Every workspace with at least one record, sorted. Raises ``HistoryUnavailable``."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


_WARNED: set[str] = set()


def warn_once(location: str, message: str, *args: object) -> None:
    """One warning per store per process: the second failure says nothing new."""
    if location not in _WARNED:
        _WARNED.add(location)
        log.warning(message, *args)


def p95_of(workspace: str, samples: list[BuildMetrics]) -> HistoryP95:
    used = tuple(s for s in samples if sizing.usable(s))
    return HistoryP95(
        workspace=workspace,
        size=sizing.from_history(samples),
        samples=tuple(samples),
        used=used,
    )


def state_dir() -> Path:
    """``$LIAN_STATE_DIR``, else ``$XDG_STATE_HOME/lian``, else ``~/.local/state/lian``."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "lian"
    return Path.home() / ".local" / "state" / "lian"


def open_history_store(
    url: str | None = None,
    state: Path | None = None,
    *,
    resolve: Callable[[str], str] | None = None,
) -> HistoryStore:
    """The store ``url`` names; None reads ``$LIAN_HISTORY_URL``; unset -> SQLite.

    ``state`` defaults to ``state_dir()`` (it holds the SQLite file and the spool).
    ``resolve`` turns secret references in the URL's query (``nkey_seed=``,
    ``token=``) into values; the default handles ``env:`` and ``file:`` and loads the
    installed resolver plugins for other schemes. An unknown scheme gives one warning
    and a store whose reads fail and whose appends go to the spool.
    """
    from lian_build.history.spool import Spooled, UnavailableStore

    if url is None:
        url = os.environ.get(HISTORY_URL_ENV) or None
    state = state if state is not None else state_dir()
    if not url or url.startswith(("sqlite:", "file:")):
        from lian_build.history.sqlite import SqliteHistoryStore

        path = _sqlite_path(url, state)
        return Spooled(SqliteHistoryStore(path, legacy=state / LEGACY_FILE), state / SPOOL_FILE)
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.split(":", 1)[0].lower()
    if scheme in ("nats", "tls"):
        from lian_build.history.jetstream import JetStreamHistoryStore

        try:
            store: HistoryStore = JetStreamHistoryStore.from_url(url, resolve=resolve)
        except ValueError as exc:
            store = UnavailableStore(str(exc))
            warn_once(store.location, "history: %s; builds are kept in the local spool", exc)
            _WARNED.add(store.location + "#spool")  # that warning said it already
        return Spooled(store, state / SPOOL_FILE)
    unknown = UnavailableStore(f"unknown scheme {scheme!r}")
    warn_once(
        unknown.location,
        "history: %s has an unknown scheme %r (expected nats://, tls:// or sqlite:); "
        "history is unavailable and builds are kept in the local spool",
        HISTORY_URL_ENV,
        scheme,
    )
    _WARNED.add(unknown.location + "#spool")  # that warning said it already
    return Spooled(unknown, state / SPOOL_FILE)


def _sqlite_path(url: str | None, state: Path) -> Path:
    if not url:
        return state / SQLITE_FILE
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        rest = rest[2:]
    return Path(rest).expanduser() if rest else state / SQLITE_FILE


_OPEN: dict[tuple[str, str], HistoryStore] = {}


def default_store() -> HistoryStore:
    """The configured store (``$LIAN_HISTORY_URL``, else SQLite in the state dir).

    One per process and configuration, so the sizing source and the recorder share one
    connection (and one warning); closed at exit."""
    key = (os.environ.get(HISTORY_URL_ENV) or "", str(state_dir()))
    store = _OPEN.get(key)
    if store is None:
        if not _OPEN:
            atexit.register(_close_all)
        store = _OPEN[key] = open_history_store()
    return store


def _close_all() -> None:
    while _OPEN:
        _, store = _OPEN.popitem()
        try:
            store.close()
        except Exception as exc:  # exiting anyway: never a traceback for this
            log.debug("history: closing %s: %s", store.location, exc)
