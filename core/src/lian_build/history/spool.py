"""Best effort for every store: records that could not be written wait in a local spool.

The spool is a JSON-lines file in the state directory. Before each new record the
spool is sent first, under an exclusive lock so two processes never send it twice;
what still fails stays in the spool, in order. Stores deduplicate by record key, so a
record sent just before a crash and sent again later is stored once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from lian_build.api import BuildMetrics
from lian_build.history import (
    DEFAULT_WINDOW,
    HistoryP95,
    HistoryStore,
    HistoryUnavailable,
    p95_of,
    warn_once,
)
from lian_build.history.records import metrics_from_json, metrics_to_json

log = logging.getLogger("lian.history")


class UnavailableStore:
    """A store that cannot work (unknown scheme, bad URL): reads fail, writes spool."""

    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.location = f"unavailable ({reason})"

    def append(self, metrics: BuildMetrics) -> bool:
        raise HistoryUnavailable(self.reason)

    def recent(self, workspace: str, n: int = DEFAULT_WINDOW) -> list[BuildMetrics]:
        raise HistoryUnavailable(self.reason)

    def p95(self, workspace: str, n: int = DEFAULT_WINDOW) -> HistoryP95:
        raise HistoryUnavailable(self.reason)

    def workspaces(self) -> list[str]:
        raise HistoryUnavailable(self.reason)

    def close(self) -> None:
        pass


class Spooled:
    """Wraps a store: ``append`` never raises; failed records go to ``spool``."""

    def __init__(self, inner: HistoryStore, spool: Path) -> None:
        self.inner = inner
        self.spool = Path(spool)
        self.name = inner.name
        self.location = inner.location

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        self.spool.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.spool, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock

    def pending(self) -> list[BuildMetrics]:
        """Records waiting in the spool, oldest first."""
        try:
            raw = self.spool.read_bytes()
        except FileNotFoundError:
            return []
        return _parse(raw, self.spool)

    def flush(self) -> int:
        """Send the spool; return how many records are still waiting."""
        if not self.spool.exists() or self.spool.stat().st_size == 0:
            return 0
        with self._locked() as fd:
            waiting = _parse(_read_all(fd), self.spool)
            sent = 0
            try:
                for metrics in waiting:
                    self.inner.append(metrics)
                    sent += 1
            except HistoryUnavailable as exc:
                warn_once(
                    self.inner.location + "#spool",
                    "history store %s unavailable, the build record is kept in %s: %s",
                    self.inner.location,
                    self.spool,
                    exc,
                )
            left = waiting[sent:]
            _rewrite(fd, left)
            if sent:
                log.info("history: sent %d spooled builds to %s", sent, self.inner.location)
            return len(left)

    def append(self, metrics: BuildMetrics) -> bool:
        try:
            if self.flush() == 0:
                self.inner.append(metrics)
                return True
        except HistoryUnavailable as exc:
            warn_once(
                self.inner.location + "#spool",
                "history store %s unavailable, the build record is kept in %s: %s",
                self.inner.location,
                self.spool,
                exc,
            )
        except OSError as exc:  # the spool itself failed: say so, never fail the build
            log.warning("history: cannot use the spool %s: %s", self.spool, exc)
            return False
        try:
            with self._locked() as fd:
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, _line(metrics))
        except OSError as exc:
            log.warning("history: build not recorded, cannot write %s: %s", self.spool, exc)
        return False

    def recent(self, workspace: str, n: int = DEFAULT_WINDOW) -> list[BuildMetrics]:
        return self.inner.recent(workspace, n)

    def p95(self, workspace: str, n: int = DEFAULT_WINDOW) -> HistoryP95:
        return p95_of(workspace, self.recent(workspace, n))

    def workspaces(self) -> list[str]:
        return self.inner.workspaces()

    def close(self) -> None:
        self.inner.close()


def _line(metrics: BuildMetrics) -> bytes:
    return (json.dumps(metrics_to_json(metrics), sort_keys=True) + "\n").encode()


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _rewrite(fd: int, records: list[BuildMetrics]) -> None:
    data = b"".join(_line(m) for m in records)
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    if data:
        os.write(fd, data)


def _parse(raw: bytes, path: Path) -> list[BuildMetrics]:
    found: list[BuildMetrics] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(metrics_from_json(json.loads(line)))
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("history: dropping corrupt spool line %d of %s: %s", number, path, exc)
    return found
