"""hcloud runs the compute conformance suite against the Hetzner Cloud API imitation
(its servers get documentation addresses nobody answers: no SSH tests)."""

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
        return False
