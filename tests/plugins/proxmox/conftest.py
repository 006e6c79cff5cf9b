"""The Proxmox VE imitation as a machine: every VM it starts is a real runner container
(fixtures.machines), and after each test no VM the plugin made and no container may be
left (its inventory is checked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_proxmox import FakeProxmox
from pve_machine import Pve

from fixtures.machines import MachinePool


@pytest.fixture
def pve(docker_client: Any, runner_image: str, tmp_path: Path) -> Iterator[Pve]:
    """A served imitation whose VMs are runner containers; checks the inventory after."""
    pool = MachinePool(docker_client)
    fake = FakeProxmox(machines=pool, image=runner_image)
    try:
        with fake.serve(tmp_path) as host:
            yield Pve(fake, host, tmp_path / "pve-root-ca.pem", pool)
        left_vms = fake.leftovers()
        left_containers = [c.name for c in pool.running()]
        assert not left_vms, f"VMs left behind: {left_vms}"
        assert not left_containers, f"runner containers left behind: {left_containers}"
    finally:
        pool.cleanup()
