"""Two-platform builds through the Hetzner Cloud API imitation: one x86 (cx) and one arm
(cax) server in parallel, each a real runner container (the arm one the arm64 runner
image under QEMU emulation), each pushing its manifest; lian assembles the index. After
each test the imitation holds no server, SSH key object or snapshot.

Needs what the docker-local two-platform tests need (QEMU's aarch64 binfmt_misc handler,
the arm64 runner image, an arm64 static busybox): CI sets these up; a machine that
refuses emulation fails here loudly under CI=true.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.helpers import E2E, lian
from e2e.test_multiarch_e2e import (
    FAIL_ON_ARM64,
    PLATFORMS,
    RECORD_MACHINE,
    _context,
    _file_in_layer,
    _get,
    require_emulation,
)

from fixtures.machines import MachinePool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "hcloud"))
from fake_hcloud import ARM64_RUNNER_IMAGE, RUNNER_IMAGE, FakeHcloud

pytestmark = pytest.mark.e2e
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def env(oci_registry: Any, runner_image: str, ssh_key: Path, docker_client: Any) -> E2E:
    # No base image: the contexts start FROM scratch.
    return E2E(oci_registry, runner_image, ssh_key, "", docker_client)


@pytest.fixture
def cloud(
    arm64_ready: str, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHcloud]:
    pool = MachinePool(docker_client)
    fake = FakeHcloud(machines=pool, arm_runner_image=arm64_ready).start()
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
def arm64_ready(docker_client: Any) -> str:
    """The same checks as the docker-local two-platform tests (fails loudly in CI)."""
    from fixtures.require import require

    require_emulation()
    require(
        bool(docker_client.images.list(name=ARM64_RUNNER_IMAGE)),
        f"the arm64 runner image {ARM64_RUNNER_IMAGE} (lian runner-image build --arch arm64)",
    )
    return ARM64_RUNNER_IMAGE


def _args(
    command: str, env: E2E, cloud: FakeHcloud, workspace: str, ctx: Path, image: str
) -> list[str]:
    flags = env.flags(workspace, ctx, image, "--platforms", PLATFORMS)
    flags[0] = command
    flags[flags.index("docker-local")] = "hcloud"
    at = flags.index("--runner-image")
    del flags[at : at + 2]
    flags += ["--compute-opt", f"api_endpoint={cloud.url}", "--compute-opt", "poll_interval=1"]
    if cloud.machines is not None and cloud.machines.port != 22:
        flags += ["--compute-opt", f"ssh_port={cloud.machines.port}"]
    return flags


def test_plan_gives_each_platform_a_native_ladder(
    env: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    image = f"{env.registry.host}/multi/{workspace}:1"
    plan = lian(_args("plan", env, cloud, workspace, _context(tmp_path), image))
    assert plan.returncode == 0, plan.stderr
    section = plan.envelope["result"]["multiplatform"]
    assert section["strategy"] == "per-platform"
    by_arch = {p["architecture"]: p for p in section["platforms"]}
    assert {a: p["mode"] for a, p in by_arch.items()} == {"amd64": "native", "arm64": "native"}
    assert [t["name"] for t in by_arch["amd64"]["ladder"]] == ["cx23", "cx33", "cx43", "cx53"]
    assert [t["name"] for t in by_arch["arm64"]["ladder"]] == ["cax11", "cax21", "cax31", "cax41"]
    for arch, first in (("amd64", "cx23"), ("arm64", "cax11")):
        cost = by_arch[arch]["estimated_cost"]
        assert cost["currency"] == "EUR" and cost["amount_net"] > 0
        assert by_arch[arch]["attempts"][0] == first
    assert cloud.requests == []  # planning never calls the API


def test_two_platforms_on_a_cx_and_a_cax_server_push_one_index(
    env: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    image = f"{env.registry.host}/multi/{workspace}:1"
    run = lian(_args("build", env, cloud, workspace, _context(tmp_path), image))
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    assert result["provider"] == "hcloud" and result["strategy"] == "per-platform"

    # One server per architecture, each a machine of its architecture's runner image.
    assert sorted(cloud.booted.values()) == [
        ("cax11", ARM64_RUNNER_IMAGE),
        ("cx23", RUNNER_IMAGE),
    ]
    # In parallel: both servers were created before either was deleted.
    calls = [(r.method, r.path) for r in cloud.requests]
    creates = [i for i, (m, p) in enumerate(calls) if m == "POST" and p == "/servers"]
    deletes = [i for i, (m, p) in enumerate(calls) if m == "DELETE" and p.startswith("/servers/")]
    # Two servers (a create may be retried when the shared key object vanished: both
    # platforms upload the same client key, and the API keeps one object per key).
    assert len(creates) >= 2 and len(deletes) == 2
    assert max(creates) < min(deletes)

    base = f"http://{env.registry.host}/v2/multi/{workspace}"
    index_raw = _get(f"{base}/manifests/1", INDEX)
    assert index_raw.headers["Docker-Content-Digest"] == result["digest"] == result["index_digest"]
    listed = {m["platform"]["architecture"]: m for m in index_raw.json()["manifests"]}
    assert set(listed) == {"amd64", "arm64"}
    by_platform = {p["platform"]: p for p in result["platforms"]}
    for arch, entry in listed.items():
        assert by_platform[f"linux/{arch}"]["digest"] == entry["digest"]
        manifest = _get(f"{base}/manifests/{entry['digest']}", entry["mediaType"]).json()
        config = _get(f"{base}/blobs/{manifest['config']['digest']}").json()
        assert config["architecture"] == arch and config["os"] == "linux"

    assert by_platform["linux/amd64"]["tier"] == "cx23"
    assert by_platform["linux/arm64"]["tier"] == "cax11"
    for status in result["platforms"]:
        assert status["state"] == "succeeded" and status["mode"] == "native"
        cost = status["cost"]
        assert cost["currency"] == "EUR" and cost["price_source"] == "api"
        assert cost["billed_hours"] == 1 and cost["amount_net"] > 0
    total = result["cost"]
    assert total["amount_net"] == pytest.approx(
        sum(s["cost"]["amount_net"] for s in result["platforms"])
    )
    assert cloud.token not in run.stderr + run.stdout


def test_one_arm64_platform_builds_on_a_cax_server(
    env: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    image = f"{env.registry.host}/multi/{workspace}:1"
    args = _args("build", env, cloud, workspace, _context(tmp_path, RECORD_MACHINE), image)
    args[args.index(PLATFORMS)] = "linux/arm64"
    run = lian(args)
    assert run.returncode == 0, run.stderr
    result = run.envelope["result"]
    # Not emulated on an x86 server: one cax server, booted from the arm64 image.
    assert list(cloud.booted.values()) == [("cax11", ARM64_RUNNER_IMAGE)]
    assert [p["platform"] for p in result["platforms"]] == ["linux/arm64"]
    base = f"http://{env.registry.host}/v2/multi/{workspace}"
    (entry,) = _get(f"{base}/manifests/1", INDEX).json()["manifests"]
    assert entry["platform"]["architecture"] == "arm64"
    manifest = _get(f"{base}/manifests/{entry['digest']}", entry["mediaType"]).json()
    top = _get(f"{base}/blobs/{manifest['layers'][-1]['digest']}").content
    assert _file_in_layer(top, "built-on") == b"aarch64\n"


def test_one_platform_failing_cancels_the_other_server(
    env: E2E, cloud: FakeHcloud, tmp_path: Path, workspace: str
) -> None:
    # The RUN step fails on the cax server only; on the cx server it would sleep for ten
    # minutes.
    ctx = _context(tmp_path, FAIL_ON_ARM64)
    image = f"{env.registry.host}/multi/{workspace}:1"
    run = lian(_args("build", env, cloud, workspace, ctx, image))
    assert run.returncode == 5, run.stderr
    error: dict[str, Any] = run.envelope["error"]
    assert error["code"] == "BUILD_FAILED"
    assert error["details"]["platform"] == "linux/arm64"
    states = {p["platform"]: p["state"] for p in error["details"]["platforms"]}
    assert states == {"linux/arm64": "failed", "linux/amd64": "cancelled"}
    assert sorted(name for name, _ in cloud.booted.values()) == ["cax11", "cx23"]
    missing = httpx.head(f"http://{env.registry.host}/v2/multi/{workspace}/manifests/1", timeout=30)
    assert missing.status_code == 404  # no index under the requested tag
    # The cloud fixture then checks that no server, key or container is left.
