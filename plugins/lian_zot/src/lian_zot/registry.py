"""zot (or any OCI distribution registry) as the place images and build cache go.

zot rejects Docker v2 schema 2 manifests unless its config enables
``http.compat: ["docker2s2"]``: builders must push OCI media types (BuildKit:
``oci-mediatypes=true`` on the output and on cache exports; buildah:
``--format oci``). Pushing is the builder's job, not this plugin's.

Retention of cache tags is zot's business (``storage.retention.policies``);
``capabilities()`` tells which zot extensions a server offers (a plain distribution
registry offers none).
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

import attrs

from lian_build import api
from lian_build.errors import InvalidInput
from lian_build.oci import OciClient, check_url, host_of, local_repository, parse_reference

# Extension name -> path that answers when the server has it.
EXTENSIONS: dict[str, str] = {
    "search": "/v2/_zot/ext/search",
    "mgmt": "/v2/_zot/ext/mgmt",
    "discover": "/v2/_oci/ext/discover",
}


def _url(value: str) -> str:
    return check_url(value, "registry.url")


def _prefix(value: str) -> str:
    return value.strip("/")


@attrs.frozen(kw_only=True)
class ZotSettings:
    """``registry = { provider = "zot", url = "https://zot.example:5000", ... }``."""

    url: str = attrs.field(converter=_url)  # http:// only for local registries
    username: str | None = None
    password_ref: str | None = None  # a secret reference such as "env:ZOT_PASSWORD"
    cache_prefix: str = attrs.field(default="", converter=_prefix)
    tls_verify: bool = True

    def __attrs_post_init__(self) -> None:
        if self.username and not self.password_ref:
            raise InvalidInput(
                "registry.password_ref is required when registry.username is set",
                field="registry.password_ref",
            )


class ZotRegistry(api.RegistryProvider):
    """An OCI registry reached at ``url``; zot extensions are used when present."""

    name: ClassVar[str] = "zot"
    description: ClassVar[str] = "zot or any OCI distribution registry (htpasswd basic auth)"
    Settings: ClassVar[type[Any]] = ZotSettings
    settings: ZotSettings

    @classmethod
    def defaults_for_image(cls, registry_host: str) -> dict[str, Any]:
        """Plain HTTP for a loopback registry (``127.0.0.1:5000``), HTTPS otherwise."""
        hostname = registry_host.rsplit(":", 1)[0].strip("[]")
        try:
            loopback = hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback
        except ValueError:
            loopback = False
        return {"url": f"{'http' if loopback else 'https'}://{registry_host}"}

    @property
    def host(self) -> str:
        return host_of(self.settings.url)

    @property
    def insecure(self) -> bool:
        return self.settings.url.startswith("http://")

    def cache_repository(self, namespace: str) -> str:
        parts = [self.host, self.settings.cache_prefix, namespace.strip("/")]
        return "/".join(p for p in parts if p)

    def auth(self) -> api.RegistryAuth | None:
        if not self.settings.username:
            return None
        return api.RegistryAuth(
            registry=self.host, username=self.settings.username, password=self._password()
        )

    def check(self) -> None:
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
        """Delete the manifest a reference names (every tag on that digest goes with it)."""
        repository, ref = self._split(reference)
        with self._client() as client:
            client.delete(repository, ref)

    def capabilities(self) -> set[str]:
        """Which zot extensions the server offers: a subset of ``EXTENSIONS``."""
        with self._client() as client:
            return {name for name, path in EXTENSIONS.items() if client.has_extension(path)}

    def plan(self) -> dict[str, Any]:
        return {
            "url": self.settings.url,
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
