"""Cache housekeeping: list the ci/ and dev/ cache namespaces in a registry, and prune.

Works through the registry provider (``list_repositories``, ``list_artifacts``,
``delete``), so each registry deletes its own way: the distribution API for zot and
registry:2, Harbor's artifacts API, GitHub's package versions API.

Pruning computes the whole selection first, then deletes one manifest at a time and
stops at the first refusal: a registry that refuses deletion leaves everything else
as it was, and the error says what (if anything) was already deleted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable

import attrs

from lian_build import api, cache
from lian_build.errors import InvalidInput, LianError, RegistryError

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, field: str = "older_than") -> dt.timedelta:
    """``14d``, ``12h``, ``30m``, ``2w``, ``90s`` -> timedelta; InvalidInput otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidInput(
            f"{field} must be a number and a unit (s, m, h, d, w), e.g. 14d; got {text!r}",
            field=field,
        )
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


@attrs.frozen
class Namespace:
    """One cache repository: ``<layer>/<owner>/<image>`` under the registry's cache area."""

    repository: str  # full, host/...
    layer: str  # "ci" | "dev"
    workspace: str
    actor: str | None  # dev/ only
    image: str
    artifacts: tuple[api.CacheArtifact, ...]

    @property
    def size_bytes(self) -> int:
        return sum(a.size_bytes or 0 for a in self.artifacts)

    def newest(self) -> dt.datetime | None:
        times = [a.created_at for a in self.artifacts if a.created_at is not None]
        return max(times) if times else None

    def to_dict(self, now: dt.datetime) -> dict[str, object]:
        newest = self.newest()
        return {
            "repository": self.repository,
            "layer": self.layer,
            "workspace": self.workspace,
            "actor": self.actor,
            "image": self.image,
            "manifests": len(self.artifacts),
            "size_bytes": self.size_bytes,
            "newest": newest.isoformat() if newest else None,
            "age_s": int((now - newest).total_seconds()) if newest else None,
        }


def _parse(
    repository: str, base: str, layer: str, workspace: str | None, actor: str | None
) -> Namespace | None:
    """``<base>/<owner>/<image>`` -> Namespace; None for names outside that shape or not
    matching the filters.

    A dev/ owner is the seed's ``<actor>-<workspace>``, which cannot be split uniquely
    when both hold dashes: with a filter the known part decides the split; without
    one the first dash does.
    """
    rest = repository[len(base) + 1 :].split("/")
    if len(rest) != 2:
        return None
    owner, image = rest
    if layer == cache.CI:
        if actor is not None or (workspace is not None and owner != workspace):
            return None
        return Namespace(repository, layer, owner, None, image, ())
    if actor is not None and workspace is not None:
        if owner != cache.dev_owner(actor, workspace):
            return None
    elif actor is not None:
        if not owner.startswith(actor + "-"):
            return None
        workspace = owner[len(actor) + 1 :]
    elif workspace is not None:
        if not owner.endswith("-" + workspace):
            return None
        actor = owner[: -len(workspace) - 1]
    else:
        actor, sep, workspace = owner.partition("-")
        if not sep:
            return None
    if not actor or not workspace:
        return None
    return Namespace(repository, layer, workspace, actor, image, ())


def list_namespaces(
    registry: api.RegistryProvider,
    *,
    layers: Iterable[str] = (cache.CI, cache.DEV),
    workspace: str | None = None,
    actor: str | None = None,
) -> list[Namespace]:
    """Cache namespaces with their manifests (each repository listed once)."""
    found: list[Namespace] = []
    for layer in layers:
        base = registry.cache_repository(layer)
        for repository in registry.list_repositories(base):
            namespace = _parse(repository, base, layer, workspace, actor)
            if namespace is None:
                continue
            artifacts = tuple(registry.list_artifacts(repository))
            found.append(attrs.evolve(namespace, artifacts=artifacts))
    return found


@attrs.frozen
class Deletion:
    repository: str
    artifact: api.CacheArtifact

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.artifact.digest}"

    def to_dict(self) -> dict[str, object]:
        created = self.artifact.created_at
        return {
            "reference": self.reference,
            "tags": list(self.artifact.tags),
            "size_bytes": self.artifact.size_bytes,
            "created_at": created.isoformat() if created else None,
        }


def select(
    namespaces: Iterable[Namespace], *, older_than: dt.timedelta | None, now: dt.datetime
) -> list[Deletion]:
    """Every manifest of the namespaces, or those older than ``older_than`` (a manifest
    whose age the registry does not tell is kept when an age is asked for)."""
    chosen = []
    for namespace in namespaces:
        for artifact in namespace.artifacts:
            if older_than is not None and (
                artifact.created_at is None or now - artifact.created_at < older_than
            ):
                continue
            chosen.append(Deletion(namespace.repository, artifact))
    return chosen


def delete_all(
    registry: api.RegistryProvider,
    deletions: Iterable[Deletion],
    *,
    log: Callable[[str], None] = lambda _line: None,
) -> list[Deletion]:
    """Delete in order; the first refusal stops the run with a RegistryError whose
    details list what was deleted before it."""
    done: list[Deletion] = []
    for deletion in deletions:
        try:
            registry.delete(deletion.reference)
        except LianError as exc:
            raise RegistryError(
                f"registry {registry.host} refused to delete {deletion.reference}: "
                f"{exc.message}; stopped, nothing else was deleted"
                + (f" after {len(done)} deletion(s)" if done else ""),
                code="CACHE_DELETE_REFUSED",
                details={
                    "refused": deletion.reference,
                    "deleted": [d.reference for d in done],
                    "cause": exc.code,
                },
            ) from exc
        log(f"deleted {deletion.reference}")
        done.append(deletion)
    return done


def remove_session_cache(
    registry: api.RegistryProvider,
    *,
    workspace: str,
    actor: str,
    repositories: Iterable[str],
    log: Callable[[str], None] = lambda _line: None,
) -> list[Deletion]:
    """Delete every manifest of a session's own dev/ cache repositories (the
    ``'ephemeral`` disposition). Only repositories in that actor's dev/ layer qualify."""
    base = registry.cache_repository(cache.DEV)
    own = f"{base}/{cache.dev_owner(actor, workspace)}/"
    namespaces = []
    for repository in repositories:
        if not repository.startswith(own):
            continue
        namespace = _parse(repository, base, cache.DEV, workspace, actor)
        if namespace is not None:
            artifacts = tuple(registry.list_artifacts(repository))
            namespaces.append(attrs.evolve(namespace, artifacts=artifacts))
    return delete_all(registry, select(namespaces, older_than=None, now=now()), log=log)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
