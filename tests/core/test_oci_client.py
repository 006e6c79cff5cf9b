"""OciClient against a real registry (distribution 2.8), open and with basic auth."""

from __future__ import annotations

import uuid

import httpx
import pytest

from fixtures.oci_content import OCI_MANIFEST, push_image, tag_image
from fixtures.ports import free_port
from lian_build.errors import InvalidInput, RegistryError
from lian_build.oci import OciClient, parse_reference


class CountingTransport(httpx.HTTPTransport):
    """A real transport that remembers every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


def unique_repo(prefix: str = "oci") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- references

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("127.0.0.1:5000/app:1.2", ("127.0.0.1:5000", "app", "1.2")),
        ("127.0.0.1:5000/ci/ws/app", ("127.0.0.1:5000", "ci/ws/app", "latest")),
        ("ghcr.io/owner/app@" + DIGEST, ("ghcr.io", "owner/app", DIGEST)),
        ("ghcr.io/owner/app:1@" + DIGEST, ("ghcr.io", "owner/app", DIGEST)),
        ("localhost/app:x", ("localhost", "app", "x")),
    ],
)
def test_parse_reference_splits_host_repository_and_reference(reference, expected):
    assert parse_reference(reference) == expected


@pytest.mark.parametrize(
    "reference",
    ["app:1", "ubuntu/app:1", "127.0.0.1:5000/", "h.io/:x", "ghcr.io/owner/app@sha256:abc"],
)
def test_parse_reference_rejects_references_without_host_or_repository(reference):
    with pytest.raises(InvalidInput) as info:
        parse_reference(reference)
    assert info.value.field == "reference"


def test_base_url_must_be_http_or_https():
    with pytest.raises(InvalidInput):
        OciClient("ftp://127.0.0.1:5000")


# --------------------------------------------------------------------------- open registry


def test_ping_open_registry(oci_registry):
    with OciClient(oci_registry.url) as client:
        client.ping()


def test_manifest_digest_is_the_sha256_of_the_pushed_bytes(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "v1")
    with OciClient(oci_registry.url) as client:
        assert client.manifest_digest(image.repository, "v1") == image.digest
        assert client.manifest_digest(image.repository, image.digest) == image.digest
        media_type, body = client.get_manifest(image.repository, "v1")
    assert media_type == OCI_MANIFEST
    assert body == image.manifest


def test_manifest_digest_of_missing_tag_or_repository_is_none(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "v1")
    with OciClient(oci_registry.url) as client:
        assert client.manifest_digest(image.repository, "nope") is None
        assert client.manifest_digest(unique_repo("never"), "v1") is None


def test_get_manifest_of_missing_tag_names_the_oci_code(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "v1")
    with OciClient(oci_registry.url) as client, pytest.raises(RegistryError) as info:
        client.get_manifest(image.repository, "nope")
    assert info.value.code == "REGISTRY_ERROR"
    assert "MANIFEST_UNKNOWN" in info.value.message
    assert oci_registry.host in info.value.message


def test_list_tags_with_page_size_returns_every_tag(oci_registry):
    # distribution 2.8 ignores n= on tags/list (paged tags are tested through the GHCR
    # imitation); the catalog below pages for real.
    image = push_image(oci_registry.url, unique_repo(), "t0")
    for n in range(1, 5):
        tag_image(oci_registry.url, image, f"t{n}")
    with OciClient(oci_registry.url) as client:
        tags = client.list_tags(image.repository, page_size=2)
    assert sorted(tags) == ["t0", "t1", "t2", "t3", "t4"]


def test_list_tags_of_unknown_repository_is_empty(oci_registry):
    with OciClient(oci_registry.url) as client:
        assert client.list_tags(unique_repo("never")) == []


def test_delete_by_tag_removes_the_manifest(oci_registry):
    image = push_image(oci_registry.url, unique_repo(), "v1")
    with OciClient(oci_registry.url) as client:
        client.delete(image.repository, "v1")
        assert client.manifest_digest(image.repository, image.digest) is None
        with pytest.raises(RegistryError) as info:
            client.delete(image.repository, "v1")
        assert "MANIFEST_UNKNOWN" in info.value.message
        client.delete(image.repository, "v1", missing_ok=True)
        client.delete(image.repository, image.digest, missing_ok=True)


def test_closed_port_is_unreachable():
    client = OciClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with client, pytest.raises(RegistryError) as info:
        client.ping()
    assert info.value.code == "REGISTRY_UNREACHABLE"


# --------------------------------------------------------------------------- basic auth


def test_ping_with_right_credentials(oci_registry_auth):
    reg = oci_registry_auth
    with OciClient(reg.url, username=reg.username, password=reg.password) as client:
        client.ping()
    assert reg.password not in repr(client)


def test_ping_with_wrong_password_is_unauthorized_and_never_shows_it(oci_registry_auth):
    reg = oci_registry_auth
    wrong = "wrong-" + uuid.uuid4().hex
    client = OciClient(reg.url, username=reg.username, password=wrong)
    with client, pytest.raises(RegistryError) as info:
        client.ping()
    assert info.value.code == "REGISTRY_UNAUTHORIZED"
    assert reg.host in info.value.message
    assert "UNAUTHORIZED" in info.value.message
    assert wrong not in str(info.value.to_dict())


def test_ping_without_credentials_on_auth_registry_is_unauthorized(oci_registry_auth):
    with OciClient(oci_registry_auth.url) as client, pytest.raises(RegistryError) as info:
        client.ping()
    assert info.value.code == "REGISTRY_UNAUTHORIZED"


def test_basic_auth_is_sent_up_front_once_learned(oci_registry_auth):
    reg = oci_registry_auth
    auth = (reg.username, reg.password)
    image = push_image(reg.url, unique_repo(), "v1", auth=auth)
    transport = CountingTransport()
    with OciClient(
        reg.url, username=reg.username, password=reg.password, transport=transport
    ) as client:
        assert client.manifest_digest(image.repository, "v1") == image.digest
        assert client.list_tags(image.repository) == ["v1"]
    # One anonymous try, then every request carries the credentials.
    assert [("Authorization" in r.headers) for r in transport.sent] == [False, True, True]
