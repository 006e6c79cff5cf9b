"""Spawn requests the way the pipeline makes them, and runners cleaned up after a test."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lian_build import api

if TYPE_CHECKING:
    from lian_build.remote.ssh import ClientKey

log = logging.getLogger("lian.testing")

CONFORMANCE_WORKSPACE = "lian-conformance"
SESSION_PREFIX = "conf"


def new_session_id() -> str:
    """Short, DNS- and label-safe, like the pipeline's."""
    return SESSION_PREFIX + secrets.token_hex(5)


def generate_client_key() -> api.HostKey:
    """An ed25519 key pair to log in with (any ed25519 pair serves as a client key)."""
    from lian_build.remote.ssh import generate_host_key

    return generate_host_key()


def write_client_key(key: api.HostKey, directory: Path) -> ClientKey:
    """Write the private half (0600) where ``SSHRemote.connect`` can read it."""
    from lian_build.remote.ssh import read_private_key

    path = directory / "lian_conformance_client_key"
    path.write_text(key.private_openssh)
    path.chmod(0o600)
    return read_private_key(path)


def standard_labels(session_id: str, workspace: str, expires_at: dt.datetime) -> dict[str, str]:
    """The labels the pipeline puts on every runner (reaping finds runners by them)."""
    return {
        "lian.managed": "true",
        "lian.session": session_id,
        "lian.workspace": workspace[:63],
        "lian.expires-at": str(int(expires_at.timestamp())),
    }


def make_spawn_request(
    tier: api.Tier,
    *,
    client_key: api.HostKey | None = None,
    extra_labels: Mapping[str, str] | None = None,
    **overrides: Any,
) -> api.SpawnRequest:
    """A SpawnRequest with a fresh host key, a client key and the standard labels.

    ``client_key``: the pair whose public half is authorised (generated when omitted;
    pass one to log in afterwards). ``extra_labels`` are added to the standard ones.
    ``overrides`` replace any SpawnRequest field; ``session_id``, ``workspace`` and
    ``expires_at`` also flow into the standard labels.
    """
    session_id = overrides.pop("session_id", None) or new_session_id()
    workspace = overrides.pop("workspace", CONFORMANCE_WORKSPACE)
    expires_at = overrides.pop("expires_at", None) or (
        dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    )
    client = client_key or generate_client_key()
    request = api.SpawnRequest(
        session_id=session_id,
        workspace=workspace,
        tier=tier,
        labels={**standard_labels(session_id, workspace, expires_at), **(extra_labels or {})},
        authorized_key=client.public_openssh,
        host_key=generate_client_key(),
        runner_image=None,
        expires_at=expires_at,
    )
    return attrs.evolve(request, **overrides)


@attrs.define
class Spawner:
    """Spawns runners for one test and destroys what is left when the test ends."""

    provider: api.ComputeProvider
    live: dict[str, api.Runner] = attrs.field(factory=dict)

    def spawn(self, request: api.SpawnRequest) -> api.Runner:
        runner = self.provider.spawn(request)
        self.live[runner.id] = runner
        return runner

    def destroyed(self, runner: api.Runner) -> None:
        """The test destroyed it itself: nothing to clean up."""
        self.live.pop(runner.id, None)

    def cleanup(self) -> None:
        for runner_id in list(self.live):
            try:
                self.provider.destroy(runner_id)
            except Exception as exc:  # cleanup must not mask the test's own result
                log.warning("could not destroy runner %s after the test: %s", runner_id, exc)
            self.live.pop(runner_id, None)
