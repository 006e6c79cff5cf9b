"""End-to-end builds: the real CLI, a runner container on the local Docker engine,
real sshd/rsync/buildah inside it, a real OCI registry. Slow: run with `-m e2e` in a
session of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.helpers import E2E, lian

from fixtures.keys import write_private_key

BUSYBOX = Path("/bin/busybox")
# Every workspace of this session carries the token, so the leak check at the end looks
# only at this session's runners: one dockerd serves several test sessions at once.
SESSION_TOKEN = uuid.uuid4().hex[:6]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_private_key(tmp_path_factory.mktemp("key") / "id_ed25519")


@pytest.fixture(scope="session")
def e2e(
    oci_registry: Any,
    runner_image: str,
    ssh_key: Path,
    docker_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[E2E]:
    """Builds a busybox base image through lian itself, so app builds can RUN steps."""
    from fixtures.require import require

    require(BUSYBOX.exists(), "/bin/busybox (Debian package busybox-static)")
    ctx = tmp_path_factory.mktemp("base")
    (ctx / "busybox").write_bytes(BUSYBOX.read_bytes())
    (ctx / "busybox").chmod(0o755)
    (ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    base = f"{oci_registry.host}/base/busybox:1"
    env = E2E(oci_registry, runner_image, ssh_key, base, docker_client)
    run = lian(env.flags(f"base-{SESSION_TOKEN}", ctx, base))
    assert run.returncode == 0, run.stderr
    yield env
    leftovers = [
        c
        for c in env.runners()
        if SESSION_TOKEN in c.labels.get("lian.workspace", "")  # never another session's
    ]
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"runners leaked: {[c.name for c in leftovers]}"


_WORKSPACES: set[str] = set()  # every workspace this run's tests built in


@pytest.fixture
def workspace() -> str:
    return f"e2e-{SESSION_TOKEN}-{uuid.uuid4().hex[:6]}"
