"""The spool's file: its tables, and a reader that never writes.

The agent (`prober.agent.spool`) writes this SQLite database; the judge (`prober score
--source spool`) and `prober spool status | export` only read it. Both sides take the
table layout from here, so the reader sits below the agent and the judge alike and imports
nothing from either.

`SpoolReader` opens the file read-only: no DDL, no ballast file, no pruning, no write to the
database, its write-ahead log or its shared-memory index, so evidence handed to the judge
(a copy on read-only media, a file chmod a-w) stays byte for byte what it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # imported where used (copying a spool aside): shutil loads bz2 and lzma with their
    # libraries at import, ~0.6 MB that the daemon, which imports this module, would keep
    import tempfile

# -- the layout (shared with prober.agent.spool) ----------------------------------------------
POINTS = "spool_points"
DEAD = "spool_dead"
COUNTERS = "spool_counters"
COUNTER_REFUSED = "refused"
COUNTER_PRUNED = "pruned"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {POINTS} (
    -- AUTOINCREMENT: ids are never reused, so id order is append order even after deletes
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    measurement TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    enqueued_ns INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {POINTS}_measurement_time
    ON {POINTS} (measurement, time_ns);
CREATE TABLE IF NOT EXISTS {DEAD} (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    enqueued_ns INTEGER NOT NULL,
    failed_ns INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {COUNTERS} (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


def lines_query(measurement: str | None, start_ns: int | None,
                end_ns: int | None) -> tuple[str, list[object]]:
    """The SELECT of spooled lines in append order, for the agent's spool and the reader."""
    where: list[str] = []
    params: list[object] = []
    if measurement is not None:
        where.append("measurement = ?")
        params.append(measurement)
    if start_ns is not None:
        where.append("time_ns >= ?")
        params.append(start_ns)
    if end_ns is not None:
        where.append("time_ns < ?")
        params.append(end_ns)
    sql = f"SELECT line FROM {POINTS}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY id", params


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def shm_path(path: Path) -> Path:
    return path.with_name(path.name + "-shm")


def free_bytes(directory: Path) -> int:
    """Bytes free to an unprivileged writer on `directory`'s filesystem: shutil.disk_usage's
    `free`, without importing shutil (see above)."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def ballast_path(path: Path) -> Path:
    return path.with_name(path.name + ".ballast")


class SpoolReadError(RuntimeError):
    """The spool cannot be read; the message names the file and why."""


@dataclass(frozen=True)
class DeadRow:
    id: int
    measurement: str
    time_ns: int
    failed_ns: int
    status: int | None
    reason: str
    line: str


@dataclass(frozen=True)
class SpoolStats:
    path: str
    depth: int
    oldest_age_s: float | None
    oldest_time_ns: int | None
    newest_time_ns: int | None
    used_bytes: int
    file_bytes: int
    free_bytes: int
    dead: int
    refused_total: int
    pruned_total: int
    ballast_present: bool
    by_measurement: dict[str, int]


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{urllib.parse.quote(str(path))}?{query}"


class SpoolReader:
    """A read-only view of a spool database.

    How it opens depends on what lies beside the file, because a plain `mode=ro` open of a
    WAL database creates the `-wal` and `-shm` files when they are missing:
    - no write-ahead log with data in it: `immutable=1`, nothing is read but the file itself
      (everything committed is in it) and nothing is created or locked;
    - a log and its shared-memory index (a running agent, or a copy taken with both):
      `mode=ro&readonly_shm=1`, which reads the log without writing the index;
    - a log with data but no index (a copy of the two files only): the two are copied to a
      temporary directory and read there, as SQLite needs an index to read a log.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if not self.path.is_file():
            raise SpoolReadError(f"no spool database at {self.path}")
        try:
            self._conn = self._open()
            self._conn.execute("PRAGMA query_only = 1")
            names = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            self.close()
            raise SpoolReadError(f"cannot read the spool {self.path}: {exc}") from None
        # A database the agent has not initialised yet (or only the ledger's tables) is an
        # empty spool, not an error.
        self._has_points = POINTS in names
        self._has_dead = DEAD in names
        self._has_counters = COUNTERS in names

    def _open(self) -> sqlite3.Connection:
        path = self.path.resolve()
        wal, shm = wal_path(path), shm_path(path)
        wal_size = wal.stat().st_size if wal.exists() else 0
        if wal_size == 0:
            uri = _uri(path, mode="ro", immutable="1")
        elif shm.exists():
            uri = _uri(path, mode="ro", readonly_shm="1")
        else:
            import shutil
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="prober-spool-")
            copy = Path(self._tmp.name) / path.name
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, wal_path(copy))
            uri = _uri(copy, mode="ro")
        return sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None,
                               check_same_thread=False)

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The read-only connection, for readers that reduce in SQL (the judge)."""
        return self._conn

    @property
    def has_points(self) -> bool:
        return self._has_points

    def _query(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise SpoolReadError(f"cannot read the spool {self.path}: {exc}") from None

    def read_lines(self, measurement: str | None = None, start_ns: int | None = None,
                   end_ns: int | None = None) -> Iterator[str]:
        """Spooled line protocol in append order (a rewritten point's last version comes
        last, as InfluxDB keeps it). `start_ns` inclusive, `end_ns` exclusive."""
        if not self._has_points:
            return
        sql, params = lines_query(measurement, start_ns, end_ns)
        for (line,) in self._query(sql, params):
            yield line

    def dead_rows(self, limit: int | None = None) -> list[DeadRow]:
        if not self._has_dead:
            return []
        cur = self._query(f"SELECT id, measurement, time_ns, failed_ns, status, reason, line "
                          f"FROM {DEAD} ORDER BY id LIMIT ?", (-1 if limit is None else limit,))
        return [DeadRow(*r) for r in cur]

    def counters(self) -> dict[str, int]:
        if not self._has_counters:
            return {}
        return {name: int(value)
                for name, value in self._query(f"SELECT name, value FROM {COUNTERS}")}

    def stats(self) -> SpoolStats:
        depth, oldest, newest, first_enqueued = 0, None, None, None
        by_m: dict[str, int] = {}
        if self._has_points:
            depth, oldest, newest = self._query(
                f"SELECT count(*), min(time_ns), max(time_ns) FROM {POINTS}").fetchone()
            row = self._query(f"SELECT enqueued_ns FROM {POINTS} ORDER BY id LIMIT 1").fetchone()
            first_enqueued = row[0] if row else None
            by_m = dict(self._query(f"SELECT measurement, count(*) FROM {POINTS} "
                                    "GROUP BY measurement ORDER BY measurement").fetchall())
        dead = self._query(f"SELECT count(*) FROM {DEAD}").fetchone()[0] if self._has_dead else 0
        pages, free, page_size = self._query(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), "
            "pragma_page_size()").fetchone()
        counters = self.counters()
        file_bytes = sum(p.stat().st_size for p in (self.path, wal_path(self.path))
                         if p.exists())
        return SpoolStats(
            path=str(self.path), depth=int(depth),
            oldest_age_s=(None if first_enqueued is None
                          else max(0.0, (time.time_ns() - first_enqueued) / 1e9)),
            oldest_time_ns=oldest, newest_time_ns=newest,
            used_bytes=int((pages - free) * page_size), file_bytes=file_bytes,
            free_bytes=free_bytes(self.path.parent), dead=int(dead),
            refused_total=counters.get(COUNTER_REFUSED, 0),
            pruned_total=counters.get(COUNTER_PRUNED, 0),
            ballast_present=ballast_path(self.path).exists(), by_measurement=by_m)
