"""NATS events against a real nats-server; best effort when NATS is down."""

from __future__ import annotations

import datetime as dt
import json

from lian_build import api
from lian_build.builtin.nats import NatsSink, subject_for
from lian_build.events import EventBus
from lian_build.plugins import PluginHost


def _event(kind: str = "started", **data) -> api.BuildEvent:
    return api.BuildEvent(
        kind=kind,
        workspace="web.app",
        session_id="s1",
        timestamp=dt.datetime.now(dt.UTC),
        data=data,
    )


def test_subject_layout():
    assert subject_for("lian", "web", "started") == "lian.web.build.started"
    assert subject_for("ci", "web.app", "failed") == "ci.web_app.build.failed"
    assert subject_for("lian", "web", "integrate.completed") == "lian.web.integrate.completed"


def test_sink_publishes_to_real_server(nats_server, nats_collector):
    collector = nats_collector(nats_server.url, "lian.>")
    sink = NatsSink(api.EventSettings(nats_url=nats_server.url))
    sink.emit(_event("started", image="r/x:1"))
    sink.emit(_event("completed", digest="sha256:ab"))
    sink.close()
    messages = collector.wait_for(2)
    assert [m[0] for m in messages] == [
        "lian.web_app.build.started",
        "lian.web_app.build.completed",
    ]
    body = json.loads(messages[1][1])
    assert body["data"]["digest"] == "sha256:ab" and body["session_id"] == "s1"


def test_nkey_authentication(nats_server_nkey, nats_collector):
    collector = nats_collector(nats_server_nkey.url, "lian.>", seed=nats_server_nkey.seed)
    sink = NatsSink(
        api.EventSettings(nats_url=nats_server_nkey.url, nkey_seed=nats_server_nkey.seed)
    )
    sink.emit(_event())
    sink.close()
    assert len(collector.wait_for(1)) == 1


def test_unreachable_nats_never_fails(caplog):
    from fixtures.ports import free_port

    sink = NatsSink(api.EventSettings(nats_url=f"nats://127.0.0.1:{free_port()}"))
    sink.emit(_event())  # logs, does not raise
    sink.emit(_event("completed"))
    sink.close()
    assert any("NATS events disabled" in r.getMessage() for r in caplog.records)


def test_host_registers_nats_sink_only_with_url(nats_server):
    host = PluginHost.load(entry_points=False)
    assert host.event_sinks(api.EventSettings()) == []
    sinks = host.event_sinks(api.EventSettings(nats_url=nats_server.url))
    assert [s.name for s in sinks] == ["nats"]
    for s in sinks:
        s.close()


class _Boom(api.EventSink):
    name = "boom"

    def emit(self, event):
        raise RuntimeError("sink down")


class _Keep(api.EventSink):
    name = "keep"

    def __init__(self):
        self.seen = []

    def emit(self, event):
        self.seen.append(event)


def test_bus_drops_failing_sink_and_redacts():
    keep = _Keep()
    bus = EventBus(
        [_Boom(), keep],
        workspace="w",
        session_id="s",
        redact=lambda s: s.replace("hunter22", "***"),
    )
    bus.emit("started", {"note": "token hunter22", "nested": {"v": ["hunter22"]}})
    bus.emit("completed")
    assert [e.kind for e in keep.seen] == ["started", "completed"]
    assert keep.seen[0].data == {"note": "token ***", "nested": {"v": ["***"]}}
