"""Talking to a VM through the QEMU guest agent: its address, files, commands.

Host key pinning: Proxmox's own cloud-init settings (``ciuser``, ``sshkeys``,
``ipconfig0``) cannot carry an SSH host key, and custom cloud-init snippets cannot be
uploaded through the API. So once the agent answers, the session's host key is
written with ``agent/file-write`` and sshd is restarted with ``agent/exec``:

1. wait for cloud-init to finish (its first boot regenerates host keys, which would
   overwrite ours);
2. write ``/etc/ssh/ssh_host_ed25519_key`` (+ ``.pub``) and an sshd drop-in that
   names it as the only HostKey;
3. fix the modes and restart sshd, checking the exit code.

Without an agent there is no pinning, so spawn fails: there is no trust-on-first-use.
"""

from __future__ import annotations

import ipaddress
import logging
import shlex
from typing import Any

from lian_build.api import HostKey
from lian_build.errors import ProvisionError
from lian_proxmox.client import ApiFailure, Resource, Session, poll

log = logging.getLogger("lian.compute.proxmox")

HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key"
HOST_KEY_DROP_IN = "/etc/ssh/sshd_config.d/10-lian-host-key.conf"

# cloud-init's own exit code: 0 done, 1 failed, 2 done with recoverable errors
# (cloud-init 23.4 and later; a degraded but usable boot). No cloud-init: 0.
_WAIT_FOR_CLOUD_INIT = (
    "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1;"
    " exit $?; fi; exit 0"
)
CLOUD_INIT_DEGRADED = 2


def wait_ipv4(session: Session, guest: Resource) -> str:
    """The guest's first non-loopback, non-link-local IPv4, once the agent reports one.

    A 500 ("QEMU guest agent is not running", a QMP timeout) means the guest is still
    booting and is retried until ``wait_timeout_s``; other statuses fail at once.
    """
    last = {"error": ""}

    def address() -> str | None:
        try:
            with session.call("GET agent/network-get-interfaces"):
                data = guest.agent("network-get-interfaces").get()
        except ApiFailure as exc:
            if exc.status != 500:
                raise
            last["error"] = exc.reason
            return None
        last["error"] = "the agent reports no IPv4 address yet"
        return first_ipv4(data)

    found: str = poll(
        address,
        deadline=session.deadline(),
        what="the QEMU guest agent to report an IPv4 address",
        last_answer=lambda: last["error"],
    )
    return found


def first_ipv4(data: Any) -> str | None:
    """Pick the runner's address from a ``network-get-interfaces`` answer."""
    interfaces = data.get("result", []) if isinstance(data, dict) else []
    for interface in interfaces:
        if interface.get("name") == "lo":
            continue
        for entry in interface.get("ip-addresses") or []:
            if entry.get("ip-address-type") != "ipv4":
                continue
            try:
                address = ipaddress.IPv4Address(entry.get("ip-address", ""))
            except ValueError:
                continue
            # Loopback addresses count only off "lo" (the test imitation gives each VM one).
            if not address.is_link_local:
                return str(address)
    return None


def write_file(session: Session, guest: Resource, path: str, content: str) -> None:
    # Content is passed raw: Proxmox base64-encodes it for the agent (encode=1 default).
    with session.call(f"POST agent/file-write {path}"):
        guest.agent("file-write").post(file=path, content=content)


def run(
    session: Session, guest: Resource, argv: list[str], *, accept: tuple[int, ...] = (0,)
) -> int:
    """Run argv in the guest (no shell unless argv starts one); its exit code must be in
    ``accept``. Returns the exit code."""
    exit_code, _out, stderr = execute(session, guest, argv)
    if exit_code not in accept:
        raise ProvisionError(
            f"guest command {shlex.join(argv)[:200]} exited with {exit_code}"
            + (f": {stderr.strip()[-300:]}" if stderr.strip() else "")
        )
    return exit_code


def execute(session: Session, guest: Resource, argv: list[str]) -> tuple[int, str, str]:
    """Run argv in the guest; (exit code, stdout, stderr) once it has finished."""
    with session.call(f"POST agent/exec {argv[0]}"):
        started = guest.agent.exec.post(command=argv)
    pid = int(started["pid"])

    def status() -> dict[str, Any] | None:
        with session.call("GET agent/exec-status"):
            data: dict[str, Any] = guest.agent("exec-status").get(pid=pid)
        return data if data.get("exited") else None

    final = poll(status, deadline=session.deadline(), what=f"guest command {argv[0]!r} to finish")
    return (
        int(final.get("exitcode", -1)),
        str(final.get("out-data", "")),
        str(final.get("err-data", "")),
    )


def install_host_key(session: Session, guest: Resource, host_key: HostKey) -> None:
    """Make sshd in the guest present ``host_key`` (the client pins its public half)."""
    wait_for_cloud_init(session, guest)
    private = host_key.private_openssh
    write_file(session, guest, HOST_KEY_PATH, private if private.endswith("\n") else private + "\n")
    write_file(session, guest, HOST_KEY_PATH + ".pub", host_key.public_openssh.strip() + "\n")
    write_file(session, guest, HOST_KEY_DROP_IN, f"HostKey {HOST_KEY_PATH}\n")
    run(session, guest, ["sh", "-c", restart_sshd_script()])
    log.info("host key installed through the guest agent")


def wait_for_cloud_init(session: Session, guest: Resource) -> None:
    """Wait for the first boot's cloud-init: a failure (exit 1) fails the spawn like on
    hcloud (``RUNNER_NOT_READY``); a degraded boot (exit 2) is logged and used."""
    code = run(
        session, guest, ["sh", "-c", _WAIT_FOR_CLOUD_INIT], accept=(0, CLOUD_INIT_DEGRADED, 1)
    )
    if code == CLOUD_INIT_DEGRADED:
        log.warning("cloud-init finished with recoverable errors (status 2); using the VM")
    elif code != 0:
        raise ProvisionError(
            "cloud-init failed on the runner VM (cloud-init status --wait exited 1); "
            "see /var/log/cloud-init.log in a VM cloned from the template",
            code="RUNNER_NOT_READY",
        )


def restart_sshd_script() -> str:
    key, pub, drop_in = (
        shlex.quote(p) for p in (HOST_KEY_PATH, HOST_KEY_PATH + ".pub", HOST_KEY_DROP_IN)
    )
    # The unit is "ssh" on Debian/Ubuntu and "sshd" elsewhere; `service` covers non-systemd.
    return (
        f"chmod 600 {key} && chmod 644 {pub} {drop_in} && "
        "(systemctl restart ssh 2>/dev/null || systemctl restart sshd 2>/dev/null"
        " || service ssh restart 2>/dev/null || service sshd restart)"
    )
