"""A local imitation of the HashiCorp Vault / OpenBao HTTP API (the parts lian uses).

Follows the documented shapes: ``/v1`` prefix; ``X-Vault-Token`` and
``X-Vault-Namespace`` headers; KV v2 reads at ``GET /v1/<mount>/data/<path>[?version=N]``
answering ``{"data": {"data": {...}, "metadata": {...}}}``; ``{"errors": [...]}`` bodies;
404 with an empty ``errors`` list for a missing path, and with the version's metadata
for a deleted or destroyed version; 403 ``permission denied`` for a token without
access; 503 ``Vault is sealed``; AppRole login at ``POST /v1/auth/<path>/login``. Every
request is recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs


@attrs.define
class Version:
    data: dict[str, Any]
    created: str
    deleted: str = ""
    destroyed: bool = False


@attrs.define
class Seen:
    method: str
    path: str
    token: str | None
    namespace: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeVault:
    def __init__(self, *, tls: tuple[Path, Path] | None = None) -> None:
        # (namespace, mount) -> path -> versions (index 0 = version 1)
        self.kv: dict[tuple[str, str], dict[str, list[Version]]] = {}
        self.tokens: dict[str, set[tuple[str, str]]] = {}  # token -> {(namespace, mount/path)}
        self.approles: dict[tuple[str, str], str] = {}  # (role_id, secret_id) -> policy token
        self.sealed = False
        self.requests: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ----------------------------------------------------------------- set-up

    def start(self) -> FakeVault:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def put(
        self, path: str, data: dict[str, Any], *, mount: str = "secret", namespace: str = ""
    ) -> int:
        versions = self.kv.setdefault((namespace, mount), {}).setdefault(path, [])
        versions.append(Version(dict(data), _now()))
        return len(versions)

    def delete_version(
        self, path: str, version: int, *, mount: str = "secret", destroy: bool = False
    ) -> None:
        v = self.kv[("", mount)][path][version - 1]
        v.deleted = _now()
        v.destroyed = destroy
        if destroy:
            v.data = {}

    def token(self, *paths: str, namespace: str = "") -> str:
        """A new token allowed to read ``mount/path`` entries (a trailing ``*`` globs)."""
        value = "hvs." + secrets.token_urlsafe(18)
        self.tokens[value] = {(namespace, p) for p in paths}
        return value

    def approle(self, *paths: str) -> tuple[str, str]:
        role_id, secret_id = secrets.token_hex(8), secrets.token_hex(12)
        self.approles[(role_id, secret_id)] = self.token(*paths)
        return role_id, secret_id

    # ----------------------------------------------------------------- HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                status, body = vault.handle("GET", self.path, dict(self.headers), None)
                self._send(status, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = vault.handle("POST", self.path, dict(self.headers), raw)
                self._send(status, body)

        return Handler

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes | None
    ) -> tuple[int, Any]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        lower = {k.lower(): v for k, v in headers.items()}
        token = lower.get("x-vault-token")
        namespace = lower.get("x-vault-namespace", "").strip("/")
        self.requests.append(Seen(method, path, token, namespace or None))
        if self.sealed:
            return 503, {"errors": ["Vault is sealed"]}
        if not path.startswith("/v1/"):
            return 404, {"errors": []}
        route = path[len("/v1/") :]
        if method == "POST" and route.startswith("auth/") and route.endswith("/login"):
            return self._login(route, raw)
        if method != "GET" or "/data/" not in route:
            return 405, {"errors": ["unsupported operation"]}
        mount, _, secret_path = route.partition("/data/")
        allowed = self.tokens.get(token or "")
        if allowed is None:
            return 403, {"errors": ["permission denied"]}
        wanted = f"{mount}/{secret_path}"
        # Vault policy paths: exact, or a trailing * globbing the rest (checked before
        # existence: a token without access gets 403 even for a missing path).
        if not any(
            ns == namespace and (p == wanted or (p.endswith("*") and wanted.startswith(p[:-1])))
            for ns, p in allowed
        ):
            return 403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
        engine = self.kv.get((namespace, mount))
        if engine is None:
            return 404, {
                "errors": [
                    f'no handler for route "{mount}/data/{secret_path}". route entry not found.'
                ]
            }
        versions = engine.get(secret_path)
        if not versions:
            return 404, {"errors": []}
        query = parse_qs(parts.query)
        number = int(query["version"][0]) if "version" in query else len(versions)
        if number == 0:
            number = len(versions)
        if number > len(versions):
            return 404, {"errors": []}
        version = versions[number - 1]
        metadata = {
            "created_time": version.created,
            "custom_metadata": None,
            "deletion_time": version.deleted,
            "destroyed": version.destroyed,
            "version": number,
        }
        if version.deleted or version.destroyed:
            return 404, {"data": {"data": None, "metadata": metadata}}
        return 200, {
            "request_id": secrets.token_hex(8),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {"data": version.data, "metadata": metadata},
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }

    def _login(self, route: str, raw: bytes | None) -> tuple[int, Any]:
        if route != "auth/approle/login":
            return 400, {"errors": ["no handler for route"]}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"errors": ["failed to parse JSON input"]}
        token = self.approles.get((body.get("role_id", ""), body.get("secret_id", "")))
        if token is None:
            return 400, {"errors": ["invalid role or secret ID"]}
        return 200, {
            "auth": {
                "client_token": token,
                "accessor": secrets.token_hex(8),
                "policies": ["default", "ci"],
                "lease_duration": 3600,
                "renewable": True,
            }
        }


def fake_vault_server(tls: tuple[Path, Path] | None = None) -> Iterator[FakeVault]:
    vault = FakeVault(tls=tls).start()
    try:
        yield vault
    finally:
        vault.stop()
