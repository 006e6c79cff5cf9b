"""Hetzner Cloud compute provider: one server per build, found again by its labels.

The session's client key goes to the API as a temporary ``/ssh_keys`` object passed on
create and deleted right after (also on failure): a server created without
``ssh_keys`` gets an expired root password and refuses non-interactive root logins.

Runners boot from the newest snapshot labelled ``lian.runner-image`` for the server
type's architecture (made by ``lian runner-image build --provider hcloud``), else from
``ubuntu-24.04`` with the builder installed by cloud-init at first boot (minutes).

A crash (or a retried request) between create and learning the server id leaves an
orphan named ``lian-<session>``; the next create then fails with ``uniqueness_error``.
The orphan is deleted and the create retried, not adopted: its user data (and so its
SSH host key) cannot be read back, and pinning a key it may not have would fail later
and less clearly. A same-named server without this session's labels is never touched.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import logging
import math
import re
import secrets
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from lian_build import __version__, api, cloudinit
from lian_build.errors import InvalidInput, ProvisionError
from lian_hcloud import prices
from lian_hcloud.failures import provision_errors
from lian_hcloud.labels import check_labels, label_selector, server_name
from lian_hcloud.tiers import HETZNER_ARCHITECTURES, REPLACEMENTS, ladder, ladder_for

if TYPE_CHECKING:
    from hcloud import Client
    from hcloud.actions import BoundAction
    from hcloud.images import Image
    from hcloud.server_types import BoundServerType
    from hcloud.servers import BoundServer, CreateServerResponse
    from hcloud.ssh_keys import BoundSSHKey

log = logging.getLogger("lian.hcloud")

SESSION_LABEL = "lian.session"
MANAGED_LABEL = "lian.managed"
EXPIRES_LABEL = "lian.expires-at"
RUNNER_IMAGE_LABEL = "lian.runner-image"  # on snapshots; the value names the builder
FALLBACK_IMAGE = "ubuntu-24.04"
# A key object shared with a concurrent build may vanish before our create: retries.
KEY_RACE_ATTEMPTS = 3
SNAPSHOT_CLEANUP = (
    "cloud-init clean --logs; rm -f /etc/ssh/ssh_host_* /root/.ssh/authorized_keys; "
    "apt-get clean; sync"
)
# cloud-init exits 2 on recoverable errors (23.4 and later): degraded but usable.
READY_SCRIPT = (
    'cloud-init status --wait; rc=$?; if [ "$rc" -eq 2 ]; then '
    "echo 'cloud-init reported recoverable errors; continuing' >&2; exit 0; fi; exit \"$rc\""
)


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise InvalidInput(f"{attribute.name} must be positive", field=attribute.name)


def _endpoint(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise InvalidInput(f"{attribute.name} must be an http(s) URL", field=attribute.name)


def _secret_ref(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if ":" not in value:
        raise InvalidInput(
            f"{attribute.name} must be a secret reference such as env:HCLOUD_TOKEN",
            field=attribute.name,
        )


@attrs.frozen(kw_only=True)
class HcloudSettings:
    token_ref: str = attrs.field(default="env:HCLOUD_TOKEN", validator=_secret_ref)
    location: str = "fsn1"
    # None: the newest snapshot labelled lian.runner-image, else ubuntu-24.04.
    # A name, or a snapshot id with a builder and rsync baked in.
    image: str | None = None
    ssh_user: str = "root"
    ssh_port: int = 22
    api_endpoint: str = attrs.field(default="https://api.hetzner.cloud/v1", validator=_endpoint)
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    create_timeout: float = attrs.field(
        default=900.0, validator=_positive
    )  # custom images: >10 min
    server_types: list[str] | None = None  # ladder override: names or "name:cpu:mem[:disk]"
    # How long a delete is retried while another action (the create) holds the lock.
    lock_timeout: float = attrs.field(default=120.0, validator=_positive)
    firewall: str | None = None  # name or id
    network: str | None = None  # name or id
    # Installed by cloud-init at first boot on a stock image; the build waits for
    # cloud-init to finish. Not installed on a lian.runner-image snapshot.
    packages: list[str] = attrs.field(factory=lambda: ["buildah", "rsync"])


class HcloudProvider(api.ComputeProvider):
    name: ClassVar[str] = "hcloud"
    description: ClassVar[str] = "Hetzner Cloud servers (hcloud API), one per build"
    Settings: ClassVar[type[Any]] = HcloudSettings
    settings: HcloudSettings

    def __init__(self, settings: HcloudSettings, secrets: api.SecretLookup) -> None:
        super().__init__(settings, secrets)
        # Prices read from the API in this process, by (server type, location).
        self._prices_read: dict[tuple[str, str], float] = {}

    def tiers(self) -> Sequence[api.Tier]:
        return ladder(self.settings.server_types)

    def architectures(self) -> Sequence[str]:
        # cx/cpx/ccx are x86, cax (Ampere) arm: each platform gets a native server.
        return tuple(HETZNER_ARCHITECTURES)

    def tiers_for(self, architecture: str) -> Sequence[api.Tier]:
        return ladder_for(self.settings.server_types, architecture)

    def plan(self) -> dict[str, Any]:
        image = self.settings.image
        return {
            "location": self.settings.location,
            "image": image
            or f"newest snapshot labelled {RUNNER_IMAGE_LABEL} (read at spawn), "
            f"else {FALLBACK_IMAGE}",
            "api_endpoint": self.settings.api_endpoint,
            "server_types": [tier.name for tier in self.tiers()],
            "packages": list(self.settings.packages),
        }

    def estimate_cost(self, tier: api.Tier, seconds: float) -> dict[str, Any] | None:
        location = self.settings.location
        read = self._prices_read.get((tier.name, location))
        found = (read, "api") if read is not None else prices.lookup(tier.name, location)
        if found is None:
            return None
        return prices.cost(found[0], seconds, found[1], location)

    # ------------------------------------------------------------------ lifecycle

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        labels = check_labels(request.labels)
        name = server_name(request.session_id)
        client = self._client()
        with self._errors():
            server_type = self._orderable_type(client, request.tier.name)
            _check_architecture(request, server_type)
            image, image_label, baked = self._boot_image(client, request, server_type)
        user_data = cloudinit.user_data(
            authorized_key=request.authorized_key,
            host_key=request.host_key,
            user=self.settings.ssh_user,
            packages=[] if baked else self.settings.packages,
        )
        created = self._create_with_session_key(
            client, name, request.authorized_key, server_type, image, labels, user_data
        )
        server: BoundServer = created.server
        server_id = int(server.id or 0)
        try:
            with self._errors():
                _wait(created.action, *created.next_actions)
                server = client.servers.get_by_id(server_id)
            host = _public_ipv4(server)
        except BaseException:
            # Nobody else knows this server's id yet: remove it before failing.
            self._delete_quietly(client, server_id)
            raise
        log.info("server %s (%s) is up at %s from image %s", server_id, name, host, image_label)
        return api.Runner(
            id=str(server_id),
            provider=self.name,
            host=host,
            port=self.settings.ssh_port,
            user=self.settings.ssh_user,
            host_public_key=request.host_key.public_openssh,
            tier=request.tier,
            labels=labels,
            # SSH answers before cloud-init has installed the packages the build needs.
            ready_command=("sh", "-c", READY_SCRIPT),
            image=image_label,
        )

    def destroy(self, runner_id: str) -> None:
        server_id = _server_id(runner_id)
        client = self._client()
        with self._errors():
            self._delete_server(client, server_id)

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        selector = label_selector(labels)
        client = self._client()
        with self._errors():
            servers = client.servers.get_all(label_selector=selector)
        return [
            api.RunnerInfo(
                id=str(s.id),
                labels=dict(s.labels or {}),
                created_at=_utc(s.created),
                hourly_price=self._hourly_price(dict(s.labels or {})),
            )
            for s in servers
        ]

    def _hourly_price(self, labels: Mapping[str, str]) -> float | None:
        """The net hourly price of the runner's tier (its ``lian.tier`` label)."""
        tier = labels.get("lian.tier")
        if not tier:
            return None
        cost = self.estimate_cost(api.Tier(name=tier, cpu=0, memory_gb=0), 3600.0)
        return float(cost["hourly_net"]) if cost and "hourly_net" in cost else None

    def inspect(self, runner_id: str) -> api.RunnerState:
        from hcloud import APIException

        server_id = _server_id(runner_id)
        client = self._client()
        with self._errors():
            try:
                server = client.servers.get_by_id(server_id)
            except APIException as exc:
                if exc.code == "not_found":
                    return api.RunnerState(exists=False)
                raise
        return api.RunnerState(exists=True, running=server.status == "running")

    # ------------------------------------------------------------------ runner images

    def build_runner_image(self, options: Mapping[str, str]) -> dict[str, Any]:
        """A snapshot with the builder installed: one-off server, cloud-init, cleanup,
        ``create_image`` labelled ``lian.runner-image=buildah``, server deleted."""
        from hcloud.images import Image

        base = options.get("base", FALLBACK_IMAGE)
        type_name = options.get("server_type") or self.tiers()[0].name
        session = "img" + secrets.token_hex(5)
        name = server_name(session)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.settings.create_timeout)
        labels = {
            MANAGED_LABEL: "true",
            SESSION_LABEL: session,
            "lian.workspace": "runner-image",
            EXPIRES_LABEL: str(int(expires.timestamp()) + 3600),
        }
        client = self._client()
        with self._errors():
            server_type = self._orderable_type(client, type_name)
        with tempfile.TemporaryDirectory(prefix="lian-image-") as tmp:
            from lian_build.remote.ssh import generate_host_key, read_private_key

            login = generate_host_key()
            key_path = Path(tmp) / "id_ed25519"
            key_path.write_text(login.private_openssh)
            key_path.chmod(0o600)
            client_key = read_private_key(key_path)
            host_key = generate_host_key()
            user_data = cloudinit.user_data(
                authorized_key=login.public_openssh,
                host_key=host_key,
                user=self.settings.ssh_user,
                packages=self.settings.packages,
            )
            with self._errors(), self._session_key(client, name, login.public_openssh, labels) as k:
                created = self._create(
                    client, name, server_type, Image(name=base), k, labels, user_data
                )
            server_id = int(created.server.id or 0)
            try:
                with self._errors():
                    _wait(created.action, *created.next_actions)
                    server = client.servers.get_by_id(server_id)
                runner = api.Runner(
                    id=str(server_id),
                    provider=self.name,
                    host=_public_ipv4(server),
                    port=self.settings.ssh_port,
                    user=self.settings.ssh_user,
                    host_public_key=host_key.public_openssh,
                    tier=self.tiers()[0],
                )
                self._prepare_snapshot(runner, client_key)
                builder = "buildah"
                description = f"lian runner ({builder}; {base}; {dt.date.today().isoformat()})"
                with self._errors():
                    made = client.servers.create_image(
                        server,
                        description=description,
                        type="snapshot",
                        labels={RUNNER_IMAGE_LABEL: builder, MANAGED_LABEL: "true"},
                    )
                    made.action.wait_until_finished()
            finally:
                self._delete_quietly(client, server_id)
        return {
            "image_id": made.image.id,
            "description": description,
            "architecture": str(server_type.architecture or "x86"),
            "server_type": type_name,
            "base": base,
            "labels": {RUNNER_IMAGE_LABEL: builder, MANAGED_LABEL: "true"},
        }

    def check_runner_image(self, options: Mapping[str, str]) -> dict[str, Any]:
        """The snapshot spawn would boot (by label, per architecture); no server is made."""
        architecture = options.get("architecture", "x86")
        client = self._client()
        with self._errors():
            found = _runner_snapshots(client, architecture)
        if not found:
            return {
                "image_id": None,
                "architecture": architecture,
                "problems": [
                    f"no snapshot labelled {RUNNER_IMAGE_LABEL} for {architecture}: runners "
                    f"install their builder at boot from {FALLBACK_IMAGE} (run "
                    "`lian runner-image build --provider hcloud`)"
                ],
            }
        newest = found[0]
        return {
            "image_id": newest.id,
            "description": newest.description,
            "created": newest.created.isoformat() if newest.created else None,
            "architecture": architecture,
            "labels": dict(newest.labels or {}),
            "older_snapshots": [image.id for image in found[1:]],
            "problems": [],
        }

    def _prepare_snapshot(self, runner: api.Runner, client_key: Any) -> None:
        """Wait for cloud-init, check the tools, remove per-machine state."""
        from lian_build.remote.ssh import SSHRemote

        timeout = self.settings.create_timeout
        with SSHRemote.connect(runner, client_key, wait_timeout_s=timeout, log=log.info) as remote:
            ready = remote.run(["sh", "-c", READY_SCRIPT], timeout=timeout)
            if ready.exit_code != 0:
                raise ProvisionError(
                    f"cloud-init on the image server exited {ready.exit_code}",
                    details={"provider": "hcloud", "code": "image_boot_failed"},
                )
            tools = remote.run(["sh", "-c", "command -v buildah && command -v rsync"], timeout=60)
            if tools.exit_code != 0:
                raise ProvisionError(
                    "the image server lacks buildah or rsync after cloud-init",
                    details={"provider": "hcloud", "code": "image_incomplete"},
                )
            # Host keys and cloud-init state are per server: each runner gets its own.
            remote.run(["sh", "-c", SNAPSHOT_CLEANUP], timeout=120)

    # ------------------------------------------------------------------ internals

    def _client(self) -> Client:
        from hcloud import Client

        token = self.secrets(self.settings.token_ref)
        interval = self.settings.poll_interval
        return Client(
            token=token,
            api_endpoint=self.settings.api_endpoint,
            application_name="lian-build",
            application_version=__version__,
            poll_interval=interval,
            poll_max_retries=max(1, math.ceil(self.settings.create_timeout / interval)),
            timeout=60.0,
        )

    def _errors(self) -> AbstractContextManager[None]:
        return provision_errors(token_ref=self.settings.token_ref, location=self.settings.location)

    def _orderable_type(self, client: Client, type_name: str) -> BoundServerType:
        """The server type, read now: deprecations and availability change under us."""
        server_type = client.server_types.get_by_name(type_name)
        if server_type is None:
            raise ProvisionError(
                f"Hetzner Cloud has no server type {type_name!r}",
                field="server_types",
                details={"provider": "hcloud", "code": "server_type_unknown"},
            )
        location = self.settings.location
        hourly = prices.hourly_from_server_type(server_type, location)
        if hourly is not None:
            self._prices_read[(type_name, location)] = hourly
            prices.remember(type_name, location, hourly, dt.datetime.now(dt.UTC).isoformat())
        deprecation, available = _type_status(server_type, location)
        if deprecation is not None:
            replacement = REPLACEMENTS.get(type_name)
            advice = f"use {replacement}" if replacement else "pick a current type"
            until = deprecation.unavailable_after
            raise ProvisionError(
                f"server type {type_name} is deprecated"
                + (f" (unorderable after {until:%Y-%m-%d})" if until else "")
                + f"; {advice} in server_types",
                field="server_types",
                details={
                    "provider": "hcloud",
                    "code": "server_type_deprecated",
                    "replacement": replacement,
                },
            )
        if not available:
            raise ProvisionError(
                f"server type {type_name} is not available in {location}; "
                "try another location or tier",
                field="location",
                details={"provider": "hcloud", "code": "server_type_unavailable"},
            )
        return server_type

    def _boot_image(
        self, client: Client, request: api.SpawnRequest, server_type: BoundServerType
    ) -> tuple[Image, str, bool]:
        """(image to send, how the envelope names it, builder baked in)."""
        from hcloud.images import Image

        chosen = request.runner_image or self.settings.image
        if chosen:
            image = Image(id=int(chosen)) if chosen.isdigit() else Image(name=chosen)
            return image, chosen, False
        architecture = str(server_type.architecture or "x86")
        snapshots = _runner_snapshots(client, architecture)
        if snapshots:
            newest = snapshots[0]
            return Image(id=newest.id), f"{newest.id} ({newest.description})", True
        return Image(name=FALLBACK_IMAGE), FALLBACK_IMAGE, False

    def _create_with_session_key(
        self,
        client: Client,
        name: str,
        public_key: str,
        server_type: BoundServerType,
        image: Image,
        labels: dict[str, str],
        user_data: str,
    ) -> CreateServerResponse:
        """Create the server with the session's key object. A key object shared with a
        concurrent build of the same key (the API allows one object per fingerprint) may
        be deleted by its owner between our lookup and our create: then the create names
        a missing key, and we try again with a key object of our own (bounded)."""
        from hcloud import APIException

        for attempt in range(KEY_RACE_ATTEMPTS):
            with self._errors(), self._session_key(client, name, public_key, labels) as key:
                try:
                    return self._create(client, name, server_type, image, key, labels, user_data)
                except APIException as exc:
                    if not _names_missing_ssh_key(exc) or attempt + 1 == KEY_RACE_ATTEMPTS:
                        raise
                    log.info("ssh key object %s vanished before create; retrying", key.id)
        raise AssertionError("unreachable")  # the loop returns or raises

    @contextlib.contextmanager
    def _session_key(
        self, client: Client, name: str, public_key: str, labels: Mapping[str, str]
    ) -> Iterator[BoundSSHKey]:
        """A temporary /ssh_keys object for the client key, deleted when the block ends.

        The API refuses a second object with the same key (same fingerprint): then the
        existing one is used and left alone (its owner, maybe another build, deletes it).
        """
        from hcloud import APIException

        kept = (MANAGED_LABEL, SESSION_LABEL, EXPIRES_LABEL)
        ours = {k: v for k, v in labels.items() if k in kept}
        self._sweep_expired_keys(client)
        for attempt in range(KEY_RACE_ATTEMPTS):
            try:
                key = client.ssh_keys.create(name=name, public_key=public_key.strip(), labels=ours)
                break
            except APIException as exc:
                if exc.code != "uniqueness_error":
                    raise
                existing = client.ssh_keys.get_by_fingerprint(_fingerprint(public_key))
                if existing is not None:
                    log.info("using the existing ssh key object %s for this key", existing.id)
                    yield existing
                    return
                if client.ssh_keys.get_by_name(name) is not None:
                    key = self._replace_key_orphan(client, name, public_key, ours, exc)
                    break
                # The clashing object (a concurrent build's, same key) was deleted between
                # our create and our lookup: create again.
                if attempt + 1 == KEY_RACE_ATTEMPTS:
                    raise
                log.info("the ssh key object this key clashed with is gone; creating again")
        try:
            yield key
        finally:
            try:
                client.ssh_keys.delete(key)
            except APIException as exc:
                if exc.code != "not_found":
                    log.error("could not delete ssh key object %s (%s): %s", key.id, name, exc)

    def _sweep_expired_keys(self, client: Client) -> None:
        """Key objects a killed build left (between upload and create), once expired."""
        from hcloud import APIException

        now = time.time()
        for key in client.ssh_keys.get_all(label_selector=f"{MANAGED_LABEL}=true,{EXPIRES_LABEL}"):
            expires = (key.labels or {}).get(EXPIRES_LABEL, "")
            if expires.isdigit() and int(expires) < now:
                log.info("deleting expired ssh key object %s (%s)", key.id, key.name)
                try:
                    client.ssh_keys.delete(key)
                except APIException as exc:
                    if exc.code != "not_found":
                        raise

    def _replace_key_orphan(
        self,
        client: Client,
        name: str,
        public_key: str,
        labels: Mapping[str, str],
        error: Exception,
    ) -> BoundSSHKey:
        orphan = client.ssh_keys.get_by_name(name)
        if orphan is None:
            raise error
        theirs = orphan.labels or {}
        if theirs.get(SESSION_LABEL) != labels.get(SESSION_LABEL):
            raise ProvisionError(
                f"an SSH key object named {name} exists and was not created by this session",
                details={"provider": "hcloud", "code": "name_taken", "ssh_key_id": orphan.id},
            )
        client.ssh_keys.delete(orphan)
        return client.ssh_keys.create(name=name, public_key=public_key.strip(), labels=dict(labels))

    def _create(
        self,
        client: Client,
        name: str,
        server_type: BoundServerType,
        image: Image,
        key: BoundSSHKey,
        labels: dict[str, str],
        user_data: str,
    ) -> CreateServerResponse:
        from hcloud import APIException
        from hcloud.locations import Location

        arguments: dict[str, Any] = {
            "name": name,
            "server_type": server_type,
            "image": image,
            "location": Location(name=self.settings.location),
            "ssh_keys": [key],
            "labels": labels,
            "user_data": user_data,
            "start_after_create": True,
        }
        if self.settings.firewall:
            firewall = _by_name_or_id(client.firewalls, "firewall", self.settings.firewall)
            arguments["firewalls"] = [firewall]
        if self.settings.network:
            network = _by_name_or_id(client.networks, "network", self.settings.network)
            arguments["networks"] = [network]
        try:
            return client.servers.create(**arguments)
        except APIException as exc:
            if exc.code != "uniqueness_error":
                raise
            self._sweep_orphan(client, name, labels, exc)
        return client.servers.create(**arguments)

    def _sweep_orphan(
        self, client: Client, name: str, labels: Mapping[str, str], error: Exception
    ) -> None:
        orphan = client.servers.get_by_name(name)
        if orphan is None:
            raise error  # the clash is on another field: report it as it is
        theirs = orphan.labels or {}
        ours = theirs.get(MANAGED_LABEL) == "true" and theirs.get(SESSION_LABEL) == labels.get(
            SESSION_LABEL
        )
        if not ours:
            raise ProvisionError(
                f"a server named {name} exists and was not created by this session; "
                "lian-build leaves it alone",
                details={"provider": "hcloud", "code": "name_taken", "server_id": orphan.id},
            )
        log.warning("deleting orphaned server %s (%s) before creating it again", orphan.id, name)
        self._delete_server(client, int(orphan.id or 0))

    def _delete_server(self, client: Client, server_id: int) -> None:
        """Delete and wait; ``locked`` (its create still running) is retried, bounded."""
        from hcloud import APIException
        from hcloud.servers import Server

        deadline = time.monotonic() + self.settings.lock_timeout
        delay = self.settings.poll_interval
        while True:
            try:
                action = client.servers.delete(Server(id=server_id))
                break
            except APIException as exc:
                if exc.code == "not_found":
                    log.info("server %s already gone", server_id)
                    return
                if exc.code != "locked" or time.monotonic() + delay > deadline:
                    raise
                log.info("server %s is locked by a running action; retrying the delete", server_id)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        action.wait_until_finished()
        log.info("server %s deleted", server_id)

    def _delete_quietly(self, client: Client, server_id: int) -> None:
        try:
            with self._errors():
                self._delete_server(client, server_id)
        except Exception:
            log.exception("could not delete server %s; the reaper will find it", server_id)


def _runner_snapshots(client: Client, architecture: str) -> list[Any]:
    """lian runner snapshots for one architecture, newest first, ready to boot."""
    found = client.images.get_all(
        type=["snapshot"],
        label_selector=RUNNER_IMAGE_LABEL,
        architecture=[architecture],
        sort=["created:desc", "id:desc"],
    )
    # Filtered here: hcloud-python (through 2.x) sends per_page as the status filter.
    return [image for image in found if image.status == "available"]


def _names_missing_ssh_key(exc: Exception) -> bool:
    """The create refused a key object that no longer exists."""
    code = getattr(exc, "code", None)
    text = f"{getattr(exc, 'message', '')} {getattr(exc, 'details', '')}".lower()
    return code in ("invalid_input", "not_found") and "ssh" in text and "key" in text


def _check_architecture(request: api.SpawnRequest, server_type: BoundServerType) -> None:
    """A platform's runner must be of that platform's architecture: an arm64 build on an
    x86 server would be emulated (or fail) without anybody having asked for it."""
    wanted = HETZNER_ARCHITECTURES.get(request.architecture or "")
    actual = str(server_type.architecture or "x86")
    if wanted is not None and wanted != actual:
        raise InvalidInput(
            f"server type {request.tier.name} is {actual}, the runner must be "
            f"{request.architecture}; name a {wanted} type in server_types",
            field="server_types",
        )


def _wait(*actions: BoundAction) -> None:
    for action in actions:
        action.wait_until_finished()


def _type_status(server_type: BoundServerType, location: str) -> tuple[Any, bool]:
    """(deprecation or None, available) for one location, falling back to the type-wide field."""
    for entry in server_type.locations or []:
        if entry.location.name == location:
            return entry.deprecation, entry.available is not False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        deprecation = server_type.deprecation
    # Not listed for this location: the API would refuse to place it there.
    return deprecation, not server_type.locations


def _public_ipv4(server: BoundServer) -> str:
    public = server.public_net
    if public is None or public.ipv4 is None or not public.ipv4.ip:
        raise ProvisionError(
            f"server {server.id} has no public IPv4 address to reach over SSH",
            details={"provider": "hcloud", "code": "no_public_ipv4"},
        )
    return str(public.ipv4.ip)


def _fingerprint(public_key: str) -> str:
    """The API's key fingerprint: MD5 of the key blob, colon-separated hex."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _server_id(runner_id: str) -> int:
    if not runner_id.isdigit():
        raise InvalidInput(f"hcloud runner id {runner_id!r} is not a server id", field="runner_id")
    return int(runner_id)


def _by_name_or_id(resource_client: Any, kind: str, ref: str) -> Any:
    if ref.isdigit():
        return resource_client.get_by_id(int(ref))
    found = resource_client.get_by_name(ref)
    if found is None:
        raise ProvisionError(
            f"Hetzner Cloud has no {kind} named {ref!r}",
            field=kind,
            details={"provider": "hcloud", "code": f"{kind}_not_found"},
        )
    return found


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if value else None
