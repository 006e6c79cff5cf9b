"""Fixtures for the orchestrator plugin tests (helpers in orchestrator_support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from orchestrator_support import (
    TOKEN_A,
    TOKEN_B,
    BackendState,
    MemoryBackend,
    RunningServer,
    start_server,
)

from lian_orchestrator.history import open_history
from lian_orchestrator.server import ServerConfig


@pytest.fixture
def backend() -> BackendState:
    return BackendState()


@pytest.fixture
def make_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(backend: BackendState | None = None, **options: Any) -> RunningServer:
        state = tmp_path / f"server-state-{len(servers)}"
        state.mkdir()
        monkeypatch.setenv("LIAN_STATE_DIR", str(state))
        history = open_history(None)  # the server's own store, in its own state dir
        monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "client-state"))
        shared = backend or BackendState()
        config = ServerConfig(
            backend=lambda: MemoryBackend(shared),
            history=history,
            tokens=options.pop("tokens", {"ci-a": TOKEN_A, "ci-b": TOKEN_B}),
            name=options.pop("name", "test-orchestrator"),
            reap_interval_s=options.pop("reap_interval_s", 0),
            **options,
        )
        running = start_server(config, state)
        servers.append(running)
        return running

    yield make
    for running in servers:
        running.stop()


@pytest.fixture
def server(make_server: Callable[..., RunningServer], backend: BackendState) -> RunningServer:
    return make_server(backend)
