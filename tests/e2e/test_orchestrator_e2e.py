"""Builds from a "CI machine" through `lian orchestrator serve`.

The CI side is another state directory with no Docker access (DOCKER_HOST points at a
socket that does not exist) and no cloud token: only the orchestrator's URL and token.
The server fronts docker-local (runner image lian-runner:debian); the CI process SSHes
straight to the runner the server made, pushes to the real registry, and the server's
history sizes the next build. Also: the compute conformance suite through the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E

from fixtures.cli import SCRUBBED_PREFIXES
from fixtures.ports import free_port, wait_for_port
from lian_build.testing.conformance import ComputeProviderConformance

TOKEN = "e2e-orchestrator-token-0123456789abcdef"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.pop("DOCKER_HOST", None)
    return {**env, **extra}


def _remove_runners(docker_client: Any, name: str) -> list[str]:
    """Remove this server's runners (tolerating a removal already under way)."""
    import docker

    found = docker_client.containers.list(
        all=True, filters={"label": f"lian.orchestrator={name}"}, ignore_removed=True
    )
    for container in found:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise
    return [c.name for c in found]


class Server:
    """`lian orchestrator serve` in a child process, in front of docker-local."""

    def __init__(self, state: Path, name: str, runner_image: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state.mkdir(parents=True, exist_ok=True)
        self.log = state / "server.log"  # a file: a pipe nobody reads could fill and block
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "lian_build.cli", "orchestrator", "serve"),
                *("--listen", f"127.0.0.1:{self.port}", "--name", name),
                *("--provider", "docker-local", "--compute-opt", f"image={runner_image}"),
                *("--token", "ci-a=env:ORCH_TOKEN", "--reap-interval", "5"),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            env=_clean_env(LIAN_STATE_DIR=str(state), ORCH_TOKEN=TOKEN),
        )
        wait_for_port(self.port, timeout=60)

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        stdout, _ = self.proc.communicate(timeout=60)
        return self.proc.returncode, stdout, self.stderr()

    def stderr(self) -> str:
        return self.log.read_text()


@pytest.fixture
def orchestrator(e2e: E2E, tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "server-state", f"e2e-{uuid.uuid4().hex[:10]}", e2e.runner_image)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()
        leftovers = _remove_runners(e2e.docker, server.name)
        assert not leftovers, f"runners left behind: {leftovers}"


def _context(tmp_path: Path, base_image: str) -> Path:
    context = tmp_path / "app"  # no .build-spec.ncl: the size comes from history
    context.mkdir()
    (context / "hello.txt").write_text("built through the orchestrator\n")
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copied.txt\n"
    )
    return context


def _ci_build(
    e2e: E2E, server: Server, state: Path, workspace: str, context: Path, image: str, *extra: str
) -> Any:
    args = [
        *("build", "--workspace", workspace, "--context", str(context), "--image", image),
        *("--ssh-key", str(e2e.ssh_key), "--builder", "buildah"),
        *("--registry", "zot", "--registry-opt", f"url=http://{e2e.registry.host}"),
        *extra,
    ]
    env = _clean_env(
        LIAN_STATE_DIR=str(state),
        ORCHESTRATOR_URL=server.url,
        LIAN_ORCHESTRATOR_TOKEN=TOKEN,
        # The CI machine has no Docker engine of its own: a dead socket.
        DOCKER_HOST=f"unix://{state}/no-docker-here.sock",
    )
    return _run(args, env)


def _run(args: list[str], env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "lian_build.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_builds_through_the_orchestrator_and_its_history_sizes_the_next(
    e2e: E2E, orchestrator: Server, tmp_path: Path
) -> None:
    workspace = f"orch-e2e-{uuid.uuid4().hex[:8]}"
    context = _context(tmp_path, e2e.base_image)
    image = f"{e2e.registry.host}/orch-e2e/app:1"
    machine_a = tmp_path / "ci-machine-a"

    for number in range(3):
        code, envelope, stderr = _ci_build(e2e, orchestrator, machine_a, workspace, context, image)
        assert code == 0, stderr + "\nserver:\n" + orchestrator.stderr()
        result = envelope["result"]
        assert result["provider"] == "orchestrator"
        assert result["tags"] == [image]
        assert result["digest"].startswith("sha256:")
        if number == 0:
            assert result["size"]["source"] == "language"  # nothing recorded yet
        assert TOKEN not in json.dumps(envelope) + stderr
    # The registry holds what the last build reported.
    manifest = httpx.head(
        f"http://{e2e.registry.host}/v2/orch-e2e/app/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.headers["docker-content-digest"] == result["digest"]

    # Another CI machine, with an empty state directory of its own, plans from the
    # orchestrator's history, and so does its next build.
    machine_b = tmp_path / "ci-machine-b"
    code, envelope, stderr = _ci_build(
        e2e, orchestrator, machine_b, workspace, context, image, "--tag", "2"
    )
    assert code == 0, stderr
    size = envelope["result"]["size"]
    assert size["source"] == "orchestrator", size
    assert size["reason"].startswith(f"orchestrator {orchestrator.url}: P95 of 3 successful")
    assert not (machine_b / "orchestrator-spool.jsonl").exists()

    plan_args = [
        *("plan", "--workspace", workspace, "--context", str(context), "--image", image),
        *("--registry", "zot", "--registry-opt", f"url=http://{e2e.registry.host}"),
    ]
    plan_env = _clean_env(
        LIAN_STATE_DIR=str(tmp_path / "ci-machine-c"),
        ORCHESTRATOR_URL=orchestrator.url,
        LIAN_ORCHESTRATOR_TOKEN=TOKEN,
    )
    code, plan, stderr = _run(plan_args, plan_env)
    assert code == 0, stderr
    assert plan["result"]["size"]["source"] == "orchestrator"
    assert "P95 of 4 successful builds" in plan["result"]["size"]["reason"]

    # Every runner was destroyed through the server; it stops cleanly on SIGTERM.
    assert not e2e.docker.containers.list(
        all=True, filters={"label": f"lian.orchestrator={orchestrator.name}"}
    )
    code, stdout, stderr = orchestrator.stop()
    assert code == 0, stderr
    assert json.loads(stdout)["status"] == "ok"
    assert TOKEN not in stdout + stderr


def test_a_wrong_token_fails_before_any_runner(
    e2e: E2E, orchestrator: Server, tmp_path: Path
) -> None:
    context = _context(tmp_path, e2e.base_image)
    state = tmp_path / "ci"
    args = [
        *("build", "--workspace", "orch-e2e-denied", "--context", str(context)),
        *("--image", f"{e2e.registry.host}/orch-e2e/denied:1", "--ssh-key", str(e2e.ssh_key)),
    ]
    env = _clean_env(
        LIAN_STATE_DIR=str(state),
        ORCHESTRATOR_URL=orchestrator.url,
        LIAN_ORCHESTRATOR_TOKEN="not-the-orchestrator-token",
        DOCKER_HOST=f"unix://{state}/no-docker-here.sock",
    )
    code, envelope, stderr = _run(args, env)
    assert code == 4
    assert envelope["error"]["code"] == "ORCHESTRATOR_UNAUTHORIZED"
    assert "not-the-orchestrator-token" not in json.dumps(envelope) + stderr


# --------------------------------------------------------------------------- conformance


class _ThreadServer:
    """The reference server in this process (uvicorn in a thread) over docker-local."""

    def __init__(self, runner_image: str, state: Path, name: str) -> None:
        import uvicorn

        from lian_docker_local.provider import DockerLocalProvider, DockerLocalSettings
        from lian_orchestrator.history import open_history
        from lian_orchestrator.server import ServerConfig, make_app

        def backend() -> DockerLocalProvider:
            return DockerLocalProvider(DockerLocalSettings(image=runner_image), lambda ref: "")

        config = ServerConfig(
            backend=backend,
            history=open_history(None),
            tokens={"ci-a": TOKEN},
            name=name,
            reap_interval_s=0,
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                make_app(config), host="127.0.0.1", port=port, log_config=None, log_level="warning"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for_port(port)
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class TestOrchestratorConformance(ComputeProviderConformance):
    """The `orchestrator` provider passes the compute suite, SSH included: keys pass
    through the server to docker-local and back."""

    ssh_wait_timeout_s = 60.0

    @pytest.fixture
    def provider(self, e2e: E2E, tmp_path: Path) -> Iterator[Any]:
        from lian_orchestrator.provider import OrchestratorProvider, OrchestratorSettings

        name = f"e2e-conf-{uuid.uuid4().hex[:8]}"
        served = _ThreadServer(e2e.runner_image, tmp_path, name)
        settings = OrchestratorSettings(url=served.url, token_ref="env:ORCH_CONFORMANCE_TOKEN")
        secrets = {"env:ORCH_CONFORMANCE_TOKEN": TOKEN}
        try:
            yield OrchestratorProvider(settings, secrets.__getitem__)
        finally:
            served.stop()
            _remove_runners(e2e.docker, name)

    @pytest.fixture
    def reachable_over_ssh(self) -> bool:
        return True
