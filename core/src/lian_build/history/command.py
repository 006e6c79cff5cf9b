"""``lian history``: the recorded builds and the P95 the sizer would use now."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lian_build import sizing
from lian_build.errors import EXIT_NOT_READY, LianError
from lian_build.history import (
    DEFAULT_WINDOW,
    HistoryP95,
    HistoryUnavailable,
    default_store,
    metrics_to_json,
)


class HistoryStoreUnavailable(LianError):
    """``lian history`` could not read the configured store."""

    code = "HISTORY_UNAVAILABLE"
    exit_code = EXIT_NOT_READY


def _report(answer: HistoryP95) -> dict[str, Any]:
    used = {id(m) for m in answer.used}
    return {
        "workspace": answer.workspace,
        "builds": [{**metrics_to_json(m), "used": id(m) in used} for m in answer.samples],
        "p95": None
        if answer.size is None
        else {
            "cpu": answer.size.cpu,
            "memory_gb": answer.size.memory_gb,
            "time_budget_min": answer.size.time_budget_min,
            "reason": answer.size.reason,
        },
        "used": [m.session_id for m in answer.used],
    }


def collect(workspace: str | None, window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """The result of ``lian history --json``."""
    store = default_store()
    try:
        names = [workspace] if workspace is not None else store.workspaces()
        workspaces = [_report(store.p95(name, window)) for name in names]
    except HistoryUnavailable as exc:
        raise HistoryStoreUnavailable(
            f"history store {store.location} unavailable: {exc}",
            details={"store": store.name, "location": store.location},
        ) from None
    pending = getattr(store, "pending", None)
    return {
        "store": {"name": store.name, "location": store.location},
        "window": window,
        "min_samples": sizing.HISTORY_MIN_SAMPLES,
        "spooled": len(pending()) if callable(pending) else 0,
        "workspaces": workspaces,
    }


def _table(result: dict[str, Any]) -> None:
    store = result["store"]
    typer.echo(f"store: {store['name']} {store['location']}  (spooled: {result['spooled']})")
    for ws in result["workspaces"]:
        p95 = ws["p95"]
        if p95 is None:
            size = f"no P95 yet (needs {result['min_samples']} successful builds)"
        else:
            size = f"P95 size {p95['cpu']} cpu, {p95['memory_gb']} GB, {p95['time_budget_min']} min"
        typer.echo(f"\n{ws['workspace']}: {len(ws['builds'])} builds; {size}")
        for b in ws["builds"]:
            mark = "*" if b["used"] else " "
            peak = b["peak_memory_bytes"]
            peak_text = "-" if peak is None else f"{peak / sizing.GIB:.2f}GiB"
            status = "ok" if b["succeeded"] else ("oom" if b["oom"] else "failed")
            typer.echo(
                f" {mark} {b['finished_at']}  {b['session_id']:<16} {b['provider']:<14} "
                f"{b['tier']:<10} {b['duration_s']:>8.1f}s  peak {peak_text:<9} {status}"
            )
    if result["workspaces"]:
        typer.echo("\n* used for the P95")


def register(cli: typer.Typer) -> None:
    @cli.command("history")
    def history(
        workspace: Annotated[
            str | None, typer.Option(help="Only this workspace (default: every workspace).")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the JSON envelope instead of a table.")
        ] = False,
    ) -> None:
        """Recorded builds and the P95 size the sizer would use now, with the builds it used."""
        from lian_build.envelope import run_enveloped

        if as_json:
            run_enveloped("history", lambda _env: collect(workspace))
            return
        try:
            result = collect(workspace)
        except LianError as exc:
            typer.echo(f"lian history: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code) from None
        _table(result)
