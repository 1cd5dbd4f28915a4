"""Canaries in flight, on disk: a late or lost canary survives a restart or a SIGKILL.

Lives in the spool's SQLite file (its own `ledger_*` tables, its own connection). Each
canary is entered before it is sent; its `mail_roundtrip` point (tags and fields as JSON)
is kept so that the point can be written again, same series and timestamp, when its fate
is known. The watchers' UID cursors are kept here too, so mail delivered while the agent
was down is still found after a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prober.measurement import Measurement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_canaries (
    id TEXT PRIMARY KEY,            -- the canary's random id
    route TEXT NOT NULL,
    recipient TEXT NOT NULL,        -- mailbox name in the config
    created_ns INTEGER NOT NULL,    -- entered (before the send)
    time_ns INTEGER,                -- the point's timestamp (accepted, or the attempt)
    outcome TEXT NOT NULL,          -- an OUTCOMES value, or 'abandoned' (never had a point)
    tags TEXT,                      -- JSON of the point's tags
    fields TEXT,                    -- JSON of the point's fields
    resolved_ns INTEGER
);
CREATE INDEX IF NOT EXISTS ledger_open ON ledger_canaries (outcome, time_ns);
CREATE TABLE IF NOT EXISTS ledger_cursors (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,
    PRIMARY KEY (mailbox, folder)
);
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

OPEN = ("pending", "send_uncertain")  # still waiting for an arrival


@dataclass(frozen=True)
class Entry:
    id: str
    route: str
    recipient: str
    created_ns: int
    time_ns: int | None
    outcome: str
    tags: dict[str, str]
    fields: dict[str, object]

    def point(self, **updates: object) -> Measurement:
        fields = dict(self.fields)
        fields.update(updates)
        return Measurement("mail_roundtrip", self.tags, fields,  # type: ignore[arg-type]
                           self.time_ns or self.created_ns)


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: tuple) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- sequence numbers survive restarts, so (vantage, route, seq) never repeats ----------
    def next_seq(self) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT value FROM ledger_meta WHERE key='seq'").fetchone()
            seq = (row[0] if row else 0) + 1
            self._db.execute("INSERT OR REPLACE INTO ledger_meta VALUES ('seq', ?)", (seq,))
            self._db.execute("COMMIT")
        return seq

    # -- canaries ---------------------------------------------------------------------------
    def enter(self, canary_id: str, route: str, recipient: str) -> None:
        """Before the send: a crash during the SMTP session leaves a trace to resolve."""
        self._write("INSERT INTO ledger_canaries (id, route, recipient, created_ns, outcome) "
                    "VALUES (?, ?, ?, ?, 'send_uncertain')",
                    (canary_id, route, recipient, time.time_ns()))

    def record(self, point: Measurement) -> None:
        """The point as written now (after the send, or when the fate is known)."""
        outcome = str(point.fields["outcome"])
        resolved = None if outcome in OPEN else time.time_ns()
        self._write("UPDATE ledger_canaries SET time_ns=?, outcome=?, tags=?, fields=?, "
                    "resolved_ns=? WHERE id=?",
                    (point.time_ns, outcome, json.dumps(dict(point.tags)),
                     json.dumps(dict(point.fields)), resolved, str(point.fields["canary"])))

    def abandon(self, canary_id: str) -> None:
        """Close an entry that never got a point (see Agent._recover_unsent)."""
        self._write("UPDATE ledger_canaries SET outcome='abandoned', resolved_ns=? WHERE id=?",
                    (time.time_ns(), canary_id))

    def get(self, canary_id: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, route, recipient, created_ns, time_ns, outcome, tags, fields "
                "FROM ledger_canaries WHERE id=?", (canary_id,)).fetchone()
        return _entry(row) if row else None

    def open_older_than(self, cutoff_ns: int) -> list[Entry]:
        """Canaries still waiting whose point is older than `cutoff_ns`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, route, recipient, created_ns, time_ns, outcome, tags, fields "
                "FROM ledger_canaries WHERE outcome IN ('pending', 'send_uncertain') "
                "AND COALESCE(time_ns, created_ns) < ?", (cutoff_ns,)).fetchall()
        return [_entry(r) for r in rows]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM ledger_canaries "
                "WHERE outcome IN ('pending', 'send_uncertain')").fetchone()[0])

    def forget_resolved_before(self, cutoff_ns: int) -> int:
        """Resolved canaries are kept a while so a late arrival can still correct `lost`."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute("DELETE FROM ledger_canaries WHERE resolved_ns IS NOT NULL "
                                 "AND resolved_ns < ?", (cutoff_ns,)).rowcount
            self._db.execute("COMMIT")
        return n

    # -- the watchers' CursorStore -------------------------------------------------------------
    def get_cursor(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        with self._lock:
            row = self._db.execute("SELECT uidvalidity, last_uid FROM ledger_cursors "
                                   "WHERE mailbox=? AND folder=?", (mailbox, folder)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def set_cursor(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        if self.get_cursor(mailbox, folder) == (uidvalidity, last_uid):
            return  # most scans find nothing new: no fsync for them
        self._write("INSERT OR REPLACE INTO ledger_cursors VALUES (?, ?, ?, ?)",
                    (mailbox, folder, uidvalidity, last_uid))


def _entry(row: tuple) -> Entry:
    return Entry(row[0], row[1], row[2], row[3], row[4], row[5],
                 json.loads(row[6]) if row[6] else {}, json.loads(row[7]) if row[7] else {})
