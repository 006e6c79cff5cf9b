"""Entry-point module of the docker-local plugin. Light: no docker SDK import here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lian_build import hookimpl

if TYPE_CHECKING:
    import typer

    from lian_build.api import Register


@hookimpl
def lian_register_compute_providers(register: Register) -> None:
    from lian_docker_local.provider import DockerLocalProvider

    register(DockerLocalProvider)


@hookimpl
def lian_register_commands(cli: typer.Typer) -> None:
    from lian_docker_local.cli import runner_image_app

    cli.add_typer(runner_image_app(), name="runner-image")
