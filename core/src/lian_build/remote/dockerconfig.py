"""Registry credentials on the runner: a private DOCKER_CONFIG directory.

The password only ever travels inside a file written over SFTP (or stdin); it never
appears on a command line, where ``ps`` on the runner could read it.
"""

from __future__ import annotations

import base64
import json
import posixpath
from collections.abc import Sequence

from lian_build import api
from lian_build.errors import InvalidInput, RemoteError

DIR_PREFIX = "lian-docker."
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# The key Docker itself writes for Docker Hub; BuildKit and buildah both look it up.
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def config_json(auths: Sequence[api.RegistryAuth]) -> bytes:
    """The config.json content for ``auths`` (the last entry for a host wins)."""
    entries: dict[str, dict[str, str]] = {}
    for auth in auths:
        host = auth.registry.strip()
        if not host or "/" in host or any(c.isspace() for c in host):
            raise InvalidInput(
                f"registry {auth.registry!r} must be a host[:port] without scheme or path",
                field="registry",
            )
        key = _DOCKER_HUB_KEY if host in _DOCKER_HUB_NAMES else host
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        entries[key] = {"auth": token}
    return json.dumps({"auths": entries}, indent=2).encode() + b"\n"


def install_docker_config(
    remote: api.Remote, auths: Sequence[api.RegistryAuth], base_dir: str
) -> str:
    """Create a 0700 directory under ``base_dir`` holding config.json (0600); return it."""
    made = remote.run(["mkdir", "-p", "--", base_dir])
    if made.exit_code != 0:
        raise _failed(f"could not create {base_dir}", made)
    # mktemp -d creates the directory 0700 with an unpredictable name.
    created = remote.run(["mktemp", "-d", posixpath.join(base_dir, DIR_PREFIX + "XXXXXXXXXX")])
    path = created.stdout.strip()
    if created.exit_code != 0 or not path.startswith("/"):
        raise _failed(f"could not create a private directory under {base_dir}", created)
    remote.write_file(posixpath.join(path, "config.json"), config_json(auths), mode=0o600)
    return path


def remove_docker_config(remote: api.Remote, path: str) -> None:
    """Delete a directory made by ``install_docker_config`` (and only such a directory)."""
    if not posixpath.basename(path.rstrip("/")).startswith(DIR_PREFIX):
        raise InvalidInput(
            f"{path!r} is not a docker config directory made by lian", field="docker_config_dir"
        )
    removed = remote.run(["rm", "-rf", "--", path])
    if removed.exit_code != 0:
        raise _failed(f"could not remove {path}", removed)


def _failed(what: str, result: api.CommandResult) -> RemoteError:
    return RemoteError(
        f"{what} on the runner (exit {result.exit_code}): {result.stderr.strip()[-300:]}",
        code="DOCKER_CONFIG_FAILED",
    )
