"""The three built-in sizing sources as ``lian_size_runner`` implementations.

pluggy calls one function per hook name per plugin, so each source is its own small
object; the plugin host registers every object in ``PLUGINS``. Order: the explicit
spec first (tryfirst), then history, then any plain third-party source registered
later (pluggy calls later registrations first), and the language defaults last
(trylast). They always answer, so a third-party ``trylast`` source is never asked.
"""

from __future__ import annotations

from lian_build import hookimpl, sizing
from lian_build.api import RunnerSize, SizingRequest
from lian_build.history import HistoryStore, HistoryUnavailable, default_store, warn_once


class ExplicitSpecSizing:
    """``.build-spec.ncl`` in the build context."""

    @hookimpl(tryfirst=True)
    def lian_size_runner(self, request: SizingRequest) -> RunnerSize | None:
        return sizing.explicit(request.context_dir)


class HistorySizing:
    """P95 of the workspace's measured builds from the configured history store.

    An unreachable store is one warning, and sizing falls back to the next source."""

    def __init__(self, store: HistoryStore | None = None) -> None:
        self._store = store  # None: the default store, located at call time

    @hookimpl
    def lian_size_runner(self, request: SizingRequest) -> RunnerSize | None:
        store = self._store if self._store is not None else default_store()
        try:
            return store.p95(request.workspace).size
        except HistoryUnavailable as exc:
            warn_once(
                store.location,
                "history store %s unavailable, sizing without history: %s",
                store.location,
                exc,
            )
            return None


class LanguageDefaultSizing:
    """The per-language table; answers for every request."""

    @hookimpl(trylast=True)
    def lian_size_runner(self, request: SizingRequest) -> RunnerSize | None:
        return sizing.language_default(request.language)


PLUGINS = [ExplicitSpecSizing(), HistorySizing(), LanguageDefaultSizing()]
