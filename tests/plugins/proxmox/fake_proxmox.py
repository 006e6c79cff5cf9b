"""A local imitation of the Proxmox VE API (the parts lian-proxmox uses), served over TLS.

Shapes follow PVE 8 as proxmoxer sees them: ``https://host:port/api2/json``, token auth
``Authorization: PVEAPIToken=user@realm!name=secret``, form-encoded POST/PUT bodies,
query strings for GET/DELETE, ``{"data": ...}`` answers, errors with the message in
the HTTP reason phrase and ``{"data": null, "message": ...}`` or
``{"data": null, "errors": {param: ...}}`` bodies.

Behaviour that matters to a client:
- tasks (clone, start, stop, destroy) run asynchronously: "running" for ``task_polls``
  status polls, then "stopped" with exitstatus "OK" or an injected error; their effect
  (VM created/unlocked, running, stopped, removed) lands when they stop;
- a failed clone removes its half-made VM, as Proxmox does; a locked or running VM
  refuses config changes or deletion like the real one;
- after a start the guest agent is "not running" for ``agent_boot_polls`` agent calls;
  cloud-init then "finishes" after ``cloud_init_agent_calls`` more agent calls (or
  when a ``cloud-init status --wait`` command completes) and regenerates the host
  keys, overwriting whatever was written before;
- ``agent/exec`` commands finish after ``exec_polls`` exec-status polls; a command
  containing "restart" makes sshd (re)load the ed25519 host key from the files.

A cluster of nodes: ``node`` (x86_64) and any in ``nodes`` (name -> the kernel's
machine, ``x86_64`` or ``aarch64``), each reporting it in ``GET /nodes/{node}/status``
(``current-kernel.machine``). Every VM lives on one node and is reached only through
it (elsewhere its config "does not exist"); a clone lands on its template's node, a
task's status is served by the node its UPID names. A VM runs as its config's ``arch``
(``aarch64`` for an arm template, see ``add_template``), else as its node's machine; in
machine mode an aarch64 VM is a container of the arm64 runner image (``arm_image``,
run under QEMU's binfmt_misc emulation).

Everything is recorded in ``requests`` and all state is inspectable. Binds 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import ipaddress
import json
import re
import ssl
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import pve_schema

from fixtures.machines import Machine, MachinePool, MachineSpec

API_PREFIX = "/api2/json"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
CLOUD_INIT_HOST_KEY_PUB = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNsb3VkLWluaXQtcmVnZW5lcmF0ZWQta2V5LXh4 root@cloudinit"
)

_BOOL = {"0", "1", "true", "false", "yes", "no", "on", "off"}


_SYSTEMCTL_SHIM = """#!/bin/sh
# systemctl as far as a runner VM's host-key reload needs it (a test imitation).
case "$1 $2" in
  "restart ssh"|"restart sshd"|"reload ssh"|"reload sshd") kill -HUP 1 ;;
  *) echo "systemctl (imitation): unsupported: $*" >&2; exit 1 ;;
esac
"""


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def _missing(node: str, vmid: int) -> ApiError:
    return ApiError(
        500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    )


def _param_error(**errors: str) -> ApiError:
    return ApiError(400, "Parameter verification failed.", errors)


@attrs.define
class Recorded:
    method: str
    path: str  # below /api2/json, unquoted
    params: dict[str, list[str]]

    def one(self, key: str) -> str | None:
        values = self.params.get(key)
        return values[0] if values else None


@attrs.define
class Exec:
    argv: list[str]
    polls_left: int
    exit_code: int
    err: str
    done: bool = False
    out: str = ""
    thread: threading.Thread | None = None  # machine mode: the docker exec running it


@attrs.define
class Vm:
    vmid: int
    config: dict[str, str]
    node: str = "pve"
    template: bool = False
    status: str = "stopped"
    lock: str | None = None
    agent_calls: int = 0  # agent calls since the last start
    cloud_init_done: bool = False
    files: dict[str, str] = attrs.field(factory=dict)
    execs: dict[int, Exec] = attrs.field(factory=dict)
    sshd_host_key: str | None = None  # the ed25519 public key sshd presents
    machine: Machine | None = None  # the runner container behind a VM (machine mode)
    foreign: bool = False  # made by "another client", not by the plugin under test

    @property
    def name(self) -> str:
        return self.config.get("name", f"VM{self.vmid}")

    @property
    def ipv4(self) -> str:
        if self.machine is not None:
            return self.machine.address
        # Canned mode: TEST-NET-3 addresses, reported, never contacted.
        return str(ipaddress.IPv4Address("203.0.113.0") + self.vmid % 250 + 1)


@attrs.define
class Task:
    upid: str
    kind: str
    polls_left: int
    exitstatus: str
    effect: Any  # callable run (under the lock) when the task stops; None for none
    done: bool = False


@attrs.define
class Injected:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    times: int
    errors: dict[str, str] | None = None


class FakeProxmox:
    """State and behaviour; ``serve()`` puts it behind TLS on 127.0.0.1."""

    def __init__(
        self,
        *,
        node: str = "pve",
        token_id: str = "ci@pve!ci",
        token: str = "9f1c7e0a-3a57-4f3e-9d1e-5b0d2c6a7e11",
        template_id: int = 9000,
        machines: MachinePool | None = None,
        image: str = "lian-runner:debian",
        arm_image: str | None = None,
        nodes: dict[str, str] | None = None,
    ) -> None:
        # With a pool, every started VM is a real runner container (see module doc).
        self.machines = machines
        self.image = image
        self.images = {"x86_64": image, "aarch64": arm_image or f"{image}-arm64"}
        self.node = node
        self.node_machines = {node: "x86_64", **(nodes or {})}
        self.token_id = token_id
        self.token = token
        self.template_id = template_id
        self.lock = threading.RLock()
        self.vms: dict[int, Vm] = {
            template_id: Vm(
                template_id,
                {"name": "debian-12-ci", "agent": "1", "cores": "1", "memory": "1024",
                 "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "ide2": "local-lvm:cloudinit"},
                node=node,
                template=True,
            )
        }  # fmt: skip
        self.tasks: dict[str, Task] = {}
        self.requests: list[Recorded] = []
        self.injected: list[Injected] = []
        # Knobs tests turn.
        self.task_polls = 2
        self.agent_boot_polls = 3
        self.cloud_init_agent_calls = 4
        self.exec_polls = 1
        self.agent_installed = True
        self.task_errors: dict[str, str] = {}  # task type ("qmclone") -> exitstatus, once
        # Concurrency with another client that read the same /cluster/nextid:
        self.clone_races = 0  # next N clones: the other client's clone wins inside our task
        self.stale_nextid = 0  # next N nextid answers: an id the other client took already
        self.boot_delay_s = 0.0  # machine mode: sshd starts this late (slow first boot)
        self.boot_status = 0  # machine mode: cloud-init's verdict (2: degraded)
        self.exec_failures: dict[str, tuple[int, str]] = {}  # argv substring -> (code, stderr)
        self._pid = 1000
        self._upid_counter = 0

    # ------------------------------------------------------------------ used by tests

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        message: str,
        *,
        times: int = 1,
        errors: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` matching requests fail with this status and message."""
        self.injected.append(
            Injected(method, re.compile(path_regex), status, message, times, errors)
        )

    def guests(self) -> dict[int, Vm]:
        """VMs other than the template."""
        with self.lock:
            return {i: vm for i, vm in self.vms.items() if not vm.template}

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.search(r.path)]

    def add_vm(
        self, vmid: int, config: dict[str, str], *, status: str = "stopped", node: str | None = None
    ) -> Vm:
        with self.lock:
            vm = Vm(vmid, dict(config), node=node or self.node, status=status)
            self.vms[vmid] = vm
            return vm

    def add_template(
        self, vmid: int, *, node: str | None = None, arch: str | None = None, name: str = ""
    ) -> Vm:
        """A cloud-init template like the default one; ``arch`` as ``qm set --arch``
        writes it (absent: the node's own architecture)."""
        config = {"name": name or f"debian-13-ci-{arch or 'host'}", "agent": "1", "cores": "1",
                  "memory": "1024", "net0": "virtio=BC:24:11:00:01:01,bridge=vmbr0",
                  "ide2": "local-lvm:cloudinit", **({"arch": arch} if arch else {})}  # fmt: skip
        vm = self.add_vm(vmid, config, node=node)
        vm.template = True
        return vm

    def architecture(self, vm: Vm) -> str:
        """What the VM runs as: its ``arch``, else its node's machine."""
        return vm.config.get("arch") or self.node_machines[vm.node]

    def add_foreign_vm(self, vmid: int) -> Vm:
        """A VM another client (another build, a person) owns: nobody may delete it."""
        vm = self.add_vm(vmid, {"name": "someone-elses-vm", "description": "not lian's"})
        vm.foreign = True
        return vm

    def leftovers(self) -> list[int]:
        """VMs the plugin under test made that still exist (should be none after a test)."""
        with self.lock:
            return sorted(i for i, vm in self.guests().items() if not vm.foreign)

    # ------------------------------------------------------------------ dispatch

    def handle(self, method: str, path: str, params: dict[str, list[str]], auth: str | None) -> Any:
        with self.lock:
            self.requests.append(Recorded(method, path, params))
            if auth != f"PVEAPIToken={self.token_id}={self.token}":
                raise ApiError(401, "authentication failure")
            for inj in self.injected:
                if inj.times > 0 and inj.method == method and inj.pattern.search(path):
                    inj.times -= 1
                    raise ApiError(inj.status, inj.message, inj.errors)
            matched = pve_schema.route(method, path)
            if matched is None:
                raise ApiError(501, f"Method '{method} {path}' not implemented")
            template, path_params = matched
            errors = pve_schema.validate(
                method, template, {**{k: [v] for k, v in path_params.items()}, **params}
            )
            if errors:
                raise _param_error(**errors)
            return self._route(method, path.strip("/").split("/"), params)

    def _route(self, method: str, parts: list[str], params: dict[str, list[str]]) -> Any:
        one = {k: v[0] for k, v in params.items() if v}
        match (method, parts):
            case ("GET", ["cluster", "nextid"]):
                free = next(i for i in range(100, 1_000_000) if i not in self.vms)
                if self.stale_nextid > 0:  # the other client cloned into it after our read
                    self.stale_nextid -= 1
                    self.add_foreign_vm(free)
                return str(free)
            case ("GET", ["cluster", "resources"]):
                return self._resources(one.get("type"))
            case ("GET", ["nodes", node, "tasks", upid, "status"]):
                self._node(node)
                return self._task_status(node, upid)
            case ("GET", ["nodes", node, "status"]):
                self._node(node)
                return self._node_status(node)
            case (_, ["nodes", node, "qemu", vmid, *rest]):
                self._node(node)
                return self._qemu(method, node, _int(vmid, "vmid"), rest, params, one)
        raise ApiError(501, f"Method '{method} /{'/'.join(parts)}' not implemented")

    def _node(self, node: str) -> None:
        if node not in self.node_machines:
            raise ApiError(595, f"no such cluster node '{node}'")

    def _node_status(self, node: str) -> dict[str, Any]:
        machine = self.node_machines[node]
        return {
            "uptime": 86400, "cpu": 0.02, "loadavg": ["0.10", "0.08", "0.05"],
            "kversion": "Linux 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4",
            "current-kernel": {"sysname": "Linux", "release": "6.8.12-4-pve",
                               "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4",
                               "machine": machine},
            "cpuinfo": {"cpus": 8, "sockets": 1, "cores": 8,
                        "model": "Neoverse-N1" if machine == "aarch64" else "AMD EPYC 7302P"},
            "memory": {"total": 68719476736, "used": 8589934592, "free": 60129542144},
            "pveversion": "pve-manager/8.3.0/c1689ccb1065a83b",
        }  # fmt: skip

    def _vm(self, vmid: int, node: str) -> Vm:
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:  # each node reads only its own configs
            raise _missing(node, vmid)
        return vm

    def _qemu(
        self,
        method: str,
        node: str,
        vmid: int,
        rest: list[str],
        params: dict[str, list[str]],
        one: dict[str, str],
    ) -> Any:
        match (method, rest):
            case ("POST", ["clone"]):
                return self._clone(self._vm(vmid, node), one)
            case ("GET", ["config"]):
                vm = self._vm(vmid, node)
                return {**vm.config, **({"template": 1} if vm.template else {}), "digest": "0" * 40}
            case ("PUT", ["config"]):
                return self._set_config(self._vm(vmid, node), one)
            case ("GET", ["status", "current"]):
                vm = self._vm(vmid, node)
                return {"vmid": vmid, "status": vm.status, "name": vm.name, "qmpstatus": vm.status}
            case ("POST", ["status", "start"]):
                return self._start(self._vm(vmid, node))
            case ("POST", ["status", "stop"]):
                return self._stop(self._vm(vmid, node))
            case ("DELETE", []):
                return self._delete(self._vm(vmid, node), one)
            case (_, ["agent", command]):
                return self._agent(self._vm(vmid, node), method, command, params, one)
        raise ApiError(501, f"Method '{method} .../qemu/{vmid}/{'/'.join(rest)}' not implemented")

    # ------------------------------------------------------------------ tasks

    def _new_task(
        self, kind: str, vmid: int, effect: Any, *, node: str, exitstatus: str | None = None
    ) -> str:
        self._upid_counter += 1
        start = int(dt.datetime.now(dt.UTC).timestamp())
        user = self.token_id  # user@realm!tokenname
        pid = 0x1000 + self._upid_counter
        upid = f"UPID:{node}:{pid:08X}:{0x2000:08X}:{start:08X}:{kind}:{vmid}:{user}:"
        error = exitstatus or self.task_errors.pop(kind, None)
        self.tasks[upid] = Task(upid, kind, self.task_polls, error or "OK", effect)
        return upid

    def _task_status(self, node: str, upid: str) -> dict[str, Any]:
        task = self.tasks.get(upid)
        if task is None:
            raise ApiError(500, f"unable to parse worker upid '{upid}'")
        if upid.split(":")[1] != node:  # its log is on the node that ran it
            raise _param_error(upid="no such task")
        if not task.done:
            if task.polls_left > 0:
                task.polls_left -= 1
                return {"upid": upid, "node": node, "status": "running", "type": task.kind}
            task.done = True
            if task.effect is not None:
                # "WARNINGS: n" is how PVE ends a task that succeeded with warnings.
                task.effect(task.exitstatus == "OK" or task.exitstatus.startswith("WARNINGS: "))
        return {"upid": upid, "node": node, "status": "stopped", "type": task.kind,
                "exitstatus": task.exitstatus}  # fmt: skip

    # ------------------------------------------------------------------ VM lifecycle

    def _clone(self, source: Vm, one: dict[str, str]) -> str:
        newid = _int(one.get("newid"), "newid")
        if newid < 100:
            raise _param_error(newid="value must have a minimum value of 100")
        if newid in self.vms:
            raise ApiError(500, f"unable to create VM {newid}: config file already exists")
        if self.clone_races > 0:
            # The other client's clone to the same id commits first; ours fails in the task.
            self.clone_races -= 1
            self.add_foreign_vm(newid)
            return self._new_task(
                "qmclone",
                source.vmid,
                None,
                node=source.node,
                exitstatus=f"unable to create VM {newid}: config file already exists",
            )
        name = one.get("name", f"Copy-of-VM-{source.name}")
        full = _bool(one.get("full", "0"), "full")
        if not full and not source.template:
            raise ApiError(500, "Linked clone feature is not supported for drive 'scsi0'")
        if "storage" in one and not full:
            raise ApiError(500, "parameter 'storage' not allowed for linked clones")
        config = {k: v for k, v in source.config.items() if k not in ("name", "description")}
        if "description" in one:
            config["description"] = one["description"]
        # The clone stays on the template's node (``target`` would move it; not used).
        vm = Vm(newid, {**config, "name": name}, node=source.node, lock="clone")
        self.vms[newid] = vm

        def effect(ok: bool) -> None:
            if ok:
                vm.lock = None
            else:  # Proxmox removes a half-made clone
                self.vms.pop(newid, None)

        # PVE names the SOURCE in a qmclone task's UPID, not the new VM.
        return self._new_task("qmclone", source.vmid, effect, node=source.node)

    def _set_config(self, vm: Vm, one: dict[str, str]) -> None:
        if vm.lock:
            raise ApiError(500, f"VM is locked ({vm.lock})")
        vm.config.update(one)

    def _start(self, vm: Vm) -> str:
        if vm.template:
            raise ApiError(500, "you can't start a vm if it's a template")
        if vm.lock:
            raise ApiError(500, f"VM is locked ({vm.lock})")

        def effect(ok: bool) -> None:
            if ok:
                if self.machines is not None:
                    self._boot_machine(vm)
                vm.status = "running"
                vm.agent_calls = 0

        return self._new_task("qmstart", vm.vmid, effect, node=vm.node)

    def _stop(self, vm: Vm) -> str:
        def effect(ok: bool) -> None:
            if ok:
                vm.status = "stopped"
                if vm.machine is not None and self.machines is not None:
                    # Stopped is gone for a runner: nothing of a stopped runner is reused.
                    self.machines.remove(vm.machine)
                    vm.machine = None

        return self._new_task("qmstop", vm.vmid, effect, node=vm.node)

    def _delete(self, vm: Vm, one: dict[str, str]) -> str:
        if vm.lock:
            raise ApiError(500, f"VM is locked ({vm.lock})")
        if vm.status == "running":
            raise ApiError(500, f"VM {vm.vmid} is running - destroy failed")
        for key in ("purge", "destroy-unreferenced-disks"):
            if key in one:
                _bool(one[key], key)

        def effect(ok: bool) -> None:
            if ok:
                self.vms.pop(vm.vmid, None)
                if vm.machine is not None and self.machines is not None:
                    self.machines.remove(vm.machine)

        return self._new_task("qmdestroy", vm.vmid, effect, node=vm.node)

    def _resources(self, kind: str | None) -> list[dict[str, Any]]:
        if kind not in (None, "vm"):
            return []
        return [
            {"id": f"qemu/{vm.vmid}", "vmid": vm.vmid, "name": vm.name, "node": vm.node,
             "type": "qemu", "status": vm.status, "template": int(vm.template),
             **({"tags": vm.config["tags"]} if "tags" in vm.config else {})}
            for vm in self.vms.values()
        ]  # fmt: skip

    # ------------------------------------------------------------------ guest agent

    def _agent(
        self, vm: Vm, method: str, command: str, params: dict[str, list[str]], one: dict[str, str]
    ) -> Any:
        if (
            _bool(vm.config.get("agent", "0").split(",")[0].replace("enabled=", ""), "agent")
            is False
        ):
            raise ApiError(500, "No QEMU guest agent configured")
        if vm.status != "running":
            raise ApiError(500, f"VM {vm.vmid} is not running")
        vm.agent_calls += 1
        if not self.agent_installed or vm.agent_calls <= self.agent_boot_polls:
            raise ApiError(500, "QEMU guest agent is not running")
        if vm.agent_calls > self.agent_boot_polls + self.cloud_init_agent_calls:
            self._finish_cloud_init(vm)
        match (method, command):
            case ("GET", "network-get-interfaces"):
                return {"result": [
                    {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
                        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                    {"name": "eth0", "hardware-address": "bc:24:11:00:00:02", "ip-addresses": [
                        {"ip-address": "fe80::be24:11ff:fe00:2", "ip-address-type": "ipv6",
                         "prefix": 64},
                        {"ip-address": vm.ipv4, "ip-address-type": "ipv4", "prefix": 24}]},
                ]}  # fmt: skip
            case ("POST", "file-write"):
                path, content = one["file"], one["content"]
                if not _bool(one.get("encode", "1"), "encode"):  # already base64
                    content = base64.b64decode(content).decode()
                vm.files[path] = content
                if vm.machine is not None:
                    self._machine_write(vm.machine, path, content)
                return None
            case ("POST", "exec"):
                argv = params["command"]
                self._pid += 1
                joined = " ".join(argv)
                code, err = next((v for k, v in self.exec_failures.items() if k in joined), (0, ""))
                ex = Exec(argv, self.exec_polls, code, err)
                if vm.machine is not None:
                    ex.thread = self._machine_exec(vm.machine, ex)
                vm.execs[self._pid] = ex
                return {"pid": self._pid}
            case ("GET", "exec-status"):
                pid = _int(one.get("pid"), "pid")
                ex = vm.execs.get(pid)
                if ex is None:
                    raise ApiError(500, f"Agent error: Invalid parameter 'pid' ({pid})")
                if ex.polls_left > 0 or (ex.thread is not None and ex.thread.is_alive()):
                    ex.polls_left -= 1
                    return {"exited": 0}
                if not ex.done:
                    ex.done = True
                    self._exec_effect(vm, ex)
                out: dict[str, Any] = {"exited": 1, "exitcode": ex.exit_code}
                if ex.out:
                    out["out-data"] = ex.out
                return {**out, "err-data": ex.err} if ex.err else out
        raise ApiError(501, f"Method '{method} agent/{command}' not implemented")

    # ------------------------------------------------------------------ machine mode

    def _boot_machine(self, vm: Vm) -> None:
        """Start the VM's runner container from its cloud-init settings, as the guest's
        first boot would: ``ciuser`` gets the ``sshkeys`` (URL-encoded, one per line)."""
        assert self.machines is not None
        keys = [k for k in unquote(vm.config.get("sshkeys", "")).splitlines() if k.strip()]
        user = vm.config.get("ciuser", "root")
        # ciupgrade (default 1) makes the first boot upgrade every package from a mirror;
        # there is none here, so such a boot ends in error, as on an isolated network.
        upgrade = _bool(vm.config.get("ciupgrade", "1"), "ciupgrade")
        arch = self.architecture(vm)
        spec = MachineSpec(
            name=f"vm{vm.vmid}",
            image=self.images[arch],
            authorized_keys={user: keys},
            boot_delay_s=self.boot_delay_s,
            packages=("upgrade-from-an-unreachable-mirror",) if upgrade else (),
            boot_status=self.boot_status,
            labels={"vmid": str(vm.vmid), "node": vm.node, "arch": arch},
        )
        vm.machine = self.machines.start(spec)
        # No systemd in a container: "systemctl restart ssh" makes sshd (PID 1) re-exec
        # itself, which reloads its configuration and host key, as a restart would.
        self._machine_write(vm.machine, "/usr/local/sbin/systemctl", _SYSTEMCTL_SHIM, 0o755)

    def _machine_write(self, machine: Machine, path: str, content: str, mode: int = 0o644) -> None:
        assert self.machines is not None
        data = content.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        container = self.machines.docker.containers.get(machine.container_id)
        if not container.put_archive("/", buffer.getvalue()):
            raise ApiError(500, f"Agent error: failed to open file '{path}'")

    def _machine_exec(self, machine: Machine, ex: Exec) -> threading.Thread:
        assert self.machines is not None
        container = self.machines.docker.containers.get(machine.container_id)

        def run() -> None:
            result = container.exec_run(ex.argv, demux=True)
            out, err = result.output
            ex.exit_code = result.exit_code
            ex.out = (out or b"").decode(errors="replace")
            ex.err = (err or b"").decode(errors="replace")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _exec_effect(self, vm: Vm, ex: Exec) -> None:
        joined = " ".join(ex.argv)
        if "cloud-init status --wait" in joined:
            self._finish_cloud_init(vm)
        if ex.exit_code == 0 and "restart" in joined:
            vm.sshd_host_key = vm.files.get(HOST_KEY + ".pub", "").strip() or None

    def _finish_cloud_init(self, vm: Vm) -> None:
        if vm.cloud_init_done:
            return
        vm.cloud_init_done = True
        # First boot: cloud-init deletes and regenerates the host keys.
        vm.files[HOST_KEY] = "-----BEGIN OPENSSH PRIVATE KEY-----\ncloud-init\n"
        vm.files[HOST_KEY + ".pub"] = CLOUD_INIT_HOST_KEY_PUB + "\n"

    # ------------------------------------------------------------------ serving

    @contextmanager
    def serve(self, cert_dir: Path) -> Iterator[str]:
        """Serve over TLS on 127.0.0.1; yields ``"127.0.0.1:PORT"``."""
        cert, key = _self_signed(cert_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = _TlsServer(("127.0.0.1", 0), _handler(self), context)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Handshake in the request thread, so a client that rejects the certificate
        # cannot stall the accept loop.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def _handler(fake: FakeProxmox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            if not url.path.startswith(API_PREFIX + "/"):
                self._send(404, None, "Not Found")
                return
            path = unquote(url.path[len(API_PREFIX) :])
            form = method in ("POST", "PUT")
            content_type = self.headers.get("Content-Type", "")
            if form and body and "application/x-www-form-urlencoded" not in content_type:
                self._send(415, None, f"Unsupported content type {content_type}")
                return
            params = parse_qs(body if form else url.query, keep_blank_values=True)
            try:
                data = fake.handle(method, path, params, self.headers.get("Authorization"))
            except ApiError as exc:
                payload = (
                    {"data": None, "errors": exc.errors}
                    if exc.errors
                    else {"data": None, "message": exc.message + "\n"}
                )
                self._send(exc.status, payload, exc.message)
                return
            self._send(200, {"data": data}, "OK")

        def _send(self, status: int, payload: Any, reason: str) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status, reason.splitlines()[0] if reason else None)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler


def _int(value: str | None, name: str) -> int:
    if value is None or not value.isdigit():
        raise _param_error(**{name: "type check ('integer') failed"})
    return int(value)


def _bool(value: str, name: str) -> bool:
    if value.lower() not in _BOOL:
        raise _param_error(**{name: f"type check ('boolean') failed - got '{value}'"})
    return value.lower() in {"1", "true", "yes", "on"}


def _self_signed(cert_dir: Path) -> tuple[Path, Path]:
    """A CA and a server certificate it signed, like a default PVE install's
    pve-root-ca.pem and pve-ssl.pem. The CA lands in ``cert_dir / "pve-root-ca.pem"``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve.fake.invalid")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (cert_dir / "pve-root-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = cert_dir / "pve.crt", cert_dir / "pve.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
