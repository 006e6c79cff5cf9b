"""The zot plugin against a real OCI registry (distribution 2.8 stands in for zot)."""

from __future__ import annotations

import uuid

import pytest

from fixtures.oci_content import push_image, tag_image
from fixtures.plugin_checks import assert_import_leaves_out, assert_registers_registry
from lian_build import api
from lian_build.errors import InvalidInput, RegistryError
from lian_zot import plugin
from lian_zot.registry import ZotRegistry, ZotSettings


class Secrets:
    """A secret lookup that remembers what was asked."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def __call__(self, reference: str) -> str:
        self.asked.append(reference)
        return self.values[reference]


def zot(url: str, secrets: Secrets | None = None, **settings: object) -> ZotRegistry:
    return ZotRegistry(ZotSettings(url=url, **settings), secrets or Secrets({}))


def auth_zot(reg, password: str | None = None) -> tuple[ZotRegistry, Secrets]:
    secrets = Secrets({"env:ZOT_PASSWORD": password or reg.password})
    registry = zot(reg.url, secrets, username=reg.username, password_ref="env:ZOT_PASSWORD")
    return registry, secrets


def unique_repo() -> str:
    return f"zot/{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- settings, no network


def test_plugin_registers_the_zot_registry():
    assert_registers_registry("zot", plugin, ZotRegistry)
    assert ZotRegistry.name == "zot"


def test_plugin_module_does_not_import_httpx():
    assert_import_leaves_out("lian_zot.plugin", "httpx")


def test_host_insecure_and_cache_repository_layout():
    plain = zot("http://127.0.0.1:5000/")
    assert plain.host == "127.0.0.1:5000"
    assert plain.insecure is True
    assert plain.cache_repository("ci/ws/app") == "127.0.0.1:5000/ci/ws/app"
    prefixed = zot("https://zot.example:8443", cache_prefix="/cache/")
    assert prefixed.insecure is False
    assert prefixed.cache_repository("dev/me-ws/app") == "zot.example:8443/cache/dev/me-ws/app"


def test_plan_needs_no_network_and_resolves_no_secret():
    secrets = Secrets({})
    registry = zot("https://zot.example", secrets, username="ci", password_ref="env:ZOT_PASSWORD")
    assert registry.plan() == {"url": "https://zot.example", "insecure": False, "auth": "basic"}
    assert zot("http://127.0.0.1:5000").plan()["auth"] == "none"
    assert secrets.asked == []


@pytest.mark.parametrize("url", ["127.0.0.1:5000", "ftp://zot.example", "https://"])
def test_url_must_be_http_or_https(url):
    with pytest.raises(InvalidInput) as info:
        ZotSettings(url=url)
    assert info.value.field == "registry.url"


def test_username_without_password_ref_is_rejected():
    with pytest.raises(InvalidInput) as info:
        ZotSettings(url="https://zot.example", username="ci")
    assert info.value.field == "registry.password_ref"


def test_auth_resolves_the_password_reference():
    secrets = Secrets({"env:ZOT_PASSWORD": "pw-123"})
    registry = zot("https://zot.example", secrets, username="ci", password_ref="env:ZOT_PASSWORD")
    auth = registry.auth()
    assert auth == api.RegistryAuth(registry="zot.example", username="ci", password="pw-123")
    assert "pw-123" not in repr(auth)
    assert zot("https://zot.example").auth() is None


def test_defaults_for_image_pick_http_for_loopback_only():
    assert ZotRegistry.defaults_for_image("127.0.0.1:5000") == {"url": "http://127.0.0.1:5000"}
    assert ZotRegistry.defaults_for_image("localhost:5000") == {"url": "http://localhost:5000"}
    assert ZotRegistry.defaults_for_image("zot.example") == {"url": "https://zot.example"}


def test_reference_on_another_registry_is_rejected():
    with pytest.raises(InvalidInput) as info:
        zot("http://127.0.0.1:5000").manifest_digest("127.0.0.1:5001/app:1")
    assert info.value.field == "reference"


# --------------------------------------------------------------------------- real registry


def test_check_open_registry(oci_registry):
    zot(oci_registry.url).check()


def test_check_with_right_credentials(oci_registry_auth):
    registry, secrets = auth_zot(oci_registry_auth)
    registry.check()
    assert secrets.asked == ["env:ZOT_PASSWORD"]


def test_check_with_wrong_password_is_unauthorized_without_the_password(oci_registry_auth):
    wrong = "wrong-" + uuid.uuid4().hex
    registry, _ = auth_zot(oci_registry_auth, password=wrong)
    with pytest.raises(RegistryError) as info:
        registry.check()
    assert info.value.code == "REGISTRY_UNAUTHORIZED"
    assert oci_registry_auth.host in info.value.message
    assert wrong not in str(info.value.to_dict())


def test_manifest_digest_of_pushed_image(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "v1")
    registry = zot(oci_registry.url)
    assert registry.manifest_digest(f"{oci_registry.host}/{image.repository}:v1") == image.digest
    assert registry.manifest_digest(f"{oci_registry.host}/{image.repository}:v2") is None


def test_manifest_digest_with_basic_auth(oci_registry_auth):
    reg = oci_registry_auth
    image = push_image(reg.url, unique_repo(), "v1", auth=(reg.username, reg.password))
    registry, _ = auth_zot(reg)
    assert registry.manifest_digest(f"{reg.host}/{image.repository}:v1") == image.digest


def test_list_tags_accepts_full_or_local_repository(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "t0")
    for n in range(1, 5):
        tag_image(oci_registry.url, image, f"t{n}")
    registry = zot(oci_registry.url)
    expected = ["t0", "t1", "t2", "t3", "t4"]
    assert sorted(registry.list_tags(image.repository)) == expected
    assert sorted(registry.list_tags(f"{oci_registry.host}/{image.repository}")) == expected


def test_delete_removes_the_manifest(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "v1")
    registry = zot(oci_registry.url)
    reference = f"{oci_registry.host}/{image.repository}:v1"
    registry.delete(reference)
    assert registry.manifest_digest(reference) is None
    assert registry.list_tags(image.repository) == []
