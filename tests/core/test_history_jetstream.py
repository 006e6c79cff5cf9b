"""The fleet history store on a real ``nats-server -js``: two state directories stand
in for two CI machines sharing one stream."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from fixtures.cli import lian_envelope
from fixtures.nats import JETSTREAM_TOKEN
from lian_build import history
from lian_build.api import BuildMetrics
from lian_build.history import HistoryUnavailable, open_history_store
from lian_build.history.jetstream import JetStreamHistoryStore, subject_token
from lian_build.history.spool import Spooled


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(history, "_WARNED", set())


def metrics(workspace: str = "app", session: str = "s1", **changes: object) -> BuildMetrics:
    base = BuildMetrics(
        workspace=workspace,
        session_id=session,
        provider="docker-local",
        tier="2c-4g",
        cpu=2,
        memory_gb=4,
        peak_memory_bytes=9 * 1024**3,
        cpu_seconds=300.0,
        duration_s=100.0,
        succeeded=True,
        oom=False,
        finished_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    return attrs.evolve(base, **changes)


def test_two_machines_share_one_stream(jetstream, tmp_path):
    machine_a = open_history_store(jetstream.url, tmp_path / "a")
    machine_b = open_history_store(jetstream.url, tmp_path / "b")
    try:
        assert machine_a.name == "jetstream"
        for i in range(3):
            assert machine_a.append(metrics(session=f"a{i}")) is True
        assert machine_b.append(metrics(workspace="other", session="b0")) is True
        assert [m.session_id for m in machine_b.recent("app")] == ["a0", "a1", "a2"]
        assert [m.session_id for m in machine_a.recent("other")] == ["b0"]
        answer = machine_b.p95("app")
        assert answer.size is not None and answer.size.source == "history"
        assert answer.size.memory_gb == 11  # 9 GiB x 1.2, rounded up
    finally:
        machine_a.close()
        machine_b.close()
    assert not (tmp_path / "a" / history.SPOOL_FILE).exists()


def test_workspaces_that_differ_only_in_subject_characters_stay_apart(jetstream, tmp_path):
    assert subject_token("a.b") != subject_token("a_b")
    assert not set(subject_token("x.*>y z")) & {".", "*", ">", " "}
    store = open_history_store(jetstream.url, tmp_path)
    try:
        store.append(metrics(workspace="team.app", session="dot"))
        store.append(metrics(workspace="team_app", session="underscore"))
        store.append(metrics(workspace="team>*", session="wild"))
        assert [m.session_id for m in store.recent("team.app")] == ["dot"]
        assert [m.session_id for m in store.recent("team_app")] == ["underscore"]
        assert [m.session_id for m in store.recent("team>*")] == ["wild"]
    finally:
        store.close()


def test_recent_reads_the_newest_n_and_the_stream_keeps_a_bounded_tail(jetstream, tmp_path):
    store = open_history_store(f"{jetstream.url}?keep=5&stream=SMALL", tmp_path)
    try:
        for i in range(8):
            store.append(metrics(session=f"s{i}"))
        assert [m.session_id for m in store.recent("app")] == [f"s{i}" for i in range(3, 8)]
        assert [m.session_id for m in store.recent("app", 2)] == ["s6", "s7"]
        assert store.recent("nothing-here") == []
    finally:
        store.close()


def test_a_record_sent_twice_is_stored_once(jetstream, tmp_path):
    store = open_history_store(jetstream.url, tmp_path)
    try:
        store.append(metrics())
        store.append(metrics())
        assert len(store.recent("app")) == 1
    finally:
        store.close()


def test_token_auth_in_the_url_and_as_a_reference(jetstream_token, tmp_path, monkeypatch, caplog):
    host = f"127.0.0.1:{jetstream_token.port}"
    with_token = open_history_store(f"nats://{JETSTREAM_TOKEN}@{host}", tmp_path / "a")
    monkeypatch.setenv("HISTORY_TOKEN", JETSTREAM_TOKEN)
    by_reference = open_history_store(f"nats://{host}?token=env:HISTORY_TOKEN", tmp_path / "b")
    try:
        assert with_token.append(metrics(session="one")) is True
        assert [m.session_id for m in by_reference.recent("app")] == ["one"]
    finally:
        with_token.close()
        by_reference.close()
    with caplog.at_level(logging.DEBUG, logger="lian.history"):
        wrong = open_history_store(f"nats://wrong-{JETSTREAM_TOKEN}@{host}", tmp_path / "c")
        assert wrong.append(metrics(session="two")) is False
        wrong.close()
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    assert all(JETSTREAM_TOKEN not in r.getMessage() for r in caplog.records)


def test_nkey_seed_by_reference(jetstream_nkey, tmp_path, monkeypatch):
    seed_file = tmp_path / "history.nk"
    seed_file.write_text(jetstream_nkey.seed + "\n")
    url = f"{jetstream_nkey.server.url}?nkey_seed=file:{seed_file}"
    store = open_history_store(url, tmp_path / "state")
    try:
        assert store.append(metrics()) is True
        assert len(store.recent("app")) == 1
    finally:
        store.close()
    no_seed = open_history_store(jetstream_nkey.server.url, tmp_path / "other")
    assert no_seed.append(metrics(session="s2")) is False
    no_seed.close()


def test_unresolvable_reference_is_a_warning_without_the_value(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SEED", raising=False)
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        store = open_history_store("nats://127.0.0.1:1?nkey_seed=env:NO_SUCH_SEED", tmp_path)
        assert store.append(metrics()) is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "nkey_seed" in messages[0], messages


def test_tls_with_a_ca_file(jetstream_tls, tmp_path, caplog):
    url = f"{jetstream_tls.server.url}?ca_file={jetstream_tls.ca_file}"
    store = open_history_store(url, tmp_path / "a")
    try:
        assert store.location.startswith("tls://127.0.0.1:")
        assert store.append(metrics()) is True
        assert len(store.recent("app")) == 1
    finally:
        store.close()
    # Without the CA the server's certificate is not trusted: a warning, not a failure.
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        untrusted = open_history_store(jetstream_tls.server.url, tmp_path / "b")
        assert untrusted.append(metrics(session="s2")) is False
        untrusted.close()
    assert any("unavailable" in r.getMessage() for r in caplog.records)


def test_bad_urls_are_rejected_without_echoing_secrets():
    for url, why in [
        ("nats://", "host"),
        ("nats://127.0.0.1:4222?colour=red", "unknown parameters: colour"),
        ("nats://127.0.0.1:4222?keep=0", "keep"),
        ("nats://127.0.0.1:99999", "port"),
    ]:
        with pytest.raises(ValueError, match=why):
            JetStreamHistoryStore.from_url(url)


_RECORD = textwrap.dedent(
    """
    import datetime as dt, sys
    from lian_build.api import BuildMetrics
    from lian_build.builtin.history import lian_record_metrics
    lian_record_metrics(BuildMetrics(
        sys.argv[1], sys.argv[2], "docker-local", "2c-4g", 2, 4, 9 * 2**30, 300.0, 100.0,
        True, False, dt.datetime.now(dt.UTC)))
    """
)


def _record(
    state: Path, url: str, workspace: str, session: str
) -> subprocess.CompletedProcess[str]:
    """One ``lian`` process finishing a build: the record hook, as the pipeline calls it."""
    env = {"LIAN_STATE_DIR": str(state), "LIAN_HISTORY_URL": url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", _RECORD, workspace, session],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_store_down_during_a_build_is_flushed_by_the_next_run(jetstream, tmp_path):
    state = tmp_path / "ci-1"
    jetstream.stop()
    down = _record(state, jetstream.url, "app", "while-down")
    assert down.returncode == 0, down.stderr
    assert "kept in" in down.stderr and down.stderr.count("WARNING") <= 1
    spool = state / history.SPOOL_FILE
    assert [json.loads(line)["session_id"] for line in spool.read_text().splitlines()] == [
        "while-down"
    ]
    jetstream.start()
    up = _record(state, jetstream.url, "app", "after")
    assert up.returncode == 0, up.stderr
    assert spool.read_text() == ""
    reader = open_history_store(jetstream.url, tmp_path / "elsewhere")
    try:
        assert [m.session_id for m in reader.recent("app")] == ["while-down", "after"]
    finally:
        reader.close()


def _plan(state: Path, url: str, workspace: str, context: Path) -> dict:
    run = lian_envelope(
        [
            "plan",
            "--workspace",
            workspace,
            "--context",
            str(context),
            "--image",
            "127.0.0.1:5999/apps/app:1",
            "--provider",
            "docker-local",
            "--registry",
            "zot",
            "--registry-opt",
            "url=http://127.0.0.1:5999",
        ],
        state,
        env={"LIAN_HISTORY_URL": url},
    )
    assert run.exit_code == 0, run.stderr
    return {"size": run.envelope["result"]["size"], "stderr": run.stderr}


def test_machine_b_plans_from_machine_a_history(jetstream, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    machine_a, machine_b = tmp_path / "machine-a", tmp_path / "machine-b"
    before = _plan(machine_b, jetstream.url, "shared-app", context)
    assert before["size"]["source"] == "language"
    for i in range(3):
        assert _record(machine_a, jetstream.url, "shared-app", f"a{i}").returncode == 0
    after = _plan(machine_b, jetstream.url, "shared-app", context)
    assert after["size"]["source"] == "history", after
    assert after["size"]["memory_gb"] == 11
    assert "P95 of 3 successful builds" in after["size"]["reason"]
    assert not (machine_b / history.SQLITE_FILE).exists()  # nothing local on machine B


def test_unreachable_store_is_one_warning_and_sizing_falls_back(tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    from fixtures.ports import free_port

    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    planned = _plan(tmp_path / "state", url, "app", context)
    assert planned["size"]["source"] == "language"
    warnings = [line for line in planned["stderr"].splitlines() if "history" in line]
    assert len(warnings) == 1 and "sizing without history" in warnings[0], planned["stderr"]


def test_unknown_scheme_in_the_environment_is_one_warning(tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    planned = _plan(tmp_path / "state", "redis://127.0.0.1:6379", "app", context)
    assert planned["size"]["source"] == "language"
    warnings = [line for line in planned["stderr"].splitlines() if "history" in line]
    assert len(warnings) == 1 and "unknown scheme 'redis'" in warnings[0], planned["stderr"]


def test_jetstream_store_is_unavailable_not_raising_on_a_dead_server(tmp_path):
    store = JetStreamHistoryStore("nats://127.0.0.1:1")
    with pytest.raises(HistoryUnavailable):
        store.append(metrics())
    with pytest.raises(HistoryUnavailable):  # and it does not try again this run
        store.recent("app")
    store.close()


def test_lian_history_reads_the_fleet_stream(jetstream, tmp_path):
    for i in range(3):
        assert _record(tmp_path / "machine-a", jetstream.url, "shared", f"a{i}").returncode == 0
    run = lian_envelope(
        ["history", "--json"], tmp_path / "machine-b", env={"LIAN_HISTORY_URL": jetstream.url}
    )
    assert run.exit_code == 0, run.stderr
    result = run.envelope["result"]
    assert result["store"] == {"name": "jetstream", "location": jetstream.url}
    [shared] = result["workspaces"]
    assert shared["used"] == ["a0", "a1", "a2"] and shared["p95"]["memory_gb"] == 11


def test_recent_reads_the_tail_of_a_busy_shared_stream(jetstream, tmp_path):
    """A workspace's last builds are found behind many builds of other workspaces."""
    store = open_history_store(f"{jetstream.url}?keep=5000", tmp_path)
    assert isinstance(store, Spooled)
    try:
        for i in range(60):
            store.append(metrics(workspace="quiet", session=f"q{i:03d}"))
        for i in range(400):
            store.append(metrics(workspace="busy", session=f"b{i:03d}"))
        for i in range(60, 63):
            store.append(metrics(workspace="quiet", session=f"q{i:03d}"))
        quiet = [m.session_id for m in store.recent("quiet", 50)]
        assert quiet == [f"q{i:03d}" for i in range(13, 63)]
        busy = [m.session_id for m in store.recent("busy", 50)]
        assert busy == [f"b{i:03d}" for i in range(350, 400)]
        assert len(store.recent("quiet", 1000)) == 63
    finally:
        store.close()
