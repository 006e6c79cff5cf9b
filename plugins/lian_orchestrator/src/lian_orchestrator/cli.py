"""``lian orchestrator serve``: run the reference orchestrator server.

Light at import time (typer only); starlette and uvicorn are imported by the command.
Start-up problems print one error envelope on stdout and exit with the documented code;
a clean stop (SIGINT/SIGTERM) prints an ok envelope.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

from lian_build import api
from lian_build.errors import InvalidInput, LianError, SecretError
from lian_orchestrator import protocol

log = logging.getLogger("lian.orchestrator")

ENVELOPE_VERSION = "1"
COMMAND = "orchestrator serve"
_CALLER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def orchestrator_app() -> typer.Typer:
    app = typer.Typer(
        name="orchestrator",
        help="The orchestrator: a central service that provisions runners for many CI machines.",
        no_args_is_help=True,
    )
    app.command("serve")(serve)
    return app


def _emit(status: str, body: dict[str, Any]) -> None:
    envelope = {"lian": ENVELOPE_VERSION, "command": COMMAND, "status": status, **body}
    sys.stdout.write(json.dumps(envelope) + "\n")
    sys.stdout.flush()


def _fail(error: LianError, redact: Callable[[str], str]) -> NoReturn:
    message = redact(error.message)
    sys.stderr.write(f"lian {COMMAND}: error [{error.code}]: {message}\n")
    _emit("error", {"error": {**error.to_dict(), "message": message}})
    raise typer.Exit(error.exit_code)


class Secrets:
    """References through the installed resolvers; every value is remembered to scrub."""

    def __init__(self, resolvers: dict[str, api.SecretResolver]) -> None:
        self._resolvers = resolvers
        self._values: set[str] = set()

    def __call__(self, reference: str) -> str:
        scheme, sep, rest = reference.partition(":")
        if not sep or not rest:
            raise SecretError(
                f"secret reference {reference!r} is not of the form scheme:rest",
                code="SECRET_REF_INVALID",
            )
        resolver = self._resolvers.get(scheme)
        if resolver is None:
            raise SecretError(
                f"no secret resolver for scheme {scheme!r} "
                f"(installed: {', '.join(sorted(self._resolvers)) or 'none'})",
                code="SECRET_SCHEME_UNKNOWN",
            )
        value = resolver.resolve(rest)
        if len(value) >= 4:
            self._values.add(value)
        return value

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text


class _Scrub(logging.Filter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        return True


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--listen must be HOST:PORT, got {value!r}", field="listen")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{flag} expects KEY=VALUE, got {item!r}", field=flag.lstrip("-"))
        out[key] = value
    return out


def serve(
    ctx: typer.Context,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on.", envvar="LIAN_ORCHESTRATOR_LISTEN")
    ] = "127.0.0.1:9011",
    provider: Annotated[
        str, typer.Option(help="Compute provider that makes the runners.")
    ] = "docker-local",
    compute_opt: Annotated[
        list[str], typer.Option("--compute-opt", help="KEY=VALUE provider setting; repeatable.")
    ] = [],  # noqa: B006
    token: Annotated[
        list[str],
        typer.Option(
            "--token",
            help="NAME=REF: a caller and the reference of its bearer token; repeatable. "
            "Default: default=env:LIAN_ORCHESTRATOR_TOKEN when that variable is set.",
        ),
    ] = [],  # noqa: B006
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept callers without a token (loopback only).")
    ] = False,
    history_url: Annotated[
        str | None,
        typer.Option(
            help="History store (default: LIAN_HISTORY_URL, else the local store).",
            envvar="LIAN_HISTORY_URL",
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(help="This server's name, put on its runners (lian.orchestrator).")
    ] = "orchestrator",
    reap_interval: Annotated[
        float, typer.Option(help="Seconds between sweeps for expired runners (0: never).")
    ] = 60.0,
    max_runner_minutes: Annotated[
        int, typer.Option(help="No runner lives longer than this, whatever a client asks.")
    ] = 1440,
) -> None:
    """Serve the orchestrator protocol (docs/orchestrator.md) over one compute provider."""
    host_plugins = ctx.obj
    secrets = Secrets(host_plugins.secret_resolvers())
    try:
        config, address = _configure(
            host_plugins,
            secrets,
            listen=listen,
            provider=provider,
            compute_opt=compute_opt,
            token=token,
            no_auth=no_auth,
            history_url=history_url,
            name=name,
            reap_interval=reap_interval,
            max_runner_minutes=max_runner_minutes,
        )
    except LianError as exc:
        _fail(exc, secrets.redact)
    _run(config, address, secrets, provider)


def _configure(host_plugins: Any, secrets: Secrets, **opts: Any) -> tuple[Any, tuple[str, int]]:
    from lian_orchestrator.history import open_history
    from lian_orchestrator.server import ServerConfig

    address = parse_listen(opts["listen"])
    if not _CALLER.match(opts["name"]):
        raise InvalidInput(
            f"--name must be a label value ([a-z0-9][a-z0-9_.-]*, 63 max), got {opts['name']!r}",
            field="name",
        )
    refs = _key_values(opts["token"], "--token")
    if not refs and os.environ.get(protocol.TOKEN_ENV):
        refs = {"default": f"env:{protocol.TOKEN_ENV}"}
    for caller in refs:
        if not _CALLER.match(caller):
            raise InvalidInput(
                f"caller name {caller!r} must be a label value ([a-z0-9][a-z0-9_.-]*)",
                field="token",
            )
    if opts["no_auth"] and refs:
        raise InvalidInput("--no-auth and --token exclude each other", field="token")
    if opts["no_auth"] and not _loopback(address[0]):
        raise InvalidInput(
            f"--no-auth is refused on {address[0]}: only a loopback address may skip tokens",
            field="no_auth",
        )
    if not refs and not opts["no_auth"]:
        raise InvalidInput(
            f"no caller token: pass --token NAME=REF (e.g. ci=env:CI_TOKEN) or set "
            f"{protocol.TOKEN_ENV}; --no-auth is allowed on loopback only",
            field="token",
        )
    tokens = {caller: secrets(ref) for caller, ref in refs.items()}
    if any(len(value) < 16 for value in tokens.values()):
        raise InvalidInput("every caller token must be at least 16 characters", field="token")
    from lian_build.intent import provider_settings

    provider_name = opts["provider"]
    # Typed by the provider's Settings fields and checked by the strict converter.
    settings = provider_settings(
        host_plugins.settings_class("compute", provider_name),
        opts["compute_opt"],
        "compute-opt",
        "compute",
    )
    # Settings are checked (and the ladder computed) now, not at the first build.
    host_plugins.compute_provider(provider_name, settings, secrets).tiers()
    if opts["reap_interval"] < 0 or opts["max_runner_minutes"] < 1:
        raise InvalidInput(
            "--reap-interval must be >= 0 and --max-runner-minutes >= 1", field="reap_interval"
        )
    config = ServerConfig(
        backend=lambda: host_plugins.compute_provider(provider_name, settings, secrets),
        history=open_history(opts["history_url"]),
        tokens=tokens,
        name=opts["name"],
        reap_interval_s=float(opts["reap_interval"]),
        max_lifetime_s=float(opts["max_runner_minutes"]) * 60,
        redact=secrets.redact,
    )
    return config, address


def _run(config: Any, address: tuple[str, int], secrets: Secrets, provider: str) -> None:
    import uvicorn

    from lian_orchestrator.server import make_app

    scrub = _Scrub(secrets.redact)
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrub)
    lian_logger = logging.getLogger("lian")
    if not os.environ.get("LIAN_LOG_LEVEL") and lian_logger.level > logging.INFO:
        lian_logger.setLevel(logging.INFO)  # a server reports what it does
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"lian {COMMAND}: http://{shown}:{port} in front of {provider}, history "
        f"{config.history.location}, {len(config.tokens) or 'no'} caller token(s)\n"
    )
    sys.stderr.flush()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises a captured SIGTERM/SIGINT after shutting down, which
            # would kill the process before the final envelope: a signal is a clean stop.
            getattr(self, "_captured_signals", []).clear()

    server = Server(
        uvicorn.Config(
            make_app(config),
            host=host,
            port=port,
            log_config=None,  # uvicorn's records go through lian's (scrubbing) handler
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    )
    with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
        server.run()
    if not server.started:
        _fail(
            InvalidInput(f"could not listen on {host}:{port} (in use?)", field="listen"),
            secrets.redact,
        )
    _emit("ok", {"result": {"listen": f"{host}:{port}", "provider": provider, "stopped": True}})
