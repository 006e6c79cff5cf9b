"""The server's history: the core's configured history store, behind two calls.

The reference server records metrics into, and answers the P95 from, the same history
store ``lian`` itself uses on this host (``--history-url`` / ``LIAN_HISTORY_URL``: the
SQLite default, or a NATS JetStream stream shared by several servers). This module is
the one place that reaches into the core's history module, so the rest of the server
depends only on ``ServerHistory``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from lian_build import api

log = logging.getLogger("lian.orchestrator")


class HistoryDown(Exception):
    """The history store cannot be reached or read right now."""


class ServerHistory(Protocol):
    location: str

    def append(self, metrics: api.BuildMetrics) -> None: ...

    def p95(self, workspace: str) -> tuple[api.RunnerSize | None, int]:
        """The size the history source gives now, and how many builds it used."""
        ...


class _Store:
    """A ``lian_build.history.HistoryStore`` (append / recent / p95)."""

    def __init__(self, store: Any, unavailable: type[BaseException]) -> None:
        self._store = store
        self._unavailable = unavailable
        self.location = f"{store.name}:{store.location}"

    def append(self, metrics: api.BuildMetrics) -> None:
        # False means "kept in the store's spool, sent later": still not lost.
        if not self._store.append(metrics):
            log.warning("history %s unreachable: the record is spooled", self.location)

    def p95(self, workspace: str) -> tuple[api.RunnerSize | None, int]:
        try:
            answer = self._store.p95(workspace)
        except self._unavailable as exc:
            raise HistoryDown(f"history {self.location} is unavailable: {exc}") from None
        return answer.size, len(answer.used)


def open_history(url: str | None) -> ServerHistory:
    from lian_build.history import HistoryUnavailable, open_history_store

    return _Store(open_history_store(url), HistoryUnavailable)
