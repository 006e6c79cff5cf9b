"""The default history store: one SQLite file in the state directory.

WAL lets readers work while one process writes; the busy timeout makes concurrent
writers (several ``lian`` processes on one CI machine) wait their turn instead of
failing. Each append is one short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from lian_build.api import BuildMetrics
from lian_build.history import DEFAULT_WINDOW, HistoryP95, HistoryUnavailable, p95_of
from lian_build.history.records import metrics_from_json, metrics_to_json

log = logging.getLogger("lian.history")

BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    session_id TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (workspace, session_id, finished_at)
);
CREATE INDEX IF NOT EXISTS builds_by_workspace ON builds (workspace, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_IMPORTED = "jsonl_imported"


def record_key(metrics: BuildMetrics) -> str:
    """Identifies one attempt across stores (dedup of a spool sent twice)."""
    return f"{metrics.workspace}/{metrics.session_id}/{metrics.finished_at.isoformat()}"


class SqliteHistoryStore:
    name = "sqlite"

    def __init__(self, path: Path, legacy: Path | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._legacy = legacy
        self._ready = False

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryUnavailable(f"cannot open {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not self._ready:
                self._prepare(conn)
            yield conn
        except sqlite3.Error as exc:
            raise HistoryUnavailable(f"{self.path}: {exc}") from None
        finally:
            conn.close()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: set once per file
        conn.executescript(_SCHEMA)
        self.path.chmod(0o600)
        if self._legacy is not None and self._legacy.is_file():
            self._import_legacy(conn, self._legacy)
        self._ready = True

    def _import_legacy(self, conn: sqlite3.Connection, legacy: Path) -> None:
        """Import ``history.jsonl`` once; the meta row makes a second process skip it."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute("SELECT value FROM meta WHERE key = ?", (_IMPORTED,)).fetchone()
            if done is None:
                count = 0
                for number, raw in enumerate(legacy.read_bytes().splitlines(), start=1):
                    if not raw.strip():
                        continue
                    try:
                        metrics = metrics_from_json(json.loads(raw))
                    except (ValueError, UnicodeDecodeError) as exc:
                        log.warning(
                            "history: skipping corrupt line %d of %s: %s", number, legacy, exc
                        )
                        continue
                    self._insert(conn, metrics)
                    count += 1
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)", (_IMPORTED, str(legacy))
                )
                log.info("history: imported %d builds from %s", count, legacy)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # Kept, renamed, so a downgrade or a human can still read it.
        with contextlib.suppress(OSError):
            legacy.rename(legacy.with_name(legacy.name + ".imported"))

    @staticmethod
    def _insert(conn: sqlite3.Connection, metrics: BuildMetrics) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO builds (workspace, session_id, finished_at, record) "
            "VALUES (?, ?, ?, ?)",
            (
                metrics.workspace,
                metrics.session_id,
                metrics.finished_at.isoformat(),
                json.dumps(metrics_to_json(metrics), sort_keys=True),
            ),
        )

    def append(self, metrics: BuildMetrics) -> bool:
        with self._connect() as conn:
            self._insert(conn, metrics)  # autocommit: one implicit transaction
        return True

    def recent(self, workspace: str, n: int = DEFAULT_WINDOW) -> list[BuildMetrics]:
        if n <= 0:
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, record FROM builds WHERE workspace = ? ORDER BY id DESC LIMIT ?",
                (workspace, n),
            ).fetchall()
        found: list[BuildMetrics] = []
        for row_id, raw in reversed(rows):
            try:
                found.append(metrics_from_json(json.loads(raw)))
            except ValueError as exc:
                log.warning("history: skipping corrupt row %d of %s: %s", row_id, self.path, exc)
        return found

    def workspaces(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT workspace FROM builds ORDER BY workspace")
            return [str(r[0]) for r in rows.fetchall()]

    def p95(self, workspace: str, n: int = DEFAULT_WINDOW) -> HistoryP95:
        return p95_of(workspace, self.recent(workspace, n))

    def close(self) -> None:
        pass  # one connection per call: nothing held between calls
