"""A template and a node per architecture: settings (directives and flat flags), the
plan per platform, and spawn cloning each architecture's template on its node and
refusing a template of another architecture (the imitation's canned mode)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_proxmox import FakeProxmox

from fixtures.keys import new_authorized_key, new_host_key
from lian_build import api, multiplatform
from lian_build.errors import InvalidInput
from lian_build.intent import provider_settings, resolve
from lian_build.plan import make_plan
from lian_build.plugins import PluginHost, structure_settings
from lian_build.secrets import SecretStore
from lian_proxmox.provider import ProxmoxProvider, ProxmoxSettings

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

ARM_NODE = "pve-arm"
ARM_TEMPLATE = 9001
BASE: dict[str, Any] = {"host": "pve.invalid:8006", "node": "pve1", "token_id": "ci@pve!ci"}


def _no_secrets(reference: str) -> str:
    raise AssertionError(f"secret {reference} resolved without need")


def _request(architecture: str | None, session_id: str = "S1a2b") -> api.SpawnRequest:
    return api.SpawnRequest(
        session_id=session_id,
        workspace="app",
        tier=api.Tier("2c-4g", cpu=2, memory_gb=4),
        labels={"lian.managed": "true", "lian.session": session_id, "lian.workspace": "app"},
        authorized_key=new_authorized_key("lian client"),
        host_key=new_host_key("runner host key"),
        runner_image=None,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        architecture=architecture,
    )


# --------------------------------------------------------------------------- settings


def test_flat_flags_and_directives_give_the_same_settings() -> None:
    flags = provider_settings(
        ProxmoxSettings,
        [
            *(f"{k}={v}" for k, v in BASE.items()),
            "templates=amd64=9000,arm64=9001",
            "nodes=arm64=pve-arm",
        ],
        "compute-opt",
        "compute",
    )
    assert flags["templates"] == {"amd64": 9000, "arm64": 9001}
    assert flags["nodes"] == {"arm64": "pve-arm"}
    from_flags = structure_settings(ProxmoxProvider, flags, "compute")
    directives = {**BASE, "templates": {"amd64": 9000, "arm64": 9001}, "nodes": {"arm64": ARM_NODE}}
    assert from_flags == structure_settings(ProxmoxProvider, directives, "compute")
    assert from_flags.all_templates() == {"amd64": 9000, "arm64": 9001}
    assert (from_flags.node_for("amd64"), from_flags.node_for("arm64")) == ("pve1", ARM_NODE)
    # Repeated flags add pairs; a pair given twice is an error naming it.
    repeated = provider_settings(
        ProxmoxSettings, ["templates=arm64=9001", "templates=amd64=9000"], "compute-opt", "compute"
    )
    assert repeated["templates"] == {"arm64": 9001, "amd64": 9000}
    with pytest.raises(InvalidInput) as caught:
        provider_settings(ProxmoxSettings, ["templates=arm64=1,arm64=2"], "compute-opt", "compute")
    assert caught.value.field == "compute.templates.arm64"
    with pytest.raises(InvalidInput) as caught:
        provider_settings(ProxmoxSettings, ["templates=arm64=nine"], "compute-opt", "compute")
    assert caught.value.field == "compute.templates.arm64"


def test_the_single_template_setting_is_the_amd64_one() -> None:
    settings = ProxmoxSettings(**BASE, template_id=9000)
    assert settings.all_templates() == {"amd64": 9000}
    assert ProxmoxProvider(settings, _no_secrets).architectures() == ("amd64",)
    both = ProxmoxSettings(**BASE, template_id=9000, templates={"arm64": 9001})
    assert ProxmoxProvider(both, _no_secrets).architectures() == ("amd64", "arm64")
    assert both.template_field("amd64") == "compute.template_id"
    assert both.template_field("arm64") == "compute.templates.arm64"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"templates": {"riscv64": 9002}}, "compute.templates.riscv64"),
        ({"templates": {"arm64": 0}}, "compute.templates.arm64"),
        ({"templates": {"amd64": 9005}}, "compute.templates.amd64"),  # != template_id
        ({"nodes": {"arm64": ARM_NODE}}, "compute.nodes.arm64"),  # no arm64 template
        ({"nodes": {"s390x": "z"}}, "compute.nodes.s390x"),
        ({"template_id": None}, "compute.template_id"),  # no template at all
    ],
)
def test_invalid_architecture_settings_name_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        ProxmoxSettings(**(BASE | {"template_id": 9000} | overrides))
    assert caught.value.field == field


# --------------------------------------------------------------------------- plan


def _plan_section(tmp_path: Path, *opts: str) -> dict[str, Any]:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    host = PluginHost.load()
    values = {
        "workspace": "web",
        "context": str(tmp_path),
        "image": "127.0.0.1:5999/team/app:1.0",
        "platforms": "linux/amd64,linux/arm64",
        "provider": "proxmox",
        "compute_opt": [*(f"{k}={v}" for k, v in BASE.items()), *opts],
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
    section: dict[str, Any] = multiplatform.plan_section(plan)["multiplatform"]
    return section


def test_plan_gives_each_platform_its_template_node_and_tier(tmp_path: Path) -> None:
    section = _plan_section(tmp_path, "template_id=9000", "templates=arm64=9001",
                            "nodes=arm64=pve-arm")  # fmt: skip
    assert section["strategy"] == multiplatform.PER_PLATFORM
    by_arch = {p["architecture"]: p for p in section["platforms"]}
    assert by_arch["amd64"]["compute"] == {"template_id": 9000, "node": "pve1"}
    assert by_arch["arm64"]["compute"] == {"template_id": 9001, "node": ARM_NODE}
    for entry in by_arch.values():
        assert entry["mode"] == "native"
        assert entry["attempts"][0] == "2c-4g"


def test_one_template_falls_back_to_one_runner_and_says_why(tmp_path: Path) -> None:
    section = _plan_section(tmp_path, "template_id=9000")
    assert section["strategy"] == multiplatform.SINGLE_RUNNER
    assert "proxmox has no arm64 runners (it offers amd64)" in section["reason"]
    assert "platforms" not in section


# --------------------------------------------------------------------------- spawn


@pytest.fixture
def fake() -> FakeProxmox:
    fake = FakeProxmox(nodes={ARM_NODE: "aarch64"})
    fake.add_template(ARM_TEMPLATE, node=ARM_NODE, arch="aarch64")
    return fake


@pytest.fixture
def pve_host(fake: FakeProxmox, tmp_path: Path) -> Iterator[str]:
    with fake.serve(tmp_path) as host:
        yield host


def _provider(fake: FakeProxmox, host: str, **overrides: Any) -> ProxmoxProvider:
    settings: dict[str, Any] = {
        "host": host,
        "node": fake.node,
        "template_id": fake.template_id,
        "templates": {"arm64": ARM_TEMPLATE},
        "nodes": {"arm64": ARM_NODE},
        "token_id": fake.token_id,
        "verify_ssl": False,
        "poll_interval": 0.001,
        "wait_timeout_s": 30,
    }
    token = fake.token
    return ProxmoxProvider(ProxmoxSettings(**(settings | overrides)), lambda ref: token)


def test_an_arm64_spawn_clones_the_arm64_template_on_its_node(
    fake: FakeProxmox, pve_host: str
) -> None:
    provider = _provider(fake, pve_host)
    runner = provider.spawn(_request("arm64"))
    vm = fake.vms[int(runner.id)]
    assert vm.node == ARM_NODE and fake.architecture(vm) == "aarch64"
    assert vm.config["arch"] == "aarch64"  # the clone keeps the template's arch
    clones = fake.calls("POST", r"/clone$")
    assert [c.path for c in clones] == [f"/nodes/{ARM_NODE}/qemu/{ARM_TEMPLATE}/clone"]
    # Every call about the VM and its tasks went to its node.
    about_vm = [
        r.path for r in fake.requests if f"/qemu/{runner.id}" in r.path or "/tasks/" in r.path
    ]
    assert about_vm and all(p.startswith(f"/nodes/{ARM_NODE}/") for p in about_vm)

    # Another instance (the coordinator's, reap's) finds it by label and destroys it.
    other = _provider(fake, pve_host)
    found = other.list_runners({"lian.session": "S1a2b"})
    assert [r.id for r in found] == [runner.id]
    other.destroy(runner.id)
    assert not fake.guests()
    other.destroy(runner.id)  # gone: still no error
    assert other.inspect(runner.id) == api.RunnerState(exists=False)


def test_an_amd64_spawn_and_an_unnamed_one_use_the_host_template(
    fake: FakeProxmox, pve_host: str
) -> None:
    provider = _provider(fake, pve_host)
    for architecture, session in (("amd64", "Samd"), (None, "Snone")):
        runner = provider.spawn(_request(architecture, session))
        vm = fake.vms[int(runner.id)]
        assert vm.node == fake.node and fake.architecture(vm) == "x86_64"
        provider.destroy(runner.id)
    paths = {c.path for c in fake.calls("POST", r"/clone$")}
    assert paths == {f"/nodes/{fake.node}/qemu/{fake.template_id}/clone"}
    assert not fake.guests()


def test_a_template_of_another_architecture_is_refused_before_cloning(
    fake: FakeProxmox, pve_host: str
) -> None:
    fake.add_template(9002, node=ARM_NODE, arch="x86_64")  # an x86 VM on the arm node
    provider = _provider(fake, pve_host, templates={"arm64": 9002})
    with pytest.raises(InvalidInput) as caught:
        provider.spawn(_request("arm64"))
    assert caught.value.field == "compute.templates.arm64"
    assert "VM 9002 on node pve-arm is an x86_64 VM" in caught.value.message
    assert not fake.calls("POST", r"/clone$")
    assert not fake.guests()


def test_a_template_without_arch_runs_as_its_node(fake: FakeProxmox, pve_host: str) -> None:
    # No arch in the config: PVE runs it as the node's architecture (here aarch64).
    fake.add_template(9003, node=ARM_NODE)
    provider = _provider(fake, pve_host, templates={"arm64": 9003})
    runner = provider.spawn(_request("arm64"))
    assert fake.vms[int(runner.id)].node == ARM_NODE
    assert fake.calls("GET", rf"^/nodes/{ARM_NODE}/status$")
    provider.destroy(runner.id)
    # The same VM named as the amd64 template (on the arm node) is refused.
    wrong = _provider(fake, pve_host, template_id=9003, nodes={"amd64": ARM_NODE},
                      templates=None)  # fmt: skip
    with pytest.raises(InvalidInput, match="is an aarch64 VM") as caught:
        wrong.spawn(_request("amd64"))
    assert caught.value.field == "compute.template_id"


def test_a_template_missing_on_its_node_and_an_architecture_without_one(
    fake: FakeProxmox, pve_host: str
) -> None:
    provider = _provider(fake, pve_host, nodes=None)  # arm64 template looked for on "pve"
    with pytest.raises(InvalidInput, match="VM 9001 does not exist on node pve") as caught:
        provider.spawn(_request("arm64"))
    assert caught.value.field == "compute.templates.arm64"
    only_amd64 = _provider(fake, pve_host, templates=None, nodes=None)
    with pytest.raises(InvalidInput, match="no Proxmox template for arm64") as caught:
        only_amd64.spawn(_request("arm64"))
    assert caught.value.field == "compute.templates.arm64"
    assert not fake.calls("POST", r"/clone$")


def test_check_names_a_template_of_the_wrong_architecture_without_booting(
    fake: FakeProxmox, pve_host: str
) -> None:
    fake.add_template(9002, node=ARM_NODE, arch="x86_64")
    provider = _provider(fake, pve_host, templates={"arm64": 9002})
    result = provider.check_runner_image({"architecture": "arm64"})
    assert result["architecture"] == "arm64" and result["node"] == ARM_NODE
    assert result["booted"] is False and result["vm_arch"] == "x86_64"
    assert any("compute.templates.arm64" in p for p in result["problems"])
    assert not fake.calls("POST", r"/clone$")
    with pytest.raises(InvalidInput):
        provider.check_runner_image({"architecture": "riscv64"})
