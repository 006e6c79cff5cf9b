"""The one JSON envelope each invocation prints on stdout: the only place one is made.

Shape (schemas/build_result.ncl, ``BuildResult``): ``{"lian": "1", "command": ...,
"status": "ok" | "error" | "cancelled", "result": {...}}`` or ``..., "error": {"code",
"message", "field"?, "details"?}}``. Every command (plugins' included, through
``lian_build.api.run_command``) goes through ``run_enveloped``; the typed outcome
(``lian_build.model``) becomes JSON in ``render``. Logs and progress never go to stdout.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from lian_build.errors import EXIT_INTERNAL, Cancelled, LianError

if TYPE_CHECKING:
    from lian_build import model

ENVELOPE_VERSION = "1"


class Redactor:
    """The process-wide secret scrubber: logs and the envelope both pass through it."""

    redact: Callable[[str], str] = staticmethod(lambda s: s)

    @classmethod
    def set(cls, redact: Callable[[str], str]) -> None:
        cls.redact = staticmethod(redact)


def result_of(
    command: str, *, outcome: Any = None, error: LianError | None = None, partial: Any = None
) -> model.BuildResult:
    """The typed envelope for an outcome, or for an error with what was reached."""
    from lian_build import model  # cattrs and the model classes: not on the --help path

    if error is None:
        return model.BuildResult(command=command, status=model.BuildStatus.OK, result=outcome)
    status = (
        model.BuildStatus.CANCELLED if isinstance(error, Cancelled) else model.BuildStatus.ERROR
    )
    return model.BuildResult(
        command=command,
        status=status,
        result=partial or None,
        error=model.BuildError(
            code=error.code,
            message=error.message,
            field=error.field,
            details=dict(error.details) or None,
        ),
    )


def render(result: model.BuildResult) -> dict[str, Any]:
    """The JSON shape of an envelope (what the contract checks)."""
    from lian_build import model

    return model.unstructure(result)


class Envelope:
    """Prints at most one envelope; a second call is a bug and raises."""

    def __init__(
        self, command: str, *, out: TextIO | None = None, redact: Callable[[str], str] | None = None
    ) -> None:
        self.command = command
        self._out = out
        self._redact = redact
        self.printed = False
        # What a failing command had reached (a typed progress record or a mapping),
        # attached to its error envelope. A callable is called at print time.
        self.partial: Any = None

    def set_redactor(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def _write(self, result: model.BuildResult) -> None:
        if self.printed:
            raise RuntimeError("an envelope was already printed for this invocation")
        self.printed = True
        redact = self._redact or Redactor.redact
        text = redact(json.dumps(render(result), default=str))
        out = self._out or sys.stdout
        out.write(text + "\n")
        out.flush()

    def ok(self, outcome: Any) -> None:
        self._write(result_of(self.command, outcome=outcome))

    def error(self, error: LianError, result: Any = None) -> None:
        partial = result if result is not None else self.partial
        if callable(partial):
            try:
                partial = partial()
            except Exception:  # a partial result must never hide the error itself
                partial = None
        self._write(result_of(self.command, error=error, partial=partial))


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_enveloped(command: str, body: Callable[[Envelope], Any]) -> None:
    """Run a command body; print exactly one envelope and exit with the documented code.

    ``body`` returns the typed outcome (or a mapping, for a plugin's own command). A
    ``LianError`` becomes an error envelope (exit code by error class), Ctrl-C a
    ``CANCELLED`` one, anything else ``INTERNAL`` with the traceback on stderr.
    """
    import typer

    envelope = Envelope(command)
    try:
        result = body(envelope)
    except LianError as exc:
        _stderr(f"lian {command}: error [{exc.code}]: {Redactor.redact(exc.message)}")
        envelope.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        import signal

        # A second Ctrl-C while the envelope is printed must not kill us by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cancelled = Cancelled("cancelled by SIGINT")
        _stderr(f"lian {command}: cancelled")
        envelope.error(cancelled)
        raise typer.Exit(cancelled.exit_code) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so, with the traceback on stderr
        _stderr(f"lian {command}: internal error: {type(exc).__name__}: {exc}")
        _stderr(Redactor.redact("".join(traceback.format_exception(exc))))
        envelope.error(LianError(f"internal error: {type(exc).__name__} (see stderr)"))
        raise typer.Exit(EXIT_INTERNAL) from None
    envelope.ok(result if result is not None else {})


def as_mapping(value: Any) -> Mapping[str, Any]:
    """A typed outcome as JSON data (for tests and callers that want a dict)."""
    from lian_build import model

    return model.unstructure(value) if not isinstance(value, Mapping) else value
