"""The history stores' shared behaviour, the SQLite default, the spool and the hooks."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from lian_build import history
from lian_build.api import BuildMetrics, SizingRequest
from lian_build.builtin import history as builtin_history
from lian_build.builtin import sizing as builtin_sizing
from lian_build.history import HistoryStore, HistoryUnavailable, open_history_store
from lian_build.history.records import metrics_to_json
from lian_build.history.spool import Spooled, UnavailableStore
from lian_build.history.sqlite import SqliteHistoryStore


def metrics(workspace: str = "app", session: str = "s1", **changes: object) -> BuildMetrics:
    base = BuildMetrics(
        workspace=workspace,
        session_id=session,
        provider="hcloud",
        tier="cx33",
        cpu=4,
        memory_gb=8,
        peak_memory_bytes=3 * 1024**3,
        cpu_seconds=812.5,
        duration_s=301.25,
        succeeded=True,
        oom=False,
        finished_at=dt.datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=dt.UTC),
    )
    return attrs.evolve(base, **changes)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(history, "_WARNED", set())


def test_state_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LIAN_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert history.state_dir() == tmp_path / "home" / ".local" / "state" / "lian"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert history.state_dir() == tmp_path / "xdg" / "lian"
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "explicit"))
    assert history.state_dir() == tmp_path / "explicit"


# ----------------------------------------------------------------- SQLite


def test_default_store_is_sqlite_in_the_state_dir(tmp_path):
    store = open_history_store(None, tmp_path / "state")
    assert isinstance(store, HistoryStore)
    assert store.name == "sqlite"
    assert store.append(metrics()) is True
    db = tmp_path / "state" / history.SQLITE_FILE
    assert store.location == str(db)
    assert (db.stat().st_mode & 0o777) == 0o600
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sqlite_url_names_another_file(tmp_path):
    store = open_history_store(f"sqlite:{tmp_path}/elsewhere.db", tmp_path / "state")
    store.append(metrics())
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (tmp_path / "state" / history.SQLITE_FILE).exists()


def test_round_trip_keeps_every_field(tmp_path):
    store = open_history_store(None, tmp_path / "deep" / "dir")
    first = metrics()
    second = metrics(session="s2", peak_memory_bytes=None, cpu_seconds=None, oom=True)
    store.append(first)
    store.append(second)
    assert store.recent("app") == [first, second]
    assert store.recent("other") == []


def test_same_attempt_is_stored_once(tmp_path):
    store = open_history_store(None, tmp_path)
    store.append(metrics())
    store.append(metrics())  # a spooled record sent again
    assert len(store.recent("app")) == 1


def test_missing_store_has_no_records(tmp_path):
    assert open_history_store(None, tmp_path / "none").recent("app") == []


def test_recent_keeps_the_newest_oldest_first(tmp_path):
    store = open_history_store(None, tmp_path)
    for i in range(10):
        store.append(metrics(session=f"s{i}"))
        store.append(metrics(workspace="other", session=f"o{i}"))
    assert [m.session_id for m in store.recent("app", 3)] == ["s7", "s8", "s9"]
    assert len(store.recent("app")) == 10
    assert store.recent("app", 0) == []


def test_p95_reports_the_size_and_the_builds_it_used(tmp_path):
    store = open_history_store(None, tmp_path)
    assert store.p95("app").size is None
    store.append(metrics(session="failed", succeeded=False))
    for i in range(3):
        store.append(metrics(session=f"ok{i}", peak_memory_bytes=10 * 1024**3))
    answer = store.p95("app")
    assert answer.size is not None and answer.size.source == "history"
    assert answer.size.memory_gb == 12
    assert [m.session_id for m in answer.samples] == ["failed", "ok0", "ok1", "ok2"]
    assert [m.session_id for m in answer.used] == ["ok0", "ok1", "ok2"]


def _legacy_file(state: Path) -> Path:
    state.mkdir(parents=True)
    legacy = state / history.LEGACY_FILE
    good = metrics_to_json(metrics(session="old1"))
    lines = [
        json.dumps(good),
        '{"truncated": ',
        json.dumps({**good, "cpu": "four"}),
        json.dumps({**good, "session_id": "old2"}),
        "",
    ]
    legacy.write_text("\n".join(lines) + "\n")
    return legacy


def test_legacy_jsonl_is_imported_once(tmp_path, caplog):
    state = tmp_path / "state"
    legacy = _legacy_file(state)
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        store = open_history_store(None, state)
        assert [m.session_id for m in store.recent("app")] == ["old1", "old2"]
    assert sum("corrupt line" in r.getMessage() for r in caplog.records) == 2
    assert not legacy.exists()
    assert (state / "history.jsonl.imported").is_file()
    # A file put back (or a second process that saw it) is not imported twice.
    legacy.write_text(json.dumps(metrics_to_json(metrics(session="late"))) + "\n")
    again = open_history_store(None, state)
    assert [m.session_id for m in again.recent("app")] == ["old1", "old2"]


def test_corrupt_rows_are_skipped_and_logged(tmp_path, caplog):
    store = open_history_store(None, tmp_path)
    store.append(metrics(session="good1"))
    conn = sqlite3.connect(tmp_path / history.SQLITE_FILE)
    conn.execute(
        "INSERT INTO builds (workspace, session_id, finished_at, record) "
        "VALUES ('app', 'bad', 'x', '{\"cpu\": \"four\"}')"
    )
    conn.commit()
    conn.close()
    store.append(metrics(session="good2"))
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        found = store.recent("app")
    assert [m.session_id for m in found] == ["good1", "good2"]
    assert any("corrupt row" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("field", ["duration_s", "cpu_seconds"])
def test_integer_floats_are_read_back_as_floats(tmp_path, field):
    store = open_history_store(None, tmp_path)
    store.append(metrics(**{field: 300}))  # type: ignore[arg-type]
    value = getattr(store.recent("app")[0], field)
    assert value == 300.0
    assert isinstance(value, float)


_WRITER = textwrap.dedent(
    """
    import datetime as dt, sys
    from lian_build.api import BuildMetrics
    from lian_build.builtin.history import lian_record_metrics
    worker, count = int(sys.argv[1]), int(sys.argv[2])
    sys.stdin.readline()  # start together
    for i in range(count):
        lian_record_metrics(BuildMetrics(
            "app", f"w{worker}-{i}", "docker-local", "t", 2, 4, 2**30, 1.0, 2.0,
            True, False, dt.datetime.now(dt.UTC)))
    """
)


def test_eight_concurrent_processes_record_every_build(tmp_path):
    """Eight ``lian`` processes finishing builds at once on one machine lose nothing."""
    state = tmp_path / "state"
    _legacy_file(state)  # and all eight race to import the old file
    env = {"LIAN_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"}
    workers, per_worker = 8, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(w), str(per_worker)],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(workers)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "could not" not in err and "unavailable" not in err, err
    found = SqliteHistoryStore(state / history.SQLITE_FILE).recent("app", 10_000)
    ids = [m.session_id for m in found]
    expected = {f"w{w}-{i}" for w in range(workers) for i in range(per_worker)}
    assert set(ids) - {"old1", "old2"} == expected
    assert ids.count("old1") == 1 and ids.count("old2") == 1  # imported exactly once
    assert not (state / history.SPOOL_FILE).exists() or not (state / history.SPOOL_FILE).read_text()


# ----------------------------------------------------------------- spool and best effort


class FlakyStore:
    """A store whose availability the test switches."""

    name = "flaky"
    location = "flaky://test"

    def __init__(self) -> None:
        self.up = False
        self.records: list[BuildMetrics] = []

    def append(self, metrics: BuildMetrics) -> bool:
        if not self.up:
            raise HistoryUnavailable("down")
        if metrics not in self.records:
            self.records.append(metrics)
        return True

    def recent(self, workspace: str, n: int = 50) -> list[BuildMetrics]:
        if not self.up:
            raise HistoryUnavailable("down")
        return [m for m in self.records if m.workspace == workspace][-n:]

    def p95(self, workspace: str, n: int = 50) -> history.HistoryP95:
        return history.p95_of(workspace, self.recent(workspace, n))

    def close(self) -> None:
        pass


def test_spool_keeps_records_while_down_and_sends_them_in_order(tmp_path, caplog):
    inner = FlakyStore()
    store = Spooled(inner, tmp_path / "spool.jsonl")
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        assert store.append(metrics(session="a")) is False
        assert store.append(metrics(session="b")) is False
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1  # one warning
    assert [m.session_id for m in store.pending()] == ["a", "b"]
    inner.up = True
    assert store.append(metrics(session="c")) is True
    assert [m.session_id for m in inner.records] == ["a", "b", "c"]
    assert store.pending() == []


def test_spool_keeps_what_failed_midway(tmp_path):
    inner = FlakyStore()
    store = Spooled(inner, tmp_path / "spool.jsonl")
    for s in "abc":
        store.append(metrics(session=s))
    inner.up = True
    original = inner.append
    calls = {"n": 0}

    def fail_second(m: BuildMetrics) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            raise HistoryUnavailable("dropped")
        return original(m)

    inner.append = fail_second  # type: ignore[method-assign]
    assert store.flush() == 2
    assert [m.session_id for m in store.pending()] == ["b", "c"]
    assert store.flush() == 0
    assert [m.session_id for m in inner.records] == ["a", "b", "c"]


def test_unknown_scheme_is_one_warning_and_nothing_is_lost(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        store = open_history_store("redis://127.0.0.1:1/0", tmp_path)
        assert store.append(metrics()) is False
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "unknown scheme 'redis'" in warnings[0]
    with pytest.raises(HistoryUnavailable):
        store.recent("app")
    assert isinstance(store, Spooled)
    assert [m.session_id for m in store.pending()] == ["s1"]


def test_history_url_credentials_never_reach_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="lian.history"):
        store = open_history_store("nats://s3cr3t-token@127.0.0.1:1", tmp_path)
        store.append(metrics())
        with pytest.raises(HistoryUnavailable):
            store.recent("app")
    assert store.location == "nats://127.0.0.1:1"
    assert caplog.records and all("s3cr3t" not in r.getMessage() for r in caplog.records)


def test_sizing_falls_back_with_a_warning_when_history_is_down(tmp_path, caplog):
    store = Spooled(UnavailableStore("down for the test"), tmp_path / "spool.jsonl")
    request = SizingRequest(workspace="app", language=None, context_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        assert builtin_sizing.HistorySizing(store).lian_size_runner(request) is None
    assert any("sizing without history" in r.getMessage() for r in caplog.records)


def test_record_metrics_hook_appends_to_the_default_store(monkeypatch, tmp_path):
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "state"))
    builtin_history.lian_record_metrics(metrics())
    stored = SqliteHistoryStore(tmp_path / "state" / history.SQLITE_FILE).recent("app")
    assert stored == [metrics()]


def test_record_metrics_hook_never_fails_the_build(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("LIAN_STATE_DIR", str(blocker))  # mkdir under a file fails
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        builtin_history.lian_record_metrics(metrics())
    assert any(
        "not recorded" in r.getMessage() or "spool" in r.getMessage() for r in caplog.records
    )


# ----------------------------------------------------------------- lian history


def test_lian_history_lists_builds_and_the_p95_with_the_builds_it_used(tmp_path):
    from fixtures.cli import lian_envelope, lian_process

    state = tmp_path / "state"
    store = open_history_store(None, state)
    store.append(metrics(session="no-peak", peak_memory_bytes=None))
    for i in range(3):
        store.append(metrics(session=f"ok{i}", peak_memory_bytes=5 * 1024**3))
    store.append(metrics(workspace="web", session="w-oom", oom=True, succeeded=False))
    run = lian_envelope(["history", "--json", "--workspace", "app"], state)
    assert run.exit_code == 0, run.stderr
    result = run.envelope["result"]
    assert result["store"] == {"name": "sqlite", "location": str(state / history.SQLITE_FILE)}
    [app] = result["workspaces"]
    assert [b["session_id"] for b in app["builds"]] == ["no-peak", "ok0", "ok1", "ok2"]
    assert [b["used"] for b in app["builds"]] == [False, True, True, True]
    assert app["used"] == ["ok0", "ok1", "ok2"]
    assert app["p95"]["memory_gb"] == 6 and app["p95"]["cpu"] == 4
    every = lian_envelope(["history", "--json"], state).envelope["result"]
    assert [w["workspace"] for w in every["workspaces"]] == ["app", "web"]
    assert every["workspaces"][1]["p95"] is None
    table = lian_process(["history"], state)
    assert table.returncode == 0, table.stderr
    assert "app: 4 builds; P95 size 4 cpu, 6 GB" in table.stdout
    assert "web: 1 builds; no P95 yet" in table.stdout


def test_lian_history_with_the_store_down_is_one_error_envelope(tmp_path):
    from fixtures.cli import lian_envelope

    run = lian_envelope(
        ["history", "--json"], tmp_path, env={"LIAN_HISTORY_URL": "nats://127.0.0.1:1"}
    )
    assert run.exit_code == 8
    assert run.error["code"] == "HISTORY_UNAVAILABLE"
    assert run.error["details"] == {"store": "jetstream", "location": "nats://127.0.0.1:1"}
