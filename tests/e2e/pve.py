"""The Proxmox VE imitation for end-to-end runs: served over TLS from the test process,
its VMs real runner containers, and the ``lian`` flags that point a child process at
it (the CLI verifies the imitation's certificate with its CA file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "proxmox"))

from fake_proxmox import FakeProxmox

from fixtures.machines import MachinePool


@attrs.frozen
class ServedPve:
    fake: FakeProxmox
    host: str
    ca_file: Path
    pool: MachinePool

    def compute_opts(self, **extra: str) -> list[str]:
        opts = {
            "host": self.host,
            "node": self.fake.node,
            "template_id": str(self.fake.template_id),
            "token_id": self.fake.token_id,
            "ca_file": str(self.ca_file),
            "poll_interval": "0.2",
            "ssh_port": str(getattr(self.pool, "port", 22)),
            **extra,
        }
        return [arg for k, v in opts.items() for arg in ("--compute-opt", f"{k}={v}")]

    @property
    def env(self) -> dict[str, str]:
        return {"PROXMOX_TOKEN": self.fake.token}


@contextmanager
def served_pve(
    docker_client: Any,
    runner_image: str,
    cert_dir: Path,
    *,
    arm_image: str | None = None,
    nodes: dict[str, str] | None = None,
) -> Iterator[ServedPve]:
    """Serve the imitation (``nodes``: more cluster nodes, name -> machine); afterwards
    no VM lian made and no container may be left."""
    pool = MachinePool(docker_client)
    fake = FakeProxmox(machines=pool, image=runner_image, arm_image=arm_image, nodes=nodes)
    try:
        with fake.serve(cert_dir) as host:
            yield ServedPve(fake, host, cert_dir / "pve-root-ca.pem", pool)
        left_vms, left_containers = fake.leftovers(), [c.name for c in pool.running()]
        assert not left_vms, f"VMs left behind: {left_vms}"
        assert not left_containers, f"runner containers left behind: {left_containers}"
    finally:
        pool.cleanup()
