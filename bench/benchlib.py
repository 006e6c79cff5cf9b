"""Shared pieces of the benchmark scripts: statistics, timing, results, a local registry.

Every benchmark prints one JSON summary on stdout and writes the same document to
bench/results/<name>.json. Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent  # benchmarks run with the workspace venv's python


def note(message: str) -> None:
    """Progress for the person watching; stdout is kept for the JSON summary."""
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (fraction in [0, 1]) of a non-empty sample."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@attrs.frozen
class Summary:
    """Seconds (or any unit) of repeated measurements."""

    runs: int
    median: float
    p90: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples to summarise")
        return cls(
            runs=len(samples),
            median=statistics.median(samples),
            p90=percentile(samples, 0.9),
            mean=statistics.fmean(samples),
            min=min(samples),
            max=max(samples),
        )

    def rounded(self, digits: int = 4) -> dict[str, float | int]:
        return {
            key: round(value, digits) if isinstance(value, float) else value
            for key, value in attrs.asdict(self).items()
        }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else float("nan")


def machine() -> dict[str, Any]:
    """What the numbers were measured on; the load average shows a busy machine."""
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, payload: Mapping[str, Any]) -> None:
    """Print the summary on stdout and keep it in bench/results/<name>.json.

    A quick smoke run (``payload["quick"]``) is printed only, so it never replaces the
    full results.
    """
    document = {"benchmark": name, "machine": machine(), **payload}
    text = json.dumps(document, indent=2, sort_keys=False)
    sys.stdout.write(text + "\n")
    if document.get("quick"):
        note("quick run: results printed, not saved")
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(text + "\n")
    note(f"results written to {RESULTS_DIR.relative_to(ROOT) / (name + '.json')}")


# --------------------------------------------------------------------------- timing


@attrs.frozen
class CommandTiming:
    wall: Summary
    cpu_mean_s: float  # user + system of the child, mean per run
    samples: tuple[float, ...] = attrs.field(repr=False)


def time_commands(
    commands: Mapping[str, Sequence[str]],
    *,
    runs: int,
    warmup: int,
    tool: str = "interleaved",
) -> dict[str, CommandTiming]:
    """Wall and CPU time of each argv (run without a shell; each must exit 0).

    ``interleaved`` (default) runs one round of every command at a time, so a load change
    on a shared machine hits all commands alike; ``hyperfine`` runs each command's runs
    back to back.
    """
    if tool == "hyperfine":
        return _hyperfine(commands, runs=runs, warmup=warmup)
    return _interleaved(commands, runs=runs, warmup=warmup)


def _hyperfine(
    commands: Mapping[str, Sequence[str]], *, runs: int, warmup: int
) -> dict[str, CommandTiming]:
    import shlex

    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        export = Path(tmp) / "out.json"
        argv = [
            "hyperfine",
            "--shell=none",
            "--style=none",
            f"--warmup={warmup}",
            f"--runs={runs}",
            f"--export-json={export}",
        ]
        for name, command in commands.items():
            argv += ["--command-name", name, shlex.join(command)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(export.read_text())["results"]
    timings: dict[str, CommandTiming] = {}
    for name, result in zip(commands, results, strict=True):
        samples = tuple(float(t) for t in result["times"])
        timings[name] = CommandTiming(
            wall=Summary.of(samples),
            cpu_mean_s=float(result["user"]) + float(result["system"]),
            samples=samples,
        )
    return timings


def _run_once(command: Sequence[str]) -> tuple[float, float]:
    """Wall seconds and the child's user + system seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _interleaved(
    commands: Mapping[str, Sequence[str]], *, runs: int, warmup: int
) -> dict[str, CommandTiming]:
    for _ in range(warmup):
        for command in commands.values():
            _run_once(command)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands)
    for round_index in range(runs):
        # Rotate the order so no command always runs right after the same neighbour.
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            wall, cpu = _run_once(commands[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        name: CommandTiming(
            wall=Summary.of(walls[name]),
            cpu_mean_s=statistics.fmean(cpus[name]),
            samples=tuple(walls[name]),
        )
        for name in commands
    }


# --------------------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def local_registry(workdir: Path) -> Iterator[str]:
    """Debian's docker-registry on a free 127.0.0.1 port; yields ``127.0.0.1:PORT``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("docker-registry is not installed (Debian package docker-registry)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with (workdir / "registry.log").open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def write_client_key(directory: Path) -> Path:
    """A fresh unencrypted ed25519 key (0600) for logging in to runners."""
    from lian_build.remote.ssh import generate_host_key

    path = directory / "id_ed25519"
    path.write_text(generate_host_key().private_openssh)
    path.chmod(0o600)
    return path
