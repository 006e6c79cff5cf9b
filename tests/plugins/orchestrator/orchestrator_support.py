"""Helpers for the orchestrator plugin tests: the real server (uvicorn + starlette) on
127.0.0.1 in a thread, in front of a backend compute provider, with the real history
store in a private state directory."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from fixtures.keys import new_host_key
from fixtures.ports import free_port, wait_for_port
from lian_build import api
from lian_orchestrator.provider import OrchestratorProvider, OrchestratorSettings
from lian_orchestrator.server import ServerConfig, make_app

TOKEN_A = "token-of-ci-machine-a-0123456789"
TOKEN_B = "token-of-ci-machine-b-9876543210"


class MemoryBackend(api.ComputeProvider):
    """A compute provider that keeps its 'machines' in a dict: enough to watch what the
    server asks its backend for. Shared state lives on the class instance ``state``."""

    name = "memory"
    Settings = None  # type: ignore[assignment]

    def __init__(self, state: BackendState) -> None:
        super().__init__(None, lambda ref: "")
        self.state = state

    def tiers(self) -> Sequence[api.Tier]:
        return self.state.ladder

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        with self.state.lock:
            self.state.active += 1
            self.state.peak = max(self.state.peak, self.state.active)
        try:
            time.sleep(self.state.spawn_delay_s)
            if self.state.fail_with is not None:
                raise self.state.fail_with
            self.state.requests.append(request)
            runner_id = f"m-{len(self.state.requests)}-{request.session_id}"
            self.state.machines[runner_id] = dict(request.labels)
            return api.Runner(
                id=runner_id,
                provider=self.name,
                host="127.0.0.1",
                port=2222,
                user="root",
                host_public_key=request.host_key.public_openssh,
                tier=request.tier,
                labels=dict(request.labels),
            )
        finally:
            with self.state.lock:
                self.state.active -= 1

    def destroy(self, runner_id: str) -> None:
        self.state.destroyed.append(runner_id)
        self.state.machines.pop(runner_id, None)

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        return [
            api.RunnerInfo(id=rid, labels=dict(have))
            for rid, have in list(self.state.machines.items())
            if all(have.get(k) == v for k, v in labels.items())
        ]

    def inspect(self, runner_id: str) -> api.RunnerState:
        return api.RunnerState(exists=runner_id in self.state.machines, running=True)


@attrs.define
class BackendState:
    ladder: list[api.Tier] = attrs.field(
        factory=lambda: [api.Tier("small", 2, 4), api.Tier("large", 8, 16)]
    )
    machines: dict[str, dict[str, str]] = attrs.field(factory=dict)
    requests: list[api.SpawnRequest] = attrs.field(factory=list)
    destroyed: list[str] = attrs.field(factory=list)
    spawn_delay_s: float = 0.0
    fail_with: BaseException | None = None
    active: int = 0
    peak: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock)


@attrs.define
class RunningServer:
    url: str
    state_dir: Path
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def orchestrator(self) -> Any:
        return self.app.state.orchestrator

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the orchestrator server did not stop"


def start_server(config: ServerConfig, state_dir: Path, port: int | None = None) -> RunningServer:
    import uvicorn

    port = port or free_port()
    app = make_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return RunningServer(f"http://127.0.0.1:{port}", state_dir, app, server, thread)


def client_provider(url: str, token: str | None = TOKEN_A, **settings: Any) -> OrchestratorProvider:
    secrets = {"env:TEST_ORCH_TOKEN": token} if token else {}

    def lookup(reference: str) -> str:
        value = secrets.get(reference)
        if value is None:
            raise AssertionError(f"unexpected secret reference {reference}")
        return value

    token_ref = "env:TEST_ORCH_TOKEN" if token else None
    return OrchestratorProvider(
        OrchestratorSettings(url=url, token_ref=token_ref, **settings), lookup
    )


def spawn_request(
    session_id: str = "s0123456789ab",
    workspace: str = "web",
    tier: api.Tier | None = None,
    expires_in_s: float = 3600,
    authorized_key: str | None = None,
) -> api.SpawnRequest:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in_s)
    return api.SpawnRequest(
        session_id=session_id,
        workspace=workspace,
        tier=tier or api.Tier("2c-4g", 2, 4),
        labels={
            "lian.managed": "true",
            "lian.session": session_id,
            "lian.workspace": workspace,
            "lian.expires-at": str(int(expires.timestamp())),
        },
        authorized_key=authorized_key or new_host_key("ci@machine-a").public_openssh,
        host_key=new_host_key(),
        runner_image=None,
        expires_at=expires,
    )


def metrics(
    workspace: str = "web",
    session: str = "s1",
    peak_gib: float = 5.0,
    succeeded: bool = True,
    provider: str = "orchestrator",
) -> api.BuildMetrics:
    return api.BuildMetrics(
        workspace=workspace,
        session_id=session,
        provider=provider,
        tier="2c-4g",
        cpu=2,
        memory_gb=4,
        peak_memory_bytes=int(peak_gib * 1024**3),
        cpu_seconds=90.0,
        duration_s=60.0,
        succeeded=succeeded,
        oom=False,
        finished_at=dt.datetime.now(dt.UTC),
    )
