"""Entry point of the GHCR registry plugin (``registry = { provider = "ghcr", ... }``)."""

from __future__ import annotations

from lian_build import api, hookimpl
from lian_ghcr.registry import GhcrRegistry


@hookimpl
def lian_register_registries(register: api.Register) -> None:
    register(GhcrRegistry)
