"""What the history store costs a build, and how fast the P95 query is.

1. Per build: a child process does what one ``lian build`` does with history: the
   history sizing source (open the configured store, read the workspace's last 50
   builds, compute the P95) and the record hook (append one record), then exits (which
   closes the store). Variants: ``none`` (the same child without the history calls),
   ``sqlite`` (the default store in a fresh state directory holding 50 builds of the
   workspace) and ``jetstream`` (``LIAN_HISTORY_URL`` at a local ``nats-server -js``).
   Variants are interleaved run by run so a load change hits all of them. Reported: the
   child's wall time, and the time inside the child spent in the history calls.
2. P95 query with 10,000 records: ``store.p95(workspace)`` on a warm store (connection
   open) and on a cold one (open + query + close), for SQLite and JetStream; 10,000
   records in 20 workspaces of 500, and 10,000 in one workspace.

    python bench/history.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchlib import Summary, free_port, note, write_result

from lian_build.api import BuildMetrics
from lian_build.history import open_history_store

CHILD = r"""
import datetime as dt, json, os, sys, time
t0 = time.perf_counter()
from lian_build.api import BuildMetrics, SizingRequest
from pathlib import Path
spent = 0.0
if sys.argv[1] != "none":
    h0 = time.perf_counter()
    from lian_build.builtin.sizing import HistorySizing
    from lian_build.builtin.history import lian_record_metrics
    size = HistorySizing().lian_size_runner(SizingRequest("bench", None, Path(".")))
    assert size is not None and size.source == "history", size
    lian_record_metrics(BuildMetrics("bench", os.urandom(6).hex(), "docker-local", "2c-4g",
        2, 4, 2**30, 30.0, 60.0, True, False, dt.datetime.now(dt.UTC)))
    from lian_build.history import _close_all
    _close_all()  # what exit does; timed here so it counts
    spent = time.perf_counter() - h0
print(json.dumps({"history_s": spent, "child_s": time.perf_counter() - t0}))
"""


@contextmanager
def nats_jetstream(tmp: Path) -> Iterator[str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-js", "-sd", str(tmp / "js"), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def record(workspace: str, i: int) -> BuildMetrics:
    return BuildMetrics(
        workspace, f"b{i:06d}", "docker-local", "2c-4g", 2, 4, (1 + i % 7) * 2**30,
        20.0 + i % 13, 60.0 + i % 17, True, False,
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
    )  # fmt: skip


def fill(url: str | None, state: Path, per_workspace: dict[str, int]) -> None:
    store = open_history_store(url, state)
    try:
        for workspace, count in per_workspace.items():
            for i in range(count):
                store.append(record(workspace, i))
    finally:
        store.close()


def per_build(tmp: Path, url: str, runs: int) -> dict[str, Any]:
    env_base = {k: v for k, v in os.environ.items() if not k.startswith("LIAN_")}
    variants: dict[str, dict[str, str]] = {
        "none": {"LIAN_STATE_DIR": str(tmp / "none")},
        "sqlite": {"LIAN_STATE_DIR": str(tmp / "sqlite")},
        "jetstream": {"LIAN_STATE_DIR": str(tmp / "js-state"), "LIAN_HISTORY_URL": url},
    }
    fill(None, tmp / "sqlite", {"bench": 50})
    fill(url, tmp / "js-fill", {"bench": 50})
    wall: dict[str, list[float]] = {name: [] for name in variants}
    inside: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(runs + 1):  # the first round warms caches and is dropped
        for name, env in variants.items():
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, name],
                env={**env_base, **env},
                capture_output=True,
                text=True,
                check=True,
            )
            elapsed = time.perf_counter() - start
            if "WARNING" in proc.stderr:
                raise SystemExit(f"{name}: {proc.stderr}")
            if run:
                wall[name].append(elapsed)
                inside[name].append(json.loads(proc.stdout)["history_s"])
        note(f"per-build round {run}/{runs}")
    base = Summary.of(wall["none"]).median
    out: dict[str, Any] = {}
    for name in variants:
        w = Summary.of(wall[name])
        out[name] = {
            "process_wall_s": w.rounded(5),
            "added_wall_median_s": round(w.median - base, 4),
            "history_calls_s": Summary.of(inside[name]).rounded(5),
        }
    return out


def p95_queries(tmp: Path, url: str, repeats: int) -> dict[str, Any]:
    shapes = {
        "20 workspaces x 500": {f"ws{i:02d}": 500 for i in range(20)},
        "1 workspace x 10000": {"big": 10_000},
    }
    out: dict[str, Any] = {}
    for label, shape in shapes.items():
        target = next(iter(shape))
        for kind in ("sqlite", "jetstream"):
            state = tmp / f"q-{kind}-{len(shape)}"
            store_url = (
                None
                if kind == "sqlite"
                else f"{url}?stream=q{len(shape)}&subject=q{len(shape)}.history&keep=10000"
            )
            start = time.perf_counter()
            fill(store_url, state, shape)
            fill_s = time.perf_counter() - start
            warm_store = open_history_store(store_url, state)
            warm: list[float] = []
            try:
                assert warm_store.p95(target).size is not None
                for _ in range(repeats):
                    t = time.perf_counter()
                    warm_store.p95(target)
                    warm.append(time.perf_counter() - t)
            finally:
                warm_store.close()
            cold: list[float] = []
            for _ in range(max(3, repeats // 3)):
                t = time.perf_counter()
                cold_store = open_history_store(store_url, state)
                cold_store.p95(target)
                cold_store.close()
                cold.append(time.perf_counter() - t)
            out[f"{kind}: {label}"] = {
                "records": sum(shape.values()),
                "fill_s": round(fill_s, 2),
                "append_mean_ms": round(1000 * fill_s / sum(shape.values()), 3),
                "p95_warm_s": Summary.of(warm).rounded(5),
                "p95_cold_s": Summary.of(cold).rounded(5),
            }
            note(f"p95 {kind}: {label} done")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 15)
    repeats = 5 if args.quick else 30
    with tempfile.TemporaryDirectory(prefix="lian-bench-history-") as raw:
        tmp = Path(raw)
        with nats_jetstream(tmp) as url:
            builds = per_build(tmp, url, runs)
            queries = p95_queries(tmp, url, repeats)
    write_result(
        "history",
        {
            "quick": args.quick,
            "runs": runs,
            "per_build": builds,
            "p95_query": queries,
        },
    )


if __name__ == "__main__":
    main()
