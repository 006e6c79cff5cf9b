"""hcloud runs the compute conformance suite against the Hetzner Cloud API imitation,
whose servers are real runner containers answering SSH at the address the API reports."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lian_build.testing.conformance import ComputeProviderConformance
from lian_hcloud.provider import HcloudProvider


class TestHcloudConformance(ComputeProviderConformance):
    @pytest.fixture
    def provider(self, make_provider: Callable[..., HcloudProvider]) -> HcloudProvider:
        return make_provider()

    @pytest.fixture
    def reachable_over_ssh(self) -> bool:
        return True
