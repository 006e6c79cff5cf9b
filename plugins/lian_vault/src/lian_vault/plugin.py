"""Entry point of the Vault plugin: registers the ``vault:`` secret resolver."""

from __future__ import annotations

from lian_build import api, hookimpl
from lian_vault.resolver import VaultSecretResolver


@hookimpl
def lian_register_secret_resolvers(register: api.Register) -> None:
    register(VaultSecretResolver)
