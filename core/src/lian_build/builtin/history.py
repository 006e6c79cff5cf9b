"""Records every finished build attempt in the configured history store (feeds sizing).

The store is ``$LIAN_HISTORY_URL`` (a NATS JetStream stream for a fleet) or SQLite in the
state directory. Never fatal: an unreachable store keeps the record in the local spool.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lian_build import hookimpl
from lian_build.api import BuildMetrics
from lian_build.history import default_store

if TYPE_CHECKING:
    import typer

log = logging.getLogger("lian.history")


@hookimpl
def lian_record_metrics(metrics: BuildMetrics) -> None:
    # Losing one record only weakens future sizing: never fail a build over it.
    try:
        default_store().append(metrics)
    except Exception as exc:
        log.warning("history: could not record the build: %s", exc)


@hookimpl
def lian_register_commands(cli: typer.Typer) -> None:
    from lian_build.history.command import register

    register(cli)
