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
    OciClient,
    api_request,
    check_url,
    host_of,
    local_repository,
    parse_reference,
)

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
        if self.username and not self.password_ref:
            raise InvalidInput(
                "registry.password_ref is required when registry.username is set",
                field="registry.password_ref",
            )


class HarborRegistry(api.RegistryProvider):
    """A Harbor project: OCI API for images and cache, Harbor API for deletes."""

    name: ClassVar[str] = "harbor"
    description: ClassVar[str] = "Harbor registry (one project; robot-account basic auth)"
    Settings: ClassVar[type[Any]] = HarborSettings
    settings: HarborSettings

    @property
    def host(self) -> str:
        return host_of(self.settings.url)

    @property
    def insecure(self) -> bool:
        return self.settings.url.startswith("http://")

    def cache_repository(self, namespace: str) -> str:
        return f"{self.host}/{self.settings.project}/{namespace.strip('/')}"

    def auth(self) -> api.RegistryAuth | None:
        if not self.settings.username:
            return None
        return api.RegistryAuth(
            registry=self.host, username=self.settings.username, password=self._password()
        )

    def check(self) -> None:
        """Harbor's own ping first (is this Harbor at all?), then ``/v2/`` with creds."""
        response = self._api("GET", "/ping", "GET /api/v2.0/ping")
        if response.text.strip() != "Pong":
            raise RegistryError(
                f"registry {self.host}: /api/v2.0/ping did not answer Pong: not a Harbor API",
                code=ERROR,
                details={"host": self.host, "status": response.status_code},
            )
        with self._client() as client:
            client.ping()

    def manifest_digest(self, reference: str) -> str | None:
        repository, ref = self._split(reference)
        with self._client() as client:
            return client.manifest_digest(repository, ref)

    def list_tags(self, repository: str) -> list[str]:
        with self._client() as client:
            return client.list_tags(local_repository(self.host, repository))

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

    def plan(self) -> dict[str, Any]:
        return {
            "url": self.settings.url,
            "project": self.settings.project,
            "insecure": self.insecure,
            "auth": "basic" if self.settings.username else "none",
        }

    # ----------------------------------------------------------------- helpers

    def _password(self) -> str:
        ref = self.settings.password_ref
        return self.secrets(ref) if ref else ""

    def _client(self) -> OciClient:
        username = self.settings.username
        return OciClient(
            self.settings.url,
            username=username,
            password=self._password() if username else None,
            verify=self.settings.tls_verify,
        )

    def _split(self, reference: str) -> tuple[str, str]:
        host, repository, ref = parse_reference(reference)
        if host != self.host:
            raise InvalidInput(
                f"reference {reference!r} is not on registry {self.host}", field="reference"
            )
        return repository, ref

    def _api(self, method: str, path: str, action: str) -> httpx.Response:
        username = self.settings.username
        return api_request(
            method,
            f"{self.settings.url}/api/v2.0{path}",
            action=action,
            auth=(username, self._password()) if username else None,
            verify=self.settings.tls_verify,
        )
