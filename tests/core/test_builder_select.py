"""select_builder: "auto" order, named builders, and the built-in registration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from core.localremote import LocalRemote

from fixtures.require import require_binary
from lian_build import api
from lian_build.builders import select_builder
from lian_build.builders.buildah import BuildahBuilder
from lian_build.builders.buildkit import BuildKitBuilder
from lian_build.builtin import builders as builtin_builders
from lian_build.errors import PluginError, RemoteError


class Probe(api.Builder):
    """A builder whose availability is fixed; records that it was asked."""

    description = "a probe builder"

    def __init__(self, name: str, available: bool, asked: list[str]) -> None:
        self.name = name  # type: ignore[misc]
        self._available = available
        self._asked = asked

    def available(self, remote: api.Remote) -> bool:
        self._asked.append(self.name)
        return self._available

    def commands(self, job: api.BuildJob) -> list[list[str]]:
        return []

    def build(
        self, job: api.BuildJob, remote: api.Remote, log: Callable[[str], None]
    ) -> api.BuildOutcome:
        return api.BuildOutcome(exit_code=0)


def probes(availability: dict[str, bool]) -> tuple[dict[str, api.Builder], list[str]]:
    asked: list[str] = []
    return {name: Probe(name, ok, asked) for name, ok in availability.items()}, asked


def test_auto_prefers_buildkit():
    builders, asked = probes({"zzz": True, "buildah": True, "buildkit": True})
    assert select_builder("auto", builders, LocalRemote()).name == "buildkit"
    assert asked == ["buildkit"]


def test_auto_falls_back_to_buildah_then_others_by_name():
    builders, asked = probes({"zeta": True, "alpha": True, "buildah": False, "buildkit": False})
    assert select_builder("auto", builders, LocalRemote()).name == "alpha"
    assert asked == ["buildkit", "buildah", "alpha"]


def test_auto_with_nothing_available_says_what_was_tried():
    builders, _ = probes({"buildah": False, "buildkit": False})
    with pytest.raises(RemoteError) as caught:
        select_builder("auto", builders, LocalRemote())
    assert caught.value.code == "BUILDER_UNAVAILABLE"
    assert "buildkit (a probe builder)" in caught.value.message
    assert "buildah (a probe builder)" in caught.value.message


def test_unknown_name_lists_the_known_builders():
    builders, asked = probes({"buildah": True, "buildkit": True})
    with pytest.raises(PluginError) as caught:
        select_builder("kaniko", builders, LocalRemote())
    assert caught.value.field == "builder"
    assert "auto, buildah, buildkit" in caught.value.message
    assert asked == []


def test_named_builder_must_be_available():
    builders, _ = probes({"buildah": True, "buildkit": False})
    with pytest.raises(RemoteError) as caught:
        select_builder("buildkit", builders, LocalRemote())
    assert caught.value.code == "BUILDER_UNAVAILABLE"
    assert select_builder("buildah", builders, LocalRemote()).name == "buildah"


def test_real_builders_on_this_machine(tmp_path: Path):
    require_binary("buildah")
    # No buildkitd answers on this socket, whatever is installed.
    builders: dict[str, api.Builder] = {
        "buildkit": BuildKitBuilder(addr=f"unix://{tmp_path}/buildkitd.sock"),
        "buildah": BuildahBuilder(),
    }
    remote = LocalRemote()
    assert isinstance(select_builder("auto", builders, remote), BuildahBuilder)
    with pytest.raises(RemoteError) as caught:
        select_builder("buildkit", builders, remote)
    assert caught.value.code == "BUILDER_UNAVAILABLE"
    assert "buildctl" in caught.value.message and "buildkitd" in caught.value.message


def test_buildah_unavailable_without_the_binary(tmp_path: Path):
    assert not BuildahBuilder().available(LocalRemote(search_path=str(tmp_path)))


def test_builtin_plugin_registers_both_classes():
    registered: list[type[api.Builder]] = []
    builtin_builders.lian_register_builders(registered.append)
    assert registered == [BuildKitBuilder, BuildahBuilder]
    # The host instantiates with no arguments.
    assert [cls().name for cls in registered] == ["buildkit", "buildah"]


def test_plugin_host_offers_both_builders():
    from lian_build.plugins import PluginHost

    builders = PluginHost.load(entry_points=False).builders()
    assert isinstance(builders["buildkit"], BuildKitBuilder)
    assert isinstance(builders["buildah"], BuildahBuilder)
