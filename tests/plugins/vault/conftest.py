from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.vault import FakeVault, fake_vault_server


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    yield from fake_vault_server()


@pytest.fixture
def fake_vault_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeVault, Path]]:
    from fixtures.tls import make_tls

    ca, cert, key = make_tls(tmp_path_factory.mktemp("vault-tls"))
    for vault in fake_vault_server((cert, key)):
        yield vault, ca


@pytest.fixture(autouse=True)
def _no_vault_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_NAMESPACE",
        "VAULT_CACERT",
        "VAULT_ROLE_ID",
        "VAULT_SECRET_ID",
        "VAULT_APPROLE_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.vault-token of the developer
