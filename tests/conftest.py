"""Shared fixtures. Real services (sshd, an OCI registry, nats-server, dockerd) start
on 127.0.0.1 from the modules in tests/fixtures/."""

import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "fixtures.sshd",
    "fixtures.registry",
    "fixtures.nats",
    "fixtures.docker",
    "fixtures.vault",
]


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Build history and other state go to a throwaway folder, never the user's."""
    old = os.environ.get("LIAN_STATE_DIR")
    os.environ["LIAN_STATE_DIR"] = str(tmp_path_factory.mktemp("lian-state"))
    yield
    if old is None:
        os.environ.pop("LIAN_STATE_DIR", None)
    else:
        os.environ["LIAN_STATE_DIR"] = old


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every envelope the CLI tests saw must pass schemas/build_result.ncl."""
    from lian_build.testing.cli import RECORDED, validate_envelopes

    if not RECORDED or exitstatus != 0:
        return
    try:
        validate_envelopes(RECORDED)
    except Exception as exc:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"an envelope breaks schemas/build_result.ncl: {exc}", red=True)
