"""A fleet of CI machines for real: shared build history on a real ``nats-server -js``,
concurrent builds on one machine, and ``vault:`` secrets in a real build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from e2e.helpers import E2E, lian

from fixtures.vault import FakeVault, fake_vault_server


def _app(tmp: Path, base: str, name: str, body: str = "") -> Path:
    ctx = tmp / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo built > /built\n{body}")
    return ctx


def _concurrent_builds(e2e: E2E, flags: list[list[str]], env: dict[str, str]) -> list[Any]:
    """Start every build at once, as several CI jobs on one machine would."""
    import os

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lian_build.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for args in flags
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def _plan_size(e2e: E2E, workspace: str, ctx: Path, env: dict[str, str]) -> dict[str, Any]:
    image = f"{e2e.registry.host}/apps/{workspace}:plan"
    flags = e2e.flags(workspace, ctx, image)
    flags[0] = "plan"
    run = lian(flags, env=env)
    assert run.returncode == 0, run.stderr
    return dict(run.envelope["result"]["size"])


def test_machine_a_builds_size_machine_b_plan_through_jetstream(
    e2e: E2E, jetstream: Any, tmp_path: Path, workspace: str
) -> None:
    ctx = _app(tmp_path, e2e.base_image, "app")
    machine_a = {"LIAN_STATE_DIR": str(tmp_path / "machine-a"), "LIAN_HISTORY_URL": jetstream.url}
    machine_b = {"LIAN_STATE_DIR": str(tmp_path / "machine-b"), "LIAN_HISTORY_URL": jetstream.url}
    assert _plan_size(e2e, workspace, ctx, machine_b)["source"] == "language"
    flags = [
        e2e.flags(workspace, ctx, f"{e2e.registry.host}/apps/{workspace}:{i}") for i in range(3)
    ]
    builds = _concurrent_builds(e2e, flags, machine_a)
    sessions = sorted(b["result"]["session_id"] for b in builds)
    size = _plan_size(e2e, workspace, ctx, machine_b)
    assert size["source"] == "history", size
    assert "P95 of 3 successful builds" in size["reason"]
    history = lian(["history", "--json", "--workspace", workspace], env=machine_b)
    assert history.returncode == 0, history.stderr
    [ws] = history.envelope["result"]["workspaces"]
    assert sorted(ws["used"]) == sessions
    assert not (tmp_path / "machine-b" / "history.sqlite3").exists()
    assert not e2e.runners(workspace=workspace)


def test_history_down_during_a_build_is_sent_by_the_next_build(
    e2e: E2E, jetstream: Any, tmp_path: Path, workspace: str
) -> None:
    ctx = _app(tmp_path, e2e.base_image, "app")
    machine = {"LIAN_STATE_DIR": str(tmp_path / "ci"), "LIAN_HISTORY_URL": jetstream.url}
    jetstream.stop()
    first = lian(e2e.flags(workspace, ctx, f"{e2e.registry.host}/apps/{workspace}:1"), env=machine)
    assert first.returncode == 0, first.stderr  # the store being down never fails a build
    assert "history store" in first.stderr and "kept in" in first.stderr
    spool = tmp_path / "ci" / "history-spool.jsonl"
    assert len(spool.read_text().splitlines()) == 1
    jetstream.start()
    second = lian(e2e.flags(workspace, ctx, f"{e2e.registry.host}/apps/{workspace}:2"), env=machine)
    assert second.returncode == 0, second.stderr
    assert spool.read_text() == ""
    other = {"LIAN_STATE_DIR": str(tmp_path / "other"), "LIAN_HISTORY_URL": jetstream.url}
    history = lian(["history", "--json", "--workspace", workspace], env=other)
    [ws] = history.envelope["result"]["workspaces"]
    assert [b["session_id"] for b in ws["builds"]] == [
        first.envelope["result"]["session_id"],
        second.envelope["result"]["session_id"],
    ]


def test_concurrent_builds_on_one_machine_share_the_sqlite_history(
    e2e: E2E, tmp_path: Path, workspace: str
) -> None:
    ctx = _app(tmp_path, e2e.base_image, "app")
    machine = {"LIAN_STATE_DIR": str(tmp_path / "ci")}
    flags = [
        e2e.flags(workspace, ctx, f"{e2e.registry.host}/apps/{workspace}:{i}") for i in range(3)
    ]
    builds = _concurrent_builds(e2e, flags, machine)
    history = lian(["history", "--json", "--workspace", workspace], env=machine)
    [ws] = history.envelope["result"]["workspaces"]
    assert sorted(b["session_id"] for b in ws["builds"]) == sorted(
        b["result"]["session_id"] for b in builds
    )
    assert history.envelope["result"]["store"]["name"] == "sqlite"
    assert _plan_size(e2e, workspace, ctx, machine)["source"] == "history"


VAULT_MARKER = "vault-npm-marker-3d9e71c4"


def test_vault_secret_in_a_build_reaches_the_build_and_nothing_else(
    e2e: E2E, nats_server: Any, nats_collector: Any, tmp_path: Path, workspace: str
) -> None:
    ctx = _app(
        tmp_path,
        e2e.base_image,
        "app",
        "RUN --mount=type=secret,id=npm wc -c < /run/secrets/npm > /secret-length\n",
    )
    collector = nats_collector(nats_server.url, "lian.>")
    for vault in fake_vault_server():
        vault.put("ci/npm", {"token": VAULT_MARKER})
        role_id, secret_id = vault.approle("secret/ci/*")
        state = tmp_path / "state"
        env = {
            "LIAN_STATE_DIR": str(state),
            "VAULT_ADDR": vault.url,
            "VAULT_ROLE_ID": role_id,
            "VAULT_SECRET_ID": secret_id,
        }
        image = f"{e2e.registry.host}/apps/{workspace}:vault"
        run = lian(
            [
                "-vv",
                *e2e.flags(workspace, ctx, image, "--secret", "npm=vault:ci/npm#token"),
                "--nats-url",
                nats_server.url,
            ],
            env=env,
        )
        assert run.returncode == 0, run.stderr
        events = collector.wait_for(3)
        assert any(subject.endswith("build.completed") for subject, _ in events), events
        token = next(iter(vault.approles.values()))
        for value in (VAULT_MARKER, secret_id, token):
            assert value not in run.stdout + run.stderr
            assert all(value.encode() not in data for _subject, data in events)
            assert not [
                p for p in state.rglob("*") if p.is_file() and value.encode() in p.read_bytes()
            ]
        _missing_vault_path_is_one_error(e2e, vault, env, ctx, workspace)
    assert not e2e.runners(workspace=workspace)


def _missing_vault_path_is_one_error(
    e2e: E2E, vault: FakeVault, env: dict[str, str], ctx: Path, workspace: str
) -> None:
    image = f"{e2e.registry.host}/apps/{workspace}:missing"
    run = lian(e2e.flags(workspace, ctx, image, "--secret", "npm=vault:ci/gone#token"), env=env)
    assert run.returncode == 2, run.stderr
    assert run.envelope["status"] == "error"
    assert run.envelope["error"]["code"] == "VAULT_NOT_FOUND"
    assert "no secret at secret/ci/gone" in run.envelope["error"]["message"]
    assert not e2e.runners(workspace=workspace)
