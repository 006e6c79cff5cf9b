"""``lian orchestrator serve`` as users run it (a child process), and the build flags
``--orchestrator-url`` / ``ORCHESTRATOR_URL`` that select the orchestrator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from orchestrator_support import client_provider, metrics

from fixtures.cli import SCRUBBED_PREFIXES, lian_envelope
from fixtures.keys import write_private_key
from fixtures.ports import free_port
from lian_build.errors import EXIT_INVALID_INPUT

TOKEN = "serve-test-token-0123456789abcdef"
# The backend these tests serve: the one compute provider sure to be installed when this
# plugin runs alone is the orchestrator itself (an orchestrator may front another one).
# Nothing is spawned here; settings and tiers need no network.
BACKEND = ["--provider", "orchestrator", "--compute-opt", "url=http://127.0.0.1:9"]


def _env(state: Path, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    return {**clean, "LIAN_STATE_DIR": str(state), **extra}


class Served:
    def __init__(self, args: list[str], state: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "lian_build.cli", "orchestrator", "serve"),
                *("--listen", f"127.0.0.1:{self.port}", "--reap-interval", "0", *args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(state, **env),
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.proc.communicate()}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the server did not become healthy")

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        stdout, stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode, stdout, stderr


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, args: list[str], state: Path = tmp_path / "server", **env: str):
            state.mkdir(exist_ok=True)
            super().__init__(args, state, **env)
            started.append(self)

    yield Tracked
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(10)


def _serve_once(args: list[str], state: Path, **env: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lian_build.cli", "orchestrator", "serve", *args],
        capture_output=True,
        text=True,
        env=_env(state, **env),
        timeout=60,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        ([], {}, "token"),
        (["--token", "ci=env:SHORT"], {"SHORT": "short"}, "token"),
        (["--token", "CI Machine=env:T"], {"T": TOKEN}, "token"),
        (["--no-auth", "--listen", "0.0.0.0:9"], {}, "no_auth"),
        (["--listen", "nowhere"], {}, "listen"),
        (
            ["--token", "ci=env:T", *BACKEND, "--compute-opt", "colour=blue"],
            {"T": TOKEN},
            "compute.colour",
        ),
        (["--token", "ci=env:T", "--provider", "no-such"], {"T": TOKEN}, "compute.provider"),
    ],
    ids=[
        "no token",
        "short token",
        "bad caller",
        "no-auth off loopback",
        "listen",
        "setting",
        "provider",
    ],
)
def test_serve_refuses_bad_configuration(tmp_path, args, env, field):
    code, envelope, stderr = _serve_once(args, tmp_path, **env)
    assert code in (EXIT_INVALID_INPUT, 3)
    assert envelope["command"] == "orchestrator serve"
    assert envelope["status"] == "error"
    assert envelope["error"]["field"] == field
    assert TOKEN not in stderr + json.dumps(envelope)


def test_serve_missing_token_reference_is_a_secret_error(tmp_path):
    code, envelope, _ = _serve_once(["--token", "ci=env:LIAN_TEST_UNSET_TOKEN"], tmp_path)
    assert code == EXIT_INVALID_INPUT
    assert envelope["error"]["code"] == "SECRET_UNRESOLVED"


def test_serve_answers_authenticates_and_stops_cleanly(serve):
    served = serve([*BACKEND, "--name", "cli-test"], LIAN_ORCHESTRATOR_TOKEN=TOKEN)
    served.wait_healthy()
    assert httpx.get(served.url + "/v1/tiers").status_code == 401
    answer = httpx.get(served.url + "/v1/tiers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.json()["tiers"][0]["name"] == "2c-4g"
    code, stdout, stderr = served.stop()
    assert code == 0, stderr
    envelope = json.loads(stdout)
    assert envelope["status"] == "ok"
    assert envelope["result"]["provider"] == "orchestrator"
    assert TOKEN not in stdout + stderr
    assert "1 caller token(s)" in stderr


def test_serve_on_a_taken_port_is_an_error_envelope(serve, tmp_path):
    first = serve(BACKEND, LIAN_ORCHESTRATOR_TOKEN=TOKEN)
    first.wait_healthy()
    code, envelope, _ = _serve_once(
        [*BACKEND, "--listen", f"127.0.0.1:{first.port}"], tmp_path, LIAN_ORCHESTRATOR_TOKEN=TOKEN
    )
    assert code == EXIT_INVALID_INPUT
    assert envelope["error"]["field"] == "listen"


# --------------------------------------------------------------------------- the build flags


def _plan_args(context: Path, key: Path, *extra: str) -> list[str]:
    return [
        "plan", "--workspace", "cli-web", "--context", str(context),
        "--image", "127.0.0.1:5999/web:1", "--ssh-key", str(key), *extra,
    ]  # fmt: skip


@pytest.fixture
def context(tmp_path: Path) -> Path:
    path = tmp_path / "app"  # no .build-spec.ncl: sizing comes from history
    path.mkdir()
    (path / "Dockerfile").write_text("FROM scratch\n")
    return path


def test_plan_sizes_from_the_orchestrators_history(serve, tmp_path, context, monkeypatch):
    served = serve([*BACKEND, "--token", "ci-a=env:CI_A"], CI_A=TOKEN)
    served.wait_healthy()
    monkeypatch.setenv("LIAN_STATE_DIR", str(tmp_path / "seeding"))
    feeder = client_provider(served.url, TOKEN)
    for index in range(3):
        feeder.record(metrics(workspace="cli-web", session=f"f{index}", peak_gib=6.5))
    key = write_private_key(tmp_path / "id_ed25519")

    run = lian_envelope(
        _plan_args(context, key),
        tmp_path / "ci-machine",
        env={"ORCHESTRATOR_URL": served.url, "LIAN_ORCHESTRATOR_TOKEN": TOKEN},
    )
    assert run.exit_code == 0, run.stderr
    result = run.envelope["result"]
    assert result["compute"]["provider"] == "orchestrator"
    assert result["compute"]["url"] == served.url
    assert result["compute"]["token_ref"] == "env:LIAN_ORCHESTRATOR_TOKEN"
    assert result["size"]["source"] == "orchestrator"
    assert result["size"]["memory_gb"] == 8  # 6.5 GiB x 1.2 = 7.8 -> 8
    assert result["attempts"] == ["4c-8g", "8c-16g"]  # the client ladder, 8 GB first
    assert TOKEN not in run.stdout + run.stderr


def test_orchestrator_url_conflicts_with_another_provider(tmp_path, context):
    key = write_private_key(tmp_path / "id_ed25519")
    run = lian_envelope(
        _plan_args(
            context, key, "--provider", "docker-local", "--orchestrator-url", "http://127.0.0.1:1"
        ),
        tmp_path,
    )
    assert run.exit_code == EXIT_INVALID_INPUT
    assert run.error["field"] == "compute.provider"
    assert "--orchestrator-url" in run.error["message"]


def test_orchestrator_url_must_be_http(tmp_path, context):
    key = write_private_key(tmp_path / "id_ed25519")
    run = lian_envelope(
        _plan_args(context, key, "--orchestrator-url", "ftp://127.0.0.1:1"), tmp_path
    )
    assert run.exit_code == EXIT_INVALID_INPUT
    assert run.error["field"] == "compute.url"


def test_provider_orchestrator_defaults_to_the_seeds_url(tmp_path):
    key = write_private_key(tmp_path / "id_ed25519")
    # examples/app has a .build-spec.ncl: sizing never asks the (absent) orchestrator.
    app = Path(__file__).resolve().parents[3] / "examples" / "app"
    run = lian_envelope(_plan_args(app, key, "--provider", "orchestrator"), tmp_path)
    assert run.envelope["result"]["compute"]["url"] == "http://localhost:9011"
    assert run.envelope["result"]["compute"]["token_ref"] is None
