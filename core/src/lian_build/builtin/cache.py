"""``lian cache``: cache housekeeping, registered like any plugin's command."""

from __future__ import annotations

import typer

from lian_build import hookimpl


@hookimpl
def lian_register_commands(cli: typer.Typer) -> None:
    from lian_build.cachecmd import cache_app

    cli.add_typer(cache_app(), name="cache")
