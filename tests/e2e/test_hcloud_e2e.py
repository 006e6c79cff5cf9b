"""`lian build --provider hcloud` for real, through the Hetzner Cloud API imitation whose
servers are runner containers: the real CLI, the real hcloud library, sshd, rsync and
buildah in the runner, the real registry. After each test the imitation holds no
server, SSH key object or snapshot."""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E, BackgroundBuild, LianRun, lian

from fixtures.machines import MachinePool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "hcloud"))
from fake_hcloud import FakeHcloud

pytestmark = pytest.mark.e2e
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def cloud(
    docker_client: Any, runner_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHcloud]:
    pool = MachinePool(docker_client)
    fake = FakeHcloud(machines=pool).start()
    monkeypatch.setenv("HCLOUD_TOKEN", fake.token)  # the lian child processes inherit it
    try:
        yield fake
        fake.settle()
        left = fake.inventory()
        leaked = [c.name for c in pool.running()]
        assert left == {"servers": [], "ssh_keys": [], "images": []}, left
        assert not leaked, leaked
    finally:
        fake.stop()
        pool.cleanup()


@pytest.fixture(scope="module")
def e2e(
    oci_registry: Any, runner_image: str, ssh_key: Path, docker_client: Any, tmp_path_factory: Any
) -> Iterator[E2E]:
    """A busybox base image built through hcloud itself, so app builds can RUN steps.

    Not the shared ``e2e`` fixture: that one builds on docker-local and sweeps every
    lian runner container on the engine afterwards, other test runs' included."""
    from e2e.conftest import BUSYBOX

    from fixtures.require import require

    require(BUSYBOX.exists(), "/bin/busybox (Debian package busybox-static)")
    ctx = tmp_path_factory.mktemp("hcloud-base")
    (ctx / "busybox").write_bytes(BUSYBOX.read_bytes())
    (ctx / "busybox").chmod(0o755)
    (ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    base = f"{oci_registry.host}/base/hcloud-busybox:1"
    env = E2E(oci_registry, runner_image, ssh_key, base, docker_client)
    pool = MachinePool(docker_client)
    fake = FakeHcloud(machines=pool).start()
    try:
        run = lian(_flags(env, fake, "base", ctx, base), env={"HCLOUD_TOKEN": fake.token})
        assert run.returncode == 0, run.stderr
        fake.settle()
        assert fake.inventory()["servers"] == []
    finally:
        fake.stop()
        pool.cleanup()
    yield env


def _opts(cloud: FakeHcloud) -> list[str]:
    opts = ["--compute-opt", f"api_endpoint={cloud.url}", "--compute-opt", "poll_interval=1"]
    if cloud.machines is not None and cloud.machines.port != 22:
        opts += ["--compute-opt", f"ssh_port={cloud.machines.port}"]
    return opts


def _flags(e2e: E2E, cloud: FakeHcloud, workspace: str, ctx: Path, image: str) -> list[str]:
    flags = e2e.flags(workspace, ctx, image)
    at = flags.index("docker-local")
    # hcloud instead of docker-local, and no docker runner image.
    flags[at] = "hcloud"
    image_at = flags.index("--runner-image")
    del flags[image_at : image_at + 2]
    return [*flags, *_opts(cloud)]


def _app(tmp: Path, base: str) -> Path:
    ctx = tmp / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nCOPY hello.txt /hello.txt\nRUN wc -c /hello.txt > /size\n"
    )
    (ctx / "hello.txt").write_text("hello from a hetzner runner\n")
    return ctx


def _digest(e2e: E2E, repo: str, ref: str) -> str:
    r = httpx.get(f"{e2e.registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST})
    r.raise_for_status()
    return "sha256:" + hashlib.sha256(r.content).hexdigest()


def _ok(run: LianRun) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    assert run.envelope["status"] == "ok", run.envelope
    result: dict[str, Any] = run.envelope["result"]
    return result


def test_build_through_hcloud_pushes_the_verified_digest(
    e2e: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    image = f"{e2e.registry.host}/apps/{workspace}:hcloud"
    run = lian(_flags(e2e, cloud, workspace, _app(tmp_path, e2e.base_image), image))
    result = _ok(run)

    assert result["provider"] == "hcloud"
    assert result["digest"] == _digest(e2e, f"apps/{workspace}", "hcloud")
    assert result["tier"] == "cx23"
    assert result["runner_image"] == "ubuntu-24.04"  # no lian snapshot yet
    assert result["runner_seconds"] > 0
    cost = result["cost"]
    assert cost["currency"] == "EUR" and cost["price_source"] == "api"
    assert cost["billed_hours"] == 1 and cost["amount_net"] == cost["hourly_net"] > 0
    # The session's key went to the API as a temporary object, passed on create.
    created = cloud.requests_to("POST", "/servers")
    assert len(created) == 1 and created[0].body["ssh_keys"]
    assert len(cloud.requests_to("DELETE", r"/ssh_keys/\d+")) == 1
    assert cloud.token not in run.stderr + run.stdout


def test_runner_image_snapshot_is_made_and_then_booted(
    e2e: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    made = lian(["runner-image", "build", "--provider", "hcloud", *_opts(cloud)])
    assert made.returncode == 0, made.stderr
    snapshot = made.envelope["result"]
    assert snapshot["provider"] == "hcloud" and snapshot["architecture"] == "x86"
    assert cloud.images[snapshot["image_id"]]["labels"]["lian.runner-image"] == "buildah"
    assert cloud.servers == {}  # the one-off server is gone
    checked = lian(["runner-image", "check", "--provider", "hcloud", *_opts(cloud)])
    assert checked.returncode == 0, checked.stderr
    assert checked.envelope["result"]["image_id"] == snapshot["image_id"]

    image = f"{e2e.registry.host}/apps/{workspace}:snap"
    result = _ok(lian(_flags(e2e, cloud, workspace, _app(tmp_path, e2e.base_image), image)))
    assert result["runner_image"].startswith(f"{snapshot['image_id']} ")
    assert result["digest"] == _digest(e2e, f"apps/{workspace}", "snap")
    # Booted from the snapshot: cloud-init was not asked to install packages.
    user_data = cloud.requests_to("POST", "/servers")[-1].body["user_data"]
    assert '"packages"' not in user_data
    cloud.remove_image(snapshot["image_id"])


def test_sigkilled_build_leaves_a_server_that_reap_all_removes(
    e2e: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    ctx = tmp_path / "slow"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {e2e.base_image}\nRUN sleep 120\n")
    image = f"{e2e.registry.host}/apps/{workspace}:killed"
    build = BackgroundBuild.start(_flags(e2e, cloud, workspace, ctx, image))
    build.read_until("build: buildah")
    time.sleep(2)  # inside the RUN step
    build.proc.send_signal(signal.SIGKILL)  # no handler, no finally: the server escapes
    build.proc.communicate(timeout=30)
    assert build.proc.returncode == -signal.SIGKILL
    escaped = list(cloud.servers)
    assert len(escaped) == 1, "".join(build.seen)

    reap = lian(["reap", "--provider", "hcloud", *_opts(cloud), "--workspace", workspace, "--all"])
    assert reap.returncode == 0, reap.stderr
    assert reap.envelope["result"]["destroyed"] == [str(escaped[0])]
    cloud.settle()
    assert cloud.servers == {}
