"""zot runs the registry conformance suite against a real OCI registry with basic auth
(distribution 2.8 stands in for zot)."""

from __future__ import annotations

import uuid

import pytest

from fixtures.oci_content import PushedImage, push_image
from fixtures.registry import RegistryServer
from lian_build.testing.conformance import RegistryProviderConformance
from lian_zot.registry import ZotRegistry, ZotSettings


class TestZotConformance(RegistryProviderConformance):
    @pytest.fixture
    def registry(self, oci_registry_auth: RegistryServer) -> ZotRegistry:
        settings = ZotSettings(
            url=oci_registry_auth.url,
            username=oci_registry_auth.username,
            password_ref="env:ZOT_PASSWORD",
        )
        password = oci_registry_auth.password or ""

        def lookup(reference: str) -> str:
            assert reference == "env:ZOT_PASSWORD"
            return password

        return ZotRegistry(settings, lookup)

    @pytest.fixture
    def pushed_image(self, oci_registry_auth: RegistryServer) -> PushedImage:
        assert oci_registry_auth.username and oci_registry_auth.password
        credentials = (oci_registry_auth.username, oci_registry_auth.password)
        repository = f"conformance/{uuid.uuid4().hex[:10]}"
        return push_image(oci_registry_auth.url, repository, "1", auth=credentials)

    @pytest.fixture
    def pushed_reference(self, oci_registry_auth: RegistryServer, pushed_image: PushedImage) -> str:
        return f"{oci_registry_auth.host}/{pushed_image.repository}:{pushed_image.tag}"

    @pytest.fixture
    def pushed_digest(self, pushed_image: PushedImage) -> str:
        return str(pushed_image.digest)
