"""The GHCR plugin against an imitation of ghcr.io + the Packages API that fronts a real
OCI registry: manifests pushed through the imitation land in the real registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from plugins.ghcr.ghcr_imitation import GhcrImitation

from fixtures.oci_content import PushedImage, push_image, tag_image
from fixtures.plugin_checks import assert_import_leaves_out, assert_registers_registry
from fixtures.ports import free_port
from lian_build import api
from lian_build.errors import InvalidInput, RegistryError
from lian_build.oci import OciClient
from lian_ghcr import plugin
from lian_ghcr.registry import GhcrRegistry, GhcrSettings

USER, PAT, ORG = "octo", "ghp_" + "x" * 36, "acme"


@pytest.fixture
def ghcr(oci_registry) -> Iterator[GhcrImitation]:
    with GhcrImitation(oci_registry.url, username=USER, pat=PAT, orgs=(ORG,)) as imitation:
        yield imitation


def provider(
    imitation: GhcrImitation, *, owner: str = ORG, token: str = PAT, login: bool = True
) -> GhcrRegistry:
    settings = GhcrSettings(
        owner=owner,
        username=USER if login else None,
        token_ref="env:GHCR_TOKEN" if login else None,
        registry=imitation.host,
        api_url=imitation.url,
        insecure=True,
    )
    return GhcrRegistry(settings, {"env:GHCR_TOKEN": token}.__getitem__)


def push(imitation: GhcrImitation, repository: str, tag: str) -> PushedImage:
    """Push through the imitation with a token from its /token endpoint."""
    token = httpx.get(
        f"{imitation.url}/token",
        params={"scope": f"repository:{repository}:pull,push", "service": "ghcr.io"},
        auth=(USER, PAT),
    ).json()["token"]
    return push_image(imitation.url, repository, tag, headers={"Authorization": f"Bearer {token}"})


def unique(owner: str = ORG) -> str:
    return f"{owner}/cache/{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- no network


def test_plugin_registers_the_ghcr_registry():
    assert_registers_registry("ghcr", plugin, GhcrRegistry)


def test_plugin_module_does_not_import_httpx():
    assert_import_leaves_out("lian_ghcr.plugin", "httpx")


def test_defaults_layout_auth_and_plan():
    registry = GhcrRegistry(
        GhcrSettings(owner="Acme", username="bot", token_ref="env:T"),
        {"env:T": "pat-123"}.__getitem__,
    )
    assert registry.host == "ghcr.io"
    assert registry.insecure is False
    assert registry.cache_repository("ci/ws/app") == "ghcr.io/acme/ci/ws/app"
    assert registry.plan() == {
        "registry": "ghcr.io",
        "owner": "acme",
        "api_url": "https://api.github.com",
        "insecure": False,
        "auth": "token",
    }
    auth = registry.auth()
    assert auth == api.RegistryAuth(registry="ghcr.io", username="bot", password="pat-123")
    assert "pat-123" not in repr(auth)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"owner": "acme", "username": "bot"}, "registry.token_ref"),
        ({"owner": "acme", "token_ref": "env:T"}, "registry.username"),
        ({"owner": "acme/x"}, "registry.owner"),
        ({"owner": "acme", "api_url": "api.github.com"}, "registry.api_url"),
    ],
)
def test_invalid_settings_name_the_field(settings, field):
    with pytest.raises(InvalidInput) as info:
        GhcrSettings(**settings)
    assert info.value.field == field


# --------------------------------------------------------------------------- token flow


def test_check_fetches_a_push_token_for_the_owner(ghcr):
    provider(ghcr).check()
    assert ghcr.token_scopes == ["repository:acme/lian-build:pull,push"]


def test_check_with_a_wrong_token_is_unauthorized_without_the_token(ghcr):
    wrong = "ghp_wrong_" + uuid.uuid4().hex
    with pytest.raises(RegistryError) as info:
        provider(ghcr, token=wrong).check()
    assert info.value.code == "REGISTRY_UNAUTHORIZED"
    assert "DENIED" in info.value.message
    assert wrong not in str(info.value.to_dict())


def test_manifest_digest_through_bearer_tokens_cached_per_scope(ghcr, oci_registry):
    image = push(ghcr, unique(), "v1")
    registry = provider(ghcr)
    with registry._client() as client:  # one client: tokens are cached per scope
        assert client.manifest_digest(image.repository, "v1") == image.digest
        assert client.manifest_digest(image.repository, "v2") is None
        assert client.list_tags(image.repository) == ["v1"]
    assert ghcr.token_scopes.count(f"repository:{image.repository}:pull") == 1
    # The manifest really is in the real registry behind the imitation.
    with OciClient(oci_registry.url) as real:
        assert real.manifest_digest(image.repository, "v1") == image.digest
    reference = f"{ghcr.host}/{image.repository}:v1"
    assert registry.manifest_digest(reference) == image.digest


def test_token_url_override_replaces_an_unreachable_realm(ghcr):
    image = push(ghcr, unique(), "v1")
    ghcr.advertised_realm = f"http://127.0.0.1:{free_port()}/token"  # nothing listens
    client = OciClient(ghcr.url, username=USER, password=PAT, timeout=2)
    with client, pytest.raises(RegistryError) as info:
        client.manifest_digest(image.repository, "v1")
    assert info.value.code == "REGISTRY_UNREACHABLE"
    override = OciClient(
        ghcr.url, username=USER, password=PAT, token_url_override=f"{ghcr.url}/token"
    )
    with override:
        assert override.manifest_digest(image.repository, "v1") == image.digest


def test_anonymous_client_is_refused(ghcr):
    image = push(ghcr, unique(), "v1")
    with pytest.raises(RegistryError) as info:
        provider(ghcr, login=False).manifest_digest(f"{ghcr.host}/{image.repository}:v1")
    assert info.value.code == "REGISTRY_UNAUTHORIZED"


def test_list_tags_follows_link_pages(ghcr):
    image = push(ghcr, unique(), "t0")
    registry = provider(ghcr)
    # Tag directly in the real registry behind the imitation; list through the imitation.
    for n in range(1, 5):
        tag_image(ghcr.backend_url, image, f"t{n}")
    with registry._client() as client:
        tags = client.list_tags(image.repository, page_size=2)
    assert tags == ["t0", "t1", "t2", "t3", "t4"]
    pages = [t for m, t in ghcr.requests if "/tags/list" in t and m == "GET"]
    path = f"/v2/{image.repository}/tags/list"
    # The first page is asked twice: anonymously (401), then with the token.
    assert list(dict.fromkeys(pages)) == [
        f"{path}?n=2",
        f"{path}?last=t1&n=2",
        f"{path}?last=t3&n=2",
    ]
    assert registry.list_tags(f"{ghcr.host}/{image.repository}") == tags


# --------------------------------------------------------------------------- Packages API


def test_list_versions_groups_tags_by_digest(ghcr):
    repository = unique()
    first = push(ghcr, repository, "v1")
    tag_image(ghcr.backend_url, first, "stable")
    second = push(ghcr, repository, "v2")
    versions = provider(ghcr).list_versions(f"{ghcr.host}/{repository}")
    by_digest = {v.digest: set(v.tags) for v in versions}
    assert by_digest == {first.digest: {"v1", "stable"}, second.digest: {"v2"}}
    name = repository.split("/", 1)[1].replace("/", "%2F")
    assert any(f"/orgs/acme/packages/container/{name}/versions" in t for _, t in ghcr.requests)


def test_delete_by_tag_removes_the_version_through_the_packages_api(ghcr, oci_registry):
    repository = unique()
    doomed = push(ghcr, repository, "old")
    kept = push(ghcr, repository, "new")
    registry = provider(ghcr)
    registry.delete(f"{ghcr.host}/{repository}:old")
    with OciClient(oci_registry.url) as real:
        assert real.manifest_digest(repository, doomed.digest) is None
        assert real.manifest_digest(repository, "new") == kept.digest
    assert ("DELETE", "/v2/") not in [(m, t[:4]) for m, t in ghcr.requests]
    with pytest.raises(RegistryError) as info:
        registry.delete(f"{ghcr.host}/{repository}:old")
    assert "MANIFEST_UNKNOWN" in info.value.message


def test_delete_by_digest_for_a_user_owner_uses_the_user_endpoint(ghcr, oci_registry):
    repository = unique(owner=USER)
    image = push(ghcr, repository, "v1")
    provider(ghcr, owner=USER).delete(f"{ghcr.host}/{repository}@{image.digest}")
    with OciClient(oci_registry.url) as real:
        assert real.manifest_digest(repository, "v1") is None
    assert any(m == "DELETE" and t.startswith("/user/packages/") for m, t in ghcr.requests)


def test_packages_api_refuses_a_wrong_token(ghcr):
    repository = unique()
    push(ghcr, repository, "v1")
    wrong = "ghp_wrong_" + uuid.uuid4().hex
    with pytest.raises(RegistryError) as info:
        provider(ghcr, token=wrong).delete(f"{ghcr.host}/{repository}:v1")
    assert info.value.code == "REGISTRY_UNAUTHORIZED"
    assert "Requires authentication" in info.value.message
    assert wrong not in str(info.value.to_dict())


def test_reference_outside_the_owner_is_rejected(ghcr):
    with pytest.raises(InvalidInput):
        provider(ghcr).delete(f"{ghcr.host}/someone-else/app:v1")
