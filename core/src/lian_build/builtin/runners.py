"""Built-in plugin: the ``lian runners`` command (live runners lian started)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from lian_build import hookimpl

if TYPE_CHECKING:
    from lian_build.plugins import PluginHost


def runners_command(
    ctx: typer.Context,
    provider: Annotated[
        list[str],
        typer.Option(
            "--provider",
            help="Compute provider to ask; repeatable. Default: every installed one.",
        ),
    ] = [],  # noqa: B006
    compute_opt: Annotated[
        list[str],
        typer.Option(
            "--compute-opt", help="KEY=VALUE compute setting (with one --provider); repeatable."
        ),
    ] = [],  # noqa: B006
    workspace: Annotated[str | None, typer.Option(help="Only runners of this workspace.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the JSON envelope instead of a table.")
    ] = False,
) -> None:
    """List every live runner lian started: id, provider, workspace, session, age, expiry, tier."""
    from lian_build import validate
    from lian_build.envelope import Envelope, run_enveloped
    from lian_build.errors import InvalidInput, LianError
    from lian_build.intent import provider_settings
    from lian_build.runners import list_all, table
    from lian_build.secrets import SecretStore

    host: PluginHost = ctx.obj
    shown: dict[str, Any] = {}

    def body(_env: Envelope) -> dict[str, Any]:
        if workspace is not None:
            validate.path_component(workspace, field="workspace")
        if compute_opt and len(provider) != 1:
            raise InvalidInput(
                "--compute-opt needs exactly one --provider (settings belong to one provider)",
                field="compute",
            )
        settings = (
            provider_settings(
                host.settings_class("compute", provider[0]), compute_opt, "compute-opt", "compute"
            )
            if compute_opt
            else {}
        )
        store = SecretStore(host.secret_resolvers())
        names = provider or host.names("compute")
        providers: dict[str, Any] = {}
        for name in names:
            try:
                providers[name] = host.compute_provider(name, settings, store)
            except LianError as exc:
                if provider:  # asked for by name: its settings must work
                    raise
                providers[name] = exc  # e.g. no host configured: listed as unavailable
        result = list_all(providers, workspace=workspace)
        shown.update(result)
        return result

    if as_json:
        run_enveloped("runners", body)
        return
    # A table on stdout; a failure still ends in the error envelope and its exit code.
    envelope = Envelope("runners")
    try:
        body(envelope)
    except LianError as exc:
        typer.echo(f"lian runners: error [{exc.code}]: {exc.message}", err=True)
        envelope.error(exc)
        raise typer.Exit(exc.exit_code) from None
    for line in table(shown):
        typer.echo(line)


@hookimpl
def lian_register_commands(cli: typer.Typer) -> None:
    cli.command("runners")(runners_command)
