"""zot (or any OCI distribution registry) as the place images and build cache go.

zot rejects Docker v2 schema 2 manifests unless its config enables
``http.compat: ["docker2s2"]``: builders must push OCI media types (BuildKit:
``oci-mediatypes=true`` on the output and on cache exports; buildah:
``--format oci``). Pushing is the builder's job, not this plugin's.

Retention of cache tags is zot's business (``storage.retention.policies``).
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

import attrs

from lian_build.oci import DistributionRegistry, check_basic_credentials, check_url


# Extension name -> path that answers when the server has it.
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
        check_basic_credentials(self.username, self.password_ref)


class ZotRegistry(DistributionRegistry):
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

    def cache_repository(self, namespace: str) -> str:
        parts = [self.host, self.settings.cache_prefix, namespace.strip("/")]
        return "/".join(p for p in parts if p)
