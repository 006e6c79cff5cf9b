"""The ``lian`` command line (typer). Subcommands only (ADR-002): build, plan,
integrate, plugins, reap, plus whatever plugins add.

stdout carries one JSON envelope per invocation (``lian plugins`` without ``--json`` and
``--help`` print text instead); logs and progress go to stderr. Exit codes live in
``lian_build.errors`` and docs/cli.md.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lian_build.envelope import Envelope, Redactor, run_enveloped
from lian_build.errors import EXIT_INVALID_INPUT, EXIT_OK, Cancelled, InvalidInput, LianError
from lian_build.intent import BUILD_FLAGS
from lian_build.plugins import PluginHost

if TYPE_CHECKING:
    from lian_build import model
    from lian_build.intent import Request
    from lian_build.plan import Plan
    from lian_build.secrets import SecretStore

log = logging.getLogger("lian.cli")

HELP = (
    "Container-image builds on ephemeral remote runners: provision, sync, build, push, "
    "destroy. One JSON envelope on stdout; logs on stderr."
)


class _Redact(logging.Filter):
    """Scrubs every secret resolved so far from log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = Redactor.redact(record.getMessage())
        record.args = None
        return True


class _OneLine(logging.Formatter):
    """Redacted records; a library's traceback (nats, paramiko) only with -vv."""

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__("lian: %(levelname)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not self.tracebacks:
            record = logging.makeLogRecord(record.__dict__)  # a copy: other handlers keep it
            error = record.exc_info[1] if record.exc_info else None
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args, record.exc_info, record.exc_text = None, None, None
        if not record.name.startswith("lian"):
            record = logging.makeLogRecord(record.__dict__)
            record.msg, record.args = f"[{record.name}] {record.getMessage()}", None
        return Redactor.redact(super().format(record))


class _LianHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installs, so a second setup replaces it."""


def _setup_logging(verbose: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    env_level = os.environ.get("LIAN_LOG_LEVEL")
    if env_level:
        level = getattr(logging, env_level.upper(), level)
    handler = _LianHandler(sys.stderr)
    handler.setFormatter(_OneLine(tracebacks=level <= logging.DEBUG))
    handler.addFilter(_Redact())
    root = logging.getLogger("lian")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Libraries log through the same handler (redacted, no traceback) instead of
    # Python's last-resort handler, which prints raw tracebacks.
    everything = logging.getLogger()
    everything.handlers = [h for h in everything.handlers if not isinstance(h, _LianHandler)]
    everything.addHandler(handler)


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------- options

Opt = typer.Option


def _resolve(
    host: PluginHost, values: Mapping[str, Any], *, for_build: bool = True
) -> tuple[Request, SecretStore, Plan]:
    from lian_build import intent as intent_mod
    from lian_build import plan as plan_mod
    from lian_build.secrets import SecretStore

    request = intent_mod.resolve(
        values,
        settings_class=host.settings_class,
        registry_defaults=host.registry_defaults,
        require_ssh_key=for_build,
        warn=lambda line: _stderr(f"lian: warning: {line}"),
    )
    store = SecretStore(host.secret_resolvers())
    if request.nkey_seed:
        store.remember(request.nkey_seed)
    Redactor.set(store.redact)
    plan = plan_mod.make_plan(request, host, store)
    return request, store, plan


def _plan(host: PluginHost, values: Mapping[str, Any]) -> model.PlanOutcome:
    _request, _store, plan = _resolve(host, values, for_build=False)
    return plan.outcome()


def _build(envelope: Envelope, host: PluginHost, values: Mapping[str, Any]) -> model.BuildOutcome:
    from lian_build.multiplatform import run_any
    from lian_build.progress import Progress
    from lian_build.remote.ssh import read_private_key

    request, store, plan = _resolve(host, values)
    assert request.ssh_key is not None
    client_key = read_private_key(request.ssh_key)
    progress = Progress(redact=store.redact)
    progress.info(
        f"session {plan.session_id}: {plan.intent.image} on {plan.compute.name} "
        f"(tiers {' -> '.join(t.name for t in plan.attempts)}), registry {plan.registry.host}"
    )

    def keep(pipeline: Any) -> None:
        envelope.partial = pipeline.progress_outcome  # called when an error envelope prints

    return run_any(plan, host, store, progress, client_key=client_key, on_pipeline=keep)


def build_like_command(command: str, body: Callable[[typer.Context, dict[str, Any]], None]) -> Any:
    """A typer command whose options come from ``intent.BUILD_FLAGS`` (declared once)."""
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    ]
    annotations: dict[str, Any] = {"ctx": typer.Context, "return": None}
    for flag in BUILD_FLAGS:
        kind: Any = list[str] if flag.many else str | None
        option = typer.Option(
            flag.option,
            envvar=flag.env,
            help=flag.help,
            rich_help_panel=flag.panel,
            show_default=not flag.secret,
        )
        annotation = Annotated[kind, option]
        annotations[flag.name] = annotation
        parameters.append(
            inspect.Parameter(
                flag.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=[] if flag.many else None,
                annotation=annotation,
            )
        )

    def command_fn(ctx: typer.Context, **values: Any) -> None:
        body(ctx, values)

    command_fn.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command_fn.__annotations__ = annotations
    command_fn.__name__ = command
    return command_fn


def build_app(host: PluginHost) -> typer.Typer:
    app = typer.Typer(
        name="lian",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help: typer's rich help imports ~140 ms of rich modules on every --help.
        rich_markup_mode=None,
    )

    @app.callback()
    def _root(
        ctx: typer.Context,
        verbose: Annotated[
            int, Opt("--verbose", "-v", count=True, help="More logging on stderr.")
        ] = 0,
    ) -> None:
        _setup_logging(verbose)
        ctx.obj = host

    def build(ctx: typer.Context, values: dict[str, Any]) -> None:
        """Run a build on an ephemeral runner and push the image."""
        run_enveloped("build", lambda env: _build(env, host, values))

    def plan(ctx: typer.Context, values: dict[str, Any]) -> None:
        run_enveloped("plan", lambda _env: _plan(host, values))

    app.command("build", help="Run a build on an ephemeral runner and push the image.")(
        build_like_command("build", build)
    )
    app.command(
        "plan",
        help="Resolve everything `build` would do (providers, size, tiers, cache refs, builder "
        "commands, runner image) and print it, without network access.",
    )(build_like_command("plan", plan))

    @app.command("integrate")
    def integrate(
        nats_url: Annotated[
            str | None, Opt(envvar="NATS_URL", help="Publish a completion event here.")
        ] = None,
        nats_nkey_seed: Annotated[
            str | None, Opt(envvar="NATS_NKEY_SEED", show_default=False)
        ] = None,
        nats_subject_prefix: Annotated[str | None, Opt(envvar="NATS_SUBJECT_PREFIX")] = None,
    ) -> None:
        """Federated probe: a JSON context on stdin, one JSON result line on stdout."""
        from lian_build import api
        from lian_build.events import EventBus
        from lian_build.integrate import parse_context, probe
        from lian_build.plan import new_session_id
        from lian_build.secrets import SecretStore

        def body(envelope: Envelope) -> model.IntegrateOutcome:
            if sys.stdin is None or sys.stdin.isatty():
                raise InvalidInput(
                    "pipe a SecretDeliveryContext JSON object into stdin", field="context"
                )
            context = parse_context(sys.stdin.read())
            store = SecretStore(host.secret_resolvers())
            if nats_nkey_seed:
                store.remember(nats_nkey_seed)
            Redactor.set(store.redact)
            settings = api.EventSettings(
                nats_url=nats_url,
                subject_prefix=nats_subject_prefix or "lian",
                nkey_seed=nats_nkey_seed,
            )
            if not nats_url:
                log.warning("no --nats-url/NATS_URL: the completion event is not published")
            bus = EventBus(
                host.event_sinks(settings),
                workspace=context.workspace,
                session_id=new_session_id(),
                redact=store.redact,
            )
            try:
                result = probe(context, host, store)
                bus.emit("integrate.completed", {"ready": True, "request_id": context.request_id})
                return result
            except LianError as exc:
                bus.emit(
                    "integrate.completed",
                    {"ready": False, "code": exc.code, "request_id": context.request_id},
                )
                envelope.partial = getattr(exc, "outcome", None)
                raise
            finally:
                bus.close()

        run_enveloped("integrate", body)

    @app.command("plugins")
    def plugins(
        as_json: Annotated[
            bool, Opt("--json", help="Print the JSON envelope instead of a table.")
        ] = False,
    ) -> None:
        """List every plugin: distribution, version, what it provides, its hooks, errors."""
        report = host.outcome()
        if as_json:
            run_enveloped("plugins", lambda _env: report)
            return
        for item in report.plugins:
            provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in item.provides.items()) or "-"
            status = item.status + (f" ({item.error})" if item.error else "")
            columns = f"{item.name:<18} {item.distribution:<26} {item.version:<8}"
            typer.echo(f"{columns} {provides}  [{status}]")
        for key, owners in report.conflicts.items():
            typer.echo(f"CONFLICT {key}: registered by {', '.join(owners)}")

    @app.command("reap")
    def reap(
        provider: Annotated[
            str, Opt(envvar="LIAN_COMPUTE_PROVIDER", help="Compute provider to sweep.")
        ] = "docker-local",
        compute_opt: Annotated[
            list[str],
            Opt(
                "--compute-opt",
                help="KEY=VALUE compute setting; repeatable (lists: comma list or repeats).",
            ),
        ] = [],  # noqa: B006
        workspace: Annotated[str | None, Opt(help="Only runners of this workspace.")] = None,
        all_runners: Annotated[
            bool, Opt("--all", help="Also runners not yet expired (may kill running builds).")
        ] = False,
    ) -> None:
        """Destroy runners that escaped cleanup, found by their lian labels."""
        from lian_build import validate
        from lian_build.intent import provider_settings
        from lian_build.reap import reap_expired
        from lian_build.secrets import SecretStore

        def body(_env: Envelope) -> model.ReapOutcome:
            from lian_build import model

            if workspace is not None:  # a label value: the same rule as for builds
                validate.path_component(workspace, field="workspace")
            store = SecretStore(host.secret_resolvers())
            settings = provider_settings(
                host.settings_class("compute", provider), compute_opt, "compute-opt", "compute"
            )
            compute = host.compute_provider(provider, settings, store)
            report = reap_expired(
                compute, include_unexpired=all_runners, workspace=workspace, log=_stderr
            )
            return model.ReapOutcome(
                provider=provider,
                found=report.found,
                destroyed=tuple(report.destroyed),
                kept=tuple(report.kept),
                failed=tuple(report.failed),
            )

        run_enveloped("reap", body)

    host.register_commands(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point for ``lian`` and ``lian-build``."""
    _setup_logging(0)
    host = PluginHost.load()  # a broken plugin is logged as a warning and skipped
    command = typer.main.get_command(build_app(host))
    args = sys.argv[1:] if argv is None else argv
    try:
        code = command.main(args=args, prog_name="lian", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = Cancelled.exit_code
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group called without a command shows its help, like --help: text on
            # stdout (rich has printed it already), no envelope, exit 0.
            if exc.format_message():
                typer.echo(exc.format_message())
            code = EXIT_OK
        else:
            code = _usage_error(exc, args)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException, args: list[str]) -> int:
    """An unknown option, a bad option value, a missing command: one USAGE envelope."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        path = str(ctx.command_path)
    else:  # some parse errors carry no context: name the first word as the command
        words = [a for a in args if not a.startswith("-")]
        path = f"lian {words[0]}" if words else "lian"
    command = path.removeprefix("lian").strip() or "lian"
    param = getattr(exc, "param", None)
    field = getattr(exc, "option_name", None) or getattr(param, "name", None)
    message = exc.format_message() or "invalid usage"
    if field is None and message.startswith("No such command"):
        field = "command"
    _stderr(f"{path}: error [USAGE]: {message} (see `{path} --help`)")
    Envelope(command).error(InvalidInput(message, field=field, code="USAGE"))
    return EXIT_INVALID_INPUT


if __name__ == "__main__":
    main()
