"""Broadcast lifecycle events to every registered sink, best effort."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lian_build import api

log = logging.getLogger("lian.events")


class EventBus:
    """Emits events for one session; a sink that raises is logged and dropped."""

    def __init__(
        self,
        sinks: Sequence[api.EventSink],
        *,
        workspace: str,
        session_id: str,
        redact: Callable[[str], str] = lambda s: s,
    ) -> None:
        self._sinks = list(sinks)
        self.workspace = workspace
        self.session_id = session_id
        self._redact = redact

    def emit(self, kind: str, data: Mapping[str, Any] | None = None) -> None:
        clean = {k: self._clean(v) for k, v in (data or {}).items()}
        event = api.BuildEvent(
            kind=kind,
            workspace=self.workspace,
            session_id=self.session_id,
            timestamp=dt.datetime.now(dt.UTC),
            data=clean,
        )
        for sink in list(self._sinks):
            try:
                sink.emit(event)
            except Exception as exc:
                log.warning("event sink %s failed and is dropped: %s", sink.name, exc)
                self._sinks.remove(sink)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, Mapping):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def close(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as exc:
                log.debug("closing event sink %s failed: %s", sink.name, exc)
