"""DOCKER_CONFIG on the runner: private directory, exact content, no password in argv."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fixtures.registry import RegistryServer
from fixtures.sshd import SshdServer
from lian_build import api
from lian_build.errors import InvalidInput
from lian_build.remote.dockerconfig import (
    config_json,
    install_docker_config,
    remove_docker_config,
)
from lian_build.remote.ssh import SSHRemote, read_private_key

PASSWORD = "pa$$ word;`x`'\"-very-secret"


class RecordingRemote:
    """Delegates to a real remote and keeps every argv and env that ran."""

    def __init__(self, inner: SSHRemote) -> None:
        self.inner = inner
        self.commands: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> api.CommandResult:
        self.commands.append([*argv, *(f"{k}={v}" for k, v in (env or {}).items())])
        return self.inner.run(argv, env=env, on_output=on_output, timeout=timeout)

    def read_file(self, path: str) -> bytes:
        return self.inner.read_file(path)

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self.inner.write_file(path, data, mode)


@pytest.fixture
def remote(sshd_server: SshdServer) -> Iterator[RecordingRemote]:
    key = read_private_key(sshd_server.client_key)
    with SSHRemote.connect(sshd_server.runner(), key, wait_timeout_s=30, log=lambda _: None) as r:
        yield RecordingRemote(r)


def test_install_writes_private_config_and_remove_deletes_it(
    remote: RecordingRemote, tmp_path: Path
) -> None:
    auths = [
        api.RegistryAuth(registry="127.0.0.1:5000", username="ci", password=PASSWORD),
        api.RegistryAuth(registry="docker.io", username="hub", password="hub-secret"),
    ]
    base = tmp_path / "lian work"
    path = Path(install_docker_config(remote, auths, str(base)))

    assert path.parent == base
    assert path.stat().st_mode & 0o777 == 0o700
    config = path / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    content: dict[str, Any] = json.loads(config.read_text())
    assert set(content["auths"]) == {"127.0.0.1:5000", "https://index.docker.io/v1/"}
    token = content["auths"]["127.0.0.1:5000"]["auth"]
    assert base64.b64decode(token).decode() == f"ci:{PASSWORD}"

    remove_docker_config(remote, str(path))
    assert not path.exists()
    assert base.exists()

    ran = json.dumps(remote.commands)
    assert remote.commands, "the wrapper saw no commands"
    for secret in (PASSWORD, "hub-secret", token):
        assert json.dumps(secret)[1:-1] not in ran


def test_two_installs_get_separate_directories(remote: RecordingRemote, tmp_path: Path) -> None:
    auths = [api.RegistryAuth(registry="r.example:443", username="u", password="p")]
    first = install_docker_config(remote, auths, str(tmp_path))
    second = install_docker_config(remote, auths, str(tmp_path))
    assert first != second


def test_remove_refuses_directories_it_did_not_make(
    remote: RecordingRemote, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        remove_docker_config(remote, str(tmp_path))
    assert tmp_path.exists()
    assert remote.commands == []


@pytest.mark.parametrize("registry", ["https://r.example", "r.example/path", "", "a b"])
def test_registry_must_be_a_host(registry: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        config_json([api.RegistryAuth(registry=registry, username="u", password="p")])
    assert caught.value.field == "registry"


def test_password_not_in_repr() -> None:
    auth = api.RegistryAuth(registry="r", username="u", password=PASSWORD)
    assert PASSWORD not in repr(auth)


@pytest.mark.docker
def test_docker_cli_authenticates_with_the_config(
    remote: RecordingRemote,
    tmp_path: Path,
    oci_registry_auth: RegistryServer,
    docker_client: object,
) -> None:
    # The Docker CLI reading this config gets past the registry's basic auth: the
    # pull fails on the missing image, not on credentials.
    assert oci_registry_auth.username and oci_registry_auth.password
    auth = api.RegistryAuth(
        registry=oci_registry_auth.host,
        username=oci_registry_auth.username,
        password=oci_registry_auth.password,
    )
    reference = f"{oci_registry_auth.host}/lian-dockerconfig/missing:1"

    def pull(config_dir: str) -> str:
        done = subprocess.run(
            ["/usr/bin/docker", "--config", config_dir, "pull", reference],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        return done.stderr.lower()

    without = pull(str(tmp_path / "no-config"))
    assert "no basic auth credentials" in without or "unauthorized" in without
    with_config = pull(install_docker_config(remote, [auth], str(tmp_path)))
    assert "not found" in with_config or "manifest unknown" in with_config, with_config
