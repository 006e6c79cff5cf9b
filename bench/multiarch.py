"""A two-platform build (linux/amd64 + linux/arm64) on docker-local, three ways:

- parallel: ``lian build --platforms linux/amd64,linux/arm64``: one runner per platform
  at the same time (a native amd64 runner and an arm64 runner under QEMU), then the index;
- sequential: the same two single-platform builds one after the other, each on a runner
  of its own architecture (``--platforms linux/amd64``, then ``--platforms linux/arm64``,
  which gets the emulated arm64 runner);
- one-runner: the docker-local default (``emulated_runners=false``): one amd64 runner
  builds both platforms, emulating only the arm64 RUN step's processes.

The parallel and sequential variants set ``emulated_runners=true``; ``arm64_on_amd64``
times the arm64 build alone on an amd64 runner, for comparison. The Dockerfile copies a
per-architecture static busybox and a payload of ``--payload-mb`` MB that changes every
run (so every run builds, compresses and pushes for real), then a RUN step checksums the
payload. Runs alternate the order of the variants. Target: parallel <= 1.1 x the slower
single-platform build, each single-platform build on a runner of its own architecture.

Needs: QEMU binfmt_misc for aarch64, lian-runner:debian and lian-runner:debian-arm64, an
arm64 static busybox (BENCH_BUSYBOX_ARM64, default /usr/local/lib/lian/busybox-arm64).

    python bench/multiarch.py [--quick] [--runs N] [--payload-mb N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import VENV_BIN, Summary, local_registry, note, ratio, write_client_key, write_result

DOCKER = "/usr/bin/docker"
RUNNER_IMAGE = "lian-runner:debian"
BUSYBOX_ARM64 = Path(os.environ.get("BENCH_BUSYBOX_ARM64", "/usr/local/lib/lian/busybox-arm64"))
TARGET_RATIO = 1.1
TOKEN = uuid.uuid4().hex[:8]


def _context(root: Path) -> Path:
    ctx = root / "ctx"
    ctx.mkdir()
    for arch, source in (("amd64", Path("/bin/busybox")), ("arm64", BUSYBOX_ARM64)):
        (ctx / f"busybox-{arch}").write_bytes(source.read_bytes())
        (ctx / f"busybox-{arch}").chmod(0o755)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n"
        "COPY payload /payload\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sha256sum /payload > /payload.sha256"]\n'
    )
    return ctx


def _new_payload(ctx: Path, megabytes: int) -> None:
    # Incompressible and new every build: no layer cache hit, a real push each time.
    (ctx / "payload").write_bytes(os.urandom(megabytes * 1024 * 1024))


def _lian(
    registry: str, key: Path, ctx: Path, workspace: str, platforms: str, *opts: str
) -> dict[str, Any]:
    argv = [
        str(VENV_BIN / "lian"), "build", "--workspace", workspace, "--context", str(ctx),
        "--image", f"{registry}/bench/{workspace}:1", "--ssh-key", str(key),
        "--provider", "docker-local", "--runner-image", RUNNER_IMAGE,
        "--registry", "zot", "--registry-opt", f"url=http://{registry}",
        "--builder", "buildah", "--platforms", platforms, *opts,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    envelope = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if done.returncode != 0 or envelope.get("status") != "ok":
        raise SystemExit(f"lian build failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = envelope["result"]
    result["wall_s"] = seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload-mb", type=int, default=20, help="size of the COPY payload")
    parser.add_argument("--quick", action="store_true", help="one run, results not saved")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    if not BUSYBOX_ARM64.exists():
        raise SystemExit(f"no arm64 busybox at {BUSYBOX_ARM64} (Debian busybox-static:arm64)")
    for image in (RUNNER_IMAGE, f"{RUNNER_IMAGE}-arm64"):
        if subprocess.run([DOCKER, "image", "inspect", image], capture_output=True).returncode:
            raise SystemExit(f"runner image {image} is missing (lian runner-image build)")

    samples: dict[str, list[float]] = {
        "parallel": [], "sequential": [], "one_runner": [], "amd64": [], "arm64": [],
        "arm64_on_amd64": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-multiarch-") as tmp:
        root = Path(tmp)
        key = write_client_key(root)
        ctx = _context(root)
        with local_registry(root / "registry") as registry:
            emulated = ("--compute-opt", "emulated_runners=true")

            def parallel(ws: str) -> None:
                _new_payload(ctx, args.payload_mb)
                result = _lian(registry, key, ctx, ws, "linux/amd64,linux/arm64", *emulated)
                assert result["strategy"] == "per-platform", result
                samples["parallel"].append(result["wall_s"])

            def sequential(ws: str) -> None:
                _new_payload(ctx, args.payload_mb)
                amd = _lian(registry, key, ctx, ws + "-a", "linux/amd64", *emulated)["wall_s"]
                arm_result = _lian(registry, key, ctx, ws + "-b", "linux/arm64", *emulated)
                assert arm_result["platforms"][0]["mode"] == "emulated", arm_result
                arm = arm_result["wall_s"]
                samples["amd64"].append(amd)
                samples["arm64"].append(arm)
                samples["sequential"].append(amd + arm)

            def one_runner(ws: str) -> None:
                _new_payload(ctx, args.payload_mb)
                result = _lian(registry, key, ctx, ws, "linux/amd64,linux/arm64")
                assert result.get("strategy") != "per-platform", result
                samples["one_runner"].append(result["wall_s"])

            def arm64_on_amd64(ws: str) -> None:
                _new_payload(ctx, args.payload_mb)
                result = _lian(registry, key, ctx, ws, "linux/arm64")
                assert result.get("strategy") != "per-platform", result
                samples["arm64_on_amd64"].append(result["wall_s"])

            variants = [parallel, sequential, one_runner, arm64_on_amd64]
            for run in range(runs):
                order = variants if run % 2 == 0 else list(reversed(variants))
                for variant in order:
                    note(f"run {run + 1}/{runs}: {variant.__name__}")
                    variant(f"bench-{TOKEN}-{run}-{variant.__name__.replace('_', '')}")
    listed = subprocess.run(
        [DOCKER, "ps", "-a", "--filter", "label=lian.managed=true", "--format",
         '{{.Label "lian.workspace"}}'],
        capture_output=True,
        text=True,
    ).stdout.split()  # fmt: skip
    leaked = [ws for ws in listed if ws.startswith(f"bench-{TOKEN}-")]
    summaries = {name: Summary.of(values) for name, values in samples.items()}
    slower_single = max(summaries["amd64"].median, summaries["arm64"].median)
    parallel_median = summaries["parallel"].median
    write_result(
        "multiarch",
        {
            "quick": args.quick,
            "payload_mb": args.payload_mb,
            "seconds": {name: s.rounded() for name, s in summaries.items()},
            "ratios": {
                "parallel_vs_slower_single": ratio(parallel_median, slower_single),
                "parallel_vs_sequential": ratio(parallel_median, summaries["sequential"].median),
                "parallel_vs_one_runner": ratio(parallel_median, summaries["one_runner"].median),
            },
            "target_parallel_vs_slower_single": TARGET_RATIO,
            "runners_left_on_engine": len(leaked),
        },
    )


if __name__ == "__main__":
    main()
