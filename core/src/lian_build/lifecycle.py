"""Signals, the time budget and cleanup that cannot be interrupted.

SIGINT and SIGTERM raise ``Cancelled`` in the main thread wherever it is; SIGALRM (armed
with the sizing time budget) raises ``TimeBudgetExceeded``. Both unwind through the
pipeline's ``finally`` blocks, which destroy the runner. While cleanup runs inside
``shielded()``, a further signal is remembered instead of raised, so a second Ctrl-C
cannot leak the machine being destroyed.

Only the first SIGINT/SIGTERM cancels. Later ones are logged and ignored, until the
process exits: a second Ctrl-C a moment after the first (while the envelope is being
printed, or after the handlers were uninstalled) must not kill the process by SIGINT
instead of letting it exit 130.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from lian_build.errors import Cancelled, TimeBudgetExceeded

log = logging.getLogger("lian.lifecycle")


class Lifecycle:
    def __init__(self) -> None:
        self._shield_depth = 0
        self._pending: BaseException | None = None
        self._previous: dict[int, object] = {}
        self.budget_s: float | None = None
        self.cancelled_by: str | None = None
        self.finished = False
        self._notify: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ install

    def install(self, *, time_budget_s: float | None = None) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals only reach the main thread; tests may run elsewhere
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            self._previous[sig] = signal.signal(sig, self._handle)
        if time_budget_s is not None:
            self.arm_budget(time_budget_s)

    def arm_budget(self, seconds: float) -> None:
        """(Re)start the budget clock: each attempt (tier) gets the whole budget."""
        self.budget_s = seconds
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, seconds)

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._previous.items():
            if self.cancelled_by is not None and sig != signal.SIGALRM:
                # Cancelling already: a further signal must not end the process before
                # it exits 130 with its envelope printed.
                handler = signal.SIG_IGN
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> Lifecycle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # ------------------------------------------------------------------ handling

    def _error_for(self, signum: int) -> BaseException:
        if signum == signal.SIGALRM:
            minutes = (self.budget_s or 0) / 60
            return TimeBudgetExceeded(
                f"the build ran past its time budget of {minutes:g} min; "
                "the runner was stopped and destroyed",
                details={"time_budget_min": minutes},
            )
        name = signal.Signals(signum).name
        self.cancelled_by = name
        return Cancelled(f"cancelled by {name}; the runner was destroyed", details={"signal": name})

    def finish(self) -> None:
        """The build is over (result in hand): a late signal no longer cancels it."""
        self.finished = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.finished:
            log.warning("%s after the build ended: ignored", signal.Signals(signum).name)
            return
        if signum != signal.SIGALRM and self.cancelled_by is not None:
            log.warning("%s: already cancelling", signal.Signals(signum).name)
            return
        error = self._error_for(signum)
        if self._shield_depth:
            if self._notify:
                for notify in self._notify:
                    notify()  # only sets a flag the SSH loop polls
            else:
                log.warning(
                    "%s during cleanup: finishing cleanup first", signal.Signals(signum).name
                )
            self._pending = self._pending or error
            return
        raise error

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Run cleanup to the end even if signals arrive; re-raise the first afterwards."""
        self._shield_depth += 1
        try:
            yield
        finally:
            self._shield_depth -= 1
        if not self._shield_depth and self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending

    @contextlib.contextmanager
    def deferred(self, notify: Callable[[], None]) -> Iterator[None]:
        """Inside, a signal is not raised wherever the main thread happens to be: an SSH
        library interrupted while holding a lock (or inside its own ``except
        Exception``) can hang or misreport the connection. ``notify`` (which must only
        set a flag) tells the code that polls it to stop at a safe point; the signal's
        error is raised when the block ends."""
        self._notify.append(notify)
        try:
            with self.shielded():
                yield
        finally:
            self._notify.remove(notify)
