"""Build records the orchestrator could not take yet, kept locally and sent later.

One JSON line per record (``{"url": ..., "metrics": {...}}``) in
``$LIAN_STATE_DIR/orchestrator-spool.jsonl``, under an exclusive ``flock`` so concurrent
``lian`` processes neither lose nor double-send lines. Metrics hold no secrets.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lian_build import api
from lian_orchestrator import protocol

log = logging.getLogger("lian.compute.orchestrator")

SPOOL_FILE = "orchestrator-spool.jsonl"


def state_dir() -> Path:
    """The same state directory the core uses (``LIAN_STATE_DIR``, XDG, ~/.local/state)."""
    explicit = os.environ.get("LIAN_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "lian"
    return Path.home() / ".local" / "state" / "lian"


class Spool:
    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url

    @classmethod
    def default(cls, url: str) -> Spool:
        return cls(state_dir() / SPOOL_FILE, url)

    @contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield handle  # closing releases the lock

    def add(self, metrics: api.BuildMetrics) -> None:
        line = json.dumps({"url": self.url, "metrics": protocol.metrics_to_json(metrics)})
        try:
            with self._locked() as handle:
                handle.seek(0, os.SEEK_END)
                handle.write(line + "\n")
        except OSError as exc:
            log.warning("orchestrator: could not spool a build record in %s: %s", self.path, exc)

    def pending(self) -> int:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if line.strip())

    def drain(self, send: Callable[[api.BuildMetrics], None]) -> int:
        """Send this URL's spooled records in order; stop at the first failure (it raises)
        and keep what was not sent. Returns how many were sent."""
        if not self.path.exists():
            return 0
        sent = 0
        with self._locked() as handle:
            lines = [line for line in handle.read().splitlines() if line.strip()]
            if not lines:
                return 0
            keep: list[str] = []
            try:
                for index, line in enumerate(lines):
                    try:
                        item = json.loads(line)
                        mine = item.get("url") == self.url
                        metrics = protocol.metrics_from_json(item["metrics"]) if mine else None
                    except (ValueError, KeyError, AttributeError, TypeError):
                        log.warning("orchestrator: dropping a corrupt spool line in %s", self.path)
                        continue
                    if metrics is None:
                        keep.append(line)  # another orchestrator's record
                        continue
                    try:
                        send(metrics)
                    except BaseException:
                        keep.extend(lines[index:])
                        raise
                    sent += 1
            finally:
                handle.seek(0)
                handle.truncate()
                handle.write("".join(line + "\n" for line in keep))
        return sent
