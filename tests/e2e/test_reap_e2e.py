"""`lian reap`: runners that escaped cleanup are found by their labels and destroyed.

Every `lian reap` here is scoped with --workspace: other builds may be running on the
same Docker engine and their runners are not ours to destroy.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from e2e.helpers import E2E, BackgroundBuild, LianRun, lian

from fixtures.docker import LabelledContainers, remove_labelled_containers
from lian_build import api
from lian_build.pipeline import runner_labels
from lian_build.plugins import PluginHost
from lian_build.remote.ssh import generate_host_key
from lian_build.secrets import SecretStore

pytestmark = pytest.mark.e2e


def _reap(workspace: str, *extra: str) -> LianRun:
    run = lian(["reap", "--provider", "docker-local", "--workspace", workspace, *extra])
    assert run.returncode == 0, run.stderr
    assert (run.envelope["command"], run.envelope["status"]) == ("reap", "ok")
    return run


@pytest.fixture
def workspace_runners(docker_client: Any, workspace: str) -> Iterator[str]:
    """The test's workspace; whatever runner of it is left is removed at the end."""
    yield workspace
    remove_labelled_containers(docker_client, {"lian.workspace": workspace})


def _spawn(
    compute: api.ComputeProvider,
    workspace: str,
    expires_at: dt.datetime,
    cleanup: LabelledContainers,
) -> api.Runner:
    session_id = "reap" + os.urandom(4).hex()
    plan = cast(
        Any, SimpleNamespace(session_id=session_id, intent=SimpleNamespace(workspace=workspace))
    )
    return compute.spawn(
        api.SpawnRequest(
            session_id=session_id,
            workspace=workspace,
            tier=api.Tier("1c-1g", 1, 1),
            labels={**runner_labels(plan, expires_at), **cleanup.labels},
            authorized_key=generate_host_key().public_openssh,
            host_key=generate_host_key(),
            runner_image=None,
            expires_at=expires_at,
        )
    )


def test_reap_destroys_expired_runners_and_all_with_all(
    runner_image: str,
    docker_client: Any,
    reap_test_containers: LabelledContainers,
    workspace_runners: str,
) -> None:
    workspace = workspace_runners
    store = SecretStore({})
    compute = PluginHost.load().compute_provider("docker-local", {"image": runner_image}, store)
    now = dt.datetime.now(dt.UTC)
    fresh = _spawn(compute, workspace, now + dt.timedelta(hours=1), reap_test_containers)
    expired = _spawn(compute, workspace, now - dt.timedelta(minutes=5), reap_test_containers)

    first = _reap(workspace).envelope["result"]
    assert first["found"] == 2
    assert first["destroyed"] == [expired.id]
    assert first["kept"] == [fresh.id]
    assert first["failed"] == []
    left = {
        c.id
        for c in docker_client.containers.list(
            all=True, filters={"label": f"lian.workspace={workspace}"}
        )
    }
    assert left == {fresh.id}

    second = _reap(workspace, "--all").envelope["result"]
    assert (second["found"], second["destroyed"], second["kept"]) == (1, [fresh.id], [])
    assert not docker_client.containers.list(
        all=True, filters={"label": f"lian.workspace={workspace}"}
    )


def test_reap_finds_the_runner_of_a_killed_build(
    e2e: E2E, tmp_path: Path, workspace_runners: str
) -> None:
    workspace = workspace_runners
    ctx = tmp_path / "slow"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {e2e.base_image}\nRUN sleep 120\n")
    image = f"{e2e.registry.host}/apps/{workspace}:killed"
    build = BackgroundBuild.start(e2e.flags(workspace, ctx, image))
    build.read_until("build: buildah")  # the build step runs on the runner
    time.sleep(2)  # inside the RUN step
    build.proc.send_signal(signal.SIGKILL)  # no handler, no finally: the runner escapes
    build.proc.communicate(timeout=30)
    assert build.proc.returncode == -signal.SIGKILL
    escaped = [c.id for c in e2e.runners(workspace=workspace)]
    assert len(escaped) == 1, "".join(build.seen)

    # Not expired yet, but its owner labels name a lian process of this host that is
    # dead: a plain reap (no --all) destroys it at once.
    reaped = _reap(workspace).envelope["result"]
    assert (reaped["destroyed"], reaped["kept"]) == (escaped, [])
    assert not e2e.runners(workspace=workspace)
