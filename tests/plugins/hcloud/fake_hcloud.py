"""A local imitation of the Hetzner Cloud API (the parts lian-build uses), on 127.0.0.1.

Follows the documented shapes: ``/v1`` prefix, Bearer auth, ``{"error": {...}}`` bodies
with ``X-Correlation-Id``, paginated lists with ``meta.pagination``, label selectors,
and actions that finish asynchronously over a few polls. Faults can be injected
(``fail_next``, ``fail_action``) and every request is recorded for assertions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import hcloud_schema

from fixtures.machines import Machine, MachinePool, MachineSpec

USER_DATA_LIMIT = 32 * 1024
_LABEL_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_LABEL_PART}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_PART})?$")
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LOCATIONS = ("fsn1", "nbg1", "hel1")
RUNNER_IMAGE = "lian-runner:debian"
# arm (cax) servers are arm64 runners, emulated by QEMU on an amd64 host.
ARM64_RUNNER_IMAGE = f"{RUNNER_IMAGE}-arm64"
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


# Hourly net prices (EUR) per location, in the shape of GET /server_types. Illustrative
# values of the right magnitude; the imitation is not a price list.
PRICES = {
    "cx23": 0.0056,
    "cx33": 0.0088,
    "cx43": 0.0152,
    "cx53": 0.0280,
    "cx22": 0.0060,
    "cx32": 0.0110,
    "cax11": 0.0062,
    "cax21": 0.0104,
    "cax31": 0.0200,
    "cax41": 0.0392,
}


def _server_type(
    id_: int,
    name: str,
    cores: int,
    memory: float,
    disk: int,
    *,
    deprecated: bool,
    architecture: str = "x86",
) -> dict[str, Any]:
    deprecation = DEPRECATED_2025 if deprecated else None
    hourly = PRICES.get(name, 0.01)
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
                # hel1 is a little cheaper, so per-location prices are visible in tests.
                "price_hourly": _price(hourly * (0.9 if loc == "hel1" else 1.0)),
                "price_monthly": _price(hourly * (0.9 if loc == "hel1" else 1.0) * 720),
                "included_traffic": 21990232555520,
                "price_per_tb_traffic": _price(1.0),
            }
            for loc in LOCATIONS
        ],
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": architecture,
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


def _price(net: float) -> dict[str, str]:
    return {"net": f"{net:.4f}", "gross": f"{net * 1.19:.4f}"}


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
    """State plus the HTTP server. ``url`` is the ``api_endpoint`` for hcloud.Client.

    With ``machines`` (a MachinePool) every created server is a real runner container
    answering SSH on the public IPv4 the API reports; without it servers get
    documentation addresses nobody answers (API-only tests).
    """

    def __init__(
        self,
        token: str = "fake-token-0123456789",
        action_polls: int = 3,
        *,
        machines: MachinePool | None = None,
        system_images: dict[str, str] | None = None,
        arm_runner_image: str = ARM64_RUNNER_IMAGE,
        readonly_token: str = "fake-readonly-token-0123",
    ) -> None:
        self.token = token
        self.readonly_token = readonly_token
        self.action_polls = action_polls  # GETs an action answers "running" before it finishes
        self.action_min_s = 0.0  # and at least this long: nobody polling does not stall it
        self.boot_delay_s = 0.0  # sshd starts this long after the server is created
        self.boot_status = 0  # 2: cloud-init ends degraded (recoverable errors)
        self.machines = machines
        self.servers: dict[int, dict[str, Any]] = {}
        self.ssh_keys: dict[int, dict[str, Any]] = {}
        self.images: dict[int, dict[str, Any]] = {}
        self.machine_of: dict[int, Machine] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.user_data: dict[int, str] = {}  # not readable through the API, kept for asserts
        self.root_passwords: dict[int, str] = {}
        # server id -> (server type, docker image its machine started from), for asserts.
        self.booted: dict[int, tuple[str, str]] = {}
        # System images: name -> docker image the x86 machines start from; arm machines
        # start from the arm64 runner image.
        runner = RUNNER_IMAGE
        self.system_images = system_images or {"ubuntu-24.04": runner, "debian-12": runner}
        self.runner_images = {"x86": runner, "arm": arm_runner_image}
        self.server_types = {
            st["name"]: st
            for st in (
                _server_type(101, "cx22", 2, 4.0, 40, deprecated=True),
                _server_type(102, "cx32", 4, 8.0, 80, deprecated=True),
                _server_type(111, "cx23", 2, 4.0, 40, deprecated=False),
                _server_type(112, "cx33", 4, 8.0, 80, deprecated=False),
                _server_type(113, "cx43", 8, 16.0, 160, deprecated=False),
                _server_type(114, "cx53", 16, 32.0, 320, deprecated=False),
                _server_type(121, "cax11", 2, 4.0, 40, deprecated=False, architecture="arm"),
                _server_type(122, "cax21", 4, 8.0, 80, deprecated=False, architecture="arm"),
                _server_type(123, "cax31", 8, 16.0, 160, deprecated=False, architecture="arm"),
                _server_type(124, "cax41", 16, 32.0, 320, deprecated=False, architecture="arm"),
            )
        }
        self.sold_out: set[tuple[str, str]] = set()  # (type, location): create fails
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._action_faults: dict[str, tuple[str, str]] = {}
        self._ids = itertools.count(1000)
        self._rate_remaining = 3600
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        for name, docker_image in self.system_images.items():
            self._add_image("system", name=name, architecture="x86", docker_image=docker_image)
            self._add_image("system", name=name, architecture="arm", docker_image=arm_runner_image)

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
        if self.machines is not None:
            for machine in list(self.machine_of.values()):
                self.machines.remove(machine)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no action runs (a delete the plugin started completes anyway)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._tick()
                if all(e["action"]["status"] != "running" for e in self.actions.values()):
                    return
            time.sleep(0.05)

    def add_snapshot(self, labels: dict[str, str], architecture: str = "x86") -> int:
        """A snapshot made earlier (from the plain runner image)."""
        with self._lock:
            image = self._add_image(
                "snapshot",
                architecture=architecture,
                docker_image=self.runner_images[architecture],
                description="made earlier",
                labels=labels,
            )
            image["status"] = "available"
            return int(image["id"])

    def remove_image(self, image_id: int) -> None:
        with self._lock:
            image = self.images.pop(image_id, None)
            base_images = {*self.runner_images.values(), *self.system_images.values()}
            if image and self.machines is not None and image["docker_image"] not in base_images:
                self.machines.remove_image(image["docker_image"])

    def inventory(self) -> dict[str, list[Any]]:
        """What would cost money or clutter a real project: servers, keys, snapshots."""
        with self._lock:
            self._tick()
            return {
                "servers": sorted(self.servers),
                "ssh_keys": sorted(k["name"] for k in self.ssh_keys.values()),
                "images": sorted(i["id"] for i in self.images.values() if i["type"] != "system"),
            }

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

    def make_unavailable(self, type_name: str, location: str) -> None:
        """The type is listed as unavailable there and a create there fails."""
        with self._lock:
            for entry in self.server_types[type_name]["locations"]:
                if entry["name"] == location:
                    entry["available"] = False
            self.sold_out.add((type_name, location))

    def add_server(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A running server that exists before the test (orphans, other users' servers)."""
        with self._lock:
            server = self._new_server(
                name, self.server_types["cx23"], "fsn1", labels or {}, "", self._system("x86")
            )
            server["status"] = "running"
            return server

    def remove_server(self, server_id: int) -> None:
        """Its owner deleted it (servers a test added as someone else's)."""
        with self._lock:
            self.servers.pop(server_id, None)
            machine = self.machine_of.pop(server_id, None)
            if machine is not None and self.machines is not None:
                self.machines.remove(machine)

    def remove_all_servers(self) -> None:
        with self._lock:
            for server_id in list(self.servers):
                self.remove_server(server_id)

    def add_ssh_key(self, name: str, public_key: str, labels: dict[str, str] | None = None) -> int:
        with self._lock:
            return int(
                self._create_ssh_key(
                    {"name": name, "public_key": public_key, "labels": labels or {}}
                )["ssh_key"]["id"]
            )

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
            self._rate_remaining = max(0, self._rate_remaining - 1)
            headers = {
                "RateLimit-Limit": "3600",
                "RateLimit-Remaining": str(self._rate_remaining),
                "RateLimit-Reset": str(int(dt.datetime.now(dt.UTC).timestamp()) + 3600),
            }
            try:
                if not parts.path.startswith("/v1/"):
                    raise HcloudApiError(404, "not_found", "no such API")
                if auth not in (f"Bearer {self.token}", f"Bearer {self.readonly_token}"):
                    raise HcloudApiError(401, "unauthorized", "unable to authenticate")
                self._inject_fault(method, path)
                if method != "GET" and auth == f"Bearer {self.readonly_token}":
                    raise HcloudApiError(403, "token_readonly", "The token is read-only.")
                self._tick()
                status, payload = self._route(method, path, query, body)
                return status, payload, headers
            except HcloudApiError as exc:
                error = {"code": exc.code, "message": exc.message, "details": exc.details}
                return exc.status, {"error": error}, {**headers, **exc.headers}

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
            return 201, self._create_server(_checked(hcloud_schema.CREATE_SERVER, body))
        if path == "/servers" and method == "GET":
            return 200, self._list_servers(query)
        if m := re.fullmatch(r"/servers/(\d+)", path):
            server = self._server(int(m.group(1)))
            if method == "GET":
                return 200, {"server": server}
            if method == "DELETE":
                self._unlocked(server["id"])
                server["status"] = "deleting"
                action = self._new_action("delete_server", server["id"])
                return 200, {"action": action}
        if (m := re.fullmatch(r"/servers/(\d+)/actions/create_image", path)) and method == "POST":
            server = self._server(int(m.group(1)))
            return 201, self._create_image(server, _checked(hcloud_schema.CREATE_IMAGE, body or {}))
        if (m := re.fullmatch(r"/actions/(\d+)", path)) and method == "GET":
            return 200, {"action": self._poll_action(int(m.group(1)))}
        if path == "/ssh_keys" and method == "POST":
            return 201, self._create_ssh_key(_checked(hcloud_schema.CREATE_SSH_KEY, body))
        if path == "/ssh_keys" and method == "GET":
            found = self._by_name(sorted(self.ssh_keys.values(), key=lambda k: k["id"]), query)
            if "fingerprint" in query:
                found = [k for k in found if k["fingerprint"] == query["fingerprint"][0]]
            return 200, self._page("ssh_keys", self._selected(found, query), query)
        if m := re.fullmatch(r"/ssh_keys/(\d+)", path):
            key = self.ssh_keys.get(int(m.group(1)))
            if key is None:
                raise HcloudApiError(404, "not_found", f"ssh_key with ID '{m.group(1)}' not found")
            if method == "GET":
                return 200, {"ssh_key": key}
            if method == "DELETE":
                del self.ssh_keys[key["id"]]
                return 204, None
        if path == "/images" and method == "GET":
            return 200, self._list_images(query)
        if m := re.fullmatch(r"/images/(\d+)", path):
            image = self._image(int(m.group(1)))
            if method == "GET":
                return 200, {"image": _public_image(image)}
            if method == "DELETE":
                if image["type"] == "system":
                    raise HcloudApiError(403, "forbidden", "system images cannot be deleted")
                self._unlocked_image(image["id"])
                del self.images[image["id"]]
                if self.machines is not None and image["docker_image"] != RUNNER_IMAGE:
                    self.machines.remove_image(image["docker_image"])
                return 204, None
        if path == "/server_types" and method == "GET":
            found = list(self.server_types.values())
            return 200, self._page("server_types", self._by_name(found, query), query)
        if path in ("/firewalls", "/networks") and method == "GET":
            pool = self.firewalls if path == "/firewalls" else self.networks
            return 200, self._page(path[1:], self._by_name(list(pool.values()), query), query)
        raise HcloudApiError(404, "not_found", f"{method} {path} not found")

    # ------------------------------------------------------------------ servers

    def _create_server(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["name"]
        if not _HOSTNAME.match(name):
            raise _invalid("name", "name must be a valid hostname")
        if any(s["name"] == name for s in self.servers.values()):
            raise HcloudApiError(
                409,
                "uniqueness_error",
                "server name is already used",
                {"fields": [{"name": "name"}]},
            )
        wanted = body["server_type"]  # the API takes an id or a name
        server_type = next(
            (t for t in self.server_types.values() if wanted in (t["id"], t["name"], str(t["id"]))),
            None,
        )
        if server_type is None:
            raise _invalid("server_type", "unknown server type")
        location = body.get("location", "fsn1")
        if location not in LOCATIONS:
            raise _invalid("location", "unknown location")
        image = self._image_for_create(body["image"], server_type["architecture"])
        labels = body.get("labels") or {}
        _check_labels(labels)
        user_data = body.get("user_data") or ""
        if len(user_data.encode()) > USER_DATA_LIMIT:
            raise _invalid("user_data", "user_data is limited to 32 KiB")
        keys = [self._ssh_key_ref(ref) for ref in body.get("ssh_keys", [])]
        for firewall in body.get("firewalls", []):
            if firewall.get("firewall") not in {f["id"] for f in self.firewalls.values()}:
                raise _invalid("firewalls", "firewall not found")
        for network in body.get("networks", []):
            if network not in {n["id"] for n in self.networks.values()}:
                raise _invalid("networks", "network not found")
        if (server_type["name"], location) in self.sold_out:
            raise HcloudApiError(
                503,
                "resource_unavailable",
                f"server type {server_type['name']} is unavailable in {location}",
            )
        server = self._new_server(name, server_type, location, labels, user_data, image)
        root_password = None
        if not keys:
            # Hetzner e-mails a generated root password and marks it expired.
            root_password = uuid.uuid4().hex[:20]
            self.root_passwords[server["id"]] = root_password
        if self.machines is not None:
            self._boot(server, image, keys, user_data)
        action = self._new_action("create_server", server["id"])
        next_actions = []
        if body.get("start_after_create", True):
            next_actions.append(self._new_action("start_server", server["id"]))
        return {
            "server": server,
            "action": action,
            "next_actions": next_actions,
            "root_password": root_password,
        }

    def _boot(
        self,
        server: dict[str, Any],
        image: dict[str, Any],
        keys: list[dict[str, Any]],
        user_data: str,
    ) -> None:
        assert self.machines is not None
        config = parse_cloud_config(user_data)
        authorized: dict[str, list[str]] = {"root": [k["public_key"] for k in keys]}
        for user in config.get("users", []):
            if isinstance(user, dict) and user.get("name"):
                authorized.setdefault(user["name"], []).extend(user.get("ssh_authorized_keys", []))
        host_key = (config.get("ssh_keys") or {}).get("ed25519_private")
        spec = MachineSpec(
            name=server["name"],
            image=image["docker_image"],
            authorized_keys=authorized,
            host_private_key=host_key,
            expired_root_password=server["id"] in self.root_passwords,
            boot_delay_s=self.boot_delay_s,
            runcmd=[list(argv) for argv in config.get("runcmd", []) if isinstance(argv, list)],
            packages=list(config.get("packages", [])),
            boot_status=self.boot_status,
            labels={"server": str(server["id"])},
        )
        machine = self.machines.start(spec)
        self.machine_of[server["id"]] = machine
        self.booted[server["id"]] = (server["server_type"]["name"], spec.image)
        server["public_net"]["ipv4"]["ip"] = machine.address

    def _new_server(
        self,
        name: str,
        server_type: dict[str, Any],
        location: str,
        labels: dict[str, str],
        user_data: str,
        image: dict[str, Any],
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
            "datacenter": {
                "id": LOCATIONS.index(location) + 1,
                "name": f"{location}-dc1",
                "description": location,
                "location": {"id": LOCATIONS.index(location) + 1, "name": location},
            },
            "location": {
                "id": LOCATIONS.index(location) + 1,
                "name": location,
                "network_zone": "eu-central",
            },
            "image": _public_image(image),
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

    def _unlocked(self, server_id: int) -> None:
        """``locked`` while another action runs on the server (e.g. its create)."""
        for entry in self.actions.values():
            action = entry["action"]
            if action["status"] == "running" and any(
                r["type"] == "server" and r["id"] == server_id for r in action["resources"]
            ):
                raise HcloudApiError(
                    423, "locked", f"server {server_id} is locked by action {action['command']}"
                )

    def _list_servers(self, query: dict[str, list[str]]) -> dict[str, Any]:
        found = self._by_name(sorted(self.servers.values(), key=lambda s: s["id"]), query)
        return self._page("servers", self._selected(found, query), query)

    @staticmethod
    def _selected(items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[Any]:
        if "label_selector" not in query:
            return items
        selector = query["label_selector"][0]
        return [i for i in items if matches_selector(i["labels"], selector)]

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

    # ------------------------------------------------------------------ ssh keys

    def _create_ssh_key(self, body: dict[str, Any]) -> dict[str, Any]:
        public_key = body["public_key"].strip()
        fingerprint = _fingerprint(public_key)
        if fingerprint is None:
            raise _invalid("public_key", "invalid public key")
        labels = body.get("labels") or {}
        _check_labels(labels)
        for field, value in (("name", body["name"]), ("public_key", fingerprint)):
            clash = [k for k in self.ssh_keys.values() if value in (k["name"], k["fingerprint"])]
            if clash:
                raise HcloudApiError(
                    409,
                    "uniqueness_error",
                    f"SSH key with the same {field.replace('_', ' ')} already exists",
                    {"fields": [{"name": field}]},
                )
        key = {
            "id": next(self._ids),
            "name": body["name"],
            "fingerprint": fingerprint,
            "public_key": public_key,
            "labels": dict(labels),
            "created": _now(),
        }
        self.ssh_keys[key["id"]] = key
        return {"ssh_key": key}

    def _ssh_key_ref(self, ref: int | str) -> dict[str, Any]:
        for key in self.ssh_keys.values():
            if ref in (key["id"], key["name"], str(key["id"])):
                return key
        raise _invalid("ssh_keys", f"ssh key {ref!r} not found")

    # ------------------------------------------------------------------ images

    def _add_image(
        self,
        kind: str,
        *,
        architecture: str,
        docker_image: str,
        name: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
        created_from: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        image = {
            "id": next(self._ids),
            "type": kind,
            "status": "available" if kind == "system" else "creating",
            "name": name,
            "description": description or (name or ""),
            "image_size": None,
            "disk_size": 5,
            "created": _now(),
            "created_from": created_from,
            "bound_to": None,
            "os_flavor": "ubuntu" if (name or "").startswith("ubuntu") else "debian",
            "os_version": None,
            "rapid_deploy": kind == "system",
            "protection": {"delete": False},
            "deprecated": None,
            "deleted": None,
            "labels": dict(labels or {}),
            "architecture": architecture,
            "docker_image": docker_image,  # the imitation's own field, never sent
        }
        self.images[image["id"]] = image
        return image

    def _system(self, architecture: str) -> dict[str, Any]:
        return self._image_for_create("ubuntu-24.04", architecture)

    def _image(self, image_id: int) -> dict[str, Any]:
        if image_id not in self.images:
            raise HcloudApiError(404, "not_found", f"image with ID '{image_id}' not found")
        return self.images[image_id]

    def _image_for_create(self, ref: int | str, architecture: str) -> dict[str, Any]:
        for image in self.images.values():
            by_id = ref in (image["id"], str(image["id"]))
            by_name = image["type"] == "system" and ref == image["name"]
            if (by_id or by_name) and image["architecture"] == architecture:
                if image["status"] != "available":
                    raise _invalid("image", f"image {ref} is not available yet")
                return image
            if by_id:
                raise _invalid("image", f"image {ref} is for {image['architecture']}")
        raise _invalid("image", f"image {ref!r} not found")

    def _list_images(self, query: dict[str, list[str]]) -> dict[str, Any]:
        found = sorted(self.images.values(), key=lambda i: i["id"])
        for field in ("type", "architecture", "status"):
            if field in query:
                found = [i for i in found if i[field] in query[field]]
        found = self._selected(self._by_name(found, query), query)
        for sort in reversed(query.get("sort", [])):
            key, _, order = sort.partition(":")
            found.sort(key=lambda i: (i[key] or "", i["id"]), reverse=order == "desc")
        return self._page("images", [_public_image(i) for i in found], query)

    def _create_image(self, server: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        self._unlocked(server["id"])
        labels = body.get("labels") or {}
        _check_labels(labels)
        docker_image = RUNNER_IMAGE
        machine = self.machine_of.get(server["id"])
        if self.machines is not None and machine is not None:
            docker_image = self.machines.commit(machine, "lian-hcloud-snapshot")
        image = self._add_image(
            body.get("type", "snapshot"),
            architecture=server["server_type"]["architecture"],
            docker_image=docker_image,
            description=body.get("description", ""),
            labels=labels,
            created_from={"id": server["id"], "name": server["name"]},
        )
        action = self._new_action("create_image", server["id"], image_id=image["id"])
        return {"image": _public_image(image), "action": action}

    def _unlocked_image(self, image_id: int) -> None:
        for entry in self.actions.values():
            action = entry["action"]
            if action["status"] == "running" and any(
                r["type"] == "image" and r["id"] == image_id for r in action["resources"]
            ):
                raise HcloudApiError(423, "locked", f"image {image_id} is being created")

    # ------------------------------------------------------------------ actions

    def _new_action(self, command: str, server_id: int, image_id: int | None = None):
        resources = [{"id": server_id, "type": "server"}]
        if image_id is not None:
            resources.append({"id": image_id, "type": "image"})
        action = {
            "id": next(self._ids),
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now(),
            "finished": None,
            "resources": resources,
            "error": None,
        }
        self.actions[action["id"]] = {"action": action, "polls": 0, "t0": time.monotonic()}
        return dict(action)

    def _tick(self) -> None:
        """Actions also finish with time (a real action runs whether or not anyone polls)."""
        horizon = max(self.action_min_s, 0.05) * (self.action_polls + 1)
        for entry in list(self.actions.values()):
            running = entry["action"]["status"] == "running"
            if running and time.monotonic() - entry["t0"] > horizon:
                self._finish(entry["action"])

    def _poll_action(self, action_id: int) -> dict[str, Any]:
        if action_id not in self.actions:
            raise HcloudApiError(404, "not_found", f"action {action_id} not found")
        entry = self.actions[action_id]
        action = entry["action"]
        if action["status"] == "running":
            entry["polls"] += 1
            action["progress"] = min(99, entry["polls"] * 100 // (self.action_polls + 1))
            old_enough = time.monotonic() - entry["t0"] >= self.action_min_s
            if entry["polls"] > self.action_polls and old_enough:
                self._finish(action)
        return dict(action)

    def _finish(self, action: dict[str, Any]) -> None:
        server_id = action["resources"][0]["id"]
        action["finished"], action["progress"] = _now(), 100
        fault = self._action_faults.pop(action["command"], None)
        if fault is not None:
            action["status"] = "error"
            action["error"] = {"code": fault[0], "message": fault[1]}
            if action["command"] == "create_image":
                self.images.pop(action["resources"][1]["id"], None)
            return
        action["status"] = "success"
        if action["command"] == "delete_server":
            self.servers.pop(server_id, None)
            machine = self.machine_of.pop(server_id, None)
            if machine is not None and self.machines is not None:
                self.machines.remove(machine)
        elif action["command"] == "start_server" and server_id in self.servers:
            self.servers[server_id]["status"] = "running"
        elif action["command"] == "create_image":
            image = self.images.get(action["resources"][1]["id"])
            if image is not None:
                image["status"] = "available"


def parse_cloud_config(user_data: str) -> dict[str, Any]:
    """``#cloud-config`` with a JSON body (valid YAML). Other YAML is not understood here."""
    if not user_data:
        return {}
    header, _, body = user_data.partition("\n")
    if header.strip() != "#cloud-config":
        raise _invalid("user_data", "the imitation understands #cloud-config documents only")
    try:
        config = json.loads(body)
    except ValueError:
        raise _invalid(
            "user_data", "the imitation reads cloud-config written as JSON (valid YAML) only"
        ) from None
    return config if isinstance(config, dict) else {}


def _fingerprint(public_key: str) -> str | None:
    """MD5 of the key blob, colon-separated: how the API identifies a key."""
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _public_image(image: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in image.items() if k != "docker_image"}


def _check_labels(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or key.startswith("hetzner.cloud/"):
            raise _invalid("labels", f"invalid label key {key!r}")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise _invalid("labels", f"invalid label value for {key!r}")


def _checked(schema: dict[str, Any], body: Any) -> Any:
    found = hcloud_schema.problems(schema, body)
    if found:
        field, message = found[0]
        raise HcloudApiError(
            400,
            "invalid_input",
            f"invalid input in field '{field}': {message}",
            {"fields": [{"name": f, "messages": [m]} for f, m in found]},
        )
    return body


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
            data = b"" if payload is None else json.dumps(payload).encode()
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
