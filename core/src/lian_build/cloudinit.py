"""cloud-init user data for cloud runners: pinned host key, one authorized key, no shell.

The document is ``#cloud-config`` followed by a JSON body. JSON (with the default
``": "`` separators) is valid YAML, so cloud-init reads it without this module needing
a YAML library. Commands are argv lists, which cloud-init executes without a shell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from lian_build.api import HostKey
from lian_build.errors import InvalidInput

# Hetzner Cloud's limit; other providers allow at least as much.
USER_DATA_LIMIT_BYTES = 32 * 1024

_HEADER = "#cloud-config\n"
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PUBLIC_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$"
)
_PRIVATE_HEADER = "-----BEGIN OPENSSH PRIVATE KEY-----"


def user_data(
    *,
    authorized_key: str,
    host_key: HostKey,
    user: str = "root",
    packages: Sequence[str] = (),
    runcmd: Sequence[Sequence[str]] = (),
) -> str:
    """A ``#cloud-config`` document that makes the runner reachable with a pinned host key.

    Installs ``host_key`` as the only sshd host key (no others are generated), lets
    ``authorized_key`` log in as ``user``, turns password logins off, installs
    ``packages`` and runs each ``runcmd`` argv in order. Raises InvalidInput when a
    value breaks a rule or the document exceeds ``USER_DATA_LIMIT_BYTES``.
    """
    _check_public_key(authorized_key, "authorized_key")
    _check_host_key(host_key)
    if not _USER_NAME.match(user):
        raise InvalidInput(
            f"ssh user {user!r} is not a valid user name ([a-z_][a-z0-9_-]*, at most 32)",
            field="ssh_user",
        )
    config: dict[str, Any] = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh.strip() + "\n",
            "ed25519_public": host_key.public_openssh.strip(),
        },
        "ssh_pwauth": False,
        "users": [_user_entry(user, authorized_key.strip())],
    }
    if user == "root":
        # Otherwise cloud-init prefixes root's key with a "log in as ..." command.
        config["disable_root"] = False
    if packages:
        config["package_update"] = True
        config["packages"] = [_check_word(p, "packages") for p in packages]
    if runcmd:
        config["runcmd"] = [_check_argv(argv) for argv in runcmd]
    document = _HEADER + json.dumps(config, indent=1, ensure_ascii=True) + "\n"
    size = len(document.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise InvalidInput(
            f"cloud-init user data is {size} bytes; the limit is {USER_DATA_LIMIT_BYTES}",
            field="user_data",
            details={"size": size, "limit": USER_DATA_LIMIT_BYTES},
        )
    return document


def _user_entry(user: str, authorized_key: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": user,
        "lock_passwd": True,
        "ssh_authorized_keys": [authorized_key],
    }
    if user != "root":
        entry["shell"] = "/bin/bash"
        entry["sudo"] = "ALL=(ALL) NOPASSWD:ALL"
    return entry


def _check_public_key(key: str, field: str) -> None:
    if "\n" in key.strip() or not _PUBLIC_KEY.match(key.strip()):
        raise InvalidInput(
            f"{field} must be one OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa)",
            field=field,
        )


def _check_host_key(host_key: HostKey) -> None:
    if not host_key.public_openssh.strip().startswith("ssh-ed25519 "):
        raise InvalidInput("host_key must be an ssh-ed25519 key", field="host_key")
    _check_public_key(host_key.public_openssh, "host_key")
    if not host_key.private_openssh.strip().startswith(_PRIVATE_HEADER):
        # The message never quotes the value: it is a private key.
        raise InvalidInput("host_key private half is not an OpenSSH private key", field="host_key")


def _check_word(value: str, field: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise InvalidInput(f"{field} entries must be non-empty words: {value!r}", field=field)
    return value


def _check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        # A bare string would make cloud-init run it through a shell.
        raise InvalidInput("runcmd entries must be non-empty argv lists", field="runcmd")
    return list(argv)
