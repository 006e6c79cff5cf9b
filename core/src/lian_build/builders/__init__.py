"""Builders turn a BuildJob into commands on the runner; this module picks one.

BuildKit (``buildctl``) and buildah ship as built-in plugins (``builtin/builders.py``);
third-party builders register the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from lian_build import api
from lian_build.errors import PluginError, RemoteError

log = logging.getLogger("lian.builders")

AUTO = "auto"
# Tried first by "auto", in this order; any other registered builder follows by name.
PREFERRED_ORDER = ("buildkit", "buildah")


def select_builder(
    name: str, builders: Mapping[str, api.Builder], remote: api.Remote
) -> api.Builder:
    """The builder to use on this runner.

    ``"auto"`` takes the first available of buildkit, buildah, then the others in name
    order. A named builder must be registered (PluginError) and available on the runner
    (RemoteError ``BUILDER_UNAVAILABLE``).
    """
    if name == AUTO:
        tried: list[str] = []
        for candidate in _auto_order(builders):
            if builders[candidate].available(remote):
                log.info("builder auto: using %s", candidate)
                return builders[candidate]
            tried.append(f"{candidate} ({_requirement(builders[candidate])})")
        raise RemoteError(
            "no builder is available on the runner; tried: "
            + ", ".join(tried or ["none registered"]),
            field="builder",
            code="BUILDER_UNAVAILABLE",
            details={"tried": _auto_order(builders)},
        )
    chosen = builders.get(name)
    if chosen is None:
        known = ", ".join(sorted(builders)) or "none"
        raise PluginError(
            f"unknown builder {name!r}; known builders: {AUTO}, {known}",
            field="builder",
            details={"known": [AUTO, *sorted(builders)]},
        )
    if not chosen.available(remote):
        raise RemoteError(
            f"builder {name!r} is not available on the runner: it needs {_requirement(chosen)}",
            field="builder",
            code="BUILDER_UNAVAILABLE",
            details={"builder": name},
        )
    return chosen


def _auto_order(builders: Mapping[str, api.Builder]) -> list[str]:
    preferred = [name for name in PREFERRED_ORDER if name in builders]
    return preferred + sorted(set(builders) - set(preferred))


def _requirement(builder: api.Builder) -> str:
    # ``requirement`` is optional on third-party builders: fall back to the description.
    text = getattr(builder, "requirement", "") or builder.description
    return str(text) if text else f"what the {builder.name!r} builder checks for"


# --------------------------------------------------------------------------- references


def reference_host(reference: str) -> str:
    """The registry host of an image reference (``docker.io`` when it names none)."""
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def repository_of(reference: str) -> str:
    """A reference without tag or digest: ``host:5000/cache/app:ci`` -> ``host:5000/cache/app``."""
    name = reference.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}{slash}{last}"


def any_insecure(references: Iterable[str], insecure_registries: frozenset[str]) -> bool:
    """Whether any reference lives on a registry that speaks plain HTTP."""
    return any(reference_host(ref) in insecure_registries for ref in references)
