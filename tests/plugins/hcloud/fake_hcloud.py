"""A local imitation of the Hetzner Cloud API (the parts lian-build uses), on 127.0.0.1.

Follows the documented shapes: ``/v1`` prefix, Bearer auth, ``{"error": {...}}`` bodies
with ``X-Correlation-Id``, paginated lists with ``meta.pagination``, label selectors,
and actions that finish asynchronously over a few polls. Faults can be injected
(``fail_next``, ``fail_action``) and every request is recorded for assertions.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

USER_DATA_LIMIT = 32 * 1024
_LABEL_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_LABEL_PART}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_PART})?$")
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LOCATIONS = ("fsn1", "nbg1", "hel1")
DEPRECATED_2025 = {"announced": "2025-10-16T00:00:00Z", "unavailable_after": "2025-12-31T00:00:00Z"}


@attrs.define
class Recorded:
    method: str
    path: str  # without the /v1 prefix
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@attrs.define
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    code: str
    message: str
    details: dict[str, Any]
    headers: dict[str, str]
    remaining: int


class HcloudApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details if details is not None else {}
        self.headers: dict[str, str] = {}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _server_type(id_: int, name: str, cores: int, memory: float, disk: int, *, deprecated: bool):
    deprecation = DEPRECATED_2025 if deprecated else None
    return {
        "id": id_,
        "name": name,
        "description": name.upper(),
        "category": "cost_optimized",
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "prices": [
            {
                "location": loc,
                "price_hourly": {"net": "0.0080", "gross": "0.0095"},
                "price_monthly": {"net": "4.99", "gross": "5.94"},
            }
            for loc in LOCATIONS
        ],
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": "x86",
        "deprecated": deprecated,
        "deprecation": deprecation,
        "locations": [
            {
                "id": i + 1,
                "name": loc,
                "deprecation": deprecation,
                "available": True,
                "recommended": not deprecated,
            }
            for i, loc in enumerate(LOCATIONS)
        ],
    }


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Hetzner label selector: ``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``; comma = AND."""
    return all(_matches_term(labels, term.strip()) for term in _split_terms(selector))


def _split_terms(selector: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield selector[start:i]
            start = i + 1
    yield selector[start:]


def _matches_term(labels: dict[str, str], term: str) -> bool:
    if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term):
        values = {v.strip() for v in m.group(3).split(",")}
        inside = m.group(1) in labels and labels[m.group(1)] in values
        return inside if m.group(2) == "in" else not inside
    if m := re.fullmatch(r"([^!=\s]+)\s*!=\s*(\S*)", term):
        return labels.get(m.group(1)) != m.group(2)
    if m := re.fullmatch(r"([^!=\s]+)\s*==?\s*(\S*)", term):
        return labels.get(m.group(1)) == m.group(2)
    if m := re.fullmatch(r"!\s*(\S+)", term):
        return m.group(1) not in labels
    if re.fullmatch(r"\S+", term):
        return term in labels
    raise HcloudApiError(400, "invalid_input", f"invalid label_selector term {term!r}")


class FakeHcloud:
    """State plus the HTTP server. ``url`` is the ``api_endpoint`` for hcloud.Client."""

    def __init__(self, token: str = "fake-token-0123456789", action_polls: int = 3) -> None:
        self.token = token
        self.action_polls = action_polls  # GETs an action answers "running" before it finishes
        self.servers: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.user_data: dict[int, str] = {}  # not readable through the API, kept for asserts
        self.server_types = {
            st["name"]: st
            for st in (
                _server_type(101, "cx22", 2, 4.0, 40, deprecated=True),
                _server_type(102, "cx32", 4, 8.0, 80, deprecated=True),
                _server_type(111, "cx23", 2, 4.0, 40, deprecated=False),
                _server_type(112, "cx33", 4, 8.0, 80, deprecated=False),
                _server_type(113, "cx43", 8, 16.0, 160, deprecated=False),
                _server_type(114, "cx53", 16, 32.0, 320, deprecated=False),
            )
        }
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._action_faults: dict[str, tuple[str, str]] = {}
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeHcloud:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int,
        code: str,
        message: str = "injected failure",
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests matching method and path regex fail with this error."""
        with self._lock:
            self._faults.append(
                Fault(
                    method,
                    re.compile(path),
                    status,
                    code,
                    message,
                    details or {},
                    headers or {},
                    times,
                )
            )

    def rate_limit(self, method: str, path: str, *, times: int) -> None:
        """HTTP 429 as the API sends it when the hourly budget is spent."""
        self.fail_next(
            method,
            path,
            status=429,
            code="rate_limit_exceeded",
            message="limit of 3600 requests per hour reached",
            headers={
                "RateLimit-Limit": "3600",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(int(dt.datetime.now(dt.UTC).timestamp()) + 60),
            },
            times=times,
        )

    def fail_action(self, command: str, code: str = "action_failed", message: str = "boom") -> None:
        """The next action with this command (create_server, delete_server) ends in error."""
        with self._lock:
            self._action_faults[command] = (code, message)

    def add_server(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A running server that exists before the test (orphans, other users' servers)."""
        with self._lock:
            server = self._new_server(name, self.server_types["cx23"], "fsn1", labels or {}, "")
            server["status"] = "running"
            return server

    def add_firewall(self, name: str) -> int:
        with self._lock:
            fid = next(self._ids)
            self.firewalls[name] = {
                "id": fid,
                "name": name,
                "labels": {},
                "rules": [],
                "applied_to": [],
                "created": _now(),
            }
            return fid

    def add_network(self, name: str) -> int:
        with self._lock:
            nid = next(self._ids)
            self.networks[name] = {
                "id": nid,
                "name": name,
                "ip_range": "10.0.0.0/16",
                "subnets": [],
                "routes": [],
                "servers": [],
                "labels": {},
                "protection": {"delete": False},
                "created": _now(),
            }
            return nid

    def requests_to(self, method: str, path_regex: str) -> list[Recorded]:
        with self._lock:
            return [
                r for r in self.requests if r.method == method and re.fullmatch(path_regex, r.path)
            ]

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, raw_path: str, body: Any, auth: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        path = parts.path.removeprefix("/v1")
        with self._lock:
            self.requests.append(Recorded(method, path, query, body, auth))
            try:
                if not parts.path.startswith("/v1/"):
                    raise HcloudApiError(404, "not_found", "no such API")
                if auth != f"Bearer {self.token}":
                    raise HcloudApiError(401, "unauthorized", "unable to authenticate")
                self._inject_fault(method, path)
                status, payload = self._route(method, path, query, body)
                return status, payload, {}
            except HcloudApiError as exc:
                error = {"code": exc.code, "message": exc.message, "details": exc.details}
                return exc.status, {"error": error}, exc.headers

    def _inject_fault(self, method: str, path: str) -> None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == method and fault.path.fullmatch(path):
                fault.remaining -= 1
                exc = HcloudApiError(fault.status, fault.code, fault.message, fault.details)
                exc.headers = fault.headers
                raise exc

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if path == "/servers" and method == "POST":
            return 201, self._create_server(body)
        if path == "/servers" and method == "GET":
            return 200, self._list_servers(query)
        if m := re.fullmatch(r"/servers/(\d+)", path):
            server = self._server(int(m.group(1)))
            if method == "GET":
                return 200, {"server": server}
            if method == "DELETE":
                server["status"] = "deleting"
                action = self._new_action("delete_server", server["id"])
                return 200, {"action": action}
        if (m := re.fullmatch(r"/actions/(\d+)", path)) and method == "GET":
            return 200, {"action": self._poll_action(int(m.group(1)))}
        if path == "/server_types" and method == "GET":
            found = list(self.server_types.values())
            return 200, self._page("server_types", self._by_name(found, query), query)
        if path in ("/firewalls", "/networks") and method == "GET":
            pool = self.firewalls if path == "/firewalls" else self.networks
            return 200, self._page(path[1:], self._by_name(list(pool.values()), query), query)
        raise HcloudApiError(404, "not_found", f"{method} {path} not found")

    # ------------------------------------------------------------------ servers

    def _create_server(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HcloudApiError(400, "invalid_input", "body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not _HOSTNAME.match(name):
            raise _invalid("name", "name must be a valid hostname")
        if any(s["name"] == name for s in self.servers.values()):
            raise HcloudApiError(
                409,
                "uniqueness_error",
                "server name is already used",
                {"fields": [{"name": "name"}]},
            )
        wanted = body.get("server_type")  # the API takes an id or a name
        server_type = next(
            (t for t in self.server_types.values() if wanted in (t["id"], t["name"])), None
        )
        if server_type is None:
            raise _invalid("server_type", "unknown server type")
        if not isinstance(body.get("image"), str | int):
            raise _invalid("image", "image is required")
        location = body.get("location", "fsn1")
        if location not in LOCATIONS:
            raise _invalid("location", "unknown location")
        labels = body.get("labels") or {}
        for key, value in labels.items():
            if not _LABEL_KEY.match(key) or key.startswith("hetzner.cloud/"):
                raise _invalid("labels", f"invalid label key {key!r}")
            if not isinstance(value, str) or not _LABEL_VALUE.match(value):
                raise _invalid("labels", f"invalid label value for {key!r}")
        user_data = body.get("user_data") or ""
        if len(user_data.encode()) > USER_DATA_LIMIT:
            raise _invalid("user_data", "user_data is limited to 32 KiB")
        for firewall in body.get("firewalls", []):
            if firewall.get("firewall") not in {f["id"] for f in self.firewalls.values()}:
                raise _invalid("firewalls", "firewall not found")
        for network in body.get("networks", []):
            if network not in {n["id"] for n in self.networks.values()}:
                raise _invalid("networks", "network not found")
        server = self._new_server(name, server_type, location, labels, user_data)
        action = self._new_action("create_server", server["id"])
        next_actions = []
        if body.get("start_after_create", True):
            next_actions.append(self._new_action("start_server", server["id"]))
        return {
            "server": server,
            "action": action,
            "next_actions": next_actions,
            "root_password": None,
        }

    def _new_server(
        self,
        name: str,
        server_type: dict[str, Any],
        location: str,
        labels: dict[str, str],
        user_data: str,
    ) -> dict[str, Any]:
        sid = next(self._ids)
        ipv4 = {
            "id": sid + 500_000,
            "ip": f"203.0.113.{sid % 250 + 1}",
            "blocked": False,
            "dns_ptr": f"static.{sid}.example",
        }
        server = {
            "id": sid,
            "name": name,
            "status": "initializing",
            "created": _now(),
            "public_net": {"ipv4": ipv4, "ipv6": None, "floating_ips": [], "firewalls": []},
            "private_net": [],
            "server_type": server_type,
            "location": {
                "id": LOCATIONS.index(location) + 1,
                "name": location,
                "network_zone": "eu-central",
            },
            "image": {
                "id": 161547269,
                "type": "system",
                "name": "ubuntu-24.04",
                "os_flavor": "ubuntu",
                "os_version": "24.04",
            },
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False},
            "labels": dict(labels),
            "volumes": [],
            "primary_disk_size": server_type["disk"],
            "placement_group": None,
        }
        self.servers[sid] = server
        self.user_data[sid] = user_data
        return server

    def _server(self, server_id: int) -> dict[str, Any]:
        if server_id not in self.servers:
            raise HcloudApiError(404, "not_found", f"server with ID '{server_id}' not found")
        return self.servers[server_id]

    def _list_servers(self, query: dict[str, list[str]]) -> dict[str, Any]:
        found = self._by_name(sorted(self.servers.values(), key=lambda s: s["id"]), query)
        if "label_selector" in query:
            selector = query["label_selector"][0]
            found = [s for s in found if matches_selector(s["labels"], selector)]
        return self._page("servers", found, query)

    @staticmethod
    def _by_name(items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
        if "name" not in query:
            return items
        return [i for i in items if i["name"] == query["name"][0]]

    @staticmethod
    def _page(key: str, items: list[Any], query: dict[str, list[str]]) -> dict[str, Any]:
        page = int(query.get("page", ["1"])[0])
        per_page = min(int(query.get("per_page", ["25"])[0]), 50)
        last = max(1, -(-len(items) // per_page))
        pagination = {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": len(items),
        }
        chunk = items[(page - 1) * per_page : page * per_page]
        return {key: chunk, "meta": {"pagination": pagination}}

    # ------------------------------------------------------------------ actions

    def _new_action(self, command: str, server_id: int) -> dict[str, Any]:
        action = {
            "id": next(self._ids),
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now(),
            "finished": None,
            "resources": [{"id": server_id, "type": "server"}],
            "error": None,
        }
        self.actions[action["id"]] = {"action": action, "polls": 0}
        return dict(action)

    def _poll_action(self, action_id: int) -> dict[str, Any]:
        if action_id not in self.actions:
            raise HcloudApiError(404, "not_found", f"action {action_id} not found")
        entry = self.actions[action_id]
        action = entry["action"]
        if action["status"] == "running":
            entry["polls"] += 1
            action["progress"] = min(99, entry["polls"] * 100 // (self.action_polls + 1))
            if entry["polls"] > self.action_polls:
                self._finish(action)
        return dict(action)

    def _finish(self, action: dict[str, Any]) -> None:
        server_id = action["resources"][0]["id"]
        action["finished"], action["progress"] = _now(), 100
        fault = self._action_faults.pop(action["command"], None)
        if fault is not None:
            action["status"] = "error"
            action["error"] = {"code": fault[0], "message": fault[1]}
            return
        action["status"] = "success"
        if action["command"] == "delete_server":
            self.servers.pop(server_id, None)
        elif action["command"] == "start_server" and server_id in self.servers:
            self.servers[server_id]["status"] = "running"


def _invalid(field: str, message: str) -> HcloudApiError:
    return HcloudApiError(
        400, "invalid_input", message, {"fields": [{"name": field, "messages": [message]}]}
    )


def _handler_for(fake: FakeHcloud) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            status, payload, headers = fake.handle(
                self.command, self.path, body, self.headers.get("Authorization")
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Correlation-Id", uuid.uuid4().hex[:16])
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean; requests are recorded instead

    return Handler
