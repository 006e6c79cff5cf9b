"""Entry-point module: registers the Hetzner Cloud provider without importing hcloud."""

from __future__ import annotations

from lian_build import hookimpl
from lian_build.api import Register


@hookimpl
def lian_register_compute_providers(register: Register) -> None:
    from lian_hcloud.provider import HcloudProvider

    register(HcloudProvider)
