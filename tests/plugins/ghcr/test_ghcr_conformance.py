"""ghcr runs the registry conformance suite against the ghcr.io imitation, which
fronts a real OCI registry (pushes through it land in the real one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from plugins.ghcr.ghcr_imitation import GhcrImitation

from fixtures.oci_content import PushedImage, push_image
from fixtures.registry import RegistryServer
from lian_build.testing.conformance import RegistryProviderConformance
from lian_ghcr.registry import GhcrRegistry, GhcrSettings

USER, PAT, ORG = "octo-conformance", "ghp_" + "c" * 36, "acme-conformance"


def _secrets(reference: str) -> str:
    assert reference == "env:GHCR_TOKEN"
    return PAT


class TestGhcrConformance(RegistryProviderConformance):
    @pytest.fixture
    def ghcr(self, oci_registry: RegistryServer) -> Iterator[GhcrImitation]:
        imitation = GhcrImitation(oci_registry.url, username=USER, pat=PAT, orgs=(ORG,))
        with imitation:
            yield imitation

    @pytest.fixture
    def registry(self, ghcr: GhcrImitation) -> GhcrRegistry:
        settings = GhcrSettings(
            owner=ORG,
            username=USER,
            token_ref="env:GHCR_TOKEN",
            registry=ghcr.host,
            api_url=ghcr.url,
            insecure=True,
        )
        return GhcrRegistry(settings, _secrets)

    @pytest.fixture
    def pushed_image(self, ghcr: GhcrImitation) -> PushedImage:
        repository = f"{ORG}/app-{uuid.uuid4().hex[:8]}"
        token = httpx.get(
            f"{ghcr.url}/token",
            params={"scope": f"repository:{repository}:pull,push", "service": "ghcr.io"},
            auth=(USER, PAT),
        ).json()["token"]
        return push_image(ghcr.url, repository, "1", headers={"Authorization": f"Bearer {token}"})

    @pytest.fixture
    def pushed_reference(self, ghcr: GhcrImitation, pushed_image: PushedImage) -> str:
        return f"{ghcr.host}/{pushed_image.repository}:{pushed_image.tag}"

    @pytest.fixture
    def pushed_digest(self, pushed_image: PushedImage) -> str:
        return str(pushed_image.digest)
