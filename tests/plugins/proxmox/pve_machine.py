"""A served Proxmox VE imitation whose VMs are runner containers, and a configured
provider for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from fake_proxmox import FakeProxmox

from fixtures.machines import MachinePool
from lian_proxmox.provider import ProxmoxProvider, ProxmoxSettings


@attrs.frozen
class Pve:
    fake: FakeProxmox
    host: str  # "127.0.0.1:PORT"
    ca_file: Path  # the imitation's CA: with it, TLS verification passes
    pool: MachinePool

    def settings(self, **overrides: Any) -> ProxmoxSettings:
        values: dict[str, Any] = {
            "host": self.host,
            "node": self.fake.node,
            "template_id": self.fake.template_id,
            "token_id": self.fake.token_id,
            "ca_file": str(self.ca_file),
            "poll_interval": 0.05,
            "wait_timeout_s": 60,
            # 22 unless this machine cannot bind it there (not root): then the pool's port.
            "ssh_port": getattr(self.pool, "port", 22),
        }
        return ProxmoxSettings(**(values | overrides))

    def provider(self, **overrides: Any) -> ProxmoxProvider:
        token = self.fake.token

        def lookup(reference: str) -> str:
            assert reference == "env:PROXMOX_TOKEN"
            return token

        return ProxmoxProvider(self.settings(**overrides), lookup)
