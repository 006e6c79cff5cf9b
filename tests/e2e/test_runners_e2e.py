"""`lian runners` shows the runner of a killed build, and `lian reap --all` removes it,
on each provider that runs here (docker-local, and hcloud and proxmox through their
imitations, whose servers and VMs are runner containers).

Every `lian runners` / `lian reap` is scoped with --workspace: other builds share this
Docker engine, and their runners are not ours to list or destroy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from e2e.helpers import E2E, BackgroundBuild, LianRun, lian
from e2e.pve import served_pve

from fixtures.docker import remove_labelled_containers
from fixtures.machines import MachinePool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "hcloud"))
from fake_hcloud import FakeHcloud

pytestmark = pytest.mark.e2e


@attrs.frozen
class Target:
    provider: str
    opts: list[str]  # --compute-opt flags for runners/reap
    env: dict[str, str]
    live: Any  # () -> ids of the workspace's live runners, from the provider's side


@pytest.fixture(params=["docker-local", "hcloud", "proxmox"])
def target(
    request: pytest.FixtureRequest,
    e2e: E2E,
    docker_client: Any,
    tmp_path: Path,
    workspace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    if request.param == "docker-local":
        try:
            yield Target(
                "docker-local",
                [],
                {},
                lambda: {c.id for c in e2e.runners(workspace=workspace)},
            )
        finally:
            remove_labelled_containers(docker_client, {"lian.workspace": workspace})
        return
    if request.param == "hcloud":
        pool = MachinePool(docker_client)
        fake = FakeHcloud(machines=pool).start()
        monkeypatch.setenv("HCLOUD_TOKEN", fake.token)  # the killed build is our child
        opts = ["--compute-opt", f"api_endpoint={fake.url}", "--compute-opt", "poll_interval=1"]
        if pool.port != 22:
            opts += ["--compute-opt", f"ssh_port={pool.port}"]
        try:
            yield Target(
                "hcloud", opts, {"HCLOUD_TOKEN": fake.token}, lambda: set(map(str, fake.servers))
            )
            fake.settle()
            assert fake.inventory()["servers"] == []
        finally:
            fake.stop()
            pool.cleanup()
        return
    cert_dir = tmp_path / "pve"
    cert_dir.mkdir()
    with served_pve(docker_client, e2e.runner_image, cert_dir) as pve:
        for key, value in pve.env.items():  # the killed build is a child of this process
            monkeypatch.setenv(key, value)
        yield Target(
            "proxmox", pve.compute_opts(), pve.env, lambda: set(map(str, pve.fake.leftovers()))
        )


def _lian(target: Target, *args: str) -> LianRun:
    run = lian([*args, "--provider", target.provider, *target.opts], env=target.env)
    assert run.returncode == 0, run.stderr
    return run


def lian_table(target: Target, workspace: str) -> str:
    """``lian runners`` without --json: a table on stdout (not an envelope)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lian_build.cli", "runners", "--workspace", workspace,
         "--provider", target.provider, *target.opts],
        capture_output=True, text=True, timeout=120, env={**os.environ, **target.env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PROVIDER")
    return proc.stdout


def test_runners_lists_a_killed_builds_runner_and_reap_all_removes_it(
    e2e: E2E, target: Target, tmp_path: Path, workspace: str
) -> None:
    ctx = tmp_path / "slow"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {e2e.base_image}\nRUN sleep 120\n")
    flags = e2e.flags(workspace, ctx, f"{e2e.registry.host}/apps/{workspace}:killed")
    flags[flags.index("--provider") + 1] = target.provider
    if target.provider in ("hcloud", "proxmox"):
        i = flags.index("--runner-image")
        del flags[i : i + 2]
    build = BackgroundBuild.start([*flags, *target.opts])
    build.read_until("build: buildah")  # the build step runs on the runner
    time.sleep(2)
    build.proc.send_signal(signal.SIGKILL)  # no handler, no finally: the runner escapes
    build.proc.communicate(timeout=30)
    assert build.proc.returncode == -signal.SIGKILL
    escaped = target.live()
    assert len(escaped) == 1, "".join(build.seen)

    listed = _lian(target, "runners", "--json", "--workspace", workspace).envelope["result"]
    [runner] = listed["runners"]
    assert runner["id"] in escaped
    assert (runner["provider"], runner["workspace"]) == (target.provider, workspace)
    assert runner["session"] and runner["tier"]
    assert runner["expired"] is False and runner["age_s"] >= 0
    assert listed["unavailable"] == []
    # Hetzner publishes prices; the others have none to tell.
    assert (runner.get("hourly_price") is not None) == (target.provider == "hcloud")

    shown = lian_table(target, workspace)
    assert runner["id"][:14] in shown and workspace in shown

    reaped = _lian(target, "reap", "--all", "--workspace", workspace).envelope["result"]
    assert reaped["destroyed"] == [runner["id"]]
    assert not target.live()
    after = _lian(target, "runners", "--json", "--workspace", workspace).envelope["result"]
    assert after["runners"] == []
