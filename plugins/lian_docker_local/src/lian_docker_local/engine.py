"""Connecting to the Docker engine, with errors that say what to do next."""

from __future__ import annotations

import os
from typing import Any

from lian_build.errors import ProvisionError


def describe_engine(docker_host: str | None) -> str:
    """Where the client will connect, for messages and ``lian plan`` (no network)."""
    return docker_host or os.environ.get("DOCKER_HOST") or "default socket"


def connect(docker_host: str | None, timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` that has answered a ping, or ProvisionError."""
    import docker

    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ProvisionError(
            f"cannot reach the Docker engine at {describe_engine(docker_host)}: {exc}. "
            "Start it (`systemctl start docker`, or run `dockerd`) or point "
            "compute.docker_host / DOCKER_HOST at a running engine",
            details={"engine": describe_engine(docker_host)},
        ) from exc
    return client


def missing_image_error(image: str) -> ProvisionError:
    return ProvisionError(
        f"runner image {image!r} is not on the Docker engine: build it with "
        f"`lian runner-image build --tag {image}`",
        details={"image": image},
    )
