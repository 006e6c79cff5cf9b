"""Both Hetzner architectures: an x86 (cx) and an arm (cax) ladder, and spawn keeping a
platform's runner on a server type of that platform's architecture."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from lian_build import multiplatform
from lian_build.errors import InvalidInput
from lian_build.intent import resolve
from lian_build.plan import make_plan
from lian_build.plugins import PluginHost
from lian_build.secrets import SecretStore
from lian_hcloud.provider import HcloudProvider, HcloudSettings


def _provider(**settings: object) -> HcloudProvider:
    return HcloudProvider(HcloudSettings(**settings), lambda ref: "unused-token")


def test_architectures_and_a_ladder_per_architecture() -> None:
    provider = _provider()
    assert tuple(provider.architectures()) == ("amd64", "arm64")
    assert [(t.name, t.cpu, t.memory_gb) for t in provider.tiers_for("arm64")] == [
        ("cax11", 2, 4),
        ("cax21", 4, 8),
        ("cax31", 8, 16),
        ("cax41", 16, 32),
    ]
    assert [t.name for t in provider.tiers_for("amd64")] == [t.name for t in provider.tiers()]
    with pytest.raises(InvalidInput, match="no riscv64 servers"):
        provider.tiers_for("riscv64")


def test_a_configured_ladder_is_split_by_architecture() -> None:
    provider = _provider(server_types=["ccx13", "cax21", "cx33", "cax41"])
    assert [t.name for t in provider.tiers_for("amd64")] == ["ccx13", "cx33"]
    assert [t.name for t in provider.tiers_for("arm64")] == ["cax21", "cax41"]
    only_x86 = _provider(server_types=["cx43"])  # arm64 falls back to the cax ladder
    assert [t.name for t in only_x86.tiers_for("arm64")] == ["cax11", "cax21", "cax31", "cax41"]


def test_plan_shows_both_platforms_native_with_their_ladders_and_costs(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    host = PluginHost.load()
    values = {
        "workspace": "web",
        "context": str(tmp_path),
        "image": "127.0.0.1:5999/team/app:1.0",
        "platforms": "linux/amd64,linux/arm64",
        "provider": "hcloud",
        "registry": "zot",
        "registry_opt": ["url=http://127.0.0.1:5999"],
    }
    request = resolve(
        values,
        settings_class=host.settings_class,
        registry_defaults=host.registry_defaults,
        require_ssh_key=False,
    )
    plan = make_plan(request, host, SecretStore(host.secret_resolvers()), session_id="s0123abcd")
    section = multiplatform.plan_section(plan)["multiplatform"]
    assert section["strategy"] == multiplatform.PER_PLATFORM
    by_arch = {p["architecture"]: p for p in section["platforms"]}
    assert by_arch["amd64"]["mode"] == by_arch["arm64"]["mode"] == "native"
    assert by_arch["arm64"]["attempts"][0] == "cax11"
    assert by_arch["amd64"]["attempts"][0] == "cx23"
    assert by_arch["arm64"]["estimated_cost"]["amount_net"] > 0
    assert by_arch["arm64"]["estimated_cost"] != by_arch["amd64"]["estimated_cost"]


def test_spawn_refuses_a_server_type_of_the_other_architecture(
    fake_hcloud, make_provider, make_request
):
    request = attrs.evolve(make_request(tier="cx23"), architecture="arm64")
    with pytest.raises(InvalidInput, match="cx23 is x86, the runner must be arm64"):
        make_provider().spawn(request)
    assert fake_hcloud.requests_to("POST", "/servers") == []
