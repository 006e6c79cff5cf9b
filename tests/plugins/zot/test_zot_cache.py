"""`lian cache ls|prune` and the listing/deleting they rest on, against a real OCI
registry (distribution 2.8 stands in for zot): deletes go through the distribution API."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import httpx
import pytest

from fixtures.cli import lian_envelope
from fixtures.oci_content import PushedImage, push_image, tag_image
from lian_build import cachestore
from lian_zot.registry import ZotRegistry, ZotSettings

OLD = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).isoformat()
NEW = dt.datetime.now(dt.UTC).isoformat()


def zot(url: str) -> ZotRegistry:
    return ZotRegistry(ZotSettings(url=url), lambda ref: "")


def alive(url: str, image: PushedImage) -> bool:
    response = httpx.head(
        f"{url}/v2/{image.repository}/manifests/{image.digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    return response.status_code == 200


@pytest.fixture
def layout(oci_registry) -> dict[str, PushedImage]:
    """A workspace with a ci/ cache and two actors' dev/ caches, old and new entries."""
    ws = "w" + uuid.uuid4().hex[:8]
    url = oci_registry.url
    images = {
        "ci": push_image(url, f"ci/{ws}/app", "buildcache", created=OLD),
        "alice_old": push_image(url, f"dev/alice-{ws}/app", "k1", created=OLD),
        "alice_new": push_image(url, f"dev/alice-{ws}/app", "k2", created=NEW),
        "bob": push_image(url, f"dev/bob-{ws}/app", "k1", created=OLD),
    }
    tag_image(url, images["alice_new"], "k3")  # two tags, one manifest
    images["ws"] = ws  # type: ignore[assignment]
    return images


def cli(registry_url: str, state: Path, *args: str):
    return lian_envelope(
        ["cache", *args, "--registry", "zot", "--registry-opt", f"url={registry_url}"], state
    )


def test_listing_parses_layers_actors_sizes_and_ages(oci_registry, layout):
    ws = layout["ws"]
    found = {
        (ns.layer, ns.actor): ns
        for ns in cachestore.list_namespaces(zot(oci_registry.url), workspace=ws)
    }
    assert set(found) == {("ci", None), ("dev", "alice"), ("dev", "bob")}
    alice = found[("dev", "alice")]
    assert alice.repository == f"{oci_registry.host}/dev/alice-{ws}/app"
    assert sorted(a.tags for a in alice.artifacts) == [("k1",), ("k2", "k3")]
    assert all(a.size_bytes and a.size_bytes > 16 for a in alice.artifacts)
    assert alice.newest() is not None and alice.newest() > dt.datetime.now(dt.UTC) - dt.timedelta(
        hours=1
    )


def test_cache_ls_prints_namespaces_with_size_and_age(oci_registry, layout, tmp_path):
    run = cli(oci_registry.url, tmp_path, "ls", "--workspace", layout["ws"])
    assert run.exit_code == 0, run.stderr
    rows = run.envelope["result"]["namespaces"]
    assert {(r["layer"], r["actor"]) for r in rows} == {
        ("ci", None),
        ("dev", "alice"),
        ("dev", "bob"),
    }
    ci = next(r for r in rows if r["layer"] == "ci")
    assert ci["manifests"] == 1 and ci["size_bytes"] > 0 and ci["age_s"] >= 29 * 86400
    assert "age 30d" in run.stderr or "age 29d" in run.stderr  # the table on stderr


def test_prune_dev_deletes_exactly_the_actor_asked_for(oci_registry, layout, tmp_path):
    url = oci_registry.url
    dry = cli(
        url,
        tmp_path,
        "prune",
        "--dev",
        "--actor",
        "alice",
        "--workspace",
        layout["ws"],
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.stderr
    assert len(dry.envelope["result"]["selected"]) == 2
    assert dry.envelope["result"]["deleted"] == []
    assert all(alive(url, layout[k]) for k in ("ci", "alice_old", "alice_new", "bob"))

    run = cli(url, tmp_path, "prune", "--dev", "--actor", "alice", "--workspace", layout["ws"])
    assert run.exit_code == 0, run.stderr
    deleted = {d["reference"].rsplit("@", 1)[1] for d in run.envelope["result"]["deleted"]}
    assert deleted == {layout["alice_old"].digest, layout["alice_new"].digest}
    assert not alive(url, layout["alice_old"]) and not alive(url, layout["alice_new"])
    assert alive(url, layout["bob"]) and alive(url, layout["ci"])


def test_prune_older_than_keeps_recent_entries(oci_registry, layout, tmp_path):
    url = oci_registry.url
    run = cli(url, tmp_path, "prune", "--dev", "--older-than", "14d", "--workspace", layout["ws"])
    assert run.exit_code == 0, run.stderr
    assert not alive(url, layout["alice_old"]) and not alive(url, layout["bob"])
    assert alive(url, layout["alice_new"]) and alive(url, layout["ci"])


def test_ci_needs_an_explicit_confirmation(oci_registry, layout, tmp_path):
    url = oci_registry.url
    refused = cli(url, tmp_path, "prune", "--ci", "--workspace", layout["ws"])
    assert refused.exit_code == 2
    assert (
        refused.error["code"] == "INVALID_INPUT" and "--yes-delete-ci" in refused.error["message"]
    )
    assert alive(url, layout["ci"])
    nothing = cli(url, tmp_path, "prune", "--workspace", layout["ws"])
    assert nothing.exit_code == 2 and nothing.error["field"] == "dev"
    done = cli(url, tmp_path, "prune", "--ci", "--yes-delete-ci", "--workspace", layout["ws"])
    assert done.exit_code == 0, done.stderr
    assert not alive(url, layout["ci"]) and alive(url, layout["bob"])


def test_bad_duration_is_invalid_input(oci_registry, tmp_path):
    run = cli(oci_registry.url, tmp_path, "prune", "--dev", "--older-than", "two weeks")
    assert run.exit_code == 2 and run.error["field"] == "older_than"


def test_a_registry_refusing_deletion_gives_an_error_and_deletes_nothing(
    oci_registry_no_delete, tmp_path
):
    url = oci_registry_no_delete.url
    ws = "w" + uuid.uuid4().hex[:8]
    first = push_image(url, f"dev/carol-{ws}/app", "k1")
    second = push_image(url, f"dev/carol-{ws}/app", "k2")
    run = cli(url, tmp_path, "prune", "--dev", "--workspace", ws)
    assert run.exit_code == 6, run.stderr
    error = run.error
    assert error["code"] == "CACHE_DELETE_REFUSED"
    assert error["details"]["deleted"] == []
    assert (
        "refused to delete" in error["message"] and "nothing else was deleted" in error["message"]
    )
    assert alive(url, first) and alive(url, second)
    assert len(run.stderr.strip().splitlines()) == 1  # one readable line


def test_ephemeral_disposition_removes_only_the_sessions_own_dev_cache(oci_registry, layout):
    """What an ``'ephemeral`` session build does after it ends: its own dev/ repository
    is emptied; another actor's layer, the ci/ layer and foreign names are left alone."""
    url, ws = oci_registry.url, layout["ws"]
    host = oci_registry.host
    done = cachestore.remove_session_cache(
        zot(url),
        workspace=ws,
        actor="alice",
        repositories=[
            f"{host}/dev/alice-{ws}/app",
            f"{host}/dev/bob-{ws}/app",  # not this session's: ignored
            f"{host}/ci/{ws}/app",
        ],
    )
    assert {d.artifact.digest for d in done} == {
        layout["alice_old"].digest,
        layout["alice_new"].digest,
    }
    assert not alive(url, layout["alice_old"]) and not alive(url, layout["alice_new"])
    assert alive(url, layout["bob"]) and alive(url, layout["ci"])
