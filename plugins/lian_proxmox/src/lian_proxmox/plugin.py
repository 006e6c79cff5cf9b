"""Entry-point module: registers the Proxmox VE compute provider.

Kept light on purpose: proxmoxer is imported by the provider's methods, never here.
"""

from __future__ import annotations

from lian_build import hookimpl
from lian_build.api import Register
from lian_proxmox.provider import ProxmoxProvider


@hookimpl
def lian_register_compute_providers(register: Register) -> None:
    register(ProxmoxProvider)
