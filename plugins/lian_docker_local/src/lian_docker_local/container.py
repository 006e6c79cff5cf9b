"""What goes into a runner container: its start script and injected SSH files.

Pure functions (no Docker calls), so they are easy to read and to test.
"""

from __future__ import annotations

import io
import shlex
import tarfile

# Injected with put_archive before the container starts; never via env or argv.
KEY_DIR = "/etc/lian"
HOST_KEY_PATH = f"{KEY_DIR}/ssh_host_ed25519_key"
AUTHORIZED_KEYS_PATH = f"{KEY_DIR}/authorized_keys"
# A stable path to the runner's own memory cgroup (oom_kill counter, peak usage).
CGROUP_LINK = "/run/lian/memory-cgroup"
# buildkitd's config, written at start: its step containers go under the runner's cgroup.
BUILDKITD_CONFIG = "/etc/lian/buildkitd.toml"
BUILDKITD_LOG = "/var/log/buildkitd.log"

# Step containers must live inside the runner's own cgroup, or the tier's memory limit
# does not bind them, OOM is not counted and peak memory misses them. buildkitd has no
# flag for it, only [worker.oci] defaultCgroupParent in its config. The path is the
# runner's cgroup from /proc/self/cgroup (v1: the memory controller's line; v2: "0::").
_BUILDKITD_SCRIPT = r"""
cg=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3; exit }' /proc/self/cgroup)
[ -n "$cg" ] || cg=$(awk -F: '$1 == "0" { print $3; exit }' /proc/self/cgroup)
mkdir -p /run/buildkit "$(dirname "$CONFIG")"
if [ -n "$cg" ] && [ "$cg" != "/" ]; then
  esc=$(printf '%s' "$cg" | sed 's/[\\"]/\\&/g')
  printf '[worker.oci]\n  defaultCgroupParent = "%s"\n' "$esc" > "$CONFIG"
else
  echo "lian: no cgroup of our own in /proc/self/cgroup; buildkitd steps are not confined" >&2
  : > "$CONFIG"
fi
buildkitd --config "$CONFIG" >"$BKLOG" 2>&1 &
"""

# Resolves the container's memory cgroup directory under the host's cgroup mount:
# cgroup v1 "N:memory:/docker/<id>", cgroup v2 "0::/<path>". Falls back to the
# mount root when the engine mounted the container's own cgroup there.
_CGROUP_LINK_SCRIPT = r"""
cg_path=$(awk -F: '$2 == "memory" { print $3; exit }' /proc/self/cgroup)
if [ -n "$cg_path" ]; then cg_dir=/sys/fs/cgroup/memory$cg_path
else cg_dir=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3; exit }' /proc/self/cgroup)
fi
[ -d "$cg_dir" ] || cg_dir=/sys/fs/cgroup/memory
[ -d "$cg_dir" ] || cg_dir=/sys/fs/cgroup
mkdir -p "$(dirname "$LINK")" && ln -sfn "$cg_dir" "$LINK"
"""


def sshd_argv(port: int, listen_address: str) -> list[str]:
    """sshd in the foreground, keys only, with the injected host and client keys."""
    return [
        "/usr/sbin/sshd",
        "-D",
        "-e",
        "-p",
        str(port),
        "-h",
        HOST_KEY_PATH,
        "-o",
        f"ListenAddress={listen_address}",
        "-o",
        f"AuthorizedKeysFile={AUTHORIZED_KEYS_PATH}",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "PermitRootLogin=prohibit-password",
        "-o",
        "UseDNS=no",
    ]


def start_script(port: int, listen_address: str) -> str:
    """The container's command: cgroup link, buildkitd when present, then sshd."""
    sshd = " ".join(shlex.quote(arg) for arg in sshd_argv(port, listen_address))
    return "\n".join(
        [
            "set -eu",
            f"LINK={shlex.quote(CGROUP_LINK)}",
            _CGROUP_LINK_SCRIPT.strip(),
            "mkdir -p /run/sshd && chmod 0755 /run/sshd",
            # Images built from runner/buildkit carry buildkitd; generic ones do not.
            "if command -v buildkitd >/dev/null 2>&1; then",
            f"CONFIG={shlex.quote(BUILDKITD_CONFIG)} BKLOG={shlex.quote(BUILDKITD_LOG)}",
            _BUILDKITD_SCRIPT.strip(),
            "fi",
            f"exec {sshd}",
        ]
    )


def ssh_files_archive(host_private_key: str, authorized_key: str) -> bytes:
    """A tar (for put_archive at /) holding the session host key and the client key."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo(KEY_DIR.lstrip("/"))
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        # sshd refuses a host key readable by others; authorized_keys is public.
        _add_file(tar, HOST_KEY_PATH, _with_newline(host_private_key), 0o600)
        _add_file(tar, AUTHORIZED_KEYS_PATH, _with_newline(authorized_key), 0o644)
    return buffer.getvalue()


def _add_file(tar: tarfile.TarFile, path: str, text: str, mode: int) -> None:
    data = text.encode()
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
