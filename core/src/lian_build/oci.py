"""A small OCI distribution client, and ``DistributionRegistry``, the provider base the
registry plugins build on.

It speaks the distribution API (``/v2/...``) and the auth dance registries expect: try
anonymously, then answer the ``WWW-Authenticate`` challenge with basic credentials or a
bearer token fetched from the challenge's realm. Tokens are cached per scope. httpx is
imported inside the methods so importing this module stays cheap for ``lian --help``.

Every failure is a ``RegistryError`` whose code is one of ``REGISTRY_UNAUTHORIZED``,
``REGISTRY_UNREACHABLE`` or ``REGISTRY_ERROR``; messages name the registry host and the
OCI error code, never a password or token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import attrs

from lian_build import api
from lian_build.errors import InvalidInput, RegistryError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("lian.registry")

UNAUTHORIZED = "REGISTRY_UNAUTHORIZED"
UNREACHABLE = "REGISTRY_UNREACHABLE"
ERROR = "REGISTRY_ERROR"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))

# A registry that keeps answering with a "next" link must not loop us forever.
MAX_PAGES = 10_000

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


# --------------------------------------------------------------------------- helpers


def parse_reference(reference: str) -> tuple[str, str, str]:
    """Split ``host[:port]/repo[:tag|@digest]`` into ``(host, repo, ref)``; ref defaults
    to ``latest``. Parsed by ``validate.image_reference``, the core's one parser."""
    from lian_build import validate

    parsed = validate.image_reference(reference, field="reference")
    return parsed.registry, parsed.repository, parsed.digest or parsed.tag or "latest"


def is_digest(reference: str) -> bool:
    from lian_build import validate

    return validate.is_digest(reference)


def local_repository(host: str, repository: str) -> str:
    """``host/a/b`` -> ``a/b``; a name without this host's prefix is returned unchanged."""
    prefix = host + "/"
    return repository[len(prefix) :] if repository.startswith(prefix) else repository


def host_of(url: str) -> str:
    """``https://host:port/...`` -> ``host:port``: how the registry appears in references."""
    return urlsplit(url).netloc


def check_url(url: str, field: str = "url") -> str:
    """An http(s) URL with a host, without a trailing slash; InvalidInput otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise InvalidInput(
            f"{field} must be an http:// or https:// URL with a host, got {url!r}", field=field
        )
    return url.rstrip("/")


def oci_error(response: httpx.Response) -> tuple[str, str]:
    """The first ``{"errors":[{"code","message"}]}`` entry (or GitHub's ``{"message"}``)."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("code") or ""), str(errors[0].get("message") or "")
    return "", str(body.get("message") or "")


def error_from_response(
    host: str, response: httpx.Response, action: str, *, secrets: tuple[str | None, ...] = ()
) -> RegistryError:
    """A RegistryError for a refused request, naming the host, status and OCI error code."""
    status = response.status_code
    code, detail = oci_error(response)
    message = f"registry {host}: {action} failed with HTTP {status}"
    if code:
        message += f" {code}"
    if detail:
        message += f" ({detail})"
    for secret in secrets:
        if secret:  # a server echoing a credential back must not leak it
            message = message.replace(secret, "***")
    return RegistryError(
        message,
        code=UNAUTHORIZED if status in (401, 403) else ERROR,
        details={"host": host, "status": status, "oci_code": code or None},
    )


def delete_unknown(host: str, subject: str, why: str) -> RegistryError:
    """Deleting something the registry does not hold: reported as a 404 would be."""
    return RegistryError(
        f"registry {host}: cannot delete {subject}: MANIFEST_UNKNOWN ({why})",
        code=ERROR,
        details={"host": host, "status": 404, "oci_code": "MANIFEST_UNKNOWN"},
    )


def check_basic_credentials(username: str | None, password_ref: str | None) -> None:
    """Settings check: a registry user name comes with a secret reference to its password."""
    if username and not password_ref:
        raise InvalidInput(
            "registry.password_ref is required when registry.username is set",
            field="registry.password_ref",
        )


def unreachable(host: str, action: str, exc: Exception) -> RegistryError:
    return RegistryError(
        f"registry {host} unreachable during {action}: {type(exc).__name__}: {exc}",
        code=UNREACHABLE,
        details={"host": host},
    )


def api_request(
    method: str,
    url: str,
    *,
    action: str,
    ok: tuple[int, ...] = (200,),
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    verify: bool = True,
    timeout: float = 30.0,
) -> httpx.Response:
    """One call to a product API next to a registry (Harbor's, GitHub's Packages API),
    with the client's error mapping. A status outside ``ok`` raises RegistryError."""
    import httpx

    host = host_of(url)
    try:
        response = httpx.request(
            method, url, headers=headers, auth=auth, verify=verify, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise unreachable(host, action, exc) from None
    if response.status_code not in ok:
        bearer = (headers or {}).get("Authorization", "").partition(" ")[2]
        raise error_from_response(
            host, response, action, secrets=(auth[1] if auth else None, bearer or None)
        )
    return response


@attrs.frozen
class Challenge:
    """A parsed ``WWW-Authenticate`` header: scheme in lower case and its parameters."""

    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        scheme, _, rest = header.strip().partition(" ")
        if not scheme:
            return None
        params = {m[1].lower(): m[2] or m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
        return cls(scheme=scheme.lower(), params=params)


def _base_url(url: str) -> str:
    return check_url(url, "base_url")


# --------------------------------------------------------------------------- client


@attrs.define
class OciClient:
    """Distribution API client for one registry. Use as a context manager or ``close()``.

    ``token_url_override`` replaces the realm of a bearer challenge (a registry behind a
    proxy that advertises an unreachable realm). ``transport`` is an httpx transport.
    """

    base_url: str = attrs.field(converter=_base_url)
    username: str | None = attrs.field(default=None, kw_only=True)
    password: str | None = attrs.field(default=None, kw_only=True, repr=False)
    token_url_override: str | None = attrs.field(default=None, kw_only=True)
    timeout: float = attrs.field(default=30.0, kw_only=True)
    verify: bool = attrs.field(default=True, kw_only=True)
    transport: Any = attrs.field(default=None, kw_only=True, repr=False)
    _http: Any = attrs.field(default=None, init=False, repr=False)
    _tokens: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)
    _use_basic: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def host(self) -> str:
        return host_of(self.base_url)

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> OciClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- API

    def ping(self, *, scope: str | None = None) -> None:
        """``GET /v2/`` with the credentials. ``scope`` is the token scope to ask for
        (registries such as GHCR advertise a placeholder scope on ``/v2/``)."""
        response = self._send("GET", "/v2/", scope=scope, force_scope=scope is not None)
        if response.status_code != 200:
            raise self._error(response, "GET /v2/")

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """Digest of the manifest (or index) ``reference`` names, None when absent."""
        path = f"/v2/{repository}/manifests/{reference}"
        response = self._send(
            "HEAD", path, scope=pull_scope(repository), headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"HEAD {path}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        # Not every registry sends the header: the digest is the hash of the exact bytes.
        _, body = self.get_manifest(repository, reference)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def get_manifest(self, repository: str, reference: str) -> tuple[str, bytes]:
        """``(media_type, raw bytes)`` of a manifest; RegistryError when absent."""
        path = f"/v2/{repository}/manifests/{reference}"
        response = self._send(
            "GET", path, scope=pull_scope(repository), headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code != 200:
            raise self._error(response, f"GET {path}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type:
            try:
                media_type = str(response.json().get("mediaType", ""))
            except (ValueError, AttributeError):
                media_type = ""
        return media_type, response.content

    def list_tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag, following ``Link`` pagination; [] for an unknown repository."""
        return list(
            self._paged(f"/v2/{repository}/tags/list", "tags", pull_scope(repository), page_size)
        )

    def delete(self, repository: str, reference: str, *, missing_ok: bool = False) -> None:
        """Delete a manifest. A tag is resolved to its digest first: registries delete
        by digest only, which removes every tag pointing at it."""
        digest = reference if is_digest(reference) else self.manifest_digest(repository, reference)
        if digest is None:
            if missing_ok:
                return
            raise delete_unknown(self.host, f"{repository}:{reference}", "no such tag")
        path = f"/v2/{repository}/manifests/{digest}"
        response = self._send("DELETE", path, scope=f"repository:{repository}:delete")
        if response.status_code in (200, 202) or (response.status_code == 404 and missing_ok):
            return
        raise self._error(response, f"DELETE {path}")

    def catalog(self, *, page_size: int | None = None) -> list[str]:
        """Every repository the credentials may see (``/v2/_catalog``)."""
        return list(self._paged("/v2/_catalog", "repositories", "registry:catalog:*", page_size))

    # ----------------------------------------------------------------- multi-platform

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A blob's bytes, checked against its digest (configs of per-platform images)."""
        path = f"/v2/{repository}/blobs/{digest}"
        response = self._send("GET", path, scope=pull_scope(repository))
        if response.status_code in (301, 302, 303, 307, 308) and "Location" in response.headers:
            # Registries backed by object storage redirect blob reads; the target is
            # pre-signed, so no credential goes with it.
            target = str(response.url.join(response.headers["Location"]))
            response = self._client().get(target)
        if response.status_code != 200:
            raise self._error(response, f"GET {path}")
        body = bytes(response.content)
        algorithm, _, expected = digest.partition(":")
        if algorithm == "sha256" and hashlib.sha256(body).hexdigest() != expected:
            raise RegistryError(
                f"registry {self.host}: blob {digest} in {repository} does not match its digest",
                code=ERROR,
                details={"host": self.host, "digest": digest},
            )
        return body

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        """``PUT`` a manifest or index under a tag (or its digest); returns the digest."""
        path = f"/v2/{repository}/manifests/{reference}"
        response = self._send(
            "PUT",
            path,
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type},
            content=body,
        )
        if response.status_code not in (200, 201):
            raise self._error(response, f"PUT {path}")
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        digest = str(response.headers.get("Docker-Content-Digest") or computed)
        if digest != computed:
            raise RegistryError(
                f"registry {self.host}: {repository}:{reference} stored as {digest}, "
                f"not as the pushed {computed}",
                code="DIGEST_MISMATCH",
                details={"pushed": computed, "registry": digest},
            )
        return digest

    # ----------------------------------------------------------------- plumbing

    def _error(self, response: httpx.Response, action: str) -> RegistryError:
        return error_from_response(self.host, response, action, secrets=(self.password,))

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(
                timeout=self.timeout,
                verify=self.verify,
                transport=self.transport,
                follow_redirects=False,
            )
        client: httpx.Client = self._http
        return client

    def _paged(self, path: str, key: str, scope: str, page_size: int | None) -> Iterator[str]:
        url: str | None = self.base_url + path
        params = {"n": str(page_size)} if page_size else None
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self._send("GET", url, scope=scope, params=params)
            if response.status_code == 404 and key == "tags":
                return  # an unknown repository has no tags yet
            if response.status_code != 200:
                raise self._error(response, f"GET {path}")
            yield from response.json().get(key) or []
            url = self._next_page(response)
            params = None  # the link carries n= and last=
        log.warning("registry %s: stopped paging %s after %d pages", self.host, path, MAX_PAGES)

    def _next_page(self, response: httpx.Response) -> str | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        next_url = str(response.url.join(link))
        if host_of(next_url) != self.host:
            log.warning("registry %s: ignoring a next-page link to another host", self.host)
            return None
        return next_url

    def _send(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str | None,
        force_scope: bool = False,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send once; on 401 answer the challenge and send again. A second 401 raises."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        action = f"{method} {urlsplit(url).path}"
        key = scope or ""
        response = self._send_once(method, url, key, action, headers, params, content)
        if response.status_code != 401:
            return response
        challenge = Challenge.parse(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise self._error(response, action)
        if challenge.scheme == "basic":
            if not self.username:
                raise RegistryError(
                    f"registry {self.host} needs credentials for {action} (basic auth)",
                    code=UNAUTHORIZED,
                    details={"host": self.host, "status": 401, "oci_code": None},
                )
            if self._use_basic:
                raise self._error(response, action)
            self._use_basic = True
        elif challenge.scheme == "bearer":
            # A cached token may have expired: fetch a fresh one; a refused fresh one raises.
            # An explicit scope wins over the challenge's (GHCR's /v2/ names a placeholder).
            wanted = scope if force_scope else challenge.params.get("scope") or scope
            self._tokens[key] = self._fetch_token(challenge, wanted)
        else:
            raise RegistryError(
                f"registry {self.host} asks for unsupported auth scheme {challenge.scheme!r}",
                code=UNAUTHORIZED,
                details={"host": self.host, "status": 401, "oci_code": None},
            )
        response = self._send_once(method, url, key, action, headers, params, content)
        if response.status_code == 401:
            raise self._error(response, action)
        return response

    def _send_once(
        self,
        method: str,
        url: str,
        key: str,
        action: str,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
        content: bytes | None = None,
    ) -> httpx.Response:
        import httpx

        all_headers = dict(headers or {})
        auth: tuple[str, str] | None = None
        if key in self._tokens:
            all_headers["Authorization"] = f"Bearer {self._tokens[key]}"
        elif self._use_basic and self.username:
            auth = (self.username, self.password or "")
        try:
            return self._client().request(
                method, url, headers=all_headers, params=params, auth=auth, content=content
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.host, action, exc) from None

    def _fetch_token(self, challenge: Challenge, scope: str | None) -> str:
        import httpx

        realm = self.token_url_override or challenge.params.get("realm")
        if not realm:
            raise RegistryError(
                f"registry {self.host} sent a bearer challenge without a realm",
                code=UNAUTHORIZED,
                details={"host": self.host, "status": 401, "oci_code": None},
            )
        params = {"service": challenge.params.get("service", "")}
        if scope:
            params["scope"] = scope
        auth = (self.username, self.password or "") if self.username else None
        token_host = host_of(realm)
        try:
            response = self._client().get(realm, params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise unreachable(token_host, "the token request", exc) from None
        if response.status_code != 200:
            raise error_from_response(
                token_host, response, f"token request for {self.host}", secrets=(self.password,)
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(
                f"registry {self.host}: the token service {token_host} returned no token",
                code=UNAUTHORIZED,
                details={"host": self.host, "status": response.status_code, "oci_code": None},
            )
        return token


def _artifact(
    client: OciClient, repository: str, digest: str, tags: list[str]
) -> api.CacheArtifact:
    import json

    _, body = client.get_manifest(repository, digest)
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = {}
    size: int | None = None
    created = None
    if isinstance(manifest, dict):
        parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        sizes = [p.get("size") for p in parts if isinstance(p, dict)]
        size = sum(s for s in sizes if isinstance(s, int)) or None
        config = manifest.get("config") or {}
        if isinstance(config, dict) and str(config.get("mediaType", "")).endswith(
            ("image.config.v1+json", "container.image.v1+json")
        ):
            created = parse_time(_created_of(client.get_blob(repository, config["digest"])))
    return api.CacheArtifact(
        digest=digest, tags=tuple(sorted(tags)), size_bytes=size, created_at=created
    )


def _created_of(blob: bytes) -> str | None:
    import json

    try:
        value = json.loads(blob).get("created")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def parse_time(value: str | None) -> dt.datetime | None:
    """An RFC 3339 time (nanoseconds and ``Z`` allowed) as an aware datetime, or None."""
    if not value:
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", value)
    if match is None:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    return dt.datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}").astimezone(dt.UTC)


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


# --------------------------------------------------------------------------- provider base


class DistributionRegistry(api.RegistryProvider):
    """A registry reached through the OCI distribution API.

    Subclasses say how to build the OciClient (``base_url``, ``tls_verify``, the
    credentials in ``settings.username`` + ``secret_ref``) and which repositories are
    theirs (``cache_repository``). Reads and the distribution-API delete live here;
    registries that delete through their own API override ``delete``.
    """

    # Tags per page for ``list_tags``; None lets the registry choose.
    tags_page_size: ClassVar[int | None] = None

    @property
    def base_url(self) -> str:
        """Where the distribution API answers (``/v2/`` is appended)."""
        return str(self.settings.url)

    @property
    def host(self) -> str:
        return host_of(self.base_url)

    @property
    def insecure(self) -> bool:
        return self.base_url.startswith("http://")

    @property
    def tls_verify(self) -> bool:
        return bool(self.settings.tls_verify)

    @property
    def secret_ref(self) -> str | None:
        """The secret reference holding the password for ``settings.username``."""
        ref: str | None = self.settings.password_ref
        return ref

    def auth(self) -> api.RegistryAuth | None:
        if not self.settings.username:
            return None
        return api.RegistryAuth(
            registry=self.host, username=self.settings.username, password=self._secret()
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
            return client.list_tags(
                local_repository(self.host, repository), page_size=self.tags_page_size
            )

    def delete(self, reference: str) -> None:
        """Delete the manifest a reference names (every tag on that digest goes with it)."""
        repository, ref = self._split(reference)
        with self._client() as client:
            client.delete(repository, ref)

    def list_repositories(self, prefix: str) -> list[str]:
        """Repositories under ``prefix`` from ``/v2/_catalog`` (zot, distribution)."""
        local = local_repository(self.host, prefix).strip("/") + "/"
        with self._client() as client:
            names = client.catalog()
        return sorted(f"{self.host}/{name}" for name in names if name.startswith(local))

    def list_artifacts(self, repository: str) -> list[api.CacheArtifact]:
        """One entry per manifest digest; size from the manifest, time from the image
        config's ``created`` when the config is an image config (buildah's cache)."""
        local = local_repository(self.host, repository)
        by_digest: dict[str, list[str]] = {}
        with self._client() as client:
            for tag in client.list_tags(local, page_size=self.tags_page_size):
                digest = client.manifest_digest(local, tag)
                if digest is not None:
                    by_digest.setdefault(digest, []).append(tag)
            return [_artifact(client, local, digest, tags) for digest, tags in by_digest.items()]

    def get_manifest(self, reference: str) -> tuple[str, bytes]:
        repository, ref = self._split(reference)
        with self._client() as client:
            return client.get_manifest(repository, ref)

    def get_blob(self, reference: str, digest: str) -> bytes:
        repository, _ref = self._split(reference)
        with self._client() as client:
            return client.get_blob(repository, digest)

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> str:
        repository, ref = self._split(reference)
        with self._client() as client:
            return client.put_manifest(repository, ref, media_type, body)

    def plan(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "insecure": self.insecure,
            "auth": "basic" if self.settings.username else "none",
        }

    # ----------------------------------------------------------------- helpers

    def _secret(self) -> str:
        ref = self.secret_ref
        return self.secrets(ref) if ref else ""

    def _client(self) -> OciClient:
        username = self.settings.username
        return OciClient(
            self.base_url,
            username=username,
            password=self._secret() if username else None,
            verify=self.tls_verify,
        )

    def _split(self, reference: str) -> tuple[str, str]:
        """``(repository, tag or digest)`` of a reference that must be on this registry."""
        host, repository, ref = parse_reference(reference)
        if host != self.host:
            raise InvalidInput(
                f"reference {reference!r} is not on registry {self.host}", field="reference"
            )
        return repository, ref


# --------------------------------------------------------------------------- image index


@attrs.frozen
class IndexEntry:
    """One platform's manifest, as an OCI image index lists it."""

    digest: str
    media_type: str
    size: int
    platform: str  # "linux/arm64[/v8]"

    def descriptor(self) -> dict[str, Any]:
        os_name, arch, *variant = self.platform.split("/")
        platform: dict[str, str] = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant[0]
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "platform": platform,
        }


def image_index(entries: list[IndexEntry]) -> bytes:
    """The OCI image index over per-platform manifests, as the exact bytes to push."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry.descriptor() for entry in entries],
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def config_platform(config: bytes) -> str:
    """``os/architecture[/variant]`` an image config records."""
    try:
        data = json.loads(config)
        parts = [str(data["os"]), str(data["architecture"])]
    except (ValueError, KeyError, TypeError):
        return "unknown"
    if data.get("variant"):
        parts.append(str(data["variant"]))
    return "/".join(parts)
