"""Fixtures for the Hetzner Cloud provider: the API imitation and a provider bound to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from fake_hcloud import FakeHcloud

from fixtures.keys import new_authorized_key, new_host_key
from fixtures.machines import MachinePool
from lian_build import api
from lian_hcloud.provider import HcloudProvider, HcloudSettings


@pytest.fixture(autouse=True)
def fast_library_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library backs off 1-60 s between retries; the imitation needs none."""
    import hcloud._client

    monkeypatch.setattr(
        hcloud._client, "exponential_backoff_function", lambda **_: lambda retries: 0.01
    )


@pytest.fixture
def machine_pool(docker_client: Any, runner_image: str) -> Iterator[MachinePool]:
    """Real runner containers behind the imitation's servers, removed when the test ends."""
    pool = MachinePool(docker_client)
    yield pool
    leaked = [c.name for c in pool.running()]
    pool.cleanup()
    assert not leaked, f"server containers left behind: {leaked}"


@pytest.fixture
def fake_hcloud(machine_pool: MachinePool) -> Iterator[FakeHcloud]:
    """The imitation; after the test no server, SSH key or snapshot may be left."""
    fake = FakeHcloud(machines=machine_pool).start()
    yield fake
    fake.settle()
    left = fake.inventory()
    fake.stop()
    assert left == {"servers": [], "ssh_keys": [], "images": []}, f"left behind: {left}"


class TrackingProvider(HcloudProvider):
    """Remembers the runners spawn handed out: those are the caller's to destroy (the
    pipeline does); anything else left in the imitation is a leak of the plugin."""

    handed_out: ClassVar[list[tuple[HcloudProvider, str]]] = []

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        runner = super().spawn(request)
        self.handed_out.append((self, runner.id))
        return runner


@pytest.fixture
def make_provider(fake_hcloud: FakeHcloud) -> Iterator[Callable[..., HcloudProvider]]:
    def make(token: str | None = None, **settings: Any) -> HcloudProvider:
        def secrets(reference: str) -> str:
            assert reference == settings.get("token_ref", "env:HCLOUD_TOKEN")
            return token if token is not None else fake_hcloud.token

        settings.setdefault("api_endpoint", fake_hcloud.url)
        settings.setdefault("poll_interval", 0.01)
        if fake_hcloud.machines is not None and fake_hcloud.machines.port != 22:
            settings.setdefault("ssh_port", fake_hcloud.machines.port)
        return TrackingProvider(HcloudSettings(**settings), secrets)

    yield make
    for owner, runner_id in TrackingProvider.handed_out:
        if int(runner_id) in fake_hcloud.servers:
            HcloudProvider.destroy(owner, runner_id)
    TrackingProvider.handed_out.clear()


@pytest.fixture
def provider(make_provider: Callable[..., HcloudProvider]) -> HcloudProvider:
    return make_provider()


@pytest.fixture
def make_request() -> Callable[..., api.SpawnRequest]:
    def make(session_id: str = "s1a2b3", tier: str = "cx23", **labels: str) -> api.SpawnRequest:
        expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        client_key = new_authorized_key("lian-client")
        all_labels = {
            "lian.managed": "true",
            "lian.session": session_id,
            "lian.workspace": "shop",
            "lian.expires-at": str(int(expires.timestamp())),
            **labels,
        }
        cpu, memory = {"cx22": (2, 4), "cx23": (2, 4), "cx33": (4, 8)}.get(tier, (2, 4))
        return api.SpawnRequest(
            session_id=session_id,
            workspace="shop",
            tier=api.Tier(name=tier, cpu=cpu, memory_gb=memory, disk_gb=40),
            labels=all_labels,
            authorized_key=client_key,
            host_key=new_host_key(),
            runner_image=None,
            expires_at=expires,
        )

    return make
