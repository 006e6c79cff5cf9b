"""``lian cache ls|prune``: list cache namespaces per registry, delete dev/ caches.

``ci/`` is the shared, canonical layer: ``prune`` never touches it unless asked with
both ``--ci`` and ``--yes-delete-ci``. Output is one envelope on stdout, as for every
command; ``ls`` without ``--json`` prints a table on stderr as well.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from lian_build import api
    from lian_build.envelope import Envelope
    from lian_build.plugins import PluginHost

Opt = typer.Option

RegistryName = Annotated[
    str, Opt("--registry", envvar="LIAN_REGISTRY_PROVIDER", help="Registry plugin (default zot).")
]
RegistryOpts = Annotated[
    list[str],
    Opt("--registry-opt", help="KEY=VALUE registry setting, e.g. url=http://127.0.0.1:5000."),
]


def _registry(host: PluginHost, name: str, opts: list[str]) -> api.RegistryProvider:
    from lian_build.intent import provider_settings
    from lian_build.secrets import SecretStore

    store = SecretStore(host.secret_resolvers())
    settings = provider_settings(
        host.settings_class("registry", name), opts, "registry-opt", "registry"
    )
    return host.registry(name, settings, store)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


def _row_text(row: dict[str, Any]) -> str:
    age = row["age_s"]
    age_text = f"{age // 86400}d{age % 86400 // 3600}h" if isinstance(age, int) else "?"
    return (
        f"{row['layer']:<4} {row['repository']}  {row['manifests']} manifest(s)"
        f"  {_human_size(int(row['size_bytes']))}  age {age_text}"
    )


def cache_app() -> typer.Typer:
    from lian_build.envelope import run_enveloped

    app = typer.Typer(
        name="cache", help="List and prune build caches in the registry.", no_args_is_help=True
    )

    @app.command("ls")
    def ls(
        ctx: typer.Context,
        registry: RegistryName = "zot",
        registry_opt: RegistryOpts = [],  # noqa: B006
        workspace: Annotated[str | None, Opt(help="Only this workspace's caches.")] = None,
        as_json: Annotated[bool, Opt("--json", help="Only the envelope, no table.")] = False,
    ) -> None:
        """Cache namespaces (ci/ and dev/) with their size and age."""
        from lian_build import cachestore, validate

        def body(_env: Envelope) -> dict[str, Any]:
            if workspace is not None:
                validate.path_component(workspace, field="workspace")
            provider = _registry(ctx.find_root().obj, registry, registry_opt)
            now = cachestore.now()
            found = cachestore.list_namespaces(provider, workspace=workspace)
            rows = [ns.to_dict(now) for ns in found]
            if not as_json:
                for row in rows:
                    sys.stderr.write(_row_text(row) + "\n")
            return {
                "registry": provider.host,
                "namespaces": rows,
                "size_bytes": sum(ns.size_bytes for ns in found),
            }

        run_enveloped("cache ls", body)

    @app.command("prune")
    def prune(
        ctx: typer.Context,
        dev: Annotated[bool, Opt("--dev", help="Prune dev/ (session) caches.")] = False,
        ci: Annotated[bool, Opt("--ci", help="Prune ci/ caches (needs --yes-delete-ci).")] = False,
        yes_delete_ci: Annotated[
            bool, Opt("--yes-delete-ci", help="Confirm deleting the shared ci/ caches.")
        ] = False,
        older_than: Annotated[
            str | None, Opt(help="Only manifests older than this (14d, 12h, 2w).")
        ] = None,
        actor: Annotated[str | None, Opt(help="Only this actor's dev/ caches.")] = None,
        workspace: Annotated[str | None, Opt(help="Only this workspace's caches.")] = None,
        dry_run: Annotated[
            bool, Opt("--dry-run", help="List what would go; delete nothing.")
        ] = False,
        registry: RegistryName = "zot",
        registry_opt: RegistryOpts = [],  # noqa: B006
    ) -> None:
        """Delete dev/ caches (and ci/ only with --ci --yes-delete-ci)."""
        from lian_build import cache, cachestore, validate
        from lian_build.errors import InvalidInput

        def body(_env: Envelope) -> dict[str, Any]:
            if not dev and not ci:
                raise InvalidInput("say what to prune: --dev (and/or --ci)", field="dev")
            if ci and not yes_delete_ci:
                raise InvalidInput(
                    "ci/ caches are shared by every build of a workspace: pruning them needs "
                    "--yes-delete-ci as well as --ci",
                    field="yes_delete_ci",
                )
            if actor is not None and ci:
                raise InvalidInput("--actor selects dev/ caches only; drop --ci", field="actor")
            for value, field in ((actor, "actor"), (workspace, "workspace")):
                if value is not None:
                    validate.path_component(value, field=field)
            age = cachestore.parse_duration(older_than) if older_than else None
            provider = _registry(ctx.find_root().obj, registry, registry_opt)
            layers = [name for name, on in ((cache.DEV, dev), (cache.CI, ci)) if on]
            found = cachestore.list_namespaces(
                provider, layers=layers, workspace=workspace, actor=actor
            )
            chosen = cachestore.select(found, older_than=age, now=cachestore.now())
            planned = [d.to_dict() for d in chosen]
            if dry_run:
                deleted: list[Any] = []
            else:
                done = cachestore.delete_all(provider, chosen, log=_say)
                deleted = [d.to_dict() for d in done]
            return {
                "registry": provider.host,
                "dry_run": dry_run,
                "layers": layers,
                "selected": planned,
                "deleted": deleted,
                "freed_bytes": sum(int(d["size_bytes"] or 0) for d in deleted),
            }

        run_enveloped("cache prune", body)

    return app
