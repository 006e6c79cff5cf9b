"""The orchestrator client (the ``orchestrator`` compute provider, its sizing and metrics
hooks) against the real reference server on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import time

import httpx
import pytest
from orchestrator_support import (
    TOKEN_A,
    TOKEN_B,
    BackendState,
    client_provider,
    metrics,
    spawn_request,
)

from lian_build import api
from lian_build.errors import ProvisionError
from lian_build.plugins import PluginHost
from lian_orchestrator import plugin as orchestrator_plugin
from lian_orchestrator.server import expired, pick_tier
from lian_orchestrator.spool import Spool


def test_spawn_passes_keys_through_and_returns_the_runner_address(server, backend):
    provider = client_provider(server.url)
    request = spawn_request()
    runner = provider.spawn(request)

    [seen] = backend.requests
    # The CI machine SSHes to the runner itself: its key and the session host key must
    # reach the backend unchanged.
    assert seen.authorized_key == request.authorized_key
    assert seen.host_key.private_openssh == request.host_key.private_openssh
    assert seen.host_key.public_openssh == request.host_key.public_openssh
    assert seen.session_id == request.session_id
    assert (runner.host, runner.port, runner.user) == ("127.0.0.1", 2222, "root")
    assert runner.host_public_key == request.host_key.public_openssh
    assert runner.labels["lian.caller"] == "ci-a"
    assert runner.labels["lian.orchestrator"] == "test-orchestrator"
    assert runner.labels["lian.session"] == request.session_id


def test_list_and_destroy_by_session_label(server, backend):
    provider = client_provider(server.url)
    runner = provider.spawn(spawn_request(session_id="sone"))
    provider.spawn(spawn_request(session_id="stwo"))

    found = provider.list_runners({"lian.session": "sone"})
    assert [info.id for info in found] == [runner.id]
    assert found[0].labels["lian.workspace"] == "web"

    provider.destroy(runner.id)
    provider.destroy(runner.id)  # idempotent
    assert runner.id not in backend.machines
    assert backend.destroyed == [runner.id]


def test_callers_see_and_destroy_only_their_own_runners(server, backend):
    a = client_provider(server.url, TOKEN_A)
    b = client_provider(server.url, TOKEN_B)
    runner = a.spawn(spawn_request(session_id="sa"))

    assert b.list_runners({"lian.session": "sa"}) == []
    b.destroy(runner.id)  # answered like "already gone", and nothing happens
    assert runner.id in backend.machines
    with pytest.raises(ProvisionError) as err:
        b.inspect(runner.id)
    assert err.value.code == "ORCHESTRATOR_ERROR"
    assert err.value.details["code"] == "not_found"
    assert a.inspect(runner.id) == api.RunnerState(exists=True, running=True)


def test_expiry_is_capped_by_the_server(make_server, backend):
    server = make_server(backend, max_lifetime_s=600)
    client_provider(server.url).spawn(spawn_request(expires_in_s=30 * 24 * 3600))
    [seen] = backend.requests
    cap = dt.datetime.now(dt.UTC).timestamp() + 600
    assert int(seen.labels["lian.expires-at"]) <= cap + 1
    assert seen.expires_at.timestamp() <= cap + 1


def test_tiers_map_to_the_backend_ladder(server, backend):
    provider = client_provider(server.url)
    provider.spawn(spawn_request(tier=api.Tier("2c-4g", 2, 4)))
    provider.spawn(spawn_request(tier=api.Tier("4c-8g", 4, 8)))
    assert [r.tier.name for r in backend.requests] == ["small", "large"]
    with pytest.raises(ProvisionError) as err:
        provider.spawn(spawn_request(tier=api.Tier("16c-32g", 16, 32)))
    assert err.value.details["code"] == "invalid_input"
    assert "no backend tier fits 16 cpu" in err.value.message


def test_pick_tier_prefers_the_same_name():
    ladder = [api.Tier("a", 2, 4), api.Tier("b", 4, 8)]
    assert pick_tier(ladder, api.Tier("b", 1, 1)).name == "b"
    assert pick_tier(ladder, api.Tier("x", 3, 2)).name == "b"


def test_expired_reads_the_label():
    now = dt.datetime.now(dt.UTC)
    past = api.RunnerInfo("x", {"lian.expires-at": str(int(now.timestamp()) - 1)})
    future = api.RunnerInfo("y", {"lian.expires-at": str(int(now.timestamp()) + 60)})
    assert expired(past, now) and not expired(future, now)
    assert expired(api.RunnerInfo("z", {"lian.expires-at": "soon"}), now)


@pytest.mark.parametrize("token", [None, "not-the-right-token-at-all"])
def test_unauthorized_is_one_clear_error_without_the_token(server, backend, token):
    provider = client_provider(server.url, token)
    with pytest.raises(ProvisionError) as err:
        provider.spawn(spawn_request())
    assert err.value.code == "ORCHESTRATOR_UNAUTHORIZED"
    assert err.value.details["status"] == 401
    assert "refused the token" in err.value.message
    if token:
        assert token not in err.value.message
        assert "env:TEST_ORCH_TOKEN" in err.value.message
    assert backend.requests == []


def test_server_errors_carry_their_envelope(server, backend):
    backend.fail_with = ProvisionError("quota exceeded for 2c machines", code="QUOTA")
    provider = client_provider(server.url)
    with pytest.raises(ProvisionError) as err:
        provider.spawn(spawn_request())
    assert err.value.code == "ORCHESTRATOR_ERROR"
    assert err.value.details == {"url": server.url, "status": 502, "code": "provision_failed"}
    assert "quota exceeded for 2c machines" in err.value.message

    backend.fail_with = RuntimeError("a bug in a backend")
    with pytest.raises(ProvisionError) as err:
        provider.spawn(spawn_request())
    assert err.value.details["status"] == 500
    assert "RuntimeError" in err.value.message


def test_bad_bodies_get_the_400_envelope(server):
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    answer = httpx.post(server.url + "/v1/runners", json={"session_id": 3}, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_INPUT"
    answer = httpx.post(server.url + "/v1/metrics", content=b"{nope", headers=headers)
    assert answer.status_code == 400
    answer = httpx.get(server.url + "/v2/anything", headers=headers)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"
    answer = httpx.get(server.url + "/v1/tiers")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_concurrent_spawns_run_side_by_side(server, backend):
    backend.spawn_delay_s = 0.5
    provider = client_provider(server.url)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runners = list(
            pool.map(lambda i: provider.spawn(spawn_request(session_id=f"sc{i}")), range(4))
        )
    assert len({r.id for r in runners}) == 4
    assert backend.peak >= 2, "the server ran the backend's spawns one at a time"


def test_a_client_that_gives_up_leaves_no_runner(server, backend):
    backend.spawn_delay_s = 1.5
    provider = client_provider(server.url, spawn_timeout_s=0.3)
    with pytest.raises(ProvisionError) as err:
        provider.spawn(spawn_request(session_id="sgone"))
    assert err.value.code == "ORCHESTRATOR_TIMEOUT"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not backend.requests or backend.machines):
        time.sleep(0.05)
    assert len(backend.requests) == 1, "the spawn never reached the backend"
    assert backend.machines == {}, "the server kept a runner nobody waited for"
    assert len(backend.destroyed) == 1


def test_the_reaper_destroys_expired_runners_of_this_server_only(make_server):
    state = BackendState()
    past = str(int(time.time()) - 5)
    future = str(int(time.time()) + 3600)
    ours = {"lian.managed": "true", "lian.orchestrator": "reaper-test"}
    state.machines = {
        "old": {**ours, "lian.expires-at": past},
        "young": {**ours, "lian.expires-at": future},
        "foreign": {"lian.managed": "true", "lian.orchestrator": "other", "lian.expires-at": past},
    }
    make_server(state, name="reaper-test", reap_interval_s=0.1)
    deadline = time.monotonic() + 10
    while "old" in state.machines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(state.machines) == ["foreign", "young"]


# --------------------------------------------------------------------------- sizing, metrics


def test_p95_from_the_servers_history(server):
    provider = client_provider(server.url)
    assert provider.size_for("web") is None  # no builds yet
    for index in range(3):
        provider.record(metrics(session=f"s{index}", peak_gib=5.0))
    size = provider.size_for("web")
    assert size is not None
    assert size.source == "orchestrator"
    assert (size.cpu, size.memory_gb) == (2, 6)  # 1.5 cores, 5 GiB x 1.2 -> 6
    assert size.reason.startswith(f"orchestrator {server.url}: P95 of 3 successful builds")
    assert client_provider(server.url).size_for("other-workspace") is None


def test_sizing_hook_asks_the_orchestrator_before_local_history(server):
    host = PluginHost.load(entry_points=False, extra=[("orchestrator", orchestrator_plugin)])
    provider = client_provider(server.url)
    for index in range(3):
        provider.record(metrics(session=f"h{index}", peak_gib=9.0))
    request = api.SizingRequest(workspace="web", language=None, context_dir=server.state_dir)
    size = host.size(request)
    assert (size.source, size.memory_gb) == ("orchestrator", 11)
    del provider  # no orchestrator in use any more: the hook stays out of the way
    assert host.size(request).source == "language"


def test_sizing_falls_back_with_a_warning_when_unreachable(caplog, tmp_path, monkeypatch):
    from fixtures.ports import free_port

    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path))
    host = PluginHost.load(entry_points=False, extra=[("orchestrator", orchestrator_plugin)])
    provider = client_provider(f"http://127.0.0.1:{free_port()}")
    request = api.SizingRequest(workspace="web", language="rust", context_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="lian"):
        size = host.size(request)
    assert (size.source, size.cpu) == ("language", 4)
    assert "no P95 for web" in caplog.text and "sizing falls back" in caplog.text
    assert provider.name == "orchestrator"  # alive while sizing ran


def test_metrics_hook_records_only_orchestrator_builds(server):
    host = PluginHost.load(entry_points=False, extra=[("orchestrator", orchestrator_plugin)])
    provider = client_provider(server.url)
    for index in range(3):
        host.record_metrics(metrics(session=f"d{index}", provider="docker-local"))
    assert provider.client().p95("web") == (None, 0)
    for index in range(3):
        host.record_metrics(metrics(session=f"o{index}"))
    assert provider.client().p95("web")[1] == 3


def test_records_are_spooled_when_the_server_is_down_and_sent_later(tmp_path, monkeypatch):
    from fixtures.ports import free_port

    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "client"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    down = client_provider(url)
    down.record(metrics(session="while-down-1"))
    down.record(metrics(session="while-down-2"))
    spool = Spool.default(url)
    assert spool.pending() == 2
    lines = [json.loads(line) for line in spool.path.read_text().splitlines()]
    assert [line["metrics"]["session_id"] for line in lines] == ["while-down-1", "while-down-2"]

    # The server comes up on that port; the next record sends the spooled ones first.
    from orchestrator_support import start_server

    from lian_orchestrator.history import open_history
    from lian_orchestrator.server import ServerConfig

    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "server"))
    history = open_history(None)
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "client"))
    running = start_server(
        ServerConfig(
            backend=lambda: None,  # type: ignore[arg-type,return-value]
            history=history,
            tokens={"ci-a": TOKEN_A},
            reap_interval_s=0,
        ),
        tmp_path,
        port=port,
    )
    try:
        client_provider(url).record(metrics(session="after"))
        assert spool.pending() == 0
        size, used = client_provider(url).client().p95("web")
        assert used == 3 and size is not None
    finally:
        running.stop()
