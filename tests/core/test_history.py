"""The local history store: round trip, concurrent writers, corrupt lines, the hook."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import multiprocessing
import threading
from pathlib import Path

import attrs
import pytest

from lian_build import history
from lian_build.api import BuildMetrics
from lian_build.builtin import history as builtin_history
from lian_build.history import HistoryStore


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


def test_state_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LIAN_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert history.state_dir() == tmp_path / "home" / ".local" / "state" / "lian"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert history.state_dir() == tmp_path / "xdg" / "lian"
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "explicit"))
    assert history.state_dir() == tmp_path / "explicit"


def test_round_trip_keeps_every_field(tmp_path):
    store = HistoryStore(tmp_path / "deep" / "dir" / "history.jsonl")
    first = metrics()
    second = metrics(session="s2", peak_memory_bytes=None, cpu_seconds=None, oom=True)
    store.append(first)
    store.append(second)
    assert store.samples("app") == [first, second]
    assert store.samples("other") == []
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert len(store.path.read_text().splitlines()) == 2


def test_missing_file_has_no_samples(tmp_path):
    assert HistoryStore(tmp_path / "none.jsonl").samples("app") == []


def test_limit_keeps_the_newest_oldest_first(tmp_path):
    store = HistoryStore(tmp_path / "h.jsonl")
    for i in range(10):
        store.append(metrics(session=f"s{i}"))
        store.append(metrics(workspace="other", session=f"o{i}"))
    assert [m.session_id for m in store.samples("app", limit=3)] == ["s7", "s8", "s9"]
    assert len(store.samples("app")) == 10
    assert store.samples("app", limit=0) == []


def test_corrupt_lines_are_skipped_and_logged(tmp_path, caplog):
    store = HistoryStore(tmp_path / "h.jsonl")
    store.append(metrics(session="good1"))
    good = json.loads(store.path.read_text())
    with store.path.open("ab") as handle:
        handle.write(b'{"truncated": \n')
        handle.write(b"\xff\xfe not utf-8\n")
        handle.write(b"[1, 2]\n")
        handle.write(json.dumps({**good, "cpu": "four"}).encode() + b"\n")
        handle.write(json.dumps({**good, "succeeded": 1}).encode() + b"\n")
        handle.write(json.dumps({**good, "finished_at": "yesterday"}).encode() + b"\n")
        handle.write(json.dumps({k: v for k, v in good.items() if k != "tier"}).encode() + b"\n")
        handle.write(b"\n")
    store.append(metrics(session="good2"))
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        found = store.samples("app")
    assert [m.session_id for m in found] == ["good1", "good2"]
    assert sum("corrupt line" in r.getMessage() for r in caplog.records) == 7


def _append_many(path: str, worker: int, count: int) -> None:
    store = HistoryStore(Path(path))
    for i in range(count):
        # A long session id makes each line a few KB, so interleaving would show.
        store.append(metrics(session=f"w{worker}-{i}-" + "x" * 4000))


def test_concurrent_appends_from_processes_never_interleave(tmp_path):
    path = tmp_path / "h.jsonl"
    workers, per_worker = 6, 40
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_append_many, args=(str(path), w, per_worker)) for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    lines = path.read_bytes().splitlines()
    assert len(lines) == workers * per_worker
    found = HistoryStore(path).samples("app", limit=10_000)
    ids = {m.session_id.split("-x")[0].rstrip("-") for m in found}
    assert ids == {f"w{w}-{i}" for w in range(workers) for i in range(per_worker)}


def test_append_waits_for_the_file_lock(tmp_path):
    store = HistoryStore(tmp_path / "h.jsonl")
    store.append(metrics(session="before"))
    with store.path.open("rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another writer holds the lock
        writer = threading.Thread(target=store.append, args=(metrics(session="blocked"),))
        writer.start()
        writer.join(timeout=0.3)
        assert writer.is_alive(), "append did not wait for the lock"
        assert len(store.path.read_bytes().splitlines()) == 1
        fcntl.flock(holder.fileno(), fcntl.LOCK_UN)
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert [m.session_id for m in store.samples("app")] == ["before", "blocked"]


def test_record_metrics_hook_appends_to_the_default_store(monkeypatch, tmp_path):
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "state"))
    builtin_history.lian_record_metrics(metrics())
    stored = HistoryStore(tmp_path / "state" / history.HISTORY_FILE).samples("app")
    assert stored == [metrics()]


def test_record_metrics_hook_never_fails_the_build(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("LIAN_STATE_DIR", str(blocker))  # mkdir under a file fails
    with caplog.at_level(logging.WARNING, logger="lian.history"):
        builtin_history.lian_record_metrics(metrics())
    assert any("could not record" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("field", ["duration_s", "cpu_seconds"])
def test_integer_floats_are_read_back_as_floats(tmp_path, field):
    store = HistoryStore(tmp_path / "h.jsonl")
    store.append(metrics(**{field: 300}))  # type: ignore[arg-type]
    value = getattr(store.samples("app")[0], field)
    assert value == 300.0
    assert isinstance(value, float)
