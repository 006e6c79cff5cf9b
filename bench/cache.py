"""The registry layer cache on fresh runners: cold build vs warm rebuild.

Dockerfile: a busybox base (pushed first), ``ARG`` (buildah 1.28 never hit the remote
cache after one), an expensive RUN that writes a 30 MB layer and hashes it for a few
seconds, then a COPY of a file that changes before every build. Each pair uses a new
workspace (an empty cache namespace): the cold build fills ``ci/<ws>/``, then the
stamp changes and the warm rebuild runs on a new runner (no local storage), so every
cached layer it uses comes from the registry. Pairs repeat; medians are reported.

Then, in one more workspace: a CI build, a session build after it (reads ``ci/``),
and a second session build with a step CI never built (reads its own ``dev/``).

Cache-pull cost: for every step served from the registry, the time from its
``STEP n/m`` line to buildah's ``--> Using cache`` line (pulling the cached layer and
committing it), from the timestamps lian puts on each build-output line.

    python bench/cache.py [--runs N] [--runner-image IMAGE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import VENV_BIN, local_registry, note, ratio, write_client_key, write_result

BUSYBOX = Path("/bin/busybox")
TARGET_RATIO = 0.25
TOKEN = uuid.uuid4().hex[:6]
DOCKERFILE = """FROM {base}
ARG ROUNDS=40
RUN dd if=/dev/urandom of=/blob bs=1M count=30 2>/dev/null \\
 && i=0 && while [ $i -lt $ROUNDS ]; do sha256sum /blob >/dev/null; i=$((i+1)); done
COPY stamp.txt /stamp.txt
"""
_LINE = re.compile(r"^\[lian\s+([\d.]+)s\]\s+\|\s?(.*)$")


def lian_build(env: dict[str, Any], workspace: str, ctx: Path, tag: str, *extra: str) -> dict:
    image = tag if "/" in tag else f"{env['registry']}/bench/{workspace}:{tag}"
    argv = [
        str(VENV_BIN / "lian"), "build",
        "--workspace", workspace, "--context", str(ctx), "--image", image,
        "--ssh-key", str(env["key"]), "--provider", "docker-local",
        "--runner-image", env["runner_image"], "--registry", "zot",
        "--registry-opt", f"url=http://{env['registry']}", "--builder", "buildah",
        *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    envelope = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if done.returncode != 0 or envelope.get("status") != "ok":
        raise SystemExit(f"lian build failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = envelope["result"]
    return {
        "wall_s": wall,
        "phases": {k: float(v) for k, v in result["phases"].items()},
        "cached_steps": result["cache"]["cached_steps"],
        "total_steps": result["cache"]["total_steps"],
        "served_by": result["cache"].get("served_by"),
        "cache_pull_s": cache_pull_seconds(done.stderr),
    }


def cache_pull_seconds(stderr: str) -> float:
    """Sum over cached steps of (``--> Using cache`` time - ``STEP`` time), for steps
    whose layer was pulled from the registry."""
    total, step_at, pulled = 0.0, None, False
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        at, text = float(match.group(1)), match.group(2)
        if re.match(r"^STEP \d+/\d+: ", text):
            step_at, pulled = at, False
        elif text.startswith("--> Cache pulled from remote"):
            pulled = True
        elif text.startswith("--> Using cache") and pulled and step_at is not None:
            total += at - step_at
            step_at = None
    return round(total, 3)


def context(tmp: Path, base: str, name: str, extra: str = "") -> Path:
    ctx = tmp / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base) + extra)
    return ctx


def stamp(ctx: Path) -> None:
    (ctx / "stamp.txt").write_text(f"{uuid.uuid4().hex}\n")


def median_phases(samples: list[dict]) -> dict[str, float]:
    names = sorted({name for s in samples for name in s["phases"]})
    return {
        name: round(statistics.median(s["phases"].get(name, 0.0) for s in samples), 3)
        for name in names
    }


def summary(samples: list[dict]) -> dict[str, Any]:
    return {
        "runs": len(samples),
        "wall_median_s": round(statistics.median(s["wall_s"] for s in samples), 3),
        "wall_s": [round(s["wall_s"], 3) for s in samples],
        "build_phase_median_s": round(statistics.median(s["phases"]["build"] for s in samples), 3),
        "phases_median_s": median_phases(samples),
        "cache_pull_median_s": round(statistics.median(s["cache_pull_s"] for s in samples), 3),
        "cached_steps": [s["cached_steps"] for s in samples],
        "total_steps": samples[0]["total_steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold/warm pairs (default 5)")
    parser.add_argument("--runner-image", default="lian-runner:debian")
    parser.add_argument("--quick", action="store_true", help="2 pairs, results not saved")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="lian-bench-cache-") as tmp_name:
        tmp = Path(tmp_name)
        with local_registry(tmp / "registry") as registry:
            env = {
                "registry": registry,
                "key": write_client_key(tmp),
                "runner_image": args.runner_image,
            }
            base_ctx = tmp / "base"
            base_ctx.mkdir()
            (base_ctx / "busybox").write_bytes(BUSYBOX.read_bytes())
            (base_ctx / "busybox").chmod(0o755)
            (base_ctx / "Dockerfile").write_text(
                "FROM scratch\nCOPY busybox /bin/busybox\n"
                'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            )
            base = f"{registry}/base/busybox:1"
            lian_build(env, f"bench-{TOKEN}-base", base_ctx, base)
            env["base"] = base

            cold, warm = [], []
            for index in range(runs):
                workspace = f"bench-{TOKEN}-{index}"
                ctx = context(tmp, base, workspace)
                stamp(ctx)
                cold.append(lian_build(env, workspace, ctx, "cold"))
                stamp(ctx)
                warm.append(lian_build(env, workspace, ctx, "warm"))
                note(
                    f"pair {index + 1}/{runs}: cold {cold[-1]['wall_s']:.1f}s, "
                    f"warm {warm[-1]['wall_s']:.1f}s ({warm[-1]['cached_steps']} cached)"
                )

            workspace = f"bench-{TOKEN}-session"
            ctx = context(tmp, base, workspace)
            stamp(ctx)
            ci = lian_build(env, workspace, ctx, "ci")
            session = ("--mode", "session", "--actor", "bench")
            dev_ctx = context(
                tmp, base, workspace + "-dev", "RUN sleep 3 && echo dev > /dev-only\n"
            )
            (dev_ctx / "stamp.txt").write_text((ctx / "stamp.txt").read_text())
            first = lian_build(env, workspace, dev_ctx, "dev1", *session)
            second = lian_build(env, workspace, dev_ctx, "dev2", *session)

    cold_s, warm_s = summary(cold), summary(warm)
    payload = {
        "quick": args.quick,
        "runner_image": args.runner_image,
        "dockerfile": DOCKERFILE.format(base="<busybox base>"),
        "cold": cold_s,
        "warm": warm_s,
        "warm_over_cold_wall": ratio(warm_s["wall_median_s"], cold_s["wall_median_s"]),
        "warm_over_cold_build_phase": ratio(
            warm_s["build_phase_median_s"], cold_s["build_phase_median_s"]
        ),
        "target_warm_over_cold": TARGET_RATIO,
        "session": {
            "ci_build": {k: ci[k] for k in ("wall_s", "cached_steps", "total_steps")},
            "session_after_ci": {
                k: first[k] for k in ("wall_s", "cached_steps", "total_steps", "served_by")
            },
            "second_session": {
                k: second[k] for k in ("wall_s", "cached_steps", "total_steps", "served_by")
            },
        },
    }
    write_result("cache", payload)


if __name__ == "__main__":
    main()
