"""Canaries in flight, on disk: a late or lost canary survives a restart or a SIGKILL.

Lives in the spool's SQLite file (its own `ledger_*` tables, its own connection for reads
and its own writes). Each canary is entered before it is sent, with its sequence number and
its point's tags; its `mail_roundtrip` point (tags and fields as JSON) is kept so that the
point can be written again, same series and timestamp, when its fate is known. With a
spool, `record()` changes the ledger and appends the point to the spool in ONE SQLite
transaction: after any crash the ledger's outcome and what reaches InfluxDB agree. The
watchers' UID cursors are kept here too, so mail delivered while the agent was down is
still found after a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prober.agent.spool import is_disk_full, private_file
from prober.measurement import Measurement
from prober.schema import FIELD_CANARY, FIELD_OUTCOME, IN_FLIGHT, MAIL_ROUNDTRIP

if TYPE_CHECKING:
    from prober.agent.spool import Spool

CACHE_SIZE = -256  # KiB: as the spool's connections (spool.py says why)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_canaries (
    id TEXT PRIMARY KEY,            -- the canary's random id
    route TEXT NOT NULL,
    recipient TEXT NOT NULL,        -- mailbox name in the config
    created_ns INTEGER NOT NULL,    -- entered (before the send)
    time_ns INTEGER,                -- the point's timestamp (accepted, or the attempt)
    outcome TEXT NOT NULL,          -- a RoundtripOutcome value, or 'forgotten' (no point)
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
# Columns added after the first release: added to an older file when it is opened.
_ADDED_COLUMNS = (
    ("seq", "INTEGER"),                          # the canary's sequence number
    ("unspooled", "INTEGER NOT NULL DEFAULT 0"),  # 1: the spool refused its last point
)
_COLUMNS = "id, route, recipient, created_ns, time_ns, outcome, tags, fields, seq"

OPEN = tuple(str(o) for o in IN_FLIGHT)  # still waiting for an arrival
FORGOTTEN = "forgotten"  # closed without ever having a point (its route left the config)


class LedgerError(RuntimeError):
    """The ledger cannot be read or written; the message names the file and why.

    `disk_full`: the cause was a full disk, a state the spool reports once (not per write).
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.disk_full = is_disk_full(cause)


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
    seq: int | None = None

    def point(self, **updates: object) -> Measurement:
        fields = dict(self.fields)
        fields.update(updates)
        return Measurement(MAIL_ROUNDTRIP, self.tags, fields,  # type: ignore[arg-type]
                           self.time_ns or self.created_ns)


class Ledger:
    def __init__(self, path: str | Path, spool: Spool | None = None) -> None:
        self.path = Path(path)
        self.spool = spool
        self._lock = threading.Lock()
        self._handed_seq = 0
        self._unsaved_cursors: dict[tuple[str, str], tuple[int, int]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_file(self.path)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA cache_size={CACHE_SIZE}")  # see spool.py
            with self._lock:
                self._db.executescript(_SCHEMA)
                have = {r[1] for r in self._db.execute("PRAGMA table_info(ledger_canaries)")}
                for name, decl in _ADDED_COLUMNS:
                    if name not in have:
                        self._db.execute(f"ALTER TABLE ledger_canaries ADD COLUMN {name} {decl}")
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the canary ledger in {self.path}: {exc}",
                              exc) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _error(self, message: str, exc: BaseException) -> LedgerError:
        err = LedgerError(message, exc)
        if err.disk_full and self.spool is not None:
            self.spool.note_disk_full(str(exc))
        return err

    def _write(self, sql: str, params: tuple) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(sql, params)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(f"canary ledger {self.path}: cannot write: {exc}", exc) from None

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(f"canary ledger {self.path}: cannot read: {exc}", exc) from None

    # -- sequence numbers survive restarts, so (vantage, seq) never repeats -----------------
    def next_seq(self) -> int:
        """Take the next number now (committed): for a caller that keeps no entry."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT value FROM ledger_meta WHERE key='seq'").fetchone()
                seq = max(row[0] if row else 0, self._handed_seq) + 1
                self._db.execute("INSERT OR REPLACE INTO ledger_meta VALUES ('seq', ?)", (seq,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._error(f"canary ledger {self.path}: cannot count: {exc}", exc) from None
        self._handed_seq = seq
        return seq

    def reserve_seq(self) -> int:
        """The next number, kept only once `enter(seq=...)` commits: a crash in between
        leaves no gap (the next start hands the same number out again)."""
        rows = self._read("SELECT value FROM ledger_meta WHERE key='seq'")
        self._handed_seq = max(rows[0][0] if rows else 0, self._handed_seq) + 1
        return self._handed_seq

    # -- canaries ---------------------------------------------------------------------------
    def enter(self, canary_id: str, route: str, recipient: str, seq: int | None = None,
              tags: dict[str, str] | None = None) -> None:
        """Before the send: a crash during the SMTP session leaves a trace to resolve, with
        the tags and seq its point needs."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO ledger_canaries (id, route, recipient, created_ns, "
                        "outcome, tags, seq) VALUES (?, ?, ?, ?, 'send_uncertain', ?, ?)",
                        (canary_id, route, recipient, time.time_ns(),
                         json.dumps(tags) if tags else None, seq))
                    if seq is not None:
                        self._db.execute(
                            "INSERT INTO ledger_meta VALUES ('seq', ?) ON CONFLICT(key) DO "
                            "UPDATE SET value = max(value, excluded.value)", (seq,))
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(f"canary ledger {self.path}: cannot enter canary "
                                  f"{canary_id}: {exc}", exc) from None

    def _record_sql(self, point: Measurement, unspooled: int) -> tuple[str, tuple]:
        outcome = str(point.fields[FIELD_OUTCOME])
        resolved = None if outcome in OPEN else time.time_ns()
        return ("UPDATE ledger_canaries SET time_ns=?, outcome=?, tags=?, fields=?, "
                "resolved_ns=?, unspooled=? WHERE id=?",
                (point.time_ns, outcome, json.dumps(dict(point.tags)),
                 json.dumps(dict(point.fields)), resolved, unspooled,
                 str(point.fields[FIELD_CANARY])))

    def record(self, point: Measurement) -> None:
        """The point as written now (after the send, or when the fate is known).

        With a spool, the ledger change and the spooled point are one transaction. When
        the spool refuses the point (SpoolFull: disk floor, size cap), the ledger keeps
        the fate marked `unspooled` and SpoolFull is raised: `unspooled()` lists what to
        record again once there is room.
        """
        from prober.agent.spool import SpoolFull

        if self.spool is None:
            self._write(*self._record_sql(point, 0))
            return
        sql, params = self._record_sql(point, 0)
        try:
            self.spool.append([point], also=lambda conn: conn.execute(sql, params))
        except SpoolFull:
            self._write(*self._record_sql(point, 1))
            raise

    def unspooled(self, limit: int = 100) -> list[Entry]:
        """Entries whose last point the spool refused: to be recorded again."""
        return [_entry(r) for r in self._read(
            f"SELECT {_COLUMNS} FROM ledger_canaries WHERE unspooled = 1 "
            "ORDER BY created_ns LIMIT ?", (limit,))]

    def forget(self, canary_id: str) -> None:
        """Close an entry that never got a point and cannot get one (its route is gone)."""
        self._write(f"UPDATE ledger_canaries SET outcome='{FORGOTTEN}', resolved_ns=? "
                    "WHERE id=?", (time.time_ns(), canary_id))

    def get(self, canary_id: str) -> Entry | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM ledger_canaries WHERE id=?", (canary_id,))
        return _entry(rows[0]) if rows else None

    def open_older_than(self, cutoff_ns: int) -> list[Entry]:
        """Canaries still waiting whose point is older than `cutoff_ns`."""
        return [_entry(r) for r in self._read(
            f"SELECT {_COLUMNS} FROM ledger_canaries WHERE outcome IN (?, ?) "
            "AND COALESCE(time_ns, created_ns) < ?", (*OPEN, cutoff_ns))]

    def unsent(self) -> list[Entry]:
        """Entered but never recorded: the agent stopped during their SMTP session."""
        return [_entry(r) for r in self._read(
            f"SELECT {_COLUMNS} FROM ledger_canaries WHERE outcome IN (?, ?) "
            "AND fields IS NULL", OPEN)]

    def pending_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM ledger_canaries WHERE outcome IN (?, ?)",
                              OPEN)[0][0])

    def forget_resolved_before(self, cutoff_ns: int) -> int:
        """Resolved canaries are kept a while so a late arrival can still correct `lost`."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                n = self._db.execute("DELETE FROM ledger_canaries WHERE resolved_ns IS NOT "
                                     "NULL AND resolved_ns < ? AND unspooled = 0",
                                     (cutoff_ns,)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._error(f"canary ledger {self.path}: cannot prune: {exc}", exc) from None
        return n

    # -- the watchers' CursorStore -------------------------------------------------------------
    def get_cursor(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        unsaved = self._unsaved_cursors.get((mailbox, folder))
        if unsaved is not None:
            return unsaved
        rows = self._read("SELECT uidvalidity, last_uid FROM ledger_cursors "
                          "WHERE mailbox=? AND folder=?", (mailbox, folder))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def set_cursor(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        if self.get_cursor(mailbox, folder) == (uidvalidity, last_uid):
            return  # most scans find nothing new: no fsync for them
        try:
            self._write("INSERT OR REPLACE INTO ledger_cursors VALUES (?, ?, ?, ?)",
                        (mailbox, folder, uidvalidity, last_uid))
        except LedgerError as exc:
            if not exc.disk_full:
                raise
            # A full disk must not stop the watcher (it would reconnect and fail again, in
            # a loop): the cursor lives in memory until a later scan can save it.
            self._unsaved_cursors[(mailbox, folder)] = (uidvalidity, last_uid)
            return
        self._unsaved_cursors.pop((mailbox, folder), None)


def _entry(row: tuple) -> Entry:
    return Entry(row[0], row[1], row[2], row[3], row[4], row[5],
                 json.loads(row[6]) if row[6] else {}, json.loads(row[7]) if row[7] else {},
                 row[8])
