"""The durable outbox: every Measurement is committed here, as line protocol, first.

A SQLite database in WAL mode with `synchronous=FULL`: when `append()` returns, the points
are on disk and survive a crash, a SIGKILL or a power cut. The writer (agent/influx.py)
reads them in id order and deletes them only once InfluxDB acknowledged them; lines that
InfluxDB refuses as malformed move to a dead-letter table with the server's reason.

With no `[influx]` configured the spool is the store itself: points are kept within
`max_bytes` and `max_age_s` (the oldest pruned, with a log line and a counter), listed by
`prober spool status` and exported by `prober spool export`.

Disk safety: below `min_free_bytes` of free space new points are refused with a loud error
and a counter (the caller keeps running); a ballast file is deleted to give SQLite room to
delete and checkpoint when the disk is full, and put back once there is room again.

The same database file also holds other rooms' tables (the canary ledger): this module
touches only the `spool_*` tables.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prober.config.delivery import SpoolSettings
from prober.lineproto import measurement_name
from prober.measurement import Measurement
from prober.spoolfile import SCHEMA as _SCHEMA
from prober.spoolfile import DeadRow, SpoolStats, ballast_path, free_bytes, lines_query

log = logging.getLogger("prober.spool")


# How often (appends / seconds) the retention of a store-only spool is enforced: pruning is
# a few range deletes, but there is no need to do it on every append.
_PRUNE_EVERY_APPENDS = 500
_PRUNE_EVERY_S = 60.0
_PRUNE_CHUNK = 2000
CACHE_SIZE = -256  # KiB, negative as SQLite wants it: a page cache of 256 KiB


DISK_FULL = "the disk was full"


def is_disk_full(exc: BaseException | None) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), or the OS's ENOSPC / EDQUOT."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


class SpoolError(RuntimeError):
    """The spool cannot be opened or used; the message says which file and why."""


class SpoolVanished(SpoolError):
    """The database file was deleted or replaced under the running agent."""


class SpoolFull(SpoolError):
    """New points were refused (free-space floor or size cap); nothing already spooled is lost.

    `count` is how many points this call refused.
    """

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


@dataclass(frozen=True)
class SpoolRow:
    id: int
    measurement: str
    time_ns: int
    enqueued_ns: int
    line: str


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors (SQLITE_FULL among them); a second
    # ROLLBACK would then fail and hide the original error.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def private_file(path: Path) -> None:
    """The database file, created 0600 before SQLite opens it (SQLite creates it, and its
    -wal and -shm beside it, with the umask's mode: 0644 in a state directory that already
    existed 0755); an existing one readable by others is narrowed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
            log.warning("spool %s was mode %04o: narrowed to %04o (points may name mailboxes "
                        "and servers)", path, mode, mode & 0o700)
        return
    os.close(fd)


def quarantine_if_corrupt(path: str | Path) -> Path | None:
    """SQLite's own quick_check of the database at start. A corrupt one is moved aside (with
    its -wal and -shm), never deleted, so a fresh one can start; returns where it went.

    A spool with corrupt pages was written to silently until `spool export` and `score`
    crashed on it; `sqlite3 FILE .recover` can salvage what the moved file still holds.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    why = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            rows = conn.execute("PRAGMA quick_check(5)").fetchall()
        finally:
            conn.close()
        if [r[0] for r in rows] != ["ok"]:
            # its messages span lines ("*** in database main ***\nPage 3: ..."): one line
            why = " ".join("; ".join(str(r[0]) for r in rows).split())
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        if "locked" in str(exc).lower() or "busy" in str(exc).lower():
            raise SpoolError(f"spool {path}: in use by another process ({exc})") from None
        why = str(exc)
    if why is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = path.with_name(path.name + suffix)
            if src.exists():
                os.replace(src, aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise SpoolError(f"spool {path} is corrupt ({why}) and cannot be moved aside: "
                         f"{exc.strerror}") from None
    log.error("spool %s is corrupt (SQLite quick_check: %s): moved aside to %s, starting a "
              "fresh spool; points and canaries in flight in it are not sent (salvage with "
              "`sqlite3 %s .recover`)", path, why[:200], aside, aside)
    return aside


class Spool:
    """Thread-safe: each thread gets its own SQLite connection (WAL lets a reader and the
    writer work side by side; writers queue on SQLite's lock with a busy timeout)."""

    def __init__(self, path: str | Path, settings: SpoolSettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or SpoolSettings(path=str(path))
        self.ballast_path = ballast_path(self.path)
        self.refused_count = 0
        self.pruned_count = 0
        self.invalid_count = 0
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._appends_since_prune = 0
        self._last_prune = 0.0
        # Refusing new points is a state (the floor, a full disk, the cap): logged once when
        # it starts, with its reason, and once when points are taken again with the count.
        self.refusing: str | None = None
        self._refused_in_state = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool's directory {self.path.parent}: "
                             f"{exc.strerror}") from None
        try:
            private_file(self.path)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool {self.path}: {exc.strerror}") from None
        conn = self._conn()
        self._inode = self._identity()
        try:
            with conn:
                conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot initialise the spool {self.path}: {exc}") from None
        self._ensure_ballast()
        if self.settings.retain:
            self.prune()

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), so a
            # read never silently holds a write lock.
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SpoolError(f"spool {self.path}: SQLite refused WAL mode (got {mode})")
            # FULL: the WAL is fsynced at every commit, so a committed append survives power
            # loss, not only a process crash (NORMAL would risk the last transactions).
            conn.execute("PRAGMA synchronous=FULL")
            # SQLite's default page cache (2 MiB per connection) filled as the file grew and
            # was most of the daemon's memory growth; appends and batch reads need little,
            # and the kernel caches the file anyway.
            conn.execute(f"PRAGMA cache_size={CACHE_SIZE}")
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {exc}") from None
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def vanished(self) -> bool:
        """True when the database file was deleted or replaced under the running agent:
        SQLite would go on writing into the deleted file, and every point would be lost."""
        return self._identity() != self._inode

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- disk safety ---------------------------------------------------------------------

    def free_bytes(self) -> int:
        try:
            return free_bytes(self.path.parent)
        except OSError as exc:
            raise SpoolError(f"spool {self.path}: cannot see its filesystem: "
                             f"{exc.strerror}") from None

    def used_bytes(self) -> int:
        """Bytes of the database in use: pages minus free pages (the file does not shrink)."""
        # One statement instead of three PRAGMAs: this runs before every append.
        pages, free, page_size = self._conn().execute(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), "
            "pragma_page_size()").fetchone()
        return int((pages - free) * page_size)

    def _ensure_ballast(self) -> None:
        size = self.settings.ballast_bytes
        if size <= 0 or self.ballast_path.exists():
            return
        # Only put it back when that leaves the floor intact with room to spare.
        if self.free_bytes() < self.settings.min_free_bytes + 2 * size:
            return
        tmp = self.ballast_path.with_name(self.ballast_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                # Real blocks, not a sparse file: deleting it must give space back.
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            os.replace(tmp, self.ballast_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("spool %s: cannot create the ballast file %s: %s", self.path,
                        self.ballast_path, exc.strerror)

    def release_ballast(self) -> bool:
        """Delete the ballast file to give SQLite room; True when there was one."""
        try:
            self.ballast_path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("spool %s: cannot delete the ballast file %s: %s", self.path,
                      self.ballast_path, exc.strerror)
            return False
        log.warning("spool %s: disk nearly full: released the %d-byte ballast file so "
                    "delivered points can still be deleted", self.path,
                    self.settings.ballast_bytes)
        return True

    def _refuse(self, count: int, why: str, kind: str) -> SpoolFull:
        self.refused_count += count
        self._bump_counter("refused", count)
        message = f"spool {self.path}: refused {count} new point(s): {why}"
        self._enter_refusing(kind, message)
        self._refused_in_state += count
        return SpoolFull(message, count)

    def _enter_refusing(self, kind: str, message: str) -> None:
        if self.refusing != kind:
            total = f"{self.refused_count} refused in total; " if self.refused_count else ""
            log.error("%s; refusing new points until there is room (%spoints already "
                      "spooled are kept)", message, total)
            self.refusing = kind
            self._refused_in_state = 0

    def note_disk_full(self, why: str) -> None:
        """Another writer of this database (the ledger) met a full disk: the same state."""
        self._enter_refusing(DISK_FULL, f"spool {self.path}: disk full: {why}")

    def _note_room(self) -> None:
        if self.refusing is not None:
            log.warning("spool %s: room again, new points are taken (%d were "
                        "refused while %s)", self.path, self._refused_in_state, self.refusing)
            self.refusing = None
            self._refused_in_state = 0

    def _check_room(self, count: int) -> None:
        s = self.settings
        free = self.free_bytes()
        if free < s.min_free_bytes:
            # The ballast stays: the floor itself leaves SQLite room to delete delivered rows;
            # the ballast is for when something else fills the disk to the last byte.
            raise self._refuse(count, f"only {free / 2**20:.1f} MiB free on the spool's "
                               f"filesystem, below the floor min_free_bytes = "
                               f"{s.min_free_bytes} ({s.min_free_bytes / 2**20:.1f} MiB)",
                               "below the free-space floor")
        if not s.retain:
            used = self.used_bytes()
            if used >= s.max_bytes:
                raise self._refuse(count, f"the spool holds {used} bytes of undelivered "
                                   f"points, at its cap max_bytes = {s.max_bytes}; is InfluxDB "
                                   "reachable?", "at max_bytes")

    def _bump_counter(self, name: str, by: int) -> None:
        # Best effort: on a full disk this write may fail too; the in-memory count stays.
        with contextlib.suppress(sqlite3.Error):
            self._conn().execute(
                "INSERT INTO spool_counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    # -- appending -----------------------------------------------------------------------

    def append(self, measurements: Iterable[Measurement],
               also: Callable[[sqlite3.Connection], object] | None = None) -> int:
        """Commit the measurements in one transaction; returns how many were stored.

        Durable when this returns. `also` runs in the same transaction (the canary ledger's
        change that goes with its point: both commit, or neither). Raises SpoolFull when
        new points are refused (free-space floor, or the size cap while InfluxDB is
        configured); a Measurement that cannot be
        written as line protocol (no fields) is logged and skipped, not fatal to the rest.
        """
        now = time.time_ns()
        rows: list[tuple[str, int, int, str]] = []
        for m in measurements:
            try:
                line = m.to_line()
            except (ValueError, TypeError) as exc:
                self.invalid_count += 1
                log.error("spool: skipped measurement %r: %s", m.name, exc)
                continue
            rows.append((m.name, m.time_ns, now, line))
        return self._insert(rows, also)

    def append_lines(self, lines: Iterable[str]) -> int:
        """Commit raw line protocol (one point per line, timestamp in ns) in one transaction."""
        now = time.time_ns()
        rows = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tail = line.rsplit(" ", 1)[-1]
            time_ns = int(tail) if tail.lstrip("-").isdigit() else now
            rows.append((measurement_name(line), time_ns, now, line))
        return self._insert(rows)

    def _insert(self, rows: list[tuple[str, int, int, str]],
                also: Callable[[sqlite3.Connection], object] | None = None) -> int:
        if not rows and also is None:
            return 0
        if self.vanished():
            raise SpoolVanished(f"spool {self.path} was deleted or replaced while in use; "
                                f"{len(rows)} new point(s) not written")
        self._check_room(len(rows))
        try:
            self._execute_many("INSERT INTO spool_points (measurement, time_ns, enqueued_ns, "
                               "line) VALUES (?, ?, ?, ?)", rows, also)
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):
                raise self._refuse(len(rows), f"disk full: SQLite says {exc}",
                                   DISK_FULL) from None
            raise SpoolError(f"spool {self.path}: cannot append: {exc}") from None
        self._note_room()
        self._after_append(len(rows))
        return len(rows)

    def _execute_many(self, sql: str, rows: Sequence[tuple],
                      also: Callable[[sqlite3.Connection], object] | None = None) -> None:
        """One transaction; on a full disk, release the ballast and try once more (deleting
        delivered rows and even appending need a little room). Raises OperationalError."""
        conn = self._conn()
        for attempt in (1, 2):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, rows)
                    if also is not None:
                        also(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                return
            except sqlite3.OperationalError as exc:
                if is_disk_full(exc) and attempt == 1 and self.release_ballast():
                    continue
                raise

    def _after_append(self, count: int) -> None:
        if not self.settings.retain:
            return
        self._appends_since_prune += count
        now = time.monotonic()
        if (self._appends_since_prune >= _PRUNE_EVERY_APPENDS
                or now - self._last_prune >= _PRUNE_EVERY_S):
            self.prune()

    # -- retention (store-only mode) -----------------------------------------------------

    def prune(self) -> int:
        """Drop the oldest points beyond max_age_s or max_bytes; returns how many.

        Only for a store-only spool (no [influx]): a delivering spool drops nothing unsent.
        """
        self._appends_since_prune = 0
        self._last_prune = time.monotonic()
        if not self.settings.retain:
            return 0
        conn = self._conn()
        cutoff = time.time_ns() - int(self.settings.max_age_s * 1e9)
        by_age = by_size = 0
        # Rows are in enqueue order by id, so the old ones are a prefix: delete in id ranges
        # of at most _PRUNE_CHUNK rows (each range found through the primary key).
        while True:
            first = conn.execute("SELECT enqueued_ns FROM spool_points "
                                 "ORDER BY id LIMIT 1").fetchone()
            if first is None or first[0] >= cutoff:
                break
            by_age += self._delete_where("id <= ? AND enqueued_ns < ?",
                                         (self._nth_id(_PRUNE_CHUNK), cutoff))
        while (used := self.used_bytes()) > self.settings.max_bytes:
            depth = self.depth()
            if depth == 0:
                break
            # Enough of the oldest rows to cover the excess, estimated from the average row.
            n = min(_PRUNE_CHUNK, max(16, depth * (used - self.settings.max_bytes) // used + 1))
            by_size += self._delete_where("id <= ?", (self._nth_id(n),))
        total = by_age + by_size
        if total:
            self.pruned_count += total
            self._bump_counter("pruned", total)
            log.warning("spool %s: pruned %d oldest point(s) (%d older than max_age_s = %.0f, "
                        "%d over max_bytes = %d); configure [influx] to keep everything",
                        self.path, total, by_age, self.settings.max_age_s, by_size,
                        self.settings.max_bytes)
        return total

    def _nth_id(self, n: int) -> int:
        """The id of the n-th oldest row (or of the newest, when there are fewer)."""
        conn = self._conn()
        row = conn.execute("SELECT id FROM spool_points ORDER BY id LIMIT 1 OFFSET ?",
                           (n - 1,)).fetchone()
        if row is None:
            row = conn.execute("SELECT max(id) FROM spool_points").fetchone()
        return int(row[0] or 0)

    def _delete_where(self, where: str, params: tuple[int, ...]) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(f"DELETE FROM spool_points WHERE {where}", params)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return cur.rowcount

    # -- draining (used by the writer) ---------------------------------------------------

    def read_batch(self, limit: int, after_id: int = 0) -> list[SpoolRow]:
        """The oldest `limit` points (id order) with id > after_id."""
        cur = self._conn().execute(
            "SELECT id, measurement, time_ns, enqueued_ns, line FROM spool_points "
            "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [SpoolRow(*r) for r in cur]

    def ack(self, ids: Sequence[int]) -> int:
        """Delete delivered points. Retries once after releasing the ballast on a full disk."""
        if not ids:
            return 0
        try:
            self._execute_many("DELETE FROM spool_points WHERE id = ?", [(i,) for i in ids])
        except sqlite3.OperationalError as exc:
            raise SpoolError(f"spool {self.path}: cannot delete delivered points: "
                             f"{exc}") from None
        self._ensure_ballast()
        return len(ids)

    def dead_letter(self, rows: Sequence[SpoolRow], status: int | None, reason: str) -> None:
        """Move refused points to the dead-letter table with the server's reason."""
        if not rows:
            return
        conn = self._conn()
        now = time.time_ns()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO spool_dead (id, measurement, time_ns, enqueued_ns, "
                "failed_ns, status, reason, line) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.id, r.measurement, r.time_ns, r.enqueued_ns, now, status, reason, r.line)
                 for r in rows])
            conn.executemany("DELETE FROM spool_points WHERE id = ?", ((r.id,) for r in rows))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def dead_rows(self, limit: int | None = None) -> list[DeadRow]:
        cur = self._conn().execute(
            "SELECT id, measurement, time_ns, failed_ns, status, reason, line FROM spool_dead "
            "ORDER BY id LIMIT ?", (-1 if limit is None else limit,))
        return [DeadRow(*r) for r in cur]

    # -- reading -------------------------------------------------------------------------

    def depth(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM spool_points").fetchone()[0])

    def oldest_age_s(self) -> float | None:
        """Seconds since the oldest spooled point was appended (None when empty)."""
        row = self._conn().execute(
            "SELECT enqueued_ns FROM spool_points ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return max(0.0, (time.time_ns() - row[0]) / 1e9)

    def read_lines(self, measurement: str | None = None, start_ns: int | None = None,
                   end_ns: int | None = None) -> Iterator[str]:
        """Spooled line protocol, in append order (so a rewritten point's last version comes
        last, as InfluxDB would keep it). `start_ns` inclusive, `end_ns` exclusive."""
        sql, params = lines_query(measurement, start_ns, end_ns)
        # A dedicated connection: the caller may iterate slowly while this thread appends.
        conn = sqlite3.connect(self.path, timeout=30.0)
        try:
            for (line,) in conn.execute(sql, params):
                yield line
        finally:
            conn.close()

    def counters(self) -> dict[str, int]:
        cur = self._conn().execute("SELECT name, value FROM spool_counters")
        return {name: int(value) for name, value in cur}

    def stats(self) -> SpoolStats:
        conn = self._conn()
        depth, oldest, newest = conn.execute(
            "SELECT count(*), min(time_ns), max(time_ns) FROM spool_points").fetchone()
        by_m = dict(conn.execute("SELECT measurement, count(*) FROM spool_points "
                                 "GROUP BY measurement ORDER BY measurement").fetchall())
        dead = conn.execute("SELECT count(*) FROM spool_dead").fetchone()[0]
        counters = self.counters()
        file_bytes = sum(p.stat().st_size for p in
                         (self.path, self.path.with_name(self.path.name + "-wal"))
                         if p.exists())
        return SpoolStats(
            path=str(self.path), depth=int(depth), oldest_age_s=self.oldest_age_s(),
            oldest_time_ns=oldest, newest_time_ns=newest, used_bytes=self.used_bytes(),
            file_bytes=file_bytes, free_bytes=self.free_bytes(), dead=int(dead),
            refused_total=counters.get("refused", 0), pruned_total=counters.get("pruned", 0),
            ballast_present=self.ballast_path.exists(), by_measurement=by_m)
