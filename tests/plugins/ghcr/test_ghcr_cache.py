"""Cache housekeeping through the GitHub Packages API (package list, versions, version
delete), against the imitation fronting a real registry."""

from __future__ import annotations

import uuid

import pytest
from plugins.ghcr.ghcr_imitation import GhcrImitation
from plugins.ghcr.test_ghcr_registry import ORG, PAT, USER, provider, push

from lian_build import cachestore
from lian_build.errors import RegistryError


@pytest.fixture
def ghcr(oci_registry):
    with GhcrImitation(oci_registry.url, username=USER, pat=PAT, orgs=(ORG,)) as imitation:
        yield imitation


def test_lists_and_prunes_one_actors_dev_cache_through_the_packages_api(ghcr):
    ws = "w" + uuid.uuid4().hex[:8]
    ci = push(ghcr, f"{ORG}/ci/{ws}/app", "buildcache")
    alice = push(ghcr, f"{ORG}/dev/alice-{ws}/app", "k1")
    bob = push(ghcr, f"{ORG}/dev/bob-{ws}/app", "k1")
    registry = provider(ghcr)

    found = {(n.layer, n.actor): n for n in cachestore.list_namespaces(registry, workspace=ws)}
    assert set(found) == {("ci", None), ("dev", "alice"), ("dev", "bob")}
    (artifact,) = found[("dev", "alice")].artifacts
    assert artifact.digest == alice.digest and artifact.tags == ("k1",)
    assert artifact.size_bytes and artifact.created_at is not None
    assert any(
        t.startswith(f"/orgs/{ORG}/packages?package_type=container") for _m, t in ghcr.requests
    )

    dev = cachestore.list_namespaces(registry, layers=["dev"], workspace=ws, actor="alice")
    done = cachestore.delete_all(
        registry, cachestore.select(dev, older_than=None, now=cachestore.now())
    )
    assert [d.artifact.digest for d in done] == [alice.digest]
    deletes = [t for m, t in ghcr.requests if m == "DELETE"]
    assert len(deletes) == 1 and deletes[0].startswith(
        f"/orgs/{ORG}/packages/container/dev%2Falice-"
    )
    left = {(n.layer, n.actor): n for n in cachestore.list_namespaces(registry, workspace=ws)}
    assert [a.digest for a in left[("dev", "bob")].artifacts] == [bob.digest]
    assert [a.digest for a in left[("ci", None)].artifacts] == [ci.digest]


def test_a_token_without_delete_packages_stops_the_prune(ghcr):
    ws = "w" + uuid.uuid4().hex[:8]
    push(ghcr, f"{ORG}/dev/alice-{ws}/app", "k1")
    push(ghcr, f"{ORG}/dev/alice-{ws}/app", "k2")
    ghcr.refuse_delete = True
    registry = provider(ghcr)
    dev = cachestore.list_namespaces(registry, layers=["dev"], workspace=ws)
    with pytest.raises(RegistryError) as caught:
        cachestore.delete_all(
            registry, cachestore.select(dev, older_than=None, now=cachestore.now())
        )
    assert caught.value.code == "CACHE_DELETE_REFUSED"
    assert caught.value.details["deleted"] == []
    assert len([t for m, t in ghcr.requests if m == "DELETE"]) == 1
    assert len(cachestore.list_namespaces(registry, workspace=ws)[0].artifacts) == 2
