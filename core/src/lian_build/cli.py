"""The ``lian`` command line (typer). Subcommands only (ADR-002): build, plan,
integrate, plugins, reap, plus whatever plugins add.

stdout carries one JSON envelope per invocation (``lian plugins`` without ``--json`` and
``--help`` print text instead); logs and progress go to stderr. Exit codes live in
``lian_build.errors`` and docs/cli.md.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lian_build.envelope import Envelope
from lian_build.errors import (
    EXIT_INTERNAL,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    Cancelled,
    InvalidInput,
    LianError,
)
from lian_build.plugins import PluginHost

if TYPE_CHECKING:
    from lian_build.intent import BuildIntent, FlatArgs
    from lian_build.plan import Plan
    from lian_build.secrets import SecretStore

log = logging.getLogger("lian.cli")

HELP = (
    "Container-image builds on ephemeral remote runners: provision, sync, build, push, "
    "destroy. One JSON envelope on stdout; logs on stderr."
)


class _Redact(logging.Filter):
    """Scrubs every secret resolved so far from log records."""

    redact: Callable[[str], str] = staticmethod(lambda s: s)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _Redact.redact(record.getMessage())
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
        return _Redact.redact(super().format(record))


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


def run_enveloped(command: str, body: Callable[[Envelope], dict[str, Any]]) -> None:
    """Run a command body; print exactly one envelope and exit with the documented code."""
    envelope = Envelope(command)
    partial: dict[str, Any] | None = None
    try:
        result = body(envelope)
    except LianError as exc:
        partial = getattr(envelope, "partial", None)
        message = _Redact.redact(exc.message)
        _stderr(f"lian {command}: error [{exc.code}]: {message}")
        envelope.error(exc, result=partial)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        # A second Ctrl-C while the envelope is printed must not kill us by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        exc2 = Cancelled("cancelled by SIGINT")
        _stderr(f"lian {command}: cancelled")
        envelope.error(exc2, result=getattr(envelope, "partial", None))
        raise typer.Exit(exc2.exit_code) from None
    except Exception as exc:  # a bug: say so, with the traceback on stderr
        _stderr(f"lian {command}: internal error: {type(exc).__name__}: {exc}")
        _stderr(_Redact.redact("".join(traceback.format_exception(exc))))
        internal = LianError(f"internal error: {type(exc).__name__} (see stderr)")
        envelope.error(internal)
        raise typer.Exit(EXIT_INTERNAL) from None
    envelope.ok(result)


# ---------------------------------------------------------------------------- options

Opt = typer.Option
BUILD_PANEL = "Build"
PROVIDER_PANEL = "Providers"
EVENTS_PANEL = "Events"


def _build_like(ctx: typer.Context, **kwargs: Any) -> None:
    from lian_build.intent import FlatArgs

    command = ctx.info_name or "build"
    host: PluginHost = ctx.obj
    args = FlatArgs(**kwargs)
    if command == "plan":
        run_enveloped("plan", lambda env: _plan(env, host, args))
    else:
        run_enveloped("build", lambda env: _build(env, host, args))


def _resolve(
    host: PluginHost, args: FlatArgs, *, for_build: bool = True
) -> tuple[BuildIntent, SecretStore, Plan]:
    from lian_build import intent as intent_mod
    from lian_build import plan as plan_mod
    from lian_build.secrets import SecretStore

    classes = {
        name: host.provider_class("registry", name, "registry.provider")
        for name in host.names("registry")
    }
    intent = intent_mod.from_flags(args, classes, require_ssh_key=for_build)
    store = SecretStore(host.secret_resolvers())
    if intent.events.nkey_seed:
        store.remember(intent.events.nkey_seed)
    _Redact.redact = store.redact
    plan = plan_mod.make_plan(intent, host, store)
    return intent, store, plan


def _plan(envelope: Envelope, host: PluginHost, args: FlatArgs) -> dict[str, Any]:
    _intent, store, plan = _resolve(host, args, for_build=False)
    envelope.set_redactor(store.redact)
    return plan.to_dict()


def _build(envelope: Envelope, host: PluginHost, args: FlatArgs) -> dict[str, Any]:
    from lian_build.pipeline import run_build
    from lian_build.progress import Progress
    from lian_build.remote.ssh import read_private_key

    intent, store, plan = _resolve(host, args)
    envelope.set_redactor(store.redact)
    assert intent.ssh_key is not None
    client_key = read_private_key(intent.ssh_key)
    progress = Progress(redact=store.redact)
    progress.info(
        f"session {plan.session_id}: {intent.image} on {plan.compute.name} "
        f"(tiers {' -> '.join(t.name for t in plan.attempts)}), registry {plan.registry.host}"
    )

    def keep(pipeline: Any) -> None:
        envelope.partial = pipeline.summary  # type: ignore[attr-defined]

    try:
        return run_build(plan, host, store, progress, client_key=client_key, on_pipeline=keep)
    finally:
        summary = getattr(envelope, "partial", None)
        if callable(summary):
            envelope.partial = summary()  # type: ignore[attr-defined]


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

    def build(
        ctx: typer.Context,
        workspace: Annotated[
            str | None,
            Opt(
                envvar="BUILDKIT_WORKSPACE",
                help="Workspace name (cache namespace).",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = None,
        context: Annotated[
            str | None, Opt(help="Build context directory.", rich_help_panel=BUILD_PANEL)
        ] = None,
        image: Annotated[
            str | None,
            Opt(help="Fully-qualified image reference to push.", rich_help_panel=BUILD_PANEL),
        ] = None,
        ssh_key: Annotated[
            str | None,
            Opt(
                envvar="BUILDKIT_SSH_KEY",
                help="SSH private key for the runner.",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = None,
        directives: Annotated[
            str | None,
            Opt(
                help="Nickel directives file; wins over flat fields except --ssh-key.",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = None,
        dockerfile: Annotated[
            str | None, Opt(help="Dockerfile path inside the context.", rich_help_panel=BUILD_PANEL)
        ] = None,
        target: Annotated[
            str | None, Opt(help="Build stage to stop at.", rich_help_panel=BUILD_PANEL)
        ] = None,
        tag: Annotated[
            list[str],
            Opt(
                "--tag",
                help="Extra tag (name or full reference); repeatable.",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = [],  # noqa: B006
        build_arg: Annotated[
            list[str],
            Opt("--build-arg", help="KEY=VALUE; repeatable.", rich_help_panel=BUILD_PANEL),
        ] = [],  # noqa: B006
        secret: Annotated[
            list[str],
            Opt(
                "--secret",
                help="ID=REF build secret, e.g. npm=env:NPM_TOKEN; repeatable.",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = [],  # noqa: B006
        cache_from: Annotated[
            list[str],
            Opt(
                "--cache-from",
                help="Extra cache import ref; repeatable.",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = [],  # noqa: B006
        cache_to: Annotated[
            list[str],
            Opt(
                "--cache-to",
                help="Extra cache export ref; repeatable.",
                rich_help_panel=BUILD_PANEL,
            ),
        ] = [],  # noqa: B006
        mode: Annotated[
            str | None,
            Opt(help="Cache mode: ci (default) or session.", rich_help_panel=BUILD_PANEL),
        ] = None,
        actor: Annotated[
            str | None,
            Opt(help="Session actor id (with --mode session).", rich_help_panel=BUILD_PANEL),
        ] = None,
        language: Annotated[
            str | None,
            Opt(help="rust, go, java, ... (sizing defaults).", rich_help_panel=BUILD_PANEL),
        ] = None,
        platforms: Annotated[
            str | None,
            Opt(help="Comma list, e.g. linux/amd64,linux/arm64.", rich_help_panel=BUILD_PANEL),
        ] = None,
        provider: Annotated[
            str | None,
            Opt(
                envvar="LIAN_COMPUTE_PROVIDER",
                help="Compute provider plugin (default docker-local).",
                rich_help_panel=PROVIDER_PANEL,
            ),
        ] = None,
        compute_opt: Annotated[
            list[str],
            Opt(
                "--compute-opt",
                help="KEY=VALUE compute setting; repeatable.",
                rich_help_panel=PROVIDER_PANEL,
            ),
        ] = [],  # noqa: B006
        registry: Annotated[
            str | None,
            Opt(
                envvar="LIAN_REGISTRY_PROVIDER",
                help="Registry plugin (default zot).",
                rich_help_panel=PROVIDER_PANEL,
            ),
        ] = None,
        registry_opt: Annotated[
            list[str],
            Opt(
                "--registry-opt",
                help="KEY=VALUE registry setting; repeatable.",
                rich_help_panel=PROVIDER_PANEL,
            ),
        ] = [],  # noqa: B006
        builder: Annotated[
            str | None,
            Opt(
                help="auto (default), buildkit, buildah, or a plugin's.",
                rich_help_panel=PROVIDER_PANEL,
            ),
        ] = None,
        runner_image: Annotated[
            str | None,
            Opt(
                envvar="BUILDKIT_RUNNER_IMAGE",
                help="Runner image / template.",
                rich_help_panel=PROVIDER_PANEL,
            ),
        ] = None,
        tier: Annotated[
            str | None,
            Opt(
                help="Start at this tier of the provider's ladder.", rich_help_panel=PROVIDER_PANEL
            ),
        ] = None,
        nats_url: Annotated[
            str | None,
            Opt(
                envvar="NATS_URL",
                help="Publish lifecycle events here.",
                rich_help_panel=EVENTS_PANEL,
            ),
        ] = None,
        nats_nkey_seed: Annotated[
            str | None,
            Opt(
                envvar="NATS_NKEY_SEED",
                help="NATS nkey seed.",
                rich_help_panel=EVENTS_PANEL,
                show_default=False,
            ),
        ] = None,
        nats_subject_prefix: Annotated[
            str | None,
            Opt(
                envvar="NATS_SUBJECT_PREFIX",
                help="Subject prefix (default lian).",
                rich_help_panel=EVENTS_PANEL,
            ),
        ] = None,
    ) -> None:
        """Run a build on an ephemeral runner and push the image."""
        _build_like(
            ctx,
            workspace=workspace, context=context, image=image, ssh_key=ssh_key,
            directives=directives, dockerfile=dockerfile, target=target, tags=tag,
            build_args=build_arg, secrets=secret, cache_from=cache_from, cache_to=cache_to,
            mode=mode, actor=actor, language=language, platforms=platforms,
            provider=provider, compute_opts=compute_opt, registry=registry,
            registry_opts=registry_opt, builder=builder, runner_image=runner_image, tier=tier,
            nats_url=nats_url, nats_nkey_seed=nats_nkey_seed,
            nats_subject_prefix=nats_subject_prefix,
        )  # fmt: skip

    app.command("build")(build)
    app.command(
        "plan",
        help="Resolve everything `build` would do (providers, size, tiers, cache refs, builder "
        "commands) and print it, without network access.",
    )(build)

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

        def body(envelope: Envelope) -> dict[str, Any]:
            if sys.stdin is None or sys.stdin.isatty():
                raise InvalidInput(
                    "pipe a SecretDeliveryContext JSON object into stdin", field="context"
                )
            context = parse_context(sys.stdin.read())
            store = SecretStore(host.secret_resolvers())
            if nats_nkey_seed:
                store.remember(nats_nkey_seed)
            _Redact.redact = store.redact
            envelope.set_redactor(store.redact)
            settings = api.EventSettings(
                nats_url=nats_url,
                subject_prefix=nats_subject_prefix or "lian",
                nkey_seed=nats_nkey_seed,
            )
            if not nats_url:
                log.warning("no --nats-url/NATS_URL: the completion event is not published")
            bus = EventBus(
                host.event_sinks(settings),
                workspace=context["workspace"],
                session_id=new_session_id(),
                redact=store.redact,
            )
            try:
                result = probe(context, host, store)
                bus.emit(
                    "integrate.completed", {"ready": True, "request_id": context.get("request_id")}
                )
                return result
            except LianError as exc:
                bus.emit(
                    "integrate.completed",
                    {"ready": False, "code": exc.code, "request_id": context.get("request_id")},
                )
                envelope.partial = exc.details  # type: ignore[attr-defined]
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
        report: dict[str, Any] = {"plugins": host.report(), "conflicts": host.conflicts()}
        if as_json:
            run_enveloped("plugins", lambda _env: report)
            return
        for item in report["plugins"]:
            provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in item["provides"].items()) or "-"
            status = item["status"] + (f" ({item['error']})" if item["error"] else "")
            columns = f"{item['name']:<18} {item['distribution']:<26} {item['version']:<8}"
            typer.echo(f"{columns} {provides}  [{status}]")
        for key, owners in report["conflicts"].items():
            typer.echo(f"CONFLICT {key}: registered by {', '.join(owners)}")

    @app.command("reap")
    def reap(
        provider: Annotated[
            str, Opt(envvar="LIAN_COMPUTE_PROVIDER", help="Compute provider to sweep.")
        ] = "docker-local",
        compute_opt: Annotated[
            list[str], Opt("--compute-opt", help="KEY=VALUE compute setting; repeatable.")
        ] = [],  # noqa: B006
        workspace: Annotated[str | None, Opt(help="Only runners of this workspace.")] = None,
        all_runners: Annotated[
            bool, Opt("--all", help="Also runners not yet expired (may kill running builds).")
        ] = False,
    ) -> None:
        """Destroy runners that escaped cleanup, found by their lian labels."""
        from lian_build import validate
        from lian_build.intent import key_values, opt_value
        from lian_build.reap import reap_expired
        from lian_build.secrets import SecretStore

        def body(_env: Envelope) -> dict[str, Any]:
            if workspace is not None:  # a label value: the same rule as for builds
                validate.path_component(workspace, field="workspace")
            store = SecretStore(host.secret_resolvers())
            settings = {
                k: opt_value(v)
                for k, v in key_values(compute_opt, "compute-opt", "compute").items()
            }
            compute = host.compute_provider(provider, settings, store)
            report = reap_expired(
                compute, include_unexpired=all_runners, workspace=workspace, log=_stderr
            )
            return {
                "provider": provider,
                "found": report.found,
                "destroyed": list(report.destroyed),
                "kept": list(report.kept),
                "failed": list(report.failed),
            }

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
