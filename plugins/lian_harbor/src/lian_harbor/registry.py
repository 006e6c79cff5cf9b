"""Harbor: images and build cache under ``<host>/<project>/...``.

Pulls and pushes speak the OCI distribution API with basic credentials (usually a
robot account, ``robot$ci+pusher``); deletes go through Harbor's API v2.0, which
removes an artifact by tag or digest. Harbor rejects BuildKit's index-style cache
manifests: export registry cache with ``image-manifest=true,oci-mediatypes=true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import attrs

from lian_build import api
from lian_build.errors import InvalidInput, RegistryError
from lian_build.oci import (
    ERROR,
    DistributionRegistry,
    api_request,
    check_basic_credentials,
    check_url,
    local_repository,
    parse_time,
)

PAGE_SIZE = 100

if TYPE_CHECKING:
    import httpx


def _url(value: str) -> str:
    return check_url(value, "registry.url")


@attrs.frozen(kw_only=True)
class HarborSettings:
    """``registry = { provider = "harbor", url = "https://harbor.example", project = "ci" }``."""

    url: str = attrs.field(converter=_url)
    project: str
    username: str | None = None  # robot accounts look like "robot$ci+pusher"
    password_ref: str | None = None  # a secret reference such as "env:HARBOR_SECRET"
    tls_verify: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.project or "/" in self.project:
            raise InvalidInput(
                f"registry.project must be one Harbor project name, got {self.project!r}",
                field="registry.project",
            )
        check_basic_credentials(self.username, self.password_ref)


class HarborRegistry(DistributionRegistry):
    """A Harbor project: OCI API for images and cache, Harbor API for deletes."""

    name: ClassVar[str] = "harbor"
    description: ClassVar[str] = "Harbor registry (one project; robot-account basic auth)"
    Settings: ClassVar[type[Any]] = HarborSettings
    settings: HarborSettings

    def cache_repository(self, namespace: str) -> str:
        return f"{self.host}/{self.settings.project}/{namespace.strip('/')}"

    def check(self) -> None:
        """Harbor's own ping first (is this Harbor at all?), then ``/v2/`` with creds."""
        response = self._api("GET", "/ping", "GET /api/v2.0/ping")
        if response.text.strip() != "Pong":
            raise RegistryError(
                f"registry {self.host}: /api/v2.0/ping did not answer Pong: not a Harbor API",
                code=ERROR,
                details={"host": self.host, "status": response.status_code},
            )
        super().check()  # credentials first: an unauthorized client learns nothing more
        # Harbor answers HEAD /projects?project_name=X with 200 or 404: a missing
        # project would only show at push time, after a runner was paid for.
        project = self.settings.project
        found = self._api(
            "HEAD",
            f"/projects?project_name={quote(project, safe='')}",
            f"look up project {project}",
            ok=(200, 404),
        )
        if found.status_code == 404:
            raise RegistryError(
                f"registry {self.host}: Harbor project {project!r} does not exist",
                code=ERROR,
                details={"host": self.host, "project": project},
            )

    def delete(self, reference: str) -> None:
        """Delete the artifact a tag or digest names, through Harbor's API."""
        repository, ref = self._split(reference)
        project, _, name = repository.partition("/")
        if project != self.settings.project or not name:
            raise InvalidInput(
                f"reference {reference!r} is not in Harbor project {self.settings.project!r}",
                field="reference",
            )
        # Harbor wants a repository name containing "/" encoded twice ("a%252Fb").
        encoded = quote(quote(name, safe=""), safe="")
        path = f"/projects/{quote(project, safe='')}/repositories/{encoded}/artifacts/{ref}"
        self._api("DELETE", path, f"delete {reference}")

    def list_repositories(self, prefix: str) -> list[str]:
        """The project's repositories under ``prefix`` (Harbor's repositories API; its
        ``/v2/_catalog`` needs a system administrator)."""
        local = local_repository(self.host, prefix).strip("/") + "/"
        project = quote(self.settings.project, safe="")
        names = [
            str(item["name"])
            for item in self._pages(f"/projects/{project}/repositories", "list repositories")
        ]
        return sorted(f"{self.host}/{name}" for name in names if name.startswith(local))

    def list_artifacts(self, repository: str) -> list[api.CacheArtifact]:
        project, _, name = local_repository(self.host, repository).partition("/")
        encoded = quote(quote(name, safe=""), safe="")
        path = f"/projects/{quote(project, safe='')}/repositories/{encoded}/artifacts"
        return [
            api.CacheArtifact(
                digest=str(item["digest"]),
                tags=tuple(sorted(str(t["name"]) for t in item.get("tags") or [])),
                size_bytes=item.get("size") if isinstance(item.get("size"), int) else None,
                created_at=parse_time(item.get("push_time")),
            )
            for item in self._pages(path, f"list artifacts of {repository}", "&with_tag=true")
        ]

    def plan(self) -> dict[str, Any]:
        facts = super().plan()
        # The project right after the URL, where plans have always shown it.
        return {"url": facts.pop("url"), "project": self.settings.project, **facts}

    # ----------------------------------------------------------------- helpers

    def _pages(self, path: str, action: str, extra: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            query = f"?page={page}&page_size={PAGE_SIZE}{extra}"
            batch = self._api("GET", path + query, action).json()
            items += [item for item in batch if isinstance(item, dict)]
            if len(batch) < PAGE_SIZE:
                return items
            page += 1

    def _api(
        self, method: str, path: str, action: str, ok: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        username = self.settings.username
        return api_request(
            method,
            f"{self.settings.url}/api/v2.0{path}",
            action=action,
            ok=ok,
            auth=(username, self._secret()) if username else None,
            verify=self.tls_verify,
        )
