"""A base for imitation registries (Harbor, GHCR) that FRONT a real OCI registry.

A subclass answers what its product adds (auth, product APIs) in ``handle`` and
returns None for everything else, which is proxied to the real registry: a manifest
pushed through the imitation lands in the real one. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx

# Response headers a registry client relies on, passed through from the real registry.
PASSED_HEADERS = (
    "Content-Type",
    "Docker-Content-Digest",
    "Docker-Upload-UUID",
    "Docker-Distribution-Api-Version",
    "Location",
    "Range",
    "Link",
    "WWW-Authenticate",
)


@attrs.frozen
class Incoming:
    method: str
    target: str  # raw path and query, percent-encoding kept
    path: str  # raw path, percent-encoding kept
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes


@attrs.frozen
class Outgoing:
    status: int
    body: bytes = b""
    headers: dict[str, str] = attrs.field(factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Outgoing:
    merged = {"Content-Type": "application/json", **(headers or {})}
    return Outgoing(status, json.dumps(payload).encode(), merged)


def oci_errors(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return json_response(status, {"errors": [{"code": code, "message": message}]}, headers)


class OciFront:
    """Start with ``start()`` (or as a context manager); ``url`` is where it listens."""

    def __init__(self, backend_url: str) -> None:
        self.backend_url = backend_url.rstrip("/")
        self.requests: list[tuple[str, str]] = []  # (method, target), for assertions
        self._backend = httpx.Client(base_url=self.backend_url, timeout=10)
        front = self

        class Handler(BaseHTTPRequestHandler):
            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                incoming = Incoming(
                    method=self.command,
                    target=self.path,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                )
                front.requests.append((self.command, self.path))
                outgoing = front.handle(incoming) or front.proxy(incoming)
                self.send_response(outgoing.status)
                for name, value in outgoing.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(outgoing.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(outgoing.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> OciFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._backend.close()

    def __enter__(self) -> OciFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- for subclasses

    def handle(self, request: Incoming) -> Outgoing | None:
        """Answer a request, or None to proxy it to the real registry."""
        return None

    def proxy(self, request: Incoming) -> Outgoing:
        forwarded = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in {"content-type", "accept", "range", "content-range"}
        }
        response = self._backend.request(
            request.method, request.target, headers=forwarded, content=request.body
        )
        headers = {h: response.headers[h] for h in PASSED_HEADERS if h in response.headers}
        if "Location" in headers:  # upload sessions must come back through the front
            headers["Location"] = headers["Location"].replace(self.backend_url, self.url)
        body = b"" if request.method == "HEAD" else response.content
        return Outgoing(response.status_code, body, headers)

    def backend(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A direct request to the real registry (for product APIs built on it)."""
        return self._backend.request(method, path, **kwargs)
