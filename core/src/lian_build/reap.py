"""Find runners that escaped cleanup (a killed lian process) by their labels, destroy them.

A runner is reaped when it is past ``lian.expires-at``, or at once when its owner labels
name a lian process on this host that is gone: same kernel boot and PID namespace, and
that pid is either dead or now a different process (its start time differs). Runners of
other hosts are left to their expiry (or to a sweep on their own host).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from lian_build import api

log = logging.getLogger("lian.reap")

MANAGED = {"lian.managed": "true"}


OWNER_HOST = "lian.owner-host"
OWNER_BOOT = "lian.owner-boot"
OWNER_PIDNS = "lian.owner-pidns"
OWNER_PID = "lian.owner-pid"
OWNER_START = "lian.owner-start"


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        # "pid:[4026531836]": processes of another container have another namespace.
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").rstrip("]")
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22);
    None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def owner_labels() -> dict[str, str]:
    """Labels naming this lian process; empty where /proc is missing (not Linux)."""
    boot, start = _boot_id(), process_start(os.getpid())
    if not boot or start is None:
        return {}
    return {
        OWNER_HOST: socket.gethostname()[:63],
        OWNER_BOOT: boot,
        OWNER_PIDNS: _pid_namespace(),
        OWNER_PID: str(os.getpid()),
        OWNER_START: start,
    }


def owner_alive(labels: Mapping[str, str]) -> bool | None:
    """Whether the lian process that created a runner still runs: None when that cannot
    be told from here (no owner labels, another host, boot or PID namespace)."""
    mine = owner_labels()
    if not mine or any(labels.get(k) != mine[k] for k in (OWNER_HOST, OWNER_BOOT, OWNER_PIDNS)):
        return None
    pid = labels.get(OWNER_PID, "")
    if not pid.isdigit():
        return None
    return process_start(int(pid)) == labels.get(OWNER_START)


@attrs.frozen
class ReapReport:
    found: int
    destroyed: tuple[str, ...]
    kept: tuple[str, ...]  # not expired yet (a build may still be running)
    failed: tuple[str, ...]


def expired(info: api.RunnerInfo, now: dt.datetime) -> bool:
    raw = info.labels.get("lian.expires-at")
    try:
        return raw is not None and int(raw) <= now.timestamp()
    except ValueError:
        return True  # a label we did not write: treat as expired rather than leak


def reap_expired(
    compute: api.ComputeProvider,
    *,
    now: dt.datetime | None = None,
    include_unexpired: bool = False,
    workspace: str | None = None,
    log: Callable[[str], None] = log.info,
) -> ReapReport:
    """Destroy lian runners past their expiry or whose lian process on this host is dead
    (or all of them with ``include_unexpired``); also sweep private directories that
    killed lian processes left in ``$TMPDIR``."""
    from lian_build.remote.sync import sweep_private_dirs

    for path in sweep_private_dirs():
        log(f"removed {path} (left by a lian process that is gone)")
    now = now or dt.datetime.now(dt.UTC)
    selector = dict(MANAGED)
    if workspace:
        selector["lian.workspace"] = workspace[:63]  # labels hold at most 63 characters
    found = compute.list_runners(selector)
    destroyed: list[str] = []
    kept: list[str] = []
    failed: list[str] = []
    for info in found:
        orphan = owner_alive(info.labels) is False
        if not include_unexpired and not orphan and not expired(info, now):
            kept.append(info.id)
            continue
        try:
            compute.destroy(info.id)
            destroyed.append(info.id)
            why = "its lian process is gone" if orphan else "expired"
            session = info.labels.get("lian.session", "?")
            log(f"reaped runner {info.id} (session {session}, {why})")
        except Exception as exc:
            failed.append(info.id)
            log(f"could not reap runner {info.id}: {exc}")
    return ReapReport(len(found), tuple(destroyed), tuple(kept), tuple(failed))
