"""``lian build`` end to end against a shell script doing the same steps by hand.

Both variants: a runner container from the same image with the same flags (docker-local,
host networking), rsync over SSH, ``buildah build`` + ``buildah push`` with the same cache
flags, container removed; a local registry (Debian's docker-registry) on a free
127.0.0.1 port. Runs alternate (lian first on even runs, the script first on odd ones).

Scenarios:
- copy: ``FROM scratch`` + COPY a few files, warm cache (the task's reference build).
- run: a busybox base (pushed first) + COPY of a file that changes every run + a RUN step
  writing a 32 MB layer, so every run builds and pushes for real.

    python bench/e2e_vs_shell.py [--quick] [--runs N] [--scenario copy|run|all] [--logs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from benchlib import (
    BENCH_DIR,
    VENV_BIN,
    Summary,
    local_registry,
    note,
    ratio,
    write_client_key,
    write_result,
)

DOCKER = "/usr/bin/docker"
RUNNER_IMAGE = "lian-runner:debian"
BUSYBOX = Path("/bin/busybox")
TARGET_RATIO = 1.15
BASELINE = BENCH_DIR / "baseline_build.sh"
# Names this invocation's runners (lian workspaces, the script's label), so the leak check
# and the clean-up touch nothing that other work on the machine started.
TOKEN = uuid.uuid4().hex[:8]
WORKSPACE_PREFIX = f"bench-{TOKEN}-"


@attrs.frozen
class Scenario:
    name: str
    description: str
    dockerfile: Callable[[str], str]  # base image reference -> Dockerfile text
    changes_every_run: bool  # a context file changes before each run (cache miss)


SCENARIOS = {
    "copy": Scenario(
        "copy",
        "FROM scratch + COPY 3 files (~1 MB), layer cache warm",
        lambda _base: "FROM scratch\nCOPY app.txt config.json blob.bin /app/\n",
        changes_every_run=False,
    ),
    "run": Scenario(
        "run",
        "busybox base + COPY a changed file + RUN writing a 32 MB layer (cache miss each run)",
        lambda base: (
            f"FROM {base}\nCOPY stamp.txt /stamp.txt\n"
            "RUN dd if=/dev/urandom of=/blob bs=1M count=32 && sha256sum /blob > /blob.sum\n"
        ),
        changes_every_run=True,
    ),
}


@attrs.frozen
class Sample:
    seconds: float
    client_cpu_s: float  # user + system of the client process tree (not the runner)
    phases: dict[str, float]
    digest: str
    log: str = attrs.field(repr=False, default="")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@attrs.frozen
class Env:
    registry: str  # 127.0.0.1:PORT
    key: Path
    base_image: str


def lian_flags(env: Env, workspace: str, context: Path, image: str) -> list[str]:
    return [
        "--workspace", workspace,
        "--context", str(context),
        "--image", image,
        "--ssh-key", str(env.key),
        "--provider", "docker-local",
        "--runner-image", RUNNER_IMAGE,
        "--registry", "zot",
        "--registry-opt", f"url=http://{env.registry}",
        "--builder", "buildah",
    ]  # fmt: skip


def planned_cache_repo(env: Env, workspace: str, context: Path, image: str) -> str:
    """The --cache-to repository lian would use, so the script mirrors it exactly."""
    done = subprocess.run(
        [str(VENV_BIN / "lian"), "plan", *lian_flags(env, workspace, context, image)],
        capture_output=True,
        text=True,
        check=True,
    )
    build_argv = json.loads(done.stdout)["result"]["commands"]["buildah"][0]
    return str(build_argv[build_argv.index("--cache-to") + 1])


def run_lian(env: Env, workspace: str, context: Path, image: str) -> Sample:
    argv = [str(VENV_BIN / "lian"), "build", *lian_flags(env, workspace, context, image)]
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    envelope = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if done.returncode != 0 or envelope.get("status") != "ok":
        raise SystemExit(f"lian build failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = envelope["result"]
    phases = {name: float(value) for name, value in result["phases"].items()}
    # Inside the pipeline but in no named phase: reaping, probes, cgroup readings.
    phases["between_phases"] = round(float(result["duration_s"]) - sum(phases.values()), 3)
    # Start-up, planning and reporting: everything outside the pipeline's own clock.
    phases["outside_pipeline"] = round(seconds - float(result["duration_s"]), 3)
    return Sample(seconds, cpu, phases, result["digest"], done.stderr)


def run_shell(env: Env, context: Path, image: str, cache_repo: str) -> Sample:
    argv = ["bash", str(BASELINE), str(context), image, cache_repo, str(env.key), RUNNER_IMAGE]
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BENCH_LABEL": TOKEN},
    )
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"baseline script failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    phases = {
        parts[1]: float(parts[2])
        for parts in (line.split() for line in done.stderr.splitlines())
        if len(parts) == 3 and parts[0] == "phase"
    }
    return Sample(seconds, cpu, phases, done.stdout.strip().splitlines()[-1], done.stderr)


def registry_digest(registry: str, image: str) -> str | None:
    import httpx

    repository, _, tag = image.removeprefix(f"{registry}/").rpartition(":")
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    response = httpx.head(
        f"http://{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}
    )
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def make_context(directory: Path, scenario: Scenario, base: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text(scenario.dockerfile(base))
    (directory / "app.txt").write_text("hello from the benchmark\n")
    (directory / "config.json").write_text(json.dumps({"name": "bench", "replicas": 3}) + "\n")
    (directory / "blob.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB, fixed content
    (directory / "stamp.txt").write_text("initial\n")
    return directory


def push_base(env_registry: str, key: Path, tmp: Path) -> str:
    """A busybox image in the local registry, built through lian (not timed)."""
    if not BUSYBOX.exists():
        raise SystemExit("/bin/busybox is missing (Debian package busybox-static)")
    context = tmp / "base"
    context.mkdir()
    shutil.copy2(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    base = f"{env_registry}/bench/busybox:1"
    env = Env(env_registry, key, base)
    run_lian(env, f"{WORKSPACE_PREFIX}base", context, base)
    return base


def bench_scenario(
    env: Env, scenario: Scenario, runs: int, tmp: Path, logs: Path | None
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    contexts = {
        variant: make_context(tmp / f"{scenario.name}-{variant}", scenario, env.base_image)
        for variant in ("lian", "shell")
    }
    images = {v: f"{env.registry}/bench/{scenario.name}-{v}:{tag}" for v in contexts}
    workspaces = {v: f"{WORKSPACE_PREFIX}{scenario.name}-{v}" for v in contexts}
    cache_repo = planned_cache_repo(env, workspaces["shell"], contexts["shell"], images["shell"])

    def one(variant: str, run_id: str) -> Sample:
        if scenario.changes_every_run:
            (contexts[variant] / "stamp.txt").write_text(f"{run_id}\n")
        if variant == "lian":
            sample = run_lian(env, workspaces["lian"], contexts["lian"], images["lian"])
        else:
            sample = run_shell(env, contexts["shell"], images["shell"], cache_repo)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"{scenario.name}-{run_id}.log").write_text(sample.log)
        pushed = registry_digest(env.registry, images[variant])
        if pushed != sample.digest:
            reported = sample.digest
            raise SystemExit(f"{variant}: registry has {pushed}, the build reported {reported}")
        return sample

    note(f"[{scenario.name}] warm-up: one untimed run per variant")
    for variant in ("lian", "shell"):
        one(variant, f"warmup-{variant}")
    samples: dict[str, list[Sample]] = {"lian": [], "shell": []}
    for index in range(runs):
        order = ("lian", "shell") if index % 2 == 0 else ("shell", "lian")
        for variant in order:
            sample = one(variant, f"{index}-{variant}")
            samples[variant].append(sample)
            note(f"[{scenario.name}] run {index + 1}/{runs} {variant}: {sample.seconds:.2f}s")

    wall = {v: Summary.of([s.seconds for s in found]) for v, found in samples.items()}
    return {
        "description": scenario.description,
        "dockerfile": scenario.dockerfile("<busybox base>"),
        "runs_per_variant": runs,
        "wall_s": {v: summary.rounded(3) for v, summary in wall.items()},
        "ratio_median": ratio(wall["lian"].median, wall["shell"].median),
        "overhead_median_s": round(wall["lian"].median - wall["shell"].median, 3),
        "target_met": ratio(wall["lian"].median, wall["shell"].median) <= TARGET_RATIO,
        "client_cpu_median_s": {
            v: round(statistics.median(s.client_cpu_s for s in found), 3)
            for v, found in samples.items()
        },
        "phases_median_s": {v: median_phases(found) for v, found in samples.items()},
        "samples_s": {v: [round(s.seconds, 3) for s in found] for v, found in samples.items()},
    }


def median_phases(samples: list[Sample]) -> dict[str, float]:
    names = {name for sample in samples for name in sample.phases}
    return {
        name: round(statistics.median(s.phases.get(name, 0.0) for s in samples), 3)
        for name in sorted(names)
    }


def leftover_containers() -> list[str]:
    """Runner containers this invocation started and did not remove."""
    done = subprocess.run(
        [
            DOCKER, "ps", "-a", "--no-trunc",
            "--format", '{{.ID}} {{.Label "lian.workspace"}} {{.Label "lian.bench"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    found = []
    for line in done.stdout.splitlines():
        container, workspace, bench, *_ = [*line.split(" "), "", "", ""]
        if workspace.startswith(WORKSPACE_PREFIX) or bench == TOKEN:
            found.append(container)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--runs", type=int, help="timed runs per variant (default 5, quick 1)")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--logs", type=Path, help="keep each run's stderr in this directory")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    if subprocess.run([DOCKER, "image", "inspect", RUNNER_IMAGE], capture_output=True).returncode:
        raise SystemExit(f"runner image {RUNNER_IMAGE} is missing (see runner/)")
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results: dict[str, Any] = {}
    leaked: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        # A private state dir: the benchmark's builds stay out of the user's history.
        os.environ["LIAN_STATE_DIR"] = str(tmp / "state")
        with local_registry(tmp / "registry") as registry:
            key = write_client_key(tmp)
            base = push_base(registry, key, tmp) if "run" in chosen else ""
            env = Env(registry, key, base)
            try:
                for name in chosen:
                    results[name] = bench_scenario(env, SCENARIOS[name], runs, tmp, args.logs)
            finally:
                leaked = leftover_containers()
                for container in leaked:
                    subprocess.run([DOCKER, "rm", "-f", "-v", container], capture_output=True)
    write_result(
        "e2e_vs_shell",
        {
            "quick": args.quick,
            "target": f"lian <= {TARGET_RATIO}x the shell script (median wall time)",
            "runner_image": RUNNER_IMAGE,
            "baseline": str(BASELINE.relative_to(BENCH_DIR.parent)),
            "scenarios": results,
            "leaked_containers": len(leaked),
        },
    )
    if leaked:
        sys.exit(1)


if __name__ == "__main__":
    main()
