"""harbor runs the registry conformance suite against the Harbor imitation, which
fronts a real OCI registry (pushes through it land in the real one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from plugins.harbor.harbor_imitation import HarborImitation

from fixtures.oci_content import PushedImage, push_image
from fixtures.registry import RegistryServer
from lian_build.testing.conformance import RegistryProviderConformance
from lian_harbor.registry import HarborRegistry, HarborSettings

ROBOT, SECRET, PROJECT = "robot$conformance+pusher", "Harbor-conformance-secret-7", "conformance"


def _secrets(reference: str) -> str:
    assert reference == "env:HARBOR_SECRET"
    return SECRET


class TestHarborConformance(RegistryProviderConformance):
    @pytest.fixture
    def harbor(self, oci_registry: RegistryServer) -> Iterator[HarborImitation]:
        imitation = HarborImitation(
            oci_registry.url, username=ROBOT, password=SECRET, projects={PROJECT}
        )
        with imitation:
            yield imitation

    @pytest.fixture
    def registry(self, harbor: HarborImitation) -> HarborRegistry:
        settings = HarborSettings(
            url=harbor.url, project=PROJECT, username=ROBOT, password_ref="env:HARBOR_SECRET"
        )
        return HarborRegistry(settings, _secrets)

    @pytest.fixture
    def pushed_image(self, harbor: HarborImitation) -> PushedImage:
        repository = f"{PROJECT}/app-{uuid.uuid4().hex[:8]}"
        return push_image(harbor.url, repository, "1", auth=(ROBOT, SECRET))

    @pytest.fixture
    def pushed_reference(self, harbor: HarborImitation, pushed_image: PushedImage) -> str:
        return f"{harbor.host}/{pushed_image.repository}:{pushed_image.tag}"

    @pytest.fixture
    def pushed_digest(self, pushed_image: PushedImage) -> str:
        return str(pushed_image.digest)
