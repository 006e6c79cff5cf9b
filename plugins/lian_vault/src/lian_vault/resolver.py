"""``vault:`` references: one field of a HashiCorp Vault / OpenBao KV v2 secret.

Reference syntax (the part after ``vault:``)::

    PATH[#FIELD][?mount=MOUNT&version=N]

- ``PATH`` is the secret's path inside the KV v2 engine, ``ci/npm``. The engine's mount is
  ``secret`` (Vault's default, and ``VaultCredRef``'s) unless ``mount=`` names another.
  The API form ``MOUNT/data/PATH`` (``kv/data/ci/npm``) is accepted too, so a path copied
  from ``vault kv get -output-curl-string`` works.
- ``FIELD`` is the key inside the secret's data; default ``password`` (``VaultCredRef``).
- ``version=N`` pins a version; default the latest. The query may follow ``#FIELD``.

Examples: ``vault:ci/npm#token``, ``vault:kv/data/ci/npm#token``,
``vault:ci/npm#token?version=2``, ``vault:deploy/ssh?mount=infra#private_key``.

Connection from the standard Vault variables: ``VAULT_ADDR``; ``VAULT_TOKEN``, else
AppRole with ``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID`` (at ``auth/$VAULT_APPROLE_PATH``,
default ``approle``), else the token the ``vault`` CLI left in ``~/.vault-token``;
``VAULT_NAMESPACE`` (Enterprise / OpenBao namespaces); ``VAULT_CACERT`` (a CA bundle for
``https://``). Values never appear in an error message: errors name the path, the field
and Vault's own error text.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lian_build import api
from lian_build.errors import SecretError

if TYPE_CHECKING:  # httpx is imported when a vault: reference is resolved, not at start-up
    import httpx

DEFAULT_MOUNT = "secret"
DEFAULT_FIELD = "password"
TIMEOUT_S = 10.0


@attrs.frozen
class VaultRef:
    mount: str
    path: str
    field: str
    version: int | None = None

    @property
    def where(self) -> str:
        """For messages: mount/path, field and version (never a value)."""
        version = f" version {self.version}" if self.version is not None else ""
        return f"{self.mount}/{self.path}#{self.field}{version}"


def reference(path: str, field: str = DEFAULT_FIELD, mount: str = DEFAULT_MOUNT) -> str:
    """The ``vault:`` reference for a ``VaultCredRef``/``VaultKeyRef`` (key = field)."""
    return f"vault:{path}?mount={mount}#{field}"


def _invalid(rest: str, why: str) -> SecretError:
    return SecretError(
        f"vault reference {('vault:' + rest)!r} is invalid: {why} "
        "(expected vault:PATH#FIELD, e.g. vault:ci/npm#token)",
        code="SECRET_REF_INVALID",
    )


def parse(rest: str) -> VaultRef:
    """Parse the part after ``vault:``; raise SECRET_REF_INVALID when malformed."""
    head, _, fragment = rest.partition("#")
    head, _, query_a = head.partition("?")
    field, _, query_b = fragment.partition("?")
    query: dict[str, str] = {}
    for raw in (query_a, query_b):
        if raw:
            for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
                if key not in ("mount", "version"):
                    raise _invalid(rest, f"unknown parameter {key!r} (mount, version)")
                query[key] = value
    path = head.strip("/")
    mount = query.get("mount")
    parts = path.split("/")
    if mount is None and len(parts) >= 3 and parts[1] == "data":
        mount, path = parts[0], "/".join(parts[2:])
    mount = (mount or DEFAULT_MOUNT).strip("/")
    if not path or not mount:
        raise _invalid(rest, "no secret path")
    if any(p in ("", ".", "..") for p in path.split("/")) or any(
        p in ("", ".", "..") for p in mount.split("/")
    ):
        raise _invalid(rest, "empty, . or .. path segment")
    if "#" in field or ("#" in rest and not field):
        raise _invalid(rest, "empty field after #")
    version: int | None = None
    if "version" in query:
        text = query["version"]
        if not text.isdigit() or int(text) < 1:
            raise _invalid(rest, "version must be a positive integer")
        version = int(text)
    return VaultRef(mount=mount, path=path, field=field or DEFAULT_FIELD, version=version)


def _vault_errors(response: httpx.Response) -> str:
    """Vault's ``{"errors": [...]}`` as one line (these never carry secret values)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:300]
    return f"HTTP {response.status_code}"


class VaultSecretResolver(api.SecretResolver):
    scheme = "vault"
    description = (
        "HashiCorp Vault / OpenBao KV v2: vault:PATH#FIELD[?mount=M&version=N] "
        "(VAULT_ADDR, VAULT_TOKEN or AppRole, VAULT_NAMESPACE, VAULT_CACERT)"
    )

    def __init__(self) -> None:
        self._token: str | None = None
        self._client: httpx.Client | None = None
        self._cache: dict[tuple[str, str, int | None], dict[str, Any]] = {}

    # ------------------------------------------------------------------ connection

    def _http(self) -> httpx.Client:
        if self._client is None:
            addr = os.environ.get("VAULT_ADDR", "").strip()
            if not addr:
                raise SecretError(
                    "vault: references need VAULT_ADDR (e.g. https://vault.example:8200)",
                    code="VAULT_CONFIG",
                )
            if not addr.startswith(("http://", "https://")):
                raise SecretError(
                    f"VAULT_ADDR must start with http:// or https:// (got {addr!r})",
                    code="VAULT_CONFIG",
                )
            headers = {"Accept": "application/json"}
            namespace = os.environ.get("VAULT_NAMESPACE", "").strip()
            if namespace:
                headers["X-Vault-Namespace"] = namespace
            verify: Any = True
            ca = os.environ.get("VAULT_CACERT", "").strip()
            if ca:
                import ssl

                try:
                    verify = ssl.create_default_context(cafile=ca)
                except (OSError, ssl.SSLError) as exc:
                    raise SecretError(
                        f"VAULT_CACERT {ca}: cannot load the CA bundle: {exc}",
                        code="VAULT_CONFIG",
                    ) from None
            import httpx

            self._client = httpx.Client(
                base_url=addr.rstrip("/") + "/v1/",
                headers=headers,
                verify=verify,
                timeout=TIMEOUT_S,
                trust_env=False,  # VAULT_ADDR says where Vault is; no proxy detour
            )
        return self._client

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self._http().request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise SecretError(
                f"vault: cannot reach {os.environ.get('VAULT_ADDR', '')} for {what}: "
                f"{type(exc).__name__}",
                code="VAULT_UNAVAILABLE",
            ) from None

    def _login(self) -> str:
        if self._token is not None:
            return self._token
        token = os.environ.get("VAULT_TOKEN", "").strip()
        role_id = os.environ.get("VAULT_ROLE_ID", "").strip()
        secret_id = os.environ.get("VAULT_SECRET_ID", "").strip()
        if not token and role_id:
            mount = os.environ.get("VAULT_APPROLE_PATH", "approle").strip("/") or "approle"
            response = self._request(
                "POST",
                f"auth/{mount}/login",
                "the AppRole login",
                json={"role_id": role_id, "secret_id": secret_id},
            )
            if response.status_code != 200:
                raise SecretError(
                    f"vault: AppRole login at auth/{mount} failed "
                    f"(HTTP {response.status_code}: {_vault_errors(response)})",
                    code="VAULT_UNAVAILABLE" if response.status_code >= 500 else "VAULT_DENIED",
                )
            try:
                token = str(response.json()["auth"]["client_token"])
            except (ValueError, KeyError, TypeError):
                raise SecretError(
                    f"vault: AppRole login at auth/{mount} answered without a client token",
                    code="VAULT_UNAVAILABLE",
                ) from None
        if not token:
            token_file = Path.home() / ".vault-token"
            try:
                token = token_file.read_text().strip()
            except OSError:
                token = ""
        if not token:
            raise SecretError(
                "vault: no credentials: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID "
                "for AppRole",
                code="VAULT_CONFIG",
            )
        self._token = token
        return token

    # ------------------------------------------------------------------ reading

    def _read(self, ref: VaultRef) -> dict[str, Any]:
        key = (ref.mount, ref.path, ref.version)
        if key in self._cache:
            return self._cache[key]
        self._http()  # configuration errors first: no address beats no credentials
        token = self._login()
        quoted = "/".join(urllib.parse.quote(p, safe="") for p in ref.path.split("/"))
        mount = "/".join(urllib.parse.quote(p, safe="") for p in ref.mount.split("/"))
        params = {"version": str(ref.version)} if ref.version is not None else None
        where = f"{ref.mount}/{ref.path}"
        response = self._request(
            "GET",
            f"{mount}/data/{quoted}",
            where,
            params=params,
            headers={"X-Vault-Token": token},
        )
        status = response.status_code
        if status == 404:
            version = f" (version {ref.version})" if ref.version is not None else ""
            deleted = _deleted(response)
            raise SecretError(
                f"vault: no secret at {where}{version}"
                + (f" ({deleted})" if deleted else "")
                + f" in the KV v2 engine at {ref.mount}/",
                code="VAULT_NOT_FOUND",
            )
        if status in (401, 403):
            raise SecretError(
                f"vault: permission denied reading {where} (HTTP {status}: "
                f"{_vault_errors(response)}); check the token's policy",
                code="VAULT_DENIED",
            )
        if status != 200:
            raise SecretError(
                f"vault: cannot read {where}: HTTP {status}: {_vault_errors(response)}",
                code="VAULT_UNAVAILABLE",
            )
        try:
            body = response.json()
            data = body["data"]["data"]
            metadata = body["data"].get("metadata") or {}
        except (ValueError, KeyError, TypeError):
            raise SecretError(
                f"vault: {where} did not answer like a KV v2 engine (is {ref.mount}/ KV v1?)",
                code="VAULT_UNAVAILABLE",
            ) from None
        if data is None or metadata.get("destroyed") or metadata.get("deletion_time"):
            raise SecretError(
                f"vault: the requested version of {where} is deleted or destroyed",
                code="VAULT_NOT_FOUND",
            )
        if not isinstance(data, dict):
            raise SecretError(f"vault: {where} holds no key/value data", code="VAULT_UNAVAILABLE")
        self._cache[key] = data
        return data

    def resolve(self, reference: str) -> str:
        ref = parse(reference)
        data = self._read(ref)
        if ref.field not in data:
            fields = ", ".join(sorted(str(k) for k in data)) or "none"
            raise SecretError(
                f"vault: {ref.mount}/{ref.path} has no field {ref.field!r} (fields: {fields})",
                code="VAULT_FIELD_MISSING",
            )
        value = data[ref.field]
        if not isinstance(value, str):
            raise SecretError(
                f"vault: field {ref.field!r} of {ref.mount}/{ref.path} is not a string",
                code="VAULT_FIELD_MISSING",
            )
        if not value:
            raise SecretError(
                f"vault: field {ref.field!r} of {ref.mount}/{ref.path} is empty",
                code="VAULT_FIELD_MISSING",
            )
        return value


def _deleted(response: httpx.Response) -> str:
    """Vault answers 404 for a deleted version, with its metadata: say which."""
    try:
        metadata = response.json()["data"]["metadata"]
    except (ValueError, KeyError, TypeError):
        return ""
    if not isinstance(metadata, dict):
        return ""
    if metadata.get("destroyed"):
        return "that version was destroyed"
    if metadata.get("deletion_time"):
        return "that version was deleted"
    return ""
