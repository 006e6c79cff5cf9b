"""Build-cache namespacing: which cache refs a build imports from and exports to.

Two layers live in the registry:

- ``ci/<workspace>/<image>``: canonical, written by CI, read-only to sessions.
- ``dev/<actor>-<workspace>/<image>``: one per session actor and workspace.

CI imports and exports ``ci/`` only (it never imports ``dev/``). A session imports its
own ``dev/`` layer first, then ``ci/``, and exports to its ``dev/`` layer only.

The dev layer keeps the seed's layout exactly: ``dev/<actor-id>-<workspace>/``, dashes
in actor ids kept as they are (``--actor bob-smith`` -> ``dev/bob-smith-web/``). The
text alone does not say where the actor ends (actor "a-b" in workspace "c" and actor
"a" in workspace "b-c" share ``dev/a-b-c``); session caches are a speed-up for one
developer, never a trust boundary, and CI never reads dev/.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from lian_build import validate
from lian_build.errors import InvalidInput

CI = "ci"
DEV = "dev"
MODES = ("ci", "session")
DEFAULT_TAG = "buildcache"
VIOLATION_CODE = "CACHE_NAMESPACE_VIOLATION"


@attrs.frozen
class CacheRefs:
    """``repo:tag`` references, in the order the builder should use them."""

    imports: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()


def dev_owner(actor: str, workspace: str) -> str:
    """The ``<actor>-<workspace>`` path component of a session's dev/ layer (seed layout)."""
    return f"{actor}-{workspace}"


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidInput(
            f"cache.mode must be one of {', '.join(MODES)} (got {mode!r})", field="cache.mode"
        )


def cache_refs(
    *,
    mode: str,
    workspace: str,
    actor: str | None,
    image_name: str,
    repository_for: Callable[[str], str],
    tag: str = DEFAULT_TAG,
    do_import: bool = True,
    do_export: bool = True,
) -> CacheRefs:
    """The cache refs for one build. ``repository_for`` maps a namespace path such as
    ``ci/<ws>/<image>`` to a full repository (``RegistryProvider.cache_repository``)."""
    _check_mode(mode)
    validate.path_component(workspace, "workspace")
    validate.path_component(image_name, "image name")
    validate.tag(tag, "cache tag")

    def ref(namespace: str) -> str:
        reference = f"{repository_for(namespace)}:{tag}"
        # Catches a bad registry host and names past the 255-character limit.
        validate.image_reference(reference, field="cache")
        return reference

    ci_ref = ref(f"{CI}/{workspace}/{image_name}")
    if mode == "ci":
        refs = CacheRefs(
            imports=(ci_ref,) if do_import else (),
            exports=(ci_ref,) if do_export else (),
        )
    else:
        if actor is None:
            raise InvalidInput(
                "cache mode 'session' needs an actor id (cache.actor.id)", field="cache.actor.id"
            )
        validate.path_component(actor, "cache.actor.id")
        dev_ref = ref(f"{DEV}/{dev_owner(actor, workspace)}/{image_name}")
        refs = CacheRefs(
            imports=(dev_ref, ci_ref) if do_import else (),
            exports=(dev_ref,) if do_export else (),
        )
    assert_invariants(mode, refs, workspace, actor)
    return refs


def _layer(reference: str) -> tuple[str, str]:
    """(``ci`` | ``dev`` | ``""``, owner component) of a cache ref.

    The namespace is the last three path components: ``repository_for`` may put
    anything (a project, an org) in front of it. Refs outside both layers (a user's
    own ``--cache-from``) give ``("", "")``.
    """
    components = validate.image_reference(reference, field="cache").repository.split("/")
    if len(components) < 3 or components[-3] not in (CI, DEV):
        return "", ""
    return components[-3], components[-2]


def _violation(message: str) -> InvalidInput:
    # User-supplied extra refs reach these checks too, hence an input error.
    return InvalidInput(
        f"cache namespacing violated: {message}", field="cache", code=VIOLATION_CODE
    )


def assert_invariants(mode: str, refs: CacheRefs, workspace: str, actor: str | None) -> None:
    """Raise ``InvalidInput`` (code ``CACHE_NAMESPACE_VIOLATION``) when ``refs`` break
    the policy. Refs outside the ci/ and dev/ layers are the user's and pass through.

    - CI: imports and exports no dev/ layer; exports only to ``ci/<workspace>``.
    - Session: exports only to its own dev/ layer (never ci/); imports no other
      actor's dev/ layer; its dev/ import comes before any ci/ import.
    """
    _check_mode(mode)
    if mode == "ci":
        for reference in (*refs.imports, *refs.exports):
            if _layer(reference)[0] == DEV:
                raise _violation(f"CI never uses a dev/ layer ({reference})")
        for reference in refs.exports:
            if _layer(reference)[0] == CI and _layer(reference) != (CI, workspace):
                raise _violation(f"CI exports only to ci/{workspace}/*, not {reference}")
        return

    if actor is None:
        raise _violation("session cache refs without an actor")
    own_dev = (DEV, dev_owner(actor, workspace))
    for reference in refs.exports:
        kind = _layer(reference)[0]
        if kind == CI:
            raise _violation(f"a session never exports to ci/ ({reference})")
        if kind == DEV and _layer(reference) != own_dev:
            raise _violation(f"a session exports only to its own dev/ layer, not {reference}")
    seen_ci = False
    for reference in refs.imports:
        layer = _layer(reference)
        if layer[0] == CI:
            seen_ci = True
        elif layer[0] == DEV:
            if layer != own_dev:
                raise _violation(f"a session may not import another actor's layer {reference}")
            if seen_ci:
                raise _violation(f"dev/ must be imported before ci/ ({reference})")
