"""Multi-platform planning (strategy, per-platform ladders, cache and staging refs) and
the image index against a real registry (distribution 2.8)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.oci_content import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, push_blob
from lian_build import api, multiplatform, oci
from lian_build.errors import LianError
from lian_build.intent import resolve
from lian_build.plan import Plan, make_plan
from lian_build.plugins import PluginHost
from lian_build.secrets import SecretStore

REGISTRY = "127.0.0.1:5999"  # planning only: nothing is sent there


class TwoArchProvider(api.ComputeProvider):
    """A provider with amd64 and arm64 ladders of its own, for planning (no network)."""

    name = "two-arch"
    Settings = dict

    def tiers(self) -> Sequence[api.Tier]:
        return (api.Tier("2c-4g", 2, 4), api.Tier("4c-8g", 4, 8))

    def tiers_for(self, architecture: str) -> Sequence[api.Tier]:
        if architecture == "arm64":
            return (api.Tier("a-2", 2, 4), api.Tier("a-4", 4, 8), api.Tier("a-8", 8, 16))
        return self.tiers()

    def architectures(self) -> Sequence[str]:
        return ("amd64", "arm64")

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        raise NotImplementedError

    def destroy(self, runner_id: str) -> None:
        raise NotImplementedError


def _plan(tmp_path: Path, platforms: str | None, **extra: Any) -> Plan:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    host = PluginHost.load()
    values = {
        "workspace": "web",
        "context": str(tmp_path),
        "image": f"{REGISTRY}/team/app:1.0",
        "platforms": platforms,
        "provider": "docker-local",
        "registry": "zot",
        "registry_opt": [f"url=http://{REGISTRY}"],
        **extra,
    }
    request = resolve(
        values,
        settings_class=host.settings_class,
        registry_defaults=host.registry_defaults,
        require_ssh_key=False,
    )
    return make_plan(request, host, SecretStore(host.secret_resolvers()), session_id="s0123abcd")


def _with(plan: Plan, compute: api.ComputeProvider) -> Plan:
    import attrs

    return attrs.evolve(plan, compute=compute)


def test_per_platform_plan_has_its_own_ladder_cache_session_and_staging_tag(tmp_path):
    plan = _with(_plan(tmp_path, "linux/amd64,linux/arm64"), TwoArchProvider({}, lambda r: r))
    strategy = multiplatform.choose_strategy(plan)
    assert strategy.name == multiplatform.PER_PLATFORM
    assert [(t.platform, t.mode) for t in strategy.targets] == [
        ("linux/amd64", "native"),
        ("linux/arm64", "native"),
    ]
    amd, arm = (multiplatform.platform_plan(plan, t) for t in strategy.targets)
    assert [t.name for t in arm.ladder] == ["a-2", "a-4", "a-8"]
    assert [t.name for t in amd.ladder] == ["2c-4g", "4c-8g"]
    assert amd.session_id == "s0123abcd-amd64" and arm.session_id == "s0123abcd-arm64"
    assert arm.paths.work_dir != amd.paths.work_dir
    assert arm.intent.platforms == ("linux/arm64",)
    assert arm.intent.tags == (f"{REGISTRY}/team/app:1.0-arm64",)
    assert arm.cache_refs.exports == (f"{REGISTRY}/ci/web/app-arm64:buildcache",)
    assert amd.cache_refs.exports == (f"{REGISTRY}/ci/web/app-amd64:buildcache",)
    assert set(arm.cache_refs.imports).isdisjoint(amd.cache_refs.imports)


def test_a_tier_named_for_another_architecture_is_not_forced_on_arm64(tmp_path):
    plan = _with(
        _plan(tmp_path, "linux/amd64,linux/arm64", tier="4c-8g"), TwoArchProvider({}, lambda r: r)
    )
    amd, arm = (
        multiplatform.platform_plan(plan, t) for t in multiplatform.choose_strategy(plan).targets
    )
    assert amd.attempts[0].name == "4c-8g"
    assert arm.attempts[0].name == "a-2"  # chosen by size on its own ladder


def test_a_provider_without_architectures_falls_back_to_one_runner(tmp_path):
    class OneArch(TwoArchProvider):
        def architectures(self) -> Sequence[str]:
            return ()

    plan = _with(_plan(tmp_path, "linux/amd64,linux/arm64"), OneArch({}, lambda r: r))
    strategy = multiplatform.choose_strategy(plan)
    assert strategy.name == multiplatform.SINGLE_RUNNER
    assert "one runner builds every platform" in strategy.reason
    assert multiplatform.plan_section(plan)["multiplatform"]["strategy"] == "single-runner"


def test_an_architecture_the_provider_lacks_falls_back_and_says_which(tmp_path):
    plan = _with(_plan(tmp_path, "linux/amd64,linux/s390x"), TwoArchProvider({}, lambda r: r))
    strategy = multiplatform.choose_strategy(plan)
    assert strategy.name == multiplatform.SINGLE_RUNNER
    assert "no s390x runners" in strategy.reason


def test_one_platform_of_the_providers_own_architecture_is_the_plain_pipeline(tmp_path):
    plan = _with(_plan(tmp_path, "linux/amd64"), TwoArchProvider({}, lambda r: r))
    assert multiplatform.choose_strategy(plan).name == multiplatform.SINGLE_RUNNER
    assert "multiplatform" in plan.to_dict()
    assert "multiplatform" not in _plan(tmp_path, None).to_dict()


def test_one_foreign_platform_gets_a_runner_of_its_architecture(tmp_path):
    plan = _with(_plan(tmp_path, "linux/arm64"), TwoArchProvider({}, lambda r: r))
    strategy = multiplatform.choose_strategy(plan)
    assert strategy.name == multiplatform.PER_PLATFORM
    assert [(t.platform, t.architecture, t.mode) for t in strategy.targets] == [
        ("linux/arm64", "arm64", "native")
    ]
    (arm,) = (multiplatform.platform_plan(plan, t) for t in strategy.targets)
    assert arm.attempts[0].name.startswith("a-")  # sized on the arm64 ladder


def test_one_platform_the_provider_lacks_is_emulated_by_one_runner(tmp_path):
    class OneArch(TwoArchProvider):
        def architectures(self) -> Sequence[str]:
            return ("amd64",)

    plan = _with(_plan(tmp_path, "linux/arm64"), OneArch({}, lambda r: r))
    assert multiplatform.choose_strategy(plan).name == multiplatform.SINGLE_RUNNER


def test_docker_local_runs_its_own_arch_natively_and_others_only_emulated(tmp_path, monkeypatch):
    from lian_docker_local import provider as docker_local

    binfmt = tmp_path / "binfmt"
    binfmt.mkdir()
    monkeypatch.setattr(docker_local, "BINFMT_DIR", str(binfmt))
    monkeypatch.setattr(docker_local.platform, "machine", lambda: "x86_64")
    (binfmt / "qemu-aarch64").write_text("enabled\n")
    default = _plan(tmp_path, "linux/amd64,linux/arm64")
    assert default.compute.emulated_architectures() == ()  # opt-in
    (binfmt / "qemu-aarch64").unlink()
    plan = _plan(tmp_path, "linux/amd64,linux/arm64", compute_opt=["emulated_runners=true"])
    assert plan.compute.architectures() == ("amd64",)
    assert plan.compute.emulated_architectures() == ()
    assert multiplatform.choose_strategy(plan).name == multiplatform.SINGLE_RUNNER

    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt\n")
    (binfmt / "qemu-s390x").write_text("disabled\n")
    assert plan.compute.emulated_architectures() == ("arm64",)
    section = plan.to_dict()["multiplatform"]
    assert section["strategy"] == "per-platform"
    assert {p["platform"]: p["mode"] for p in section["platforms"]} == {
        "linux/amd64": "native",
        "linux/arm64": "emulated",
    }
    provider = plan.compute
    assert isinstance(provider, docker_local.DockerLocalProvider)
    assert provider.image_for("arm64") == "lian-runner:debian-arm64"
    assert provider.image_for("amd64") == "lian-runner:debian"
    assert provider.image_for(None, "mine:1") == "mine:1"
    assert provider.image_for("arm64", "mine:1") == "mine:1-arm64"


# --------------------------------------------------------------------------- the index


def _push_platform_image(base_url: str, repository: str, tag: str, arch: str) -> str:
    with httpx.Client(timeout=10) as client:
        config = json.dumps(
            {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": push_blob(client, base_url, repository, config, OCI_CONFIG),
                "layers": [push_blob(client, base_url, repository, uuid.uuid4().bytes, OCI_LAYER)],
            }
        ).encode()
        response = client.put(
            f"{base_url}/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text
        return str(response.headers["Docker-Content-Digest"])


def _registry(host: PluginHost, url: str) -> api.RegistryProvider:
    return host.registry("zot", {"url": url}, lambda r: r)


def test_index_lists_each_platform_and_is_pushed_under_every_tag(oci_registry):
    host = PluginHost.load()
    registry = _registry(host, oci_registry.url)
    repo = f"multi/{uuid.uuid4().hex[:8]}"
    targets = {
        arch: multiplatform.PlatformTarget(f"linux/{arch}", arch, "native")
        for arch in ("amd64", "arm64")
    }
    entries = []
    for arch, target in targets.items():
        staging = f"{oci_registry.host}/{repo}:1-{arch}"
        digest = _push_platform_image(oci_registry.url, repo, f"1-{arch}", arch)
        entries.append(multiplatform.index_entry(registry, staging, digest, target))
    body = oci.image_index(entries)
    tags = [f"{oci_registry.host}/{repo}:1", f"{oci_registry.host}/{repo}:latest"]
    for tag in tags:
        registry.put_manifest(tag, oci.OCI_INDEX, body)
    digest = multiplatform.verify_index(registry, tags, body)

    got = httpx.get(
        f"{oci_registry.url}/v2/{repo}/manifests/latest", headers={"Accept": oci.OCI_INDEX}
    )
    assert got.headers["Docker-Content-Digest"] == digest
    index = got.json()
    assert index["mediaType"] == oci.OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert [m["digest"] for m in index["manifests"]] == [e.digest for e in entries]

    # Another writer moving a tag after the push is caught.
    _push_platform_image(oci_registry.url, repo, "latest", "amd64")
    with pytest.raises(LianError) as caught:
        multiplatform.verify_index(registry, tags, body)
    assert caught.value.code == "DIGEST_MISMATCH"


def test_an_image_of_the_wrong_architecture_is_refused(oci_registry):
    registry = _registry(PluginHost.load(), oci_registry.url)
    repo = f"multi/{uuid.uuid4().hex[:8]}"
    digest = _push_platform_image(oci_registry.url, repo, "1-arm64", "amd64")
    target = multiplatform.PlatformTarget("linux/arm64", "arm64", "emulated")
    with pytest.raises(LianError) as caught:
        multiplatform.index_entry(registry, f"{oci_registry.host}/{repo}:1-arm64", digest, target)
    assert caught.value.code == "PLATFORM_MISMATCH"
    assert caught.value.details["found"] == "linux/amd64"


def test_the_build_cost_is_the_sum_of_the_platforms_only_when_each_is_known():
    amd = {"platform": "linux/amd64", "runner_seconds": 30.0}
    arm = {"platform": "linux/arm64", "runner_seconds": 45.5}
    eur = {"currency": "EUR", "price_source": "api"}
    priced = [
        {**amd, "cost": {**eur, "amount_net": 0.0048}},
        {**arm, "cost": {**eur, "amount_net": 0.0061}},
    ]
    total = multiplatform._total_usage(priced)
    assert total["runner_seconds"] == 75.5
    assert total["cost"]["amount_net"] == pytest.approx(0.0109)
    assert total["cost"]["platforms"] == {"linux/amd64": 0.0048, "linux/arm64": 0.0061}
    assert "cost" not in multiplatform._total_usage([priced[0], arm])  # one unpriced
    assert multiplatform._total_usage([{"platform": "linux/amd64"}]) == {}


def test_a_signal_is_each_platforms_reason_to_stop() -> None:
    from lian_build.errors import Cancelled, TimeBudgetExceeded
    from lian_build.multiplatform import _stop_reason

    signal = Cancelled(
        "cancelled by SIGTERM; the runner was destroyed", details={"signal": "SIGTERM"}
    )
    assert _stop_reason(signal) == "lian received SIGTERM"
    assert _stop_reason(TimeBudgetExceeded("late")) == "the build ran past its time budget"


def test_the_platform_lifecycle_keeps_every_connections_cancel() -> None:
    """The coordinator stops a platform's SSH command through these before it destroys
    the runner (else the thread reports a lost connection, not a cancel)."""
    from lian_build.multiplatform import PlatformLifecycle

    stopped: list[str] = []
    lifecycle = PlatformLifecycle()
    with lifecycle.deferred(lambda: stopped.append("first")):
        pass
    with lifecycle.deferred(lambda: stopped.append("second")):
        pass
    for cancel in lifecycle.cancels:
        cancel()
    assert stopped == ["first", "second"]
