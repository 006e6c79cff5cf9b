"""Fixtures for the docker-local provider tests: keys, a provider, spawning and SSH."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from fixtures.docker import LabelledContainers
from fixtures.keys import new_host_key
from lian_build import api
from lian_docker_local.provider import DockerLocalProvider, DockerLocalSettings


@attrs.frozen
class SessionKeys:
    host_key: api.HostKey
    client_private: str = attrs.field(repr=False)
    client_public: str


@pytest.fixture
def session_keys() -> SessionKeys:
    client = new_host_key()  # any ed25519 pair works as a client key
    return SessionKeys(
        host_key=new_host_key(),
        client_private=client.private_openssh,
        client_public=client.public_openssh,
    )


def _no_secrets(reference: str) -> str:
    raise AssertionError(f"docker-local must not resolve secrets ({reference})")


@pytest.fixture
def make_provider(runner_image: str) -> Callable[..., DockerLocalProvider]:
    def make(**settings: Any) -> DockerLocalProvider:
        return DockerLocalProvider(DockerLocalSettings(**settings), _no_secrets)

    return make


@pytest.fixture
def make_request(
    reap_test_containers: LabelledContainers, session_keys: SessionKeys
) -> Callable[..., api.SpawnRequest]:
    def make(
        tier: api.Tier | None = None,
        labels: dict[str, str] | None = None,
        runner_image: str | None = None,
    ) -> api.SpawnRequest:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        return api.SpawnRequest(
            session_id="test-" + reap_test_containers.session[:8],
            workspace="demo",
            tier=tier or api.Tier("2c-4g", 2, 4),
            labels={
                "lian.managed": "true",
                "lian.session": reap_test_containers.session,
                "lian.workspace": "demo",
                "lian.expires-at": str(int(expires.timestamp())),
                **reap_test_containers.labels,
                **(labels or {}),
            },
            authorized_key=session_keys.client_public,
            host_key=session_keys.host_key,
            runner_image=runner_image,
            expires_at=expires,
        )

    return make


@attrs.frozen
class SshResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def ssh_run(session_keys: SessionKeys) -> Iterator[Callable[..., SshResult]]:
    """Run a command on a runner over SSH, pinning the runner's host key."""
    import paramiko

    clients: list[paramiko.SSHClient] = []

    def run(runner: api.Runner, command: str, pinned_key: str | None = None) -> SshResult:
        client = paramiko.SSHClient()
        clients.append(client)
        key_type, key_data = (pinned_key or runner.host_public_key).split()[:2]
        host_name = runner.host if runner.port == 22 else f"[{runner.host}]:{runner.port}"
        client.get_host_keys().add(
            host_name, key_type, paramiko.Ed25519Key(data=base64.b64decode(key_data))
        )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            runner.host,
            port=runner.port,
            username=runner.user,
            pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(session_keys.client_private)),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        _stdin, stdout, stderr = client.exec_command(command, timeout=120)
        exit_code = stdout.channel.recv_exit_status()
        return SshResult(exit_code, stdout.read().decode(), stderr.read().decode())

    yield run
    for client in clients:
        client.close()
