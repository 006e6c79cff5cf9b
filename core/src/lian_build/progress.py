"""What a person watching sees on stderr: each phase as it happens.

On a terminal, a live status line shows the phase, its elapsed time and the latest
output line, and finished phases stay printed above it. Elsewhere (CI, pipes), plain
timestamped lines. Everything passes through the redactor first.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO


class Progress:
    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        redact: Callable[[str], str] = lambda s: s,
        quiet: bool = False,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.redact = redact
        self.quiet = quiet
        self.phases: dict[str, float] = {}
        self._status: Any = None
        self._console: Any = None
        self._phase: str | None = None
        self._started = time.monotonic()

    # ------------------------------------------------------------------ output

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        text = self.redact(text)
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            elapsed = time.monotonic() - self._started
            self.stream.write(f"[lian {elapsed:6.1f}s] {text}\n")
            self.stream.flush()

    def info(self, text: str) -> None:
        self._print(text)

    def line(self, text: str) -> None:
        """One line of remote output (build log)."""
        text = text.rstrip("\n")
        if not text:
            return
        if self._status is not None:
            # One terminal row: a wrapped status line would scroll the display.
            room = max(20, self._console.width - len(self._phase or "") - 4)
            shown = " ".join(self.redact(text).split())[:room]
            self._status.update(f"[bold]{self._phase}[/bold] {_escape(shown)}")
            self._print("  " + text)
        else:
            self._print("  | " + text)

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        """Time a phase; accumulate when a phase repeats (one per attempt)."""
        self._phase = name
        start = time.monotonic()
        self._print(f"{name}{': ' + detail if detail else ''} ...")
        if self.live and not self.quiet and self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        if self._console is not None:
            self._status = self._console.status(f"[bold]{name}[/bold] {_escape(detail)}")
            self._status.start()
        ok = False
        try:
            yield
            ok = True
        finally:
            took = time.monotonic() - start
            self.phases[name] = round(self.phases.get(name, 0.0) + took, 3)
            if self._status is not None:
                self._status.stop()
                self._status = None
            self._print(f"{name} {'done' if ok else 'stopped'} in {took:.1f}s")
            self._phase = None


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
