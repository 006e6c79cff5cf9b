"""Cache namespacing: ci/<workspace>/* and dev/<actor>-<workspace>/* invariants."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lian_build import cache
from lian_build.cache import CacheRefs
from lian_build.errors import InvalidInput

HOST = "127.0.0.1:5000"


def plain(namespace: str) -> str:
    return f"{HOST}/{namespace}"


def harbor(namespace: str) -> str:
    # Harbor-style: a project in front of the namespace.
    return f"harbor.example.com/builds/{namespace}"


def refs(mode: str, workspace: str = "shop", actor: str | None = "alice", **kw) -> CacheRefs:
    return cache.cache_refs(
        mode=mode,
        workspace=workspace,
        actor=actor,
        image_name="api",
        repository_for=kw.pop("repository_for", plain),
        **kw,
    )


def test_ci_reads_and_writes_the_canonical_layer_only():
    result = refs("ci", actor=None)
    assert result == CacheRefs(
        imports=(f"{HOST}/ci/shop/api:buildcache",),
        exports=(f"{HOST}/ci/shop/api:buildcache",),
    )
    # An actor does not pull CI into a dev layer.
    assert refs("ci", actor="alice") == result


def test_session_imports_dev_then_ci_and_exports_dev():
    result = refs("session", repository_for=harbor, tag="cache-v2")
    assert result == CacheRefs(
        imports=(
            "harbor.example.com/builds/dev/alice-shop/api:cache-v2",
            "harbor.example.com/builds/ci/shop/api:cache-v2",
        ),
        exports=("harbor.example.com/builds/dev/alice-shop/api:cache-v2",),
    )


def test_import_and_export_switches():
    assert refs("session", do_import=False).imports == ()
    assert refs("session", do_export=False).exports == ()
    assert refs("ci", do_import=False, do_export=False) == CacheRefs()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "dev"}, "cache.mode"),
        ({"mode": "session", "actor": None}, "cache.actor.id"),
        ({"mode": "session", "actor": "Alice"}, "cache.actor.id"),
        ({"mode": "ci", "workspace": "my/ws"}, "workspace"),
        ({"mode": "ci", "tag": "-bad"}, "cache tag"),
    ],
)
def test_bad_inputs_name_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        refs(**kwargs)
    assert err.value.field == field


def test_a_bad_repository_mapping_is_caught():
    with pytest.raises(InvalidInput, match="fully qualified"):
        refs("ci", repository_for=lambda ns: ns)  # no registry host


def test_the_seed_layout_keeps_dashes_in_actor_ids():
    # The seed's dev/<actor-id>-<workspace>/ layout, as documented: no escaping.
    a = refs("session", workspace="c", actor="a-b").exports
    assert a == (f"{HOST}/dev/a-b-c/api:buildcache",)


@pytest.mark.parametrize(
    ("mode", "bad", "message"),
    [
        ("ci", CacheRefs(imports=(f"{HOST}/dev/alice-shop/api:c",)), "CI never uses a dev/"),
        ("ci", CacheRefs(exports=(f"{HOST}/dev/alice-shop/api:c",)), "CI never uses a dev/"),
        ("ci", CacheRefs(exports=(f"{HOST}/ci/other/api:c",)), "CI exports only"),
        ("session", CacheRefs(exports=(f"{HOST}/ci/shop/api:c",)), "never exports to ci/"),
        ("session", CacheRefs(exports=(f"{HOST}/ci/other/api:c",)), "never exports to ci/"),
        ("session", CacheRefs(exports=(f"{HOST}/dev/bob-shop/api:c",)), "own dev/ layer"),
        (
            "session",
            CacheRefs(imports=(f"{HOST}/ci/shop/api:c", f"{HOST}/dev/alice-shop/api:c")),
            "before ci/",
        ),
        ("session", CacheRefs(imports=(f"{HOST}/dev/bob-shop/api:c",)), "another actor"),
    ],
)
def test_assert_invariants_catches_violations(mode, bad, message):
    with pytest.raises(InvalidInput, match=message) as err:
        cache.assert_invariants(mode, bad, "shop", "alice")
    assert err.value.code == cache.VIOLATION_CODE
    assert err.value.field == "cache"


def test_user_refs_outside_both_layers_pass_with_the_policy_refs():
    own = refs("session")
    user = f"{HOST}/team/shared-cache:main"
    extended = CacheRefs(imports=(*own.imports, user), exports=(*own.exports, user))
    cache.assert_invariants("session", extended, "shop", "alice")
    ci = refs("ci", actor=None)
    # CI may read another workspace's canonical layer (e.g. a shared base).
    extended = CacheRefs(imports=(*ci.imports, f"{HOST}/ci/base/api:c", user), exports=ci.exports)
    cache.assert_invariants("ci", extended, "shop", None)


# ----------------------------------------------------------------- properties

PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")


@st.composite
def names(draw: st.DrawFn) -> str:
    """Path components from a tiny alphabet with many '-' runs, so collisions are likely."""
    chunks = draw(st.lists(st.sampled_from(["a", "b", "0", "ab"]), min_size=1, max_size=5))
    separators = st.sampled_from(["-", "--", "---", ".", "_", "__"])
    out = chunks[0]
    for chunk in chunks[1:]:
        out += draw(separators) + chunk
    return out


mapping = st.sampled_from([plain, harbor])


@given(
    workspace=names(),
    actor=names(),
    image=names(),
    repository_for=mapping,
    imp=st.booleans(),
    exp=st.booleans(),
)
def test_ci_never_touches_dev(workspace, actor, image, repository_for, imp, exp):
    result = cache.cache_refs(
        mode="ci",
        workspace=workspace,
        actor=actor,
        image_name=image,
        repository_for=repository_for,
        do_import=imp,
        do_export=exp,
    )
    expected = f"{repository_for(f'ci/{workspace}/{image}')}:buildcache"
    assert result.imports == ((expected,) if imp else ())
    assert result.exports == ((expected,) if exp else ())
    assert not any("/dev/" in ref for ref in result.imports)


@given(workspace=names(), actor=names(), image=names(), repository_for=mapping)
def test_session_never_exports_ci_and_imports_dev_first(workspace, actor, image, repository_for):
    result = cache.cache_refs(
        mode="session",
        workspace=workspace,
        actor=actor,
        image_name=image,
        repository_for=repository_for,
    )
    dev = f"{repository_for(f'dev/{cache.dev_owner(actor, workspace)}/{image}')}:buildcache"
    ci = f"{repository_for(f'ci/{workspace}/{image}')}:buildcache"
    assert result.imports == (dev, ci)
    assert result.exports == (dev,)
    # Independent check on the strings: the export lives under dev/, never ci/.
    assert "/dev/" in result.exports[0]
    assert "/ci/" not in result.exports[0]


@given(actor=names(), workspace=names())
def test_dev_owner_is_the_seed_layout_and_a_path_component(actor, workspace):
    owner = cache.dev_owner(actor, workspace)
    assert owner == f"{actor}-{workspace}"
    assert PATH_COMPONENT.fullmatch(owner)


def test_actor_dashes_are_kept():
    refs = cache.cache_refs(
        mode="session",
        workspace="web",
        actor="bob-smith",
        image_name="app",
        repository_for=lambda ns: f"127.0.0.1:5000/{ns}",
    )
    assert refs.exports == ("127.0.0.1:5000/dev/bob-smith-web/app:buildcache",)
