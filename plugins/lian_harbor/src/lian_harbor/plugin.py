"""Entry point of the Harbor registry plugin (``registry = { provider = "harbor", ... }``)."""

from __future__ import annotations

from lian_build import api, hookimpl
from lian_harbor.registry import HarborRegistry


@hookimpl
def lian_register_registries(register: api.Register) -> None:
    register(HarborRegistry)
