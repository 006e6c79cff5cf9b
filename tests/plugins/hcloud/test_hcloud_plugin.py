"""Registration, settings and the static tier ladder of the hcloud plugin."""

from __future__ import annotations

import subprocess
import sys

import pluggy
import pytest

from lian_build import hookspecs
from lian_build.errors import InvalidInput
from lian_hcloud.labels import label_selector, server_name
from lian_hcloud.provider import HcloudProvider, HcloudSettings


def test_plugin_module_does_not_import_the_sdk():
    code = (
        "import sys, lian_hcloud.plugin\n"
        "bad = [m for m in ('hcloud', 'requests', 'lian_hcloud.provider') if m in sys.modules]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_plugin_registers_the_provider():
    from lian_hcloud import plugin

    manager = pluggy.PluginManager("lian_build")
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)
    registered: list[type] = []
    manager.hook.lian_register_compute_providers(register=registered.append)
    assert registered == [HcloudProvider]
    assert HcloudProvider.name == "hcloud"


def test_ladder_override_accepts_known_names_and_explicit_shapes():
    settings = HcloudSettings(server_types=["ccx23", "cpx99:3:6:90", "cx23"])
    tiers = HcloudProvider(settings, lambda ref: "").tiers()
    assert [(t.name, t.cpu, t.memory_gb, t.disk_gb) for t in tiers] == [
        ("cx23", 2, 4, 40),
        ("cpx99", 3, 6, 90),
        ("ccx23", 4, 16, 160),
    ]


@pytest.mark.parametrize("entry", ["nosuch", "cpx99:3", "cpx99:x:6", ":2:4"])
def test_ladder_override_rejects_unknown_shapes(entry):
    provider = HcloudProvider(HcloudSettings(server_types=[entry]), lambda ref: "")
    with pytest.raises(InvalidInput) as info:
        provider.tiers()
    assert info.value.field == "server_types"


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"api_endpoint": "ftp://x"}, "api_endpoint"),
        ({"token_ref": "HCLOUD_TOKEN"}, "token_ref"),
    ],
)
def test_settings_are_validated(settings, field):
    with pytest.raises(InvalidInput) as info:
        HcloudSettings(**settings)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("session_id", "name"),
    [
        ("20250101-ab12", "lian-20250101-ab12"),
        ("AB_cd/ef", "lian-ab-cd-ef"),
        ("x" * 80, "lian-" + "x" * 58),
    ],
)
def test_server_name_is_a_valid_hostname(session_id, name):
    assert server_name(session_id) == name


def test_server_name_refuses_an_empty_session():
    with pytest.raises(InvalidInput):
        server_name("///")


def test_label_selector_is_sorted_and_checked():
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert label_selector({}) is None
    with pytest.raises(InvalidInput):
        label_selector({"-bad": "1"})
