"""Entry point of the zot registry plugin (``registry = { provider = "zot", ... }``)."""

from __future__ import annotations

from lian_build import api, hookimpl
from lian_zot.registry import ZotRegistry


@hookimpl
def lian_register_registries(register: api.Register) -> None:
    register(ZotRegistry)
