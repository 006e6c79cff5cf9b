"""Built-in NATS event sink: ``<prefix>.<workspace>.build.<kind>``, best effort.

nats-py is asynchronous; the sink runs one event loop on a private thread so the
synchronous pipeline can publish without owning a loop. NATS failures never fail a
build: the first failure is logged and the sink goes quiet.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from lian_build import api, hookimpl

log = logging.getLogger("lian.events.nats")

CONNECT_TIMEOUT_S = 2.0
PUBLISH_TIMEOUT_S = 2.0


def subject_for(prefix: str, workspace: str, kind: str) -> str:
    """``<prefix>.<workspace>.build.<kind>``; a dotted kind ("integrate.completed") names
    its own family instead of ``build``."""
    # A dot would split the workspace into two subject tokens.
    token = workspace.replace(".", "_")
    family = kind if "." in kind else f"build.{kind}"
    return f"{prefix}.{token}.{family}"


def event_payload(event: api.BuildEvent) -> bytes:
    body: dict[str, Any] = {
        "kind": event.kind,
        "workspace": event.workspace,
        "session_id": event.session_id,
        "timestamp": event.timestamp.isoformat(),
        "data": dict(event.data),
    }
    return json.dumps(body, sort_keys=True, default=str).encode()


NATS_MISSING = (
    "the NATS client is not installed: pip install 'lian-build[nats]' "
    "(or uv pip install 'lian-build[nats]')"
)


class NatsMissing(Exception):
    """nats-py (the ``nats`` extra) is not installed."""


class NatsSink(api.EventSink):
    name = "nats"

    def __init__(self, settings: api.EventSettings) -> None:
        assert settings.nats_url
        self.settings = settings
        import asyncio  # here, not at module top: asyncio costs every `lian` start ~12 ms

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lian-nats", daemon=True
        )
        self._thread.start()
        self._nc: Any = None
        self._broken = False
        import importlib.util

        if importlib.util.find_spec("nats") is None:
            # Said before the build starts, with the fix, not as an import traceback.
            log.warning("NATS events disabled for this run: %s", NATS_MISSING)
            self._broken = True

    def _call(self, coro: Any, timeout: float) -> Any:
        import asyncio

        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # leave no task pending on the loop
            raise

    async def _connect(self) -> Any:
        try:
            import nats
        except ModuleNotFoundError as exc:
            if exc.name not in {"nats", "nkeys"}:
                raise
            raise NatsMissing(NATS_MISSING) from None

        async def quiet(exc: Exception) -> None:
            log.debug("NATS: %s", exc)  # the first failure is reported once by emit()

        options: dict[str, Any] = {
            "servers": [self.settings.nats_url],
            "error_cb": quiet,
            "connect_timeout": CONNECT_TIMEOUT_S,
            # One attempt, no reconnects: with max_reconnect_attempts=0 nats-py keeps
            # retrying a refused initial connection instead of failing.
            "allow_reconnect": False,
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.1,
        }
        if self.settings.nkey_seed:
            options["nkeys_seed_str"] = self.settings.nkey_seed
        return await nats.connect(**options)

    async def _publish(self, subject: str, payload: bytes) -> None:
        if self._nc is None:
            self._nc = await self._connect()
        await self._nc.publish(subject, payload)
        await self._nc.flush(timeout=PUBLISH_TIMEOUT_S)

    def emit(self, event: api.BuildEvent) -> None:
        if self._broken:
            return
        subject = subject_for(self.settings.subject_prefix, event.workspace, event.kind)
        try:
            self._call(self._publish(subject, event_payload(event)), CONNECT_TIMEOUT_S + 3)
        except Exception as exc:
            self._broken = True
            if isinstance(exc, NatsMissing):
                log.warning("NATS events disabled for this run: %s", exc)
                return
            reason = str(exc) or "no answer in time"
            log.warning(
                "NATS events disabled for this run (%s): %s: %s",
                self.settings.nats_url,
                type(exc).__name__,
                reason,
            )

    async def _cancel_pending(self) -> None:
        import asyncio

        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        try:
            if self._nc is not None:
                self._call(self._nc.drain(), PUBLISH_TIMEOUT_S + 1)
        except Exception as exc:
            log.debug("NATS drain failed: %s", exc)
        try:
            self._call(self._cancel_pending(), 2)
        except Exception as exc:
            log.debug("NATS cleanup failed: %s", exc)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()


@hookimpl
def lian_register_event_sinks(register: api.Register, settings: api.EventSettings) -> None:
    if settings.nats_url:
        register(NatsSink(settings))
