"""Every hook lian-build calls, in lifecycle order. All names start with ``lian_``.

Registration hooks receive a ``register`` callback so one plugin can register several
things and the core keeps the bookkeeping (duplicate names are an error naming both
distributions). Implement a hook with ``@lian_build.hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from lian_build.api import (
        BuildMetrics,
        EventSettings,
        Register,
        RunnerSize,
        SizingRequest,
    )

hookspec = pluggy.HookspecMarker("lian_build")
hookimpl = pluggy.HookimplMarker("lian_build")


# --------------------------------------------------------------------------- registration
# Called once, when the plugin host is built. Broadcast: every plugin may register.


@hookspec
def lian_register_compute_providers(register: Register) -> None:
    """Register ``ComputeProvider`` subclasses: ``register(MyProvider)``.

    Each class has a unique ``name`` (what ``compute.provider`` selects)."""


@hookspec
def lian_register_registries(register: Register) -> None:
    """Register ``RegistryProvider`` subclasses by ``name`` (``registry.provider``)."""


@hookspec
def lian_register_builders(register: Register) -> None:
    """Register ``Builder`` subclasses by ``name`` (``builder = "buildkit"``)."""


@hookspec
def lian_register_secret_resolvers(register: Register) -> None:
    """Register ``SecretResolver`` subclasses by ``scheme`` (``env:``, ``file:``...)."""


@hookspec
def lian_register_event_sinks(register: Register, settings: EventSettings) -> None:
    """Register ``EventSink`` instances for this invocation, if ``settings`` enable them.

    Called once per build or integrate run; the core broadcasts every event to every
    registered sink and closes them at the end. A sink that raises is logged, never
    fatal."""


# --------------------------------------------------------------------------- sizing


@hookspec(firstresult=True)
def lian_size_runner(request: SizingRequest) -> RunnerSize | None:
    """Decide how big the runner must be. Stops at the first non-None result.

    Built-in order: the explicit ``.build-spec.ncl`` (tryfirst), the history P95,
    then the language defaults (trylast), which always answer. A third-party source
    answers before the history source unless it marks itself ``trylast``."""


# --------------------------------------------------------------------------- after a build


@hookspec
def lian_record_metrics(metrics: BuildMetrics) -> None:
    """A build attempt finished (success or failure): record what it used. Broadcast."""


# --------------------------------------------------------------------------- CLI


@hookspec
def lian_register_commands(cli: typer.Typer) -> None:
    """Add subcommands to ``lian`` (``cli.command()(fn)`` or ``cli.add_typer(...)``).

    Called while the CLI is built; keep provider SDK imports inside the command body."""
