"""Cache housekeeping through Harbor's API (repositories, artifacts, artifact delete),
against the imitation fronting a real registry."""

from __future__ import annotations

import uuid

import pytest
from plugins.harbor.harbor_imitation import HarborImitation
from plugins.harbor.test_harbor_registry import PROJECT, ROBOT, SECRET, provider

from fixtures.oci_content import push_image, tag_image
from lian_build import cachestore
from lian_build.errors import RegistryError


@pytest.fixture
def harbor(oci_registry):
    with HarborImitation(
        oci_registry.url, username=ROBOT, password=SECRET, projects={PROJECT}
    ) as imitation:
        yield imitation


def push(harbor: HarborImitation, repository: str, tag: str):
    return push_image(harbor.url, f"{PROJECT}/{repository}", tag, auth=(ROBOT, SECRET))


def test_lists_and_prunes_one_actors_dev_cache_through_the_harbor_api(harbor):
    ws = "w" + uuid.uuid4().hex[:8]
    ci = push(harbor, f"ci/{ws}/app", "buildcache")
    alice = push(harbor, f"dev/alice-{ws}/app", "k1")
    tag_image(harbor.url, alice, "k2", auth=(ROBOT, SECRET))
    bob = push(harbor, f"dev/bob-{ws}/app", "k1")
    registry = provider(harbor.url)

    found = {(n.layer, n.actor): n for n in cachestore.list_namespaces(registry, workspace=ws)}
    assert set(found) == {("ci", None), ("dev", "alice"), ("dev", "bob")}
    (artifact,) = found[("dev", "alice")].artifacts
    assert artifact.digest == alice.digest and artifact.tags == ("k1", "k2")
    assert artifact.size_bytes and artifact.created_at is not None  # Harbor's size, push_time
    assert any("/api/v2.0/projects/ci/repositories?" in target for _m, target in harbor.requests)

    dev = cachestore.list_namespaces(registry, layers=["dev"], workspace=ws, actor="alice")
    done = cachestore.delete_all(
        registry, cachestore.select(dev, older_than=None, now=cachestore.now())
    )
    assert [d.artifact.digest for d in done] == [alice.digest]
    assert (
        "DELETE",
        f"/api/v2.0/projects/{PROJECT}/repositories/dev%252Falice-{ws}%252Fapp"
        f"/artifacts/{alice.digest}",
    ) in harbor.requests
    left = {(n.layer, n.actor): n for n in cachestore.list_namespaces(registry, workspace=ws)}
    assert left[("dev", "alice")].artifacts == ()
    assert [a.digest for a in left[("dev", "bob")].artifacts] == [bob.digest]
    assert [a.digest for a in left[("ci", None)].artifacts] == [ci.digest]


def test_a_robot_without_delete_permission_stops_the_prune(harbor):
    ws = "w" + uuid.uuid4().hex[:8]
    push(harbor, f"dev/alice-{ws}/app", "k1")
    push(harbor, f"dev/alice-{ws}/app", "k2")
    harbor.refuse_delete = True
    registry = provider(harbor.url)
    dev = cachestore.list_namespaces(registry, layers=["dev"], workspace=ws)
    chosen = cachestore.select(dev, older_than=None, now=cachestore.now())
    with pytest.raises(RegistryError) as caught:
        cachestore.delete_all(registry, chosen)
    assert caught.value.code == "CACHE_DELETE_REFUSED"
    assert (
        caught.value.details["deleted"] == []
        and caught.value.details["cause"] == "REGISTRY_UNAUTHORIZED"
    )
    deletes = [t for m, t in harbor.requests if m == "DELETE"]
    assert len(deletes) == 1  # stopped at the first refusal
    assert len(cachestore.list_namespaces(registry, workspace=ws)[0].artifacts) == 2
