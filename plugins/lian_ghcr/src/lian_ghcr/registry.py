"""GitHub Container Registry: images and build cache under ``ghcr.io/<owner>/...``.

Pulls and pushes use GHCR's token flow (basic ``user:PAT`` at ``/token``, then a bearer
token). GHCR has no OCI DELETE: deleting goes through the GitHub Packages API, where
one package version is one manifest digest, so deleting a tag deletes every tag on
that version. A classic PAT needs read:packages, write:packages and, for deletes,
delete:packages. Export BuildKit cache with ``image-manifest=true,oci-mediatypes=true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import attrs

from lian_build import api
from lian_build.errors import InvalidInput, RegistryError
from lian_build.oci import (
    UNAUTHORIZED,
    DistributionRegistry,
    api_request,
    check_url,
    delete_unknown,
    host_of,
    is_digest,
    local_repository,
    parse_time,
)

if TYPE_CHECKING:
    import httpx

# The repository named in the token scope ``check()`` asks for: any name under the
# owner proves the token may pull and push there.
CHECK_PACKAGE = "lian-build"
PAGE_SIZE = 100


def _api_url(value: str) -> str:
    return check_url(value, "registry.api_url")


def _lower(value: str) -> str:
    return value.lower()  # GHCR references are lower case; the API ignores case


@attrs.frozen
class PackageVersion:
    """One version of a container package: a manifest digest and its tags."""

    id: int
    digest: str
    tags: tuple[str, ...]
    created_at: str | None = None


@attrs.frozen(kw_only=True)
class GhcrSettings:
    """``registry = { provider = "ghcr", owner = "acme", username = "bot", token_ref = .. }``."""

    owner: str = attrs.field(converter=_lower)  # user or organisation owning the packages
    username: str | None = None
    token_ref: str | None = None  # a secret reference to a PAT, e.g. "env:GHCR_TOKEN"
    registry: str = "ghcr.io"
    api_url: str = attrs.field(default="https://api.github.com", converter=_api_url)
    insecure: bool = False  # plain HTTP to ``registry`` (local imitations only)

    def __attrs_post_init__(self) -> None:
        if not self.owner or "/" in self.owner:
            raise InvalidInput(
                f"registry.owner must be one user or organisation name, got {self.owner!r}",
                field="registry.owner",
            )
        if bool(self.username) != bool(self.token_ref):
            raise InvalidInput(
                "registry.username and registry.token_ref go together (GHCR logs in with "
                "a user name and a personal access token)",
                field="registry.token_ref" if self.username else "registry.username",
            )


class GhcrRegistry(DistributionRegistry):
    """ghcr.io, with deletes through the GitHub Packages API."""

    name: ClassVar[str] = "ghcr"
    description: ClassVar[str] = "GitHub Container Registry (token auth, Packages API deletes)"
    Settings: ClassVar[type[Any]] = GhcrSettings
    settings: GhcrSettings
    tags_page_size: ClassVar[int | None] = PAGE_SIZE

    @property
    def host(self) -> str:
        return self.settings.registry

    @property
    def base_url(self) -> str:
        scheme = "http" if self.settings.insecure else "https"
        return f"{scheme}://{self.host}"

    @property
    def tls_verify(self) -> bool:
        return True  # GHCR has a public certificate; imitations use plain HTTP

    @property
    def secret_ref(self) -> str | None:
        return self.settings.token_ref

    def cache_repository(self, namespace: str) -> str:
        return f"{self.host}/{self.settings.owner}/{namespace.strip('/')}"

    def check(self) -> None:
        scope = f"repository:{self.settings.owner}/{CHECK_PACKAGE}:pull,push"
        with self._client() as client:
            client.ping(scope=scope)

    def list_versions(self, repository: str) -> list[PackageVersion]:
        """Every version of the package behind ``[ghcr.io/]<owner>/<name>``."""
        return self._versions(self._package(local_repository(self.host, repository)))

    def list_repositories(self, prefix: str) -> list[str]:
        """Container packages of the owner whose names start with ``prefix``'s path
        (the Packages API; GHCR has no ``/v2/_catalog``)."""
        owner, _, local = local_repository(self.host, prefix).strip("/").partition("/")
        if owner != self.settings.owner:
            return []
        username = (self.settings.username or "").lower()
        base = "/user" if owner == username else f"/orgs/{quote(owner, safe='')}"
        names: list[str] = []
        page = 1
        while True:
            query = f"?package_type=container&per_page={PAGE_SIZE}&page={page}"
            batch = self._api("GET", f"{base}/packages{query}", "list packages").json()
            names += [str(item["name"]) for item in batch if isinstance(item, dict)]
            if len(batch) < PAGE_SIZE:
                break
            page += 1
        wanted = local + "/"
        return sorted(f"{self.host}/{owner}/{n}" for n in names if n.startswith(wanted))

    def list_artifacts(self, repository: str) -> list[api.CacheArtifact]:
        """Package versions (time from the Packages API, size from the manifest)."""
        local = local_repository(self.host, repository)
        artifacts = []
        with self._client() as client:
            for version in self.list_versions(repository):
                size = _manifest_size(client.get_manifest(local, version.digest)[1])
                artifacts.append(
                    api.CacheArtifact(
                        digest=version.digest,
                        tags=tuple(sorted(version.tags)),
                        size_bytes=size,
                        created_at=parse_time(version.created_at),
                    )
                )
        return artifacts

    def delete(self, reference: str) -> None:
        """Delete the package version a tag or digest names (all its tags go with it)."""
        repository, ref = self._split(reference)
        package = self._package(repository)
        for version in self._versions(package):
            if version.digest == ref if is_digest(ref) else ref in version.tags:
                self._api("DELETE", f"{package}/{version.id}", f"delete {reference}")
                return
        raise delete_unknown(self.host, reference, "no package version has that tag or digest")

    def plan(self) -> dict[str, Any]:
        return {
            "registry": self.host,
            "owner": self.settings.owner,
            "api_url": self.settings.api_url,
            "insecure": self.insecure,
            "auth": "token" if self.settings.username else "none",
        }

    # ----------------------------------------------------------------- helpers

    def _package(self, repository: str) -> str:
        """The Packages API path of ``<owner>/<name>``'s versions (name URL-encoded)."""
        owner, _, name = repository.partition("/")
        if owner != self.settings.owner or not name:
            raise InvalidInput(
                f"repository {repository!r} is not under owner {self.settings.owner!r}",
                field="reference",
            )
        username = (self.settings.username or "").lower()
        base = "/user" if owner == username else f"/orgs/{quote(owner, safe='')}"
        return f"{base}/packages/container/{quote(name, safe='')}/versions"

    def _versions(self, package: str) -> list[PackageVersion]:
        versions: list[PackageVersion] = []
        page = 1
        while True:
            query = f"?per_page={PAGE_SIZE}&page={page}"
            try:
                batch = self._api("GET", package + query, "list package versions").json()
            except RegistryError as exc:
                # GHCR drops a package with its last version: no package, no versions.
                if exc.details.get("status") == 404:
                    return versions
                raise
            for item in batch:
                tags = item.get("metadata", {}).get("container", {}).get("tags") or []
                versions.append(
                    PackageVersion(
                        int(item["id"]), str(item["name"]), tuple(tags), item.get("created_at")
                    )
                )
            if len(batch) < PAGE_SIZE:
                return versions
            page += 1

    def _api(self, method: str, path: str, action: str) -> httpx.Response:
        token = self._secret()
        if not token:
            raise RegistryError(
                f"registry {self.host}: {action} needs registry.token_ref (Packages API)",
                code=UNAUTHORIZED,
                details={"host": host_of(self.settings.api_url)},
            )
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        return api_request(
            method, self.settings.api_url + path, action=action, ok=(200, 204), headers=headers
        )


def _manifest_size(body: bytes) -> int | None:
    import json

    try:
        manifest = json.loads(body)
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    sizes = [p.get("size") for p in parts if isinstance(p, dict)]
    return sum(s for s in sizes if isinstance(s, int)) or None
