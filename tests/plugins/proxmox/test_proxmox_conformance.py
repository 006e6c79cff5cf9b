"""proxmox runs the compute conformance suite against the Proxmox VE imitation, whose
VMs are real runner containers: the SSH tests run (pinned host key installed through
the guest agent, a wrong pinned key refused)."""

from __future__ import annotations

import pytest
from pve_machine import Pve

from lian_build.testing.conformance import ComputeProviderConformance
from lian_proxmox.provider import ProxmoxProvider


class TestProxmoxConformance(ComputeProviderConformance):
    @pytest.fixture
    def provider(self, pve: Pve) -> ProxmoxProvider:
        return pve.provider()

    @pytest.fixture
    def reachable_over_ssh(self) -> bool:
        return True
