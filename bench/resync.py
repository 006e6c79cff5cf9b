"""Re-sync of a large build context after one file changes: bytes sent and time.

A 5,000-file, 100 MB context (incompressible, fixed seed) is mirrored with
``lian_build.remote.sync.sync_context`` to a real runner: a docker-local runner container
spawned through lian's PluginHost, reached over SSH with a pinned host key. Per
repetition: first rsync sync into an empty directory, then one file rewritten and a second
sync, then a sync with nothing changed; and the tar fallback's first sync into another
empty directory.

    python bench/resync.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from benchlib import Summary, note, write_client_key, write_result

from lian_build import api
from lian_build.plugins import PluginHost
from lian_build.remote import dockerignore
from lian_build.remote.ssh import SSHRemote, generate_host_key, read_private_key
from lian_build.remote.sync import SyncMethod, SyncStats, sync_context
from lian_build.secrets import SecretStore

RUNNER_IMAGE = "lian-runner:debian"
SEED = 20240


@attrs.frozen
class ContextShape:
    files: int
    total_bytes: int
    per_directory: int = 100


FULL = ContextShape(files=5_000, total_bytes=100_000_000)
QUICK = ContextShape(files=1_000, total_bytes=20_000_000)


def make_context(root: Path, shape: ContextShape) -> list[Path]:
    """Files of varying size (half to one and a half times the mean), fixed content."""
    rng = random.Random(SEED)
    mean = shape.total_bytes // shape.files
    paths = []
    (root / "Dockerfile").parent.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /src/\n")
    for index in range(shape.files):
        directory = root / "src" / f"pkg{index // shape.per_directory:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"module{index % shape.per_directory:03d}.bin"
        path.write_bytes(rng.randbytes(rng.randint(mean // 2, mean * 3 // 2)))
        paths.append(path)
    return paths


@contextmanager
def docker_local_runner(key_path: Path) -> Iterator[SSHRemote]:
    """A runner from the docker-local provider (tier 2c-4g), destroyed on the way out."""
    host = PluginHost.load()
    compute = host.compute_provider(
        "docker-local", {"image": RUNNER_IMAGE}, SecretStore(host.secret_resolvers())
    )
    client_key = read_private_key(key_path)
    session = "bench-" + uuid.uuid4().hex[:10]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    request = api.SpawnRequest(
        session_id=session,
        workspace="bench-resync",
        tier=compute.tiers()[0],
        labels={
            "lian.managed": "true",
            "lian.session": session,
            "lian.workspace": "bench-resync",
            "lian.expires-at": str(int(expires.timestamp())),
        },
        authorized_key=client_key.public_openssh,
        host_key=generate_host_key(),
        runner_image=RUNNER_IMAGE,
        expires_at=expires,
    )
    runner = compute.spawn(request)
    try:
        remote = SSHRemote.connect(runner, client_key, wait_timeout_s=60, log=note)
        try:
            yield remote
        finally:
            remote.close()
    finally:
        compute.destroy(runner.id)


def timed_sync(
    context: Path, remote: SSHRemote, remote_dir: str, method: SyncMethod
) -> tuple[SyncStats, float]:
    """sync_context's stats, and the wall time measured around the call."""
    started = time.perf_counter()
    stats = sync_context(context, remote, remote_dir, log=lambda _line: None, method=method)
    return stats, time.perf_counter() - started


def summarise(samples: list[tuple[SyncStats, float]]) -> dict[str, Any]:
    first = samples[0][0]
    return {
        "seconds": Summary.of([seconds for _stats, seconds in samples]).rounded(3),
        "bytes_sent_median": sorted(stats.bytes_sent for stats, _ in samples)[len(samples) // 2],
        "files_sent_median": sorted(stats.files for stats, _ in samples)[len(samples) // 2],
        "files_total": first.files_total,
        "context_bytes": first.total_bytes,
        "method": first.method,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (smaller context)")
    parser.add_argument("--runs", type=int, help="repetitions (default 5, quick 1)")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    shape = QUICK if args.quick else FULL
    phases: dict[str, list[tuple[SyncStats, float]]] = {
        "rsync_first": [],
        "rsync_after_one_change": [],
        "rsync_unchanged": [],
        "tar_first": [],
    }
    scan_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-resync-") as tmp_name:
        tmp = Path(tmp_name)
        context = tmp / "context"
        note(f"writing a {shape.files:,}-file, {shape.total_bytes / 1e6:.0f} MB context")
        files = make_context(context, shape)
        for _ in range(runs):
            started = time.perf_counter()
            dockerignore.scan(context, dockerignore.load(context))
            scan_seconds.append(time.perf_counter() - started)
        with docker_local_runner(write_client_key(tmp)) as remote:
            for run in range(runs):
                rsync_dir, tar_dir = f"/tmp/bench/rsync-{run}", f"/tmp/bench/tar-{run}"
                phases["rsync_first"].append(timed_sync(context, remote, rsync_dir, "rsync"))
                changed = files[(run * 997) % len(files)]
                changed.write_bytes(random.Random(run).randbytes(changed.stat().st_size))
                phases["rsync_after_one_change"].append(
                    timed_sync(context, remote, rsync_dir, "rsync")
                )
                phases["rsync_unchanged"].append(timed_sync(context, remote, rsync_dir, "rsync"))
                phases["tar_first"].append(timed_sync(context, remote, tar_dir, "tar"))
                remote.run(["rm", "-rf", "--", rsync_dir, tar_dir], timeout=120)
                note(
                    f"run {run + 1}/{runs}: "
                    + ", ".join(f"{k} {v[-1][1]:.2f}s" for k, v in phases.items())
                )
    results = {name: summarise(samples) for name, samples in phases.items()}
    first, again = results["rsync_first"], results["rsync_after_one_change"]
    write_result(
        "resync",
        {
            "quick": args.quick,
            "context": {"files": shape.files, "bytes": shape.total_bytes, "seed": SEED},
            "runs": runs,
            "runner": f"docker-local container from {RUNNER_IMAGE}, tier 2c-4g",
            "local_scan_s": Summary.of(scan_seconds).rounded(3),
            "syncs": results,
            "second_vs_first": {
                "bytes_sent_fraction": round(
                    again["bytes_sent_median"] / first["bytes_sent_median"], 5
                ),
                "time_ratio": round(again["seconds"]["median"] / first["seconds"]["median"], 3),
            },
        },
    )


if __name__ == "__main__":
    main()
