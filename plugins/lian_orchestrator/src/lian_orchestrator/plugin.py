"""Entry-point module of the orchestrator plugin. Light: no httpx, starlette or uvicorn.

One plugin, three roles: the ``orchestrator`` compute provider, a sizing source (the
orchestrator's history P95, asked before the local history), and a metrics sink. The
sizing and metrics hooks act only while an ``orchestrator`` provider is in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lian_build import hookimpl

if TYPE_CHECKING:
    import typer

    from lian_build.api import BuildMetrics, Register, RunnerSize, SizingRequest


@hookimpl
def lian_register_compute_providers(register: Register) -> None:
    from lian_orchestrator.provider import OrchestratorProvider

    register(OrchestratorProvider)


@hookimpl
def lian_size_runner(request: SizingRequest) -> RunnerSize | None:
    # A plain implementation: after the explicit .build-spec.ncl, before the local history.
    from lian_orchestrator.provider import active_provider

    provider = active_provider()
    return provider.size_for(request.workspace) if provider is not None else None


@hookimpl
def lian_record_metrics(metrics: BuildMetrics) -> None:
    from lian_orchestrator.provider import active_provider

    provider = active_provider()
    if provider is not None and metrics.provider == provider.name:
        provider.record(metrics)  # never raises: unsent records are spooled


@hookimpl
def lian_register_commands(cli: typer.Typer) -> None:
    from lian_orchestrator.cli import orchestrator_app

    cli.add_typer(orchestrator_app(), name="orchestrator")
