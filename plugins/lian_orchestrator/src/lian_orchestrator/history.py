"""The server's history: the core's configured history store, behind two calls.

The reference server records metrics into, and answers the P95 from, the same history
store ``lian`` itself uses on this host (``--history-url`` / ``LIAN_HISTORY_URL``: the
SQLite default, or a NATS JetStream stream shared by several servers). This module is
the one place that reaches into the core's history module, so the rest of the server
depends only on ``ServerHistory``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol

from lian_build import api
from lian_build.errors import InvalidInput

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


class _JsonLines:
    """The single-file store of lian versions before the ``HistoryStore`` interface."""

    def __init__(self, module: Any) -> None:
        from lian_build import sizing  # the same P95 rule as the local history source

        self._from_history = sizing.from_history
        self._store = module.default_store()
        self.location = f"jsonl:{self._store.path}"

    def append(self, metrics: api.BuildMetrics) -> None:
        try:
            self._store.append(metrics)
        except OSError as exc:
            raise HistoryDown(f"cannot write {self.location}: {exc}") from None

    def p95(self, workspace: str) -> tuple[api.RunnerSize | None, int]:
        samples = self._store.samples(workspace)
        size = self._from_history(samples)
        used = [s for s in samples if s.succeeded and not s.oom and s.peak_memory_bytes]
        return size, len(used)


def open_history(url: str | None) -> ServerHistory:
    module = importlib.import_module("lian_build.history")
    opener = getattr(module, "open_history_store", None)
    if opener is None:
        if url:
            raise InvalidInput(
                "--history-url needs a lian-build with history stores (SQLite, JetStream)",
                field="history_url",
            )
        return _JsonLines(module)
    return _Store(opener(url), module.HistoryUnavailable)
