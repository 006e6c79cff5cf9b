"""Mirror the local build context into a directory on the runner.

rsync over the system ssh (same pinned host key) when both ends have rsync; otherwise a
tar stream over the existing SSH connection. Either way only what .dockerignore lets
through is sent, and the remote directory ends up an exact mirror.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, cast

import attrs

from lian_build.errors import InvalidInput, RemoteError, TimeBudgetExceeded
from lian_build.remote import dockerignore

if TYPE_CHECKING:
    from lian_build.remote.ssh import SSHRemote, StdinWriter

SyncMethod = Literal["auto", "rsync", "tar"]
_RSYNC_WILDCARDS = re.compile(r"[*?\[]")
_RSYNC_VANISHED = 24  # "some files vanished before they could be transferred"


@attrs.frozen
class SyncStats:
    method: str  # "rsync" or "tar"
    files: int  # regular files transferred (rsync skips unchanged ones)
    bytes_sent: int  # bytes on the wire, as the transfer counted them
    total_bytes: int  # size of the regular files in the filtered context
    seconds: float
    files_total: int = 0  # regular files in the filtered context


def sync_context(
    local: Path,
    remote: SSHRemote,
    remote_dir: str,
    *,
    log: Callable[[str], None],
    method: SyncMethod = "auto",
    dockerfile: str = "Dockerfile",
    timeout: float | None = None,
) -> SyncStats:
    """Mirror ``local`` (filtered by .dockerignore) into ``remote_dir`` on the runner."""
    started = time.monotonic()
    _check_remote_dir(remote_dir)
    if not local.is_dir():
        raise InvalidInput(f"build context {local} is not a directory", field="context")
    scan = dockerignore.scan(local, dockerignore.load(local, dockerfile))
    files_total, total_bytes = _measure(local, scan.included)
    chosen = _choose_method(remote) if method == "auto" else method
    if chosen == "rsync":
        files, sent = _rsync(local, remote, remote_dir, scan, timeout)
    else:
        files, sent = files_total, _tar(local, remote, remote_dir, scan, timeout)
    stats = SyncStats(
        method=chosen,
        files=files,
        bytes_sent=sent,
        total_bytes=total_bytes,
        seconds=time.monotonic() - started,
        files_total=files_total,
    )
    log(
        f"synced {files_total:,} files ({human_bytes(sent)} sent of {human_bytes(total_bytes)}) "
        f"via {chosen} in {stats.seconds:.1f}s"
    )
    return stats


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _check_remote_dir(remote_dir: str) -> None:
    # The directory is emptied before a tar sync and mirrored by rsync: never "/".
    normalized = posixpath.normpath(remote_dir)
    if not remote_dir.startswith("/") or normalized in {"/", "//"} or "\0" in remote_dir:
        raise InvalidInput(
            f"remote context directory {remote_dir!r} must be an absolute path below /",
            field="remote_dir",
        )


def _measure(local: Path, included: tuple[str, ...]) -> tuple[int, int]:
    files = size = 0
    for rel in included:
        info = os.lstat(local / rel)
        if stat.S_ISREG(info.st_mode):
            files += 1
            size += info.st_size
    return files, size


def _choose_method(remote: SSHRemote) -> Literal["rsync", "tar"]:
    if shutil.which("rsync") and shutil.which("ssh"):
        probe = remote.run(["sh", "-c", "command -v rsync"], timeout=60)
        if probe.exit_code == 0:
            return "rsync"
    return "tar"


# --------------------------------------------------------------------------- rsync


def _rsync_literal(rel: str) -> str:
    """An anchored rsync pattern matching exactly ``rel``."""
    # rsync treats backslashes as escapes only in patterns that hold a wildcard.
    if _RSYNC_WILDCARDS.search(rel):
        rel = re.sub(r"([*?\[\\])", r"\\\1", rel)
    return "/" + rel


def _rsync(
    local: Path,
    remote: SSHRemote,
    remote_dir: str,
    scan: dockerignore.Scan,
    timeout: float | None,
) -> tuple[int, int]:
    remote.run(["mkdir", "-p", "--", remote_dir], timeout=60)
    # Only the pruned entries are listed: a handful of rules even for big contexts.
    excludes = b"".join(os.fsencode(_rsync_literal(rel)) + b"\0" for rel in scan.pruned)
    with contextlib.ExitStack() as stack:
        # ssh refuses a key file others can read, so it gets a private 0600 copy: in
        # memory (memfd), never on disk, gone with the last process holding it, even
        # when lian is SIGKILLed.
        identity = stack.enter_context(private_file("identity", remote.key.path.read_bytes()))
        known_hosts = stack.enter_context(
            private_file("known_hosts", (remote.known_hosts_line() + "\n").encode())
        )
        ssh_command = shlex.join(
            [
                *die_with_parent(),
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                identity.path,
                "-p",
                str(remote.port),
                "-o",
                f"UserKnownHostsFile={known_hosts.path}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "LogLevel=ERROR",
            ]
        )
        host = f"[{remote.host}]" if ":" in remote.host else remote.host
        argv = [
            *die_with_parent(),
            "rsync",
            "-a",
            "--stats",
            "--delete",
            "--delete-excluded",  # files that became ignored disappear from the mirror
            "--secluded-args",  # paths travel in the protocol, not through a remote shell
            "--from0",
            "--exclude-from=-",  # on stdin: rsync opens no /dev/fd/N path (O_NOFOLLOW)
            "-e",
            ssh_command,
            f"{local}/",
            f"{remote.user}@{host}:{remote_dir.rstrip('/')}/",
        ]
        try:
            done = subprocess.run(
                argv,
                input=excludes,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TimeBudgetExceeded(f"context sync ran past {timeout:g}s") from None
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode not in (0, _RSYNC_VANISHED):
        tail = done.stderr.decode("utf-8", "replace").strip()[-800:]
        raise RemoteError(
            f"rsync to runner {remote.runner.id} failed (exit {done.returncode}): {tail}",
            code="SYNC_FAILED",
        )
    return _stat(output, "Number of regular files transferred"), _stat(output, "Total bytes sent")


@attrs.frozen
class PrivateFile:
    path: str  # what a child process opens
    fd: int | None  # to pass to the child (memfd), None for a file in a private dir


@contextlib.contextmanager
def private_file(name: str, data: bytes) -> Iterator[PrivateFile]:
    """``data`` as an anonymous 0600 memory file, opened through lian's own
    ``/proc/PID/fd/N`` (so only this user reads it, and it dies with lian); where memfd
    is missing, a file in a 0700 directory removed on exit (and swept by ``lian reap``
    and the next build when lian was killed)."""
    create = getattr(os, "memfd_create", None)
    if create is not None and Path(f"/proc/{os.getpid()}/fd").is_dir():
        fd = create(f"lian-{name}")  # close-on-exec: only pass_fds children see it
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            # Through lian's own /proc entry: rsync closes inherited descriptors before
            # it starts ssh, so /dev/fd/N would not exist there.
            yield PrivateFile(f"/proc/{os.getpid()}/fd/{fd}", fd)
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-") as private:
        path = Path(private) / name
        path.touch(mode=0o600)
        path.write_bytes(data)
        yield PrivateFile(str(path), None)


PRIVATE_PREFIX = "lian-rsync-"
STALE_UNNAMED_S = 24 * 3600


def die_with_parent() -> list[str]:
    """A prefix that makes the command die when lian dies (even by SIGKILL):
    util-linux ``setpriv --pdeathsig``; nothing where it is not installed."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def sweep_private_dirs(tmp: Path | None = None) -> list[str]:
    """Remove private directories left by lian processes that are gone (SIGKILL)."""
    root = Path(tmp or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(root.glob(f"{PRIVATE_PREFIX}*"))
    except OSError:
        return removed
    for entry in entries:
        pid_text = entry.name[len(PRIVATE_PREFIX) :].split("-", 1)[0]
        try:
            info = entry.lstat()
            if pid_text.isdigit():
                if _pid_alive(int(pid_text)):
                    continue  # a running lian's directory
            elif time.time() - info.st_mtime < STALE_UNNAMED_S:
                continue  # an older lian's directory, named without its pid
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
        except (OSError, KeyError):
            continue
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat(output: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}: ([\d,.]+)", output, re.MULTILINE)
    if match is None:
        raise RemoteError(f"rsync --stats output lacks {label!r}", code="SYNC_FAILED")
    return int(re.sub(r"[,.]", "", match.group(1)))


# --------------------------------------------------------------------------- tar


class _CountingWriter:
    def __init__(self, target: StdinWriter) -> None:
        self.target = target
        self.count = 0

    def write(self, data: bytes) -> int:
        self.target.write(data)
        self.count += len(data)
        return len(data)


def _tar(
    local: Path,
    remote: SSHRemote,
    remote_dir: str,
    scan: dockerignore.Scan,
    timeout: float | None,
) -> int:
    counted: list[_CountingWriter] = []

    def feed(writer: StdinWriter) -> None:
        counting = _CountingWriter(writer)
        counted.append(counting)
        # Stream mode ("w|") only ever calls write(); the stub wants a whole file object.
        stream = cast("IO[bytes]", counting)
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            for rel in scan.included:
                archive.add(local / rel, arcname=rel, recursive=False)

    # Emptying the directory first makes the result a mirror, as rsync --delete does.
    script = 'rm -rf -- "$1" && mkdir -p -- "$1" && exec tar -x -f - -C "$1"'
    result = remote.run_with_input(["sh", "-c", script, "sh", remote_dir], feed, timeout=timeout)
    if result.exit_code != 0:
        raise RemoteError(
            f"tar sync to runner {remote.runner.id} failed (exit {result.exit_code}): "
            f"{result.stderr.strip()[-800:]}",
            code="SYNC_FAILED",
        )
    return counted[0].count if counted else 0
