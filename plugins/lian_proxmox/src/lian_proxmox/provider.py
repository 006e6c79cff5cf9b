"""Proxmox VE compute provider: each runner is a clone of a cloud-init VM template.

One template per architecture (``template_id`` is the amd64 one; ``templates`` adds or
names others), each cloned on its architecture's node (``nodes``, else ``node``): a
multi-platform build gets one runner per architecture that has a template.

spawn: next free id -> clone (task; name and description with the labels as JSON) ->
config (size, cloud-init user/key/network, ciupgrade=0, tags) -> start (task) -> guest
agent reports an IPv4 -> cloud-init finished -> session host key installed through the
agent (see ``agent``). A failure after the clone stops and destroys the VM before the
error is raised; a VM id is destroyed only when this session verifiably created it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import attrs

from lian_build import api
from lian_build.errors import InvalidInput, LianError, ProvisionError
from lian_proxmox import agent
from lian_proxmox.client import ApiFailure, Session, TaskFailed

log = logging.getLogger("lian.compute.proxmox")

DEFAULT_TIERS: tuple[api.Tier, ...] = (
    api.Tier("2c-4g", cpu=2, memory_gb=4),
    api.Tier("4c-8g", cpu=4, memory_gb=8),
    api.Tier("8c-16g", cpu=8, memory_gb=16),
    api.Tier("16c-32g", cpu=16, memory_gb=32),
)

# Every VM this provider creates carries this Proxmox tag; listing looks for it.
LIAN_TAG = "lian"
# Clone attempts when a concurrent client takes the id /cluster/nextid gave us.
CLONE_ATTEMPTS = 5
# buildah from here on reuses the registry cache after ARG steps (Debian 13 trixie).
BUILDAH_CACHING = (1, 39)
CHECK_WORKSPACE = "runner-image-check"
_DRIVE = re.compile(r"(ide|sata|scsi|virtio)\d+")
# name=value lines; sshd is looked up where Debian puts it as well.
_PROBE_SCRIPT = r"""
for tool in rsync buildah buildctl cloud-init qemu-ga; do
  printf '%s=%s\n' "$tool" "$(command -v "$tool" || true)"
done
if [ -x /usr/sbin/sshd ]; then echo sshd=/usr/sbin/sshd
else echo "sshd=$(command -v sshd || true)"; fi
printf 'buildah_version=%s\n' "$(buildah --version 2>/dev/null | awk '{print $3}')"
if grep -qsE '^Include /etc/ssh/sshd_config.d/\*.conf' /etc/ssh/sshd_config; then
  echo sshd_dropins=yes; else echo sshd_dropins=; fi
"""

# OCI architecture -> the VM config's ``arch`` (PVE's enum: x86_64, aarch64).
PVE_ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64"}
HOST_ARCHITECTURE = "amd64"  # what template_id names, and the default runner's

_TOKEN_ID = re.compile(r"^[^\s@!=]+@[^\s@!=]+![A-Za-z][A-Za-z0-9._-]*$")
_TAG_INVALID = re.compile(r"[^a-z0-9_+.-]")
_DNS_INVALID = re.compile(r"[^a-z0-9-]")


def _tiers(value: Any) -> tuple[api.Tier, ...] | None:
    """Accept Tier objects or ``{name, cpu, memory_gb}`` mappings from directives."""
    if value is None:
        return None
    return tuple(t if isinstance(t, api.Tier) else api.Tier(**t) for t in value)


def _check_token_id(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not _TOKEN_ID.match(value):
        raise InvalidInput(
            f"compute.{attribute.name} must look like user@realm!tokenname, got {value!r}",
            field=f"compute.{attribute.name}",
        )


def _check_positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise InvalidInput(
            f"compute.{attribute.name} must be positive, got {value}",
            field=f"compute.{attribute.name}",
        )


def _check_optional_positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _check_positive(_, attribute, value)


def _check_architectures(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for arch in value or {}:
        if arch not in PVE_ARCHITECTURES:
            raise InvalidInput(
                f"compute.{attribute.name} names architecture {arch!r}; Proxmox VMs are "
                f"{' or '.join(PVE_ARCHITECTURES)} (OCI names)",
                field=f"compute.{attribute.name}.{arch}",
            )


@attrs.frozen(kw_only=True)
class ProxmoxSettings:
    """``compute = { provider = "proxmox", ... }``."""

    host: str = attrs.field(validator=attrs.validators.min_len(1))  # "pve.example:8006"
    # Where templates live and clones run unless ``nodes`` names another for an arch.
    node: str = attrs.field(validator=attrs.validators.min_len(1))
    token_id: str = attrs.field(validator=_check_token_id)  # "ci@pve!ci"
    # The amd64 (host) template; ``templates`` may name it instead, and other archs.
    template_id: int | None = attrs.field(default=None, validator=_check_optional_positive)
    templates: dict[str, int] | None = attrs.field(default=None, validator=_check_architectures)
    nodes: dict[str, str] | None = attrs.field(default=None, validator=_check_architectures)
    # A reference ("scheme:rest"), resolved only when the API is called.
    token_ref: str = "env:PROXMOX_TOKEN"  # noqa: S105
    verify_ssl: bool = True
    # The node's CA certificate (PEM); a default install's certificate is self-signed.
    ca_file: str | None = None
    full_clone: bool = False
    storage: str | None = attrs.field(default=None)  # target storage, full clones only
    ssh_user: str = "root"
    ssh_port: int = attrs.field(default=22, validator=_check_positive)  # sshd in the template
    bridge: str | None = None  # replaces net0 with "virtio,bridge=<bridge>" when set
    ipconfig0: str = "ip=dhcp"
    # PVE >= 8.1 defaults ciupgrade to 1 (apt upgrade at first boot); None: do not send
    # it (older PVE rejects the key).
    ciupgrade: bool | None = False
    kind: Literal["qemu", "lxc"] = "qemu"
    wait_timeout_s: float = attrs.field(default=300.0, validator=_check_positive)
    poll_interval: float = attrs.field(default=1.0, validator=_check_positive)
    tiers: tuple[api.Tier, ...] | None = attrs.field(default=None, converter=_tiers)

    @templates.validator
    def _one_template_per_architecture(
        self, attribute: attrs.Attribute[Any], value: dict[str, int] | None
    ) -> None:
        for arch, vmid in (value or {}).items():
            if isinstance(vmid, bool) or not isinstance(vmid, int) or vmid <= 0:
                raise InvalidInput(
                    f"compute.templates.{arch} must be a VM id (a positive integer), got {vmid!r}",
                    field=f"compute.templates.{arch}",
                )
        given = (value or {}).get(HOST_ARCHITECTURE)
        if given is not None and self.template_id is not None and given != self.template_id:
            raise InvalidInput(
                f"compute.template_id ({self.template_id}) and compute.templates.amd64 "
                f"({given}) name different amd64 templates; set one of them",
                field="compute.templates.amd64",
            )
        if self.template_id is None and not value:
            raise InvalidInput(
                "compute.template_id (or compute.templates) must name a VM template",
                field="compute.template_id",
            )

    @nodes.validator
    def _nodes_have_templates(
        self, attribute: attrs.Attribute[Any], value: dict[str, str] | None
    ) -> None:
        for arch, node in (value or {}).items():
            if not isinstance(node, str) or not node:
                raise InvalidInput(
                    f"compute.nodes.{arch} must be a node name, got {node!r}",
                    field=f"compute.nodes.{arch}",
                )
            if arch not in self.all_templates():
                raise InvalidInput(
                    f"compute.nodes.{arch} names a node for {arch}, which has no template "
                    f"(compute.templates.{arch})",
                    field=f"compute.nodes.{arch}",
                )

    def all_templates(self) -> dict[str, int]:
        """Template VM id per OCI architecture."""
        found = {} if self.template_id is None else {HOST_ARCHITECTURE: self.template_id}
        found.update(self.templates or {})
        return dict(sorted(found.items()))

    def default_architecture(self) -> str:
        """The runner's architecture when a spawn names none: amd64 if it has a template."""
        found = self.all_templates()
        return HOST_ARCHITECTURE if HOST_ARCHITECTURE in found else next(iter(found))

    def node_for(self, architecture: str) -> str:
        return (self.nodes or {}).get(architecture, self.node)

    def template_field(self, architecture: str) -> str:
        """The setting that names an architecture's template (for error messages)."""
        if architecture in (self.templates or {}):
            return f"compute.templates.{architecture}"
        return "compute.template_id"

    def all_nodes(self) -> list[str]:
        return sorted({self.node_for(arch) for arch in self.all_templates()} | {self.node})

    @storage.validator
    def _storage_needs_full_clone(
        self, attribute: attrs.Attribute[str | None], value: str | None
    ) -> None:
        if value is not None and not self.full_clone:
            raise InvalidInput(
                "compute.storage is only accepted with compute.full_clone = true "
                "(a linked clone stays on the template's storage)",
                field="compute.storage",
            )


class ProxmoxProvider(api.ComputeProvider):
    """Runners are clones of a Proxmox VE template with cloud-init and the guest agent."""

    name: ClassVar[str] = "proxmox"
    description: ClassVar[str] = "Proxmox VE: clone a cloud-init VM template per build"
    Settings: ClassVar[type[Any]] = ProxmoxSettings
    settings: ProxmoxSettings

    def __init__(self, settings: ProxmoxSettings, secrets: api.SecretLookup) -> None:
        super().__init__(settings, secrets)
        # VM id -> node for the VMs this instance made (destroy needs no lookup then).
        self._placed: dict[int, str] = {}
        self._node_archs: dict[str, str] = {}  # node -> its kernel's machine (x86_64, ...)

    # ------------------------------------------------------------------ no network

    def tiers(self) -> Sequence[api.Tier]:
        return self.settings.tiers or DEFAULT_TIERS

    def architectures(self) -> Sequence[str]:
        # Every architecture with a template runs on its own runner.
        return tuple(self.settings.all_templates())

    def plan(self) -> dict[str, Any]:
        s = self.settings
        default = s.default_architecture()
        return {
            "host": s.host,
            "node": s.node_for(default),
            "template_id": s.all_templates()[default],
            "kind": s.kind,
            "templates": {arch: self.plan_for(arch) for arch in s.all_templates()},
        }

    def plan_for(self, architecture: str) -> dict[str, Any]:
        s = self.settings
        template = s.all_templates().get(architecture)
        if template is None:
            return {}
        return {"template_id": template, "node": s.node_for(architecture)}

    # ------------------------------------------------------------------ lifecycle

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        if self.settings.kind != "qemu":
            raise InvalidInput(
                'compute.kind = "lxc" cannot pin the runner\'s SSH host key: Proxmox has no '
                'API to write files into a container; use kind = "qemu" with a VM template',
                field="compute.kind",
            )
        arch = self._architecture(request)
        template = self.settings.all_templates()[arch]
        session = self._session(self.settings.node_for(arch))
        if request.architecture is not None:
            self._check_template(session, arch, template)
        created = dt.datetime.now(dt.UTC)
        vmid = self._clone(session, template, request, created)
        self._placed[vmid] = session.node_name
        try:
            host = self._configure_and_boot(session, vmid, request)
        except BaseException as exc:
            # Cancellation included: a VM left behind costs money and holds an id. The
            # clone task succeeded, so this id is ours.
            log.warning("spawn of VM %s failed (%s); destroying it", vmid, _summary(exc))
            self._destroy_after_failure(session, vmid)
            raise
        return api.Runner(
            id=str(vmid),
            provider=self.name,
            host=host,
            port=self.settings.ssh_port,
            user=self.settings.ssh_user,
            host_public_key=request.host_key.public_openssh,
            tier=request.tier,
            labels=dict(request.labels),
        )

    def _architecture(self, request: api.SpawnRequest) -> str:
        arch = request.architecture or self.settings.default_architecture()
        if arch not in self.settings.all_templates():
            configured = ", ".join(self.settings.all_templates())
            raise InvalidInput(
                f"no Proxmox template for {arch} runners (templates for: {configured}); "
                f"set compute.templates.{arch}",
                field=f"compute.templates.{arch}",
            )
        return arch

    def _check_template(self, session: Session, arch: str, template: int) -> None:
        """The template on the node must be a VM of the runner's architecture: an arm64
        platform built in an x86_64 VM would be emulated (or fail) unasked."""
        field = self.settings.template_field(arch)
        try:
            with session.call(f"GET config of template {template}"):
                config = self._guest(session, template).config.get()
        except ApiFailure as exc:
            if exc.missing:
                raise InvalidInput(
                    f"{field}: VM {template} does not exist on node {session.node_name}",
                    field=field,
                ) from None
            raise
        found = self._vm_architecture(session, config)
        wanted = PVE_ARCHITECTURES[arch]
        if found != wanted:
            raise InvalidInput(
                f"{field}: VM {template} on node {session.node_name} is an {found} VM, the "
                f"{arch} runner needs arch {wanted}; name an {wanted} template",
                field=field,
            )

    def _vm_architecture(self, session: Session, config: Mapping[str, Any]) -> str:
        """A VM's ``arch``; without one, PVE runs it as its node's own architecture."""
        if config.get("arch"):
            return str(config["arch"])
        node = session.node_name
        if node not in self._node_archs:
            with session.call(f"GET status of node {node}"):
                status = session.node.status.get()
            kernel = status.get("current-kernel") or {}
            # PVE before 7.2 does not report it; those nodes are all x86_64.
            self._node_archs[node] = str(kernel.get("machine") or "x86_64")
        return self._node_archs[node]

    def _clone(
        self, session: Session, template: int, request: api.SpawnRequest, created: dt.datetime
    ) -> int:
        """Clone the template into a free id and return it.

        ``/cluster/nextid`` reserves nothing: another client may clone into the same id
        between our read and our clone (the POST then answers "already exists", or the
        task fails with "config file already exists"). That id is not ours, so it is
        never destroyed; the next free id is tried instead.
        """
        name = vm_name(request.session_id)
        description = describe(request.labels, created, request.expires_at)
        for attempt in range(1, CLONE_ATTEMPTS + 1):
            with session.call("GET /cluster/nextid"):
                vmid = int(session.api.cluster.nextid.get())
            log.info(
                "cloning template %s on %s into VM %s (%s)", template, session.node_name, vmid, name
            )
            try:
                with session.call("POST clone"):
                    upid = session.node.qemu(template).clone.post(
                        newid=vmid,
                        name=name,
                        # Marks the VM as lian's from its first moment (clone takes no tags).
                        description=description,
                        full=int(self.settings.full_clone),
                        storage=self.settings.storage,
                    )
            except ApiFailure as exc:
                if _id_taken(exc.reason) and attempt < CLONE_ATTEMPTS:
                    log.info("VM id %s was taken meanwhile; trying the next free id", vmid)
                    continue
                raise
            try:
                session.wait_task(upid)
            except TaskFailed as exc:
                if _id_taken(exc.exitstatus):
                    if attempt < CLONE_ATTEMPTS:
                        log.info("VM id %s was taken by a concurrent clone; retrying", vmid)
                        continue
                    raise
                # Proxmox removes a half-made clone itself; remove it only if it is ours.
                self._destroy_if_ours(session, vmid, name, description)
                raise
            except BaseException:
                # Cancelled while the clone ran: the VM at vmid may be ours, or someone
                # else's after a collision. Destroy it only if it verifiably is ours.
                self._destroy_if_ours(session, vmid, name, description)
                raise
            return vmid
        raise AssertionError("unreachable")  # pragma: no cover

    def _destroy_if_ours(self, session: Session, vmid: int, name: str, description: str) -> None:
        """Destroy ``vmid`` only if it has the name and the description (labels, creation
        time to the microsecond) this spawn gave its clone."""
        try:
            with session.call(f"GET config of {vmid}"):
                config = self._guest(session, vmid).config.get()
        except ApiFailure as exc:
            if not exc.missing:
                log.error("could not check VM %s before cleanup: %s", vmid, exc.message)
            return
        found = read_description(str(config.get("description", "")))
        ours = config.get("name") == name and found == read_description(description)
        if not ours:
            log.warning("VM %s is not this session's; leaving it alone", vmid)
            return
        self._destroy_after_failure(session, vmid)

    def _destroy_after_failure(self, session: Session, vmid: int) -> None:
        try:
            self._destroy(session, vmid)
        except LianError as cleanup:
            # Labelled in its description (and named lian-*): reaping still finds it.
            log.error("could not destroy VM %s after a failed spawn: %s", vmid, cleanup.message)

    def _configure_and_boot(self, session: Session, vmid: int, request: api.SpawnRequest) -> str:
        guest = self._guest(session, vmid)
        with session.call("PUT config"):
            guest.config.put(**self._config(request))
        with session.call("POST status/start"):
            upid = guest.status.start.post()
        session.wait_task(upid)
        address = agent.wait_ipv4(session, guest)
        agent.install_host_key(session, guest, request.host_key)
        log.info("VM %s is up at %s", vmid, address)
        return address

    def _config(self, request: api.SpawnRequest) -> dict[str, Any]:
        config: dict[str, Any] = {
            "cores": request.tier.cpu,
            "memory": round(request.tier.memory_gb * 1024),  # MiB
            "agent": 1,  # the guest agent channel: address, host key
            "ciuser": self.settings.ssh_user,
            # Proxmox wants sshkeys percent-encoded itself, on top of the form encoding.
            "sshkeys": quote(request.authorized_key.strip(), safe=""),
            "ipconfig0": self.settings.ipconfig0,
            "tags": ";".join(vm_tags(request.session_id)),
        }
        if self.settings.ciupgrade is not None:
            # PVE defaults to 1: a full package upgrade on every runner's first boot.
            config["ciupgrade"] = int(self.settings.ciupgrade)
        if self.settings.bridge:
            config["net0"] = f"virtio,bridge={self.settings.bridge}"
        return config

    def destroy(self, runner_id: str) -> None:
        vmid = _vmid(runner_id)
        node = self._node_of(vmid)
        if node is None:
            log.info("VM %s is already gone", vmid)
            return
        self._destroy(self._session(node), vmid)
        self._placed.pop(vmid, None)

    def _node_of(self, vmid: int) -> str | None:
        """The configured node a VM is on (None: on none of them). One node: that one."""
        nodes = self.settings.all_nodes()
        if vmid in self._placed:
            return self._placed[vmid]
        if len(nodes) == 1:
            return nodes[0]
        session = self._session(self.settings.node)
        with session.call("GET /cluster/resources"):
            resources = session.api.cluster.resources.get(type="vm")
        for resource in resources:
            if int(resource.get("vmid", -1)) == vmid and resource.get("node") in nodes:
                return str(resource["node"])
        return None

    def _destroy(self, session: Session, vmid: int) -> None:
        """Stop (if not stopped) and delete with its disks; a missing VM is success."""
        guest = self._guest(session, vmid)
        try:
            with session.call("GET status/current"):
                status = guest.status.current.get()
            if status.get("status") != "stopped":
                with session.call("POST status/stop"):
                    upid = guest.status.stop.post()
                session.wait_task(upid)
            with session.call("DELETE VM"):
                upid = guest.delete(purge=1, **{"destroy-unreferenced-disks": 1})
        except ApiFailure as exc:
            if exc.missing:
                log.info("VM %s is already gone", vmid)
                return
            raise
        session.wait_task(upid)
        log.info("VM %s destroyed", vmid)

    # ------------------------------------------------------------------ reaping, inspection

    def list_runners(self, labels: Mapping[str, str]) -> list[api.RunnerInfo]:
        session = self._session(self.settings.node)
        kind = self.settings.kind
        nodes = self.settings.all_nodes()
        with session.call("GET /cluster/resources"):
            resources = session.api.cluster.resources.get(type="vm")
        found = []
        for resource in resources:
            if (
                resource.get("type") != kind
                or resource.get("node") not in nodes
                # The tag arrives with the config; a VM killed between clone and
                # config has only its name and description.
                or not (
                    LIAN_TAG in _split_tags(resource.get("tags", ""))
                    or str(resource.get("name", "")).startswith("lian-")
                )
            ):
                continue
            vmid = int(resource["vmid"])
            on_node = self._session(str(resource["node"]))
            try:
                with session.call(f"GET config of {vmid}"):
                    config = self._guest(on_node, vmid).config.get()
            except ApiFailure as exc:
                if exc.missing:  # destroyed between the two calls
                    continue
                raise
            meta = read_description(config.get("description", ""))
            if meta is None:
                continue
            vm_labels, created = meta
            if all(vm_labels.get(k) == v for k, v in labels.items()):
                found.append(api.RunnerInfo(id=str(vmid), labels=vm_labels, created_at=created))
        return found

    def inspect(self, runner_id: str) -> api.RunnerState:
        vmid = _vmid(runner_id)
        node = self._node_of(vmid)
        if node is None:
            return api.RunnerState(exists=False)
        session = self._session(node)
        try:
            with session.call("GET status/current"):
                status = self._guest(session, vmid).status.current.get()
        except ApiFailure as exc:
            if exc.missing:
                return api.RunnerState(exists=False)
            raise
        return api.RunnerState(exists=True, running=status.get("status") == "running")

    # ------------------------------------------------------------------ runner-image check

    def check_runner_image(self, options: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Check each template (``options["architecture"]``: only that one): its config
        (cloud-init drive, template flag, architecture), then a throwaway clone booted the
        way a build boots one (guest agent, cloud-init, host key through sshd's drop-ins),
        probed through the agent for sshd, rsync and a builder; destroyed.

        One template: its facts. Several: each under ``templates``, with every problem
        and warning also at the top, prefixed with its architecture."""
        archs = list(self.settings.all_templates())
        wanted = (options or {}).get("architecture")
        if wanted:
            if wanted not in archs:
                raise InvalidInput(
                    f"no Proxmox template for {wanted} (templates for: {', '.join(archs)})",
                    field="architecture",
                )
            archs = [wanted]
        results = [self._check_template_image(arch) for arch in archs]
        if len(results) == 1:
            return results[0]
        return {
            "templates": results,
            "booted": all(r["booted"] for r in results),
            "problems": [f"{r['architecture']}: {p}" for r in results for p in r["problems"]],
            "warnings": [f"{r['architecture']}: {w}" for r in results for w in r["warnings"]],
        }

    def _check_template_image(self, arch: str) -> dict[str, Any]:
        s = self.settings
        template = s.all_templates()[arch]
        session = self._session(s.node_for(arch))
        with session.call("GET template config"):
            config = self._guest(session, template).config.get()
        problems: list[str] = []
        warnings: list[str] = []
        drives = sorted(
            k for k, v in config.items() if _DRIVE.fullmatch(k) and "cloudinit" in str(v)
        )
        if not drives:
            problems.append(
                f"VM {template} has no cloud-init drive "
                f"(qm set {template} --ide2 <storage>:cloudinit)"
            )
        if str(config.get("template", "0")) != "1":
            (warnings if s.full_clone else problems).append(
                f"VM {template} is not a template: linked clones need one "
                f"(qm template {template}), or set full_clone = true"
            )
        vm_arch = self._vm_architecture(session, config)
        if vm_arch != PVE_ARCHITECTURES[arch]:
            problems.append(
                f"VM {template} is an {vm_arch} VM, but {s.template_field(arch)} names the "
                f"{arch} template (arch {PVE_ARCHITECTURES[arch]})"
            )
        result: dict[str, Any] = {
            "architecture": arch,
            "node": session.node_name,
            "template_id": template,
            "name": config.get("name"),
            "vm_arch": vm_arch,
            "cloud_init_drives": drives,
        }
        if problems:  # a clone could not boot as a runner: say why without trying
            return {**result, "booted": False, "tools": {}, "problems": problems,
                    "warnings": warnings}  # fmt: skip
        tools = self._probe_clone(session, arch)
        for tool in ("sshd", "rsync"):
            if not tools.get(tool):
                problems.append(f"no {tool} in the template")
        if not (tools.get("buildah") or tools.get("buildctl")):
            problems.append("no builder (buildah or buildctl) in the template")
        if not tools.get("sshd_dropins"):
            problems.append(
                "sshd does not read /etc/ssh/sshd_config.d/*.conf (the host key goes in there)"
            )
        version = _version(tools.get("buildah_version", ""))
        if tools.get("buildah") and version < BUILDAH_CACHING:
            warnings.append(
                f"buildah {tools.get('buildah_version') or '?'} misses the remote layer cache "
                "after ARG steps and reads only the last --cache-from; buildah 1.39 or later "
                "(Debian 13 trixie) caches"
            )
        return {**result, "booted": True, "tools": tools, "problems": problems,
                "warnings": warnings}  # fmt: skip

    def _probe_clone(self, session: Session, arch: str) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(minutes=30)
        session_id = "check" + secrets.token_hex(4)
        request = api.SpawnRequest(
            session_id=session_id,
            workspace=CHECK_WORKSPACE,
            tier=self.tiers_for(arch)[0],
            labels={
                "lian.managed": "true",
                "lian.session": session_id,
                "lian.workspace": CHECK_WORKSPACE,
                "lian.expires-at": str(int(expires.timestamp())),
            },
            authorized_key=_throwaway_key().public_openssh,
            host_key=_throwaway_key(),
            runner_image=None,
            expires_at=expires,
            architecture=arch,
        )
        runner = self.spawn(request)
        try:
            guest = self._guest(session, int(runner.id))
            code, out, err = agent.execute(session, guest, ["sh", "-c", _PROBE_SCRIPT])
        finally:
            self.destroy(runner.id)
        if code != 0:
            raise ProvisionError(
                f"the probe in a clone of the template exited {code}: {err[-300:]}"
            )
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def _session(self, node: str | None = None) -> Session:
        s = self.settings
        return Session(
            host=s.host,
            node=node or s.node,
            token_id=s.token_id,
            token=self.secrets(s.token_ref),
            verify_ssl=s.ca_file or s.verify_ssl,
            wait_timeout_s=s.wait_timeout_s,
            poll_interval=s.poll_interval,
        )

    def _guest(self, session: Session, vmid: int) -> Any:
        """``/nodes/{node}/qemu/{vmid}`` (or ``lxc``) as a proxmoxer resource."""
        return getattr(session.node, self.settings.kind)(vmid)


# --------------------------------------------------------------------------- naming, labels


def vm_name(session_id: str) -> str:
    """``lian-<session>`` as a DNS label: Proxmox requires a valid DNS name."""
    cleaned = _DNS_INVALID.sub("-", session_id.lower()).strip("-")
    return f"lian-{cleaned}"[:63].rstrip("-")


def vm_tags(session_id: str) -> list[str]:
    cleaned = _TAG_INVALID.sub("-", session_id.lower())
    return [LIAN_TAG, f"session-{cleaned}"]


def _split_tags(raw: str) -> set[str]:
    # Proxmox accepts ";", "," and spaces as separators and may return any of them.
    return {t for t in re.split(r"[;,\s]+", raw.lower()) if t}


def describe(labels: Mapping[str, str], created: dt.datetime, expires: dt.datetime) -> str:
    """The VM description: labels and times as JSON (tags cannot hold key=value pairs)."""
    return json.dumps(
        {
            "lian": {
                "labels": dict(labels),
                "created_at": created.isoformat(),
                "expires_at": expires.isoformat(),
            }
        },
        sort_keys=True,
    )


def read_description(raw: str) -> tuple[dict[str, str], dt.datetime | None] | None:
    """Labels and creation time from a description ``describe`` wrote; None otherwise."""
    try:
        meta = json.loads(raw)["lian"]
        labels = {str(k): str(v) for k, v in meta["labels"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    try:
        created = dt.datetime.fromisoformat(meta["created_at"])
    except (KeyError, TypeError, ValueError):
        created = None
    return labels, created


def _version(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text)[:3]
    return tuple(int(p) for p in parts) if parts else (0,)


def _throwaway_key() -> api.HostKey:
    """An ed25519 pair for the check's clone (nobody logs in with it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return api.HostKey(private_openssh=private, public_openssh=public)


def _id_taken(reason: str) -> bool:
    # POST: "unable to create VM 100: config file already exists" / "VM 100 already exists";
    # inside the qmclone task: "... config file already exists".
    return "already exists" in reason


def _vmid(runner_id: str) -> int:
    if not runner_id.isdigit():
        raise InvalidInput(f"a Proxmox runner id is a VM id (digits), got {runner_id!r}")
    return int(runner_id)


def _summary(exc: BaseException) -> str:
    if isinstance(exc, LianError):
        return exc.message
    return type(exc).__name__
