"""proxmox runs the compute conformance suite against the Proxmox VE API imitation
(its guests report addresses nobody answers: no SSH tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_proxmox import FakeProxmox

from lian_build.testing.conformance import ComputeProviderConformance
from lian_proxmox.provider import ProxmoxProvider, ProxmoxSettings

# verify_ssl = false: the imitation's certificate is self-signed.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


class TestProxmoxConformance(ComputeProviderConformance):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> Iterator[ProxmoxProvider]:
        fake = FakeProxmox()
        with fake.serve(tmp_path) as host:
            settings = ProxmoxSettings(
                host=host,
                node=fake.node,
                template_id=fake.template_id,
                token_id=fake.token_id,
                verify_ssl=False,
                poll_interval=0.001,
                wait_timeout_s=30,
            )

            def lookup(reference: str) -> str:
                assert reference == "env:PROXMOX_TOKEN"
                return fake.token

            yield ProxmoxProvider(settings, lookup)

    @pytest.fixture
    def reachable_over_ssh(self) -> bool:
        return False
