"""The reference orchestrator server (starlette), behind ``lian orchestrator serve``.

It fronts one compute provider installed where it runs (cloud tokens stay on this
host), answers the sizing P95 and records metrics in the configured history store,
reaps expired runners on a timer, and authenticates callers by bearer token.

Provider and history calls block, so each runs in starlette's thread pool: concurrent
builds proceed side by side. Every runner it creates carries the caller's name and this
server's name as labels (``lian.caller``, ``lian.orchestrator``) besides the client's
``lian.*`` labels; callers see and destroy only their own runners. A spawn whose caller
hung up before the runner was ready is destroyed at once, and every runner's
``lian.expires-at`` is capped, so the reaper removes whatever a vanished client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lian_build import api
from lian_build.errors import LianError
from lian_orchestrator import protocol
from lian_orchestrator.history import HistoryDown, ServerHistory

log = logging.getLogger("lian.orchestrator")

CALLER_LABEL = "lian.caller"
SERVER_LABEL = "lian.orchestrator"
MANAGED = {"lian.managed": "true"}
ANONYMOUS = "anonymous"


@attrs.frozen
class ServerConfig:
    backend: Callable[[], api.ComputeProvider]  # a fresh provider instance per call
    history: ServerHistory
    tokens: Mapping[str, str] = attrs.field(repr=False)  # caller name -> token; {} = no auth
    name: str = "orchestrator"
    reap_interval_s: float = 60.0
    max_lifetime_s: float = 24 * 3600.0
    redact: Callable[[str], str] = lambda text: text


class ApiError(Exception):
    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, dict(details or {})


def _error_response(exc: ApiError, redact: Callable[[str], str]) -> JSONResponse:
    status = protocol.SERVER_CODES.get(exc.code, 500)
    headers = {"WWW-Authenticate": 'Bearer realm="lian-orchestrator"'} if status == 401 else None
    body = protocol.error_body(exc.code, redact(exc.message), exc.details)
    return JSONResponse(body, status_code=status, headers=headers)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def expired(info: api.RunnerInfo, now: dt.datetime) -> bool:
    raw = info.labels.get("lian.expires-at")
    try:
        return raw is None or int(raw) <= now.timestamp()
    except ValueError:
        return True  # a label we did not write: treat as expired rather than leak


def pick_tier(ladder: list[api.Tier], wanted: api.Tier) -> api.Tier:
    """The backend tier of the same name, else the smallest that fits the wanted shape."""
    for tier in ladder:
        if tier.name == wanted.name:
            return tier
    for tier in ladder:
        if tier.cpu >= wanted.cpu and tier.memory_gb >= wanted.memory_gb:
            return tier
    biggest = ", ".join(f"{t.name} ({t.cpu} cpu, {t.memory_gb:g} GB)" for t in ladder[-1:])
    raise ApiError(
        "INVALID_INPUT",
        f"no backend tier fits {wanted.cpu} cpu / {wanted.memory_gb:g} GB (largest: {biggest})",
    )


class Orchestrator:
    """The request handlers and the reaper, over one ``ServerConfig``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._created: dict[str, str] = {}  # runner id -> caller (this process's spawns)

    # ------------------------------------------------------------------ plumbing

    def caller(self, request: Request) -> str:
        tokens = self.config.tokens
        if not tokens:
            return ANONYMOUS
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError("UNAUTHORIZED", "a bearer token is required (Authorization: Bearer)")
        for name, token in tokens.items():
            if hmac.compare_digest(given.strip().encode(), token.encode()):
                return name
        raise ApiError("UNAUTHORIZED", "the bearer token is not known to this orchestrator")

    def _selector(self, caller: str) -> dict[str, str]:
        return {**MANAGED, SERVER_LABEL: self.config.name, CALLER_LABEL: caller}

    async def _backend(self, method: str, *args: Any) -> Any:
        def call() -> Any:
            return getattr(self.config.backend(), method)(*args)

        try:
            return await run_in_threadpool(call)
        except LianError as exc:
            raise ApiError(
                "PROVISION_FAILED",
                exc.message,
                {"code": exc.code.lower(), **({"field": exc.field} if exc.field else {})},
            ) from exc

    async def _body(self, request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise ApiError("INVALID_INPUT", "the body is not JSON") from None

    # ------------------------------------------------------------------ handlers

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "protocol": protocol.PROTOCOL_VERSION})

    async def tiers(self, request: Request) -> Response:
        self.caller(request)
        ladder = await self._backend("tiers")
        return JSONResponse({"tiers": [protocol.tier_to_json(t) for t in ladder]})

    async def spawn(self, request: Request) -> Response:
        caller = self.caller(request)
        try:
            wanted = protocol.spawn_from_json(await self._body(request))
        except ValueError as exc:
            raise ApiError("INVALID_INPUT", str(exc)) from None
        ladder = list(await self._backend("tiers"))
        tier = pick_tier(ladder, wanted.tier)
        # Cap the expiry: a client that vanishes (or asks for forever) cannot keep a
        # machine beyond this server's limit; the reaper goes by this label.
        limit = _now() + dt.timedelta(seconds=self.config.max_lifetime_s)
        expires = min(wanted.expires_at, limit)
        labels = {
            **wanted.labels,
            **MANAGED,
            "lian.expires-at": str(int(expires.timestamp())),
            SERVER_LABEL: self.config.name,
            CALLER_LABEL: caller,
        }
        spawn = attrs.evolve(wanted, tier=tier, labels=labels, expires_at=expires)
        log.info("spawn for %s: session %s, tier %s", caller, spawn.session_id, tier.name)
        runner: api.Runner = await self._backend("spawn", spawn)
        self._created[runner.id] = caller
        if await request.is_disconnected():
            # The client gave up while the machine was being made: nobody will use it.
            log.warning("caller of session %s hung up; destroying %s", spawn.session_id, runner.id)
            await self._destroy(runner.id)
            return Response(status_code=499)
        return JSONResponse({"runner": protocol.runner_to_json(runner)}, status_code=201)

    async def _owned(self, caller: str, runner_id: str) -> bool:
        if self._created.get(runner_id) == caller:
            return True
        found = await self._backend("list_runners", self._selector(caller))
        return any(info.id == runner_id for info in found)

    async def _destroy(self, runner_id: str) -> None:
        await self._backend("destroy", runner_id)
        self._created.pop(runner_id, None)

    async def destroy(self, request: Request) -> Response:
        caller = self.caller(request)
        runner_id = request.path_params["runner_id"]
        # Idempotent, and blind to other callers' runners: not ours = already gone.
        if await self._owned(caller, runner_id):
            log.info("destroy for %s: %s", caller, runner_id)
            await self._destroy(runner_id)
        return Response(status_code=204)

    async def inspect(self, request: Request) -> Response:
        caller = self.caller(request)
        runner_id = request.path_params["runner_id"]
        if not await self._owned(caller, runner_id):
            raise ApiError("NOT_FOUND", f"no runner {runner_id} of caller {caller}")
        state = await self._backend("inspect", runner_id)
        return JSONResponse({"state": protocol.state_to_json(state)})

    async def list_runners(self, request: Request) -> Response:
        caller = self.caller(request)
        labels: dict[str, str] = {}
        for item in request.query_params.getlist("label"):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ApiError("INVALID_INPUT", f"label must be key=value, got {item!r}")
            labels[key] = value
        found = await self._backend("list_runners", {**labels, **self._selector(caller)})
        return JSONResponse({"runners": [protocol.info_to_json(info) for info in found]})

    async def p95(self, request: Request) -> Response:
        self.caller(request)
        workspace = request.path_params["workspace"]
        try:
            size, samples = await run_in_threadpool(self.config.history.p95, workspace)
        except HistoryDown as exc:
            raise ApiError("HISTORY_UNAVAILABLE", str(exc)) from None
        return JSONResponse(
            {"workspace": workspace, "samples": samples, "size": protocol.size_to_json(size)}
        )

    async def record(self, request: Request) -> Response:
        caller = self.caller(request)
        try:
            metrics = protocol.metrics_from_json(await self._body(request))
        except ValueError as exc:
            raise ApiError("INVALID_INPUT", str(exc)) from None
        try:
            await run_in_threadpool(self.config.history.append, metrics)
        except HistoryDown as exc:
            raise ApiError("HISTORY_UNAVAILABLE", str(exc)) from None
        log.info("recorded %s session %s for %s", metrics.workspace, metrics.session_id, caller)
        return JSONResponse({"recorded": True}, status_code=202)

    # ------------------------------------------------------------------ reaper

    def reap_once(self, now: dt.datetime | None = None) -> list[str]:
        """Destroy this server's runners past their expiry (blocking; call in a thread)."""
        now = now or _now()
        backend = self.config.backend()
        destroyed = []
        for info in backend.list_runners({**MANAGED, SERVER_LABEL: self.config.name}):
            if not expired(info, now):
                continue
            try:
                backend.destroy(info.id)
                destroyed.append(info.id)
                self._created.pop(info.id, None)
                log.info("reaped expired runner %s", info.id)
            except Exception as exc:
                log.warning("could not reap runner %s: %s", info.id, self.config.redact(str(exc)))
        return destroyed

    async def reaper(self) -> None:
        while True:
            try:
                await run_in_threadpool(self.reap_once)
            except Exception as exc:  # the next round tries again
                log.warning("reaping failed: %s", self.config.redact(str(exc)))
            await asyncio.sleep(self.config.reap_interval_s)


def make_app(config: ServerConfig) -> Starlette:
    orchestrator = Orchestrator(config)

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.code != "UNAUTHORIZED":
                    log.warning("%s %s: %s", request.method, request.url.path, exc.message)
                return _error_response(exc, config.redact)
            except Exception as exc:  # a bug: the caller gets the envelope, the log the rest
                log.exception("%s %s failed", request.method, request.url.path)
                error = ApiError("INTERNAL", f"internal error: {type(exc).__name__}")
                return _error_response(error, config.redact)

        return endpoint

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = "NOT_FOUND" if status in (404, 405) else "INTERNAL"
        message = f"no {request.method} {request.url.path} in protocol {protocol.PROTOCOL_VERSION}"
        return JSONResponse(protocol.error_body(code, message), status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(orchestrator.reaper()) if config.reap_interval_s > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    o = orchestrator
    routes = [
        Route(protocol.HEALTH, guarded(o.health), methods=["GET"]),
        Route(protocol.TIERS, guarded(o.tiers), methods=["GET"]),
        Route(protocol.RUNNERS, guarded(o.spawn), methods=["POST"]),
        Route(protocol.RUNNERS, guarded(o.list_runners), methods=["GET"]),
        Route(protocol.RUNNERS + "/{runner_id}", guarded(o.destroy), methods=["DELETE"]),
        Route(protocol.RUNNERS + "/{runner_id}", guarded(o.inspect), methods=["GET"]),
        Route("/v1/workspaces/{workspace}/p95", guarded(o.p95), methods=["GET"]),
        Route(protocol.METRICS, guarded(o.record), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found},
    )
    app.state.orchestrator = orchestrator
    return app
