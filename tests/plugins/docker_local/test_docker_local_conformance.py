"""docker-local runs the compute conformance suite against the real Docker engine:
runners are containers this process can SSH into."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.docker import remove_labelled_containers
from lian_build.testing.conformance import CONFORMANCE_WORKSPACE, ComputeProviderConformance
from lian_docker_local.provider import DockerLocalProvider, DockerLocalSettings

pytestmark = pytest.mark.docker


def _no_secrets(reference: str) -> str:
    raise AssertionError(f"docker-local must not resolve secrets ({reference})")


class TestDockerLocalConformance(ComputeProviderConformance):
    ssh_wait_timeout_s = 60.0

    @pytest.fixture
    def provider(self, runner_image: str, docker_client: Any) -> Iterator[DockerLocalProvider]:
        yield DockerLocalProvider(DockerLocalSettings(image=runner_image), _no_secrets)
        # The suite destroys its runners; this catches any a failing spawn left behind.
        remove_labelled_containers(docker_client, {"lian.workspace": CONFORMANCE_WORKSPACE})

    @pytest.fixture
    def reachable_over_ssh(self) -> bool:
        return True
