"""What the orchestrator adds to provisioning: spawn + destroy of a docker-local runner
through `lian orchestrator serve`'s app versus the provider called directly.

Both variants create the same runner (lian-runner:debian, tier 2c-4g, sshd answering)
and destroy it; runs alternate so a load change hits both. A third series measures the
protocol alone (list, record, P95 against the same server) and a fourth 8 concurrent
spawns. The server is the real starlette app under uvicorn on 127.0.0.1, in this
process; every runner carries a per-invocation label and is removed on the way out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import Summary, free_port, note, ratio, wait_for_port, write_result

RUNNER_IMAGE = "lian-runner:debian"
TOKEN = "bench-orchestrator-token-0123456789"


def _request(session: str, label: str) -> Any:
    from lian_build import api
    from lian_build.remote.ssh import generate_host_key

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    return api.SpawnRequest(
        session_id=session,
        workspace="bench-orchestrator",
        tier=api.Tier("2c-4g", 2, 4),
        labels={
            "lian.managed": "true",
            "lian.session": session,
            "lian.workspace": "bench-orchestrator",
            "lian.expires-at": str(int(expires.timestamp())),
            "lian.bench": label,
        },
        authorized_key=generate_host_key().public_openssh,
        host_key=generate_host_key(),
        runner_image=None,
        expires_at=expires,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--runs", type=int, help="spawn+destroy pairs (default 10, quick 2)")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 10)

    import uvicorn

    from lian_docker_local.provider import DockerLocalProvider, DockerLocalSettings
    from lian_orchestrator.history import open_history
    from lian_orchestrator.provider import OrchestratorProvider, OrchestratorSettings
    from lian_orchestrator.server import ServerConfig, make_app

    label = f"orch-{uuid.uuid4().hex[:8]}"
    state = Path(tempfile.mkdtemp(prefix="bench-orchestrator-"))
    os.environ["LIAN_STATE_DIR"] = str(state)

    def direct() -> DockerLocalProvider:
        return DockerLocalProvider(DockerLocalSettings(image=RUNNER_IMAGE), lambda ref: "")

    config = ServerConfig(
        backend=direct,
        history=open_history(None),
        tokens={"bench": TOKEN},
        name=label,
        reap_interval_s=0,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(config), host="127.0.0.1", port=port, log_config=None, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    client = OrchestratorProvider(
        OrchestratorSettings(url=f"http://127.0.0.1:{port}", token_ref="env:BENCH"),
        lambda ref: TOKEN,
    )
    samples: dict[str, list[float]] = {"direct": [], "orchestrator": []}
    calls: dict[str, list[float]] = {"list_runners": [], "record": [], "p95": []}
    concurrent_s = 0.0
    try:
        for run in range(runs):
            for variant, provider in (("direct", direct()), ("orchestrator", client)):
                started = time.perf_counter()
                runner = provider.spawn(_request(f"b{run}{variant[0]}{label[-6:]}", label))
                provider.destroy(runner.id)
                samples[variant].append(time.perf_counter() - started)
            note(
                f"run {run + 1}/{runs}: direct {samples['direct'][-1]:.2f}s, "
                f"orchestrator {samples['orchestrator'][-1]:.2f}s"
            )
        from lian_build import api

        for index in range(50 if args.quick else 200):
            for name, call in (
                ("list_runners", lambda: client.list_runners({"lian.bench": label})),
                (
                    "record",
                    lambda i=index: client.record(
                        api.BuildMetrics(
                            workspace="bench-orchestrator",
                            session_id=f"m{i}",
                            provider="orchestrator",
                            tier="2c-4g",
                            cpu=2,
                            memory_gb=4,
                            peak_memory_bytes=2**30,
                            cpu_seconds=30.0,
                            duration_s=20.0,
                            succeeded=True,
                            oom=False,
                            finished_at=dt.datetime.now(dt.UTC),
                        )
                    ),
                ),
                ("p95", lambda: client.size_for("bench-orchestrator")),
            ):
                started = time.perf_counter()
                call()
                calls[name].append(time.perf_counter() - started)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            made = list(
                pool.map(lambda i: client.spawn(_request(f"c{i}{label[-6:]}", label)), range(8))
            )
        concurrent_s = time.perf_counter() - started
        for runner in made:
            client.destroy(runner.id)
    finally:
        leftovers = direct().list_runners({"lian.bench": label})
        for info in leftovers:
            direct().destroy(info.id)
        server.should_exit = True
        thread.join(15)
    if leftovers:
        raise SystemExit(f"runners were left over: {[i.id for i in leftovers]}")
    direct_s, through_s = Summary.of(samples["direct"]), Summary.of(samples["orchestrator"])
    write_result(
        "orchestrator",
        {
            "quick": args.quick,
            "runs": runs,
            "runner": f"docker-local container from {RUNNER_IMAGE}, tier 2c-4g",
            "spawn_destroy_s": {"direct": direct_s.rounded(), "orchestrator": through_s.rounded()},
            "orchestrator_vs_direct_median": ratio(through_s.median, direct_s.median),
            "added_median_s": round(through_s.median - direct_s.median, 4),
            "protocol_call_ms": {
                name: Summary.of([v * 1000 for v in values]).rounded(2)
                for name, values in calls.items()
            },
            "eight_concurrent_spawns_s": round(concurrent_s, 3),
            "one_spawn_destroy_median_s": round(through_s.median, 3),
        },
    )


if __name__ == "__main__":
    main()
