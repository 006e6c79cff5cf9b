"""Conformance suites for plugin authors: subclass one in your own test suite and supply
the fixtures its docstring names.

    from lian_build.testing.conformance import ComputeProviderConformance

    class TestTinycloudConformance(ComputeProviderConformance):
        @pytest.fixture
        def provider(self, tinycloud_api):
            return TinycloudProvider(TinycloudSettings(api_url=tinycloud_api.url), lookup)

Every first-party plugin runs the matching suite (tests/plugins/*/test_*_conformance.py).
"""

from lian_build.testing.conformance._support import NetworkUsed, no_network
from lian_build.testing.conformance.builder import BuilderConformance, conformance_job
from lian_build.testing.conformance.compute import ComputeProviderConformance
from lian_build.testing.conformance.registry import RegistryProviderConformance, missing_tag_of
from lian_build.testing.conformance.secret_resolver import SecretResolverConformance
from lian_build.testing.conformance.spawn import (
    CONFORMANCE_WORKSPACE,
    generate_client_key,
    make_spawn_request,
    standard_labels,
    write_client_key,
)

__all__ = [
    "CONFORMANCE_WORKSPACE",
    "BuilderConformance",
    "ComputeProviderConformance",
    "NetworkUsed",
    "RegistryProviderConformance",
    "SecretResolverConformance",
    "conformance_job",
    "generate_client_key",
    "make_spawn_request",
    "missing_tag_of",
    "no_network",
    "standard_labels",
    "write_client_key",
]
