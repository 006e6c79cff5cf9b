"""The Harbor plugin against an imitation of Harbor that fronts a real OCI registry:
manifests pushed through the imitation land in the real registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from plugins.harbor.harbor_imitation import HarborImitation

from fixtures.oci_content import PushedImage, push_image, tag_image
from fixtures.plugin_checks import assert_import_leaves_out, assert_registers_registry
from lian_build import api
from lian_build.errors import InvalidInput, ProbeFailed, RegistryError
from lian_build.oci import OciClient
from lian_harbor import plugin
from lian_harbor.registry import HarborRegistry, HarborSettings

ROBOT, SECRET, PROJECT = "robot$ci+pusher", "Harbor-robot-secret-1", "ci"


@pytest.fixture
def harbor(oci_registry) -> Iterator[HarborImitation]:
    imitation = HarborImitation(
        oci_registry.url, username=ROBOT, password=SECRET, projects={PROJECT}
    )
    with imitation:
        yield imitation


def provider(url: str, *, password: str = SECRET, login: bool = True) -> HarborRegistry:
    settings = HarborSettings(
        url=url,
        project=PROJECT,
        username=ROBOT if login else None,
        password_ref="env:HARBOR_SECRET" if login else None,
    )
    return HarborRegistry(settings, {"env:HARBOR_SECRET": password}.__getitem__)


def push(harbor: HarborImitation, repository: str, tag: str) -> PushedImage:
    return push_image(harbor.url, repository, tag, auth=(ROBOT, SECRET))


def unique() -> str:
    return f"{PROJECT}/cache/{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- no network


def test_plugin_registers_the_harbor_registry():
    assert_registers_registry("harbor", plugin, HarborRegistry)


def test_plugin_module_does_not_import_httpx():
    assert_import_leaves_out("lian_harbor.plugin", "httpx")


def test_layout_auth_and_plan():
    registry = provider("https://harbor.example/")
    assert registry.host == "harbor.example"
    assert registry.insecure is False
    assert registry.cache_repository("ci/ws/app") == "harbor.example/ci/ci/ws/app"
    assert registry.plan() == {
        "url": "https://harbor.example",
        "project": "ci",
        "insecure": False,
        "auth": "basic",
    }
    auth = registry.auth()
    assert auth == api.RegistryAuth(registry="harbor.example", username=ROBOT, password=SECRET)
    assert SECRET not in repr(auth)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"url": "https://h.example", "project": "a/b"}, "registry.project"),
        ({"url": "https://h.example", "project": ""}, "registry.project"),
        ({"url": "h.example", "project": "ci"}, "registry.url"),
        ({"url": "https://h.example", "project": "ci", "username": ROBOT}, "registry.password_ref"),
    ],
)
def test_invalid_settings_name_the_field(settings, field):
    with pytest.raises(InvalidInput) as info:
        HarborSettings(**settings)
    assert info.value.field == field


# --------------------------------------------------------------------------- imitation


def test_check_pings_harbor_then_the_registry(harbor):
    provider(harbor.url).check()
    targets = [t for _, t in harbor.requests]
    assert targets[0] == "/api/v2.0/ping"
    assert "/v2/" in targets


def test_check_with_a_wrong_secret_is_unauthorized_without_the_secret(harbor):
    wrong = "wrong-" + uuid.uuid4().hex
    with pytest.raises(RegistryError) as info:
        provider(harbor.url, password=wrong).check()
    assert info.value.code == "REGISTRY_UNAUTHORIZED"
    assert harbor.host in info.value.message
    assert "UNAUTHORIZED" in info.value.message
    assert wrong not in str(info.value.to_dict())


def test_check_refuses_a_registry_that_is_not_harbor(oci_registry):
    with pytest.raises(RegistryError) as info:
        provider(oci_registry.url).check()
    assert info.value.code == "REGISTRY_ERROR"
    assert "/api/v2.0/ping" in info.value.message


def test_manifest_digest_and_tags_of_an_image_pushed_through_harbor(harbor, oci_registry):
    image = push(harbor, unique(), "v1")
    tag_image(harbor.url, image, "v2", auth=(ROBOT, SECRET))
    registry = provider(harbor.url)
    assert registry.manifest_digest(f"{harbor.host}/{image.repository}:v1") == image.digest
    assert registry.manifest_digest(f"{harbor.host}/{image.repository}:nope") is None
    assert sorted(registry.list_tags(f"{harbor.host}/{image.repository}")) == ["v1", "v2"]
    with OciClient(oci_registry.url) as real:  # it really landed behind the imitation
        assert real.manifest_digest(image.repository, "v2") == image.digest


def test_unknown_project_is_a_registry_error_naming_not_found(harbor):
    with (
        pytest.raises(RegistryError) as info,
        OciClient(harbor.url, username=ROBOT, password=SECRET) as client,
    ):
        client.get_manifest("other/app", "v1")
    assert "NOT_FOUND" in info.value.message


def test_delete_by_tag_uses_the_harbor_api_with_a_double_encoded_name(harbor, oci_registry):
    image = push(harbor, unique(), "v1")
    registry = provider(harbor.url)
    registry.delete(f"{harbor.host}/{image.repository}:v1")
    with OciClient(oci_registry.url) as real:
        assert real.manifest_digest(image.repository, image.digest) is None
    name = image.repository.split("/", 1)[1]
    encoded = name.replace("/", "%252F")
    assert ("DELETE", f"/api/v2.0/projects/ci/repositories/{encoded}/artifacts/v1") in (
        harbor.requests
    )
    with pytest.raises(RegistryError) as info:
        registry.delete(f"{harbor.host}/{image.repository}:v1")
    assert info.value.code == "REGISTRY_ERROR"
    assert "NOT_FOUND" in info.value.message


def test_delete_by_digest(harbor, oci_registry):
    image = push(harbor, unique(), "v1")
    provider(harbor.url).delete(f"{harbor.host}/{image.repository}@{image.digest}")
    with OciClient(oci_registry.url) as real:
        assert real.manifest_digest(image.repository, "v1") is None


def test_delete_outside_the_project_is_rejected(harbor):
    with pytest.raises(InvalidInput):
        provider(harbor.url).delete(f"{harbor.host}/other/app:v1")


def test_check_fails_for_a_project_that_does_not_exist(harbor, monkeypatch):
    settings = HarborSettings(
        url=harbor.url, project="nosuchproject", username=ROBOT, password_ref="env:HARBOR_SECRET"
    )
    registry = HarborRegistry(settings, {"env:HARBOR_SECRET": SECRET}.__getitem__)
    with pytest.raises(RegistryError) as info:
        registry.check()
    assert "nosuchproject" in info.value.message and "does not exist" in info.value.message
    provider(harbor.url).check()  # the existing project passes


def test_integrate_is_not_ready_for_a_missing_project(harbor, tmp_path, monkeypatch):
    from lian_build.integrate import parse_context, probe
    from lian_build.plugins import PluginHost
    from lian_build.secrets import SecretStore

    monkeypatch.setenv("LIAN_T_HARBOR_SECRET", SECRET)
    host = PluginHost.load()
    context = parse_context(
        json.dumps(
            {
                "workspace": "web",
                "registry": {
                    "provider": "harbor",
                    "url": harbor.url,
                    "project": "nosuchproject",
                    "username": ROBOT,
                    "password_ref": "env:LIAN_T_HARBOR_SECRET",
                },
            }
        )
    )
    with pytest.raises(ProbeFailed) as info:
        probe(context, host, SecretStore(host.secret_resolvers()))
    checks = {c.name: c for c in info.value.outcome.checks}
    assert checks["registry"].ok is False
    assert "nosuchproject" in checks["registry"].message
