"""The one JSON envelope each invocation prints on stdout.

Shape (schemas/build_result.ncl): ``{"lian": "1", "command": ..., "status": "ok" | "error"
| "cancelled", "result": {...}}`` or ``..., "error": {"code", "message", "field"?,
"details"?}}``. Logs and progress never go to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from lian_build.errors import Cancelled, LianError

ENVELOPE_VERSION = "1"


class Envelope:
    """Prints at most one envelope; a second call is a bug and raises."""

    def __init__(
        self, command: str, *, out: TextIO | None = None, redact: Callable[[str], str] | None = None
    ) -> None:
        self.command = command
        self._out = out
        self._redact = redact or (lambda s: s)
        self.printed = False

    def set_redactor(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def _write(self, body: Mapping[str, Any]) -> None:
        if self.printed:
            raise RuntimeError("an envelope was already printed for this invocation")
        self.printed = True
        text = self._redact(json.dumps(body, sort_keys=False, default=str))
        out = self._out or sys.stdout
        out.write(text + "\n")
        out.flush()

    def ok(self, result: Mapping[str, Any]) -> None:
        self._write(
            {"lian": ENVELOPE_VERSION, "command": self.command, "status": "ok", "result": result}
        )

    def error(self, error: LianError, result: Mapping[str, Any] | None = None) -> None:
        status = "cancelled" if isinstance(error, Cancelled) else "error"
        body: dict[str, Any] = {
            "lian": ENVELOPE_VERSION,
            "command": self.command,
            "status": status,
            "error": error.to_dict(),
        }
        if result:
            body["result"] = result
        self._write(body)
