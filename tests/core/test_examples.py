"""Every shipped example evaluates against the contracts and structures into the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from lian_build import model, ncl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIRECTIVES = sorted(EXAMPLES.glob("*.ncl"))


def test_one_example_per_compute_provider() -> None:
    providers = {ncl.load_directives(path).compute.provider for path in DIRECTIVES}
    assert providers == {"hcloud", "proxmox", "docker-local"}


@pytest.mark.parametrize("path", DIRECTIVES, ids=lambda p: p.name)
def test_example_loads_and_round_trips(path: Path) -> None:
    directives = ncl.load_directives(path)
    context = Path(directives.context)
    assert context.is_absolute()
    assert (context / directives.dockerfile).is_file()
    exported = ncl.evaluate(file=path, contract="BuildDirectives")
    assert model.unstructure(directives) == {**exported, "context": directives.context}


def test_docker_local_example_targets_the_local_registry_as_a_session() -> None:
    directives = ncl.load_directives(EXAMPLES / "docker-local.ncl")
    assert directives.registry.provider == "zot"
    assert directives.registry.settings["url"] == "http://127.0.0.1:5000"
    assert directives.artifact.image.startswith("127.0.0.1:5000/")
    assert directives.cache.mode is model.BuildMode.SESSION
    assert directives.cache.actor == model.SessionActor(id="alice")


def test_provider_settings_are_the_agreed_ones() -> None:
    proxmox = ncl.load_directives(EXAMPLES / "proxmox.ncl")
    assert proxmox.compute.settings == {
        "host": "pve.example.internal:8006",
        "node": "pve1",
        "template_id": 9000,
        "token_id": "ci@pve!ci",
        "token_ref": "env:PROXMOX_TOKEN",
        "verify_ssl": False,
    }
    assert proxmox.registry.provider == "harbor"
    assert proxmox.registry.settings["password_ref"] == "env:HARBOR_TOKEN"
    hcloud = ncl.load_directives(EXAMPLES / "hcloud.ncl")
    assert hcloud.compute.settings == {
        "location": "fsn1",
        "image": "ubuntu-24.04",
        "token_ref": "env:HCLOUD_TOKEN",
    }
    assert hcloud.registry.provider == "ghcr"


def test_example_build_spec_loads() -> None:
    spec = ncl.load_build_spec(EXAMPLES / "app" / ".build-spec.ncl")
    assert spec == model.BuildSpec(cpu=2, memory_gb=4, time_budget_min=20, language="go")
