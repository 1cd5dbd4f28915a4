"""The reductions of sla/query.py over the local spool, in SQLite: the embedded store for
users without InfluxDB, and the tests' way to score points held in memory.

One pass over the spool's rows for the period (read-only, through `SpoolReader`) decodes
what scoring needs into a scratch SQLite database in a temporary folder: the heartbeat
minutes per vantage, the failed logins, one row per canary (its delays, outcome and id),
the webmail loads. Every reduction is then a SQL query over that database, as it is an
InfluxQL query over InfluxDB. Memory stays bounded whatever the month's size (SQLite's page
cache is capped, rows stream); the scratch file is about 60 bytes per canary.

What is read but cannot be used is counted per measurement and reason (`unusable()`):
lines that are not line protocol, points without a vantage, a delay that is not a number.

Points written twice at the same series and timestamp are one point, as InfluxDB keeps
them: the later write's fields win and fields it lacks are kept (a canary's "pending"
point rewritten with its fate). The spool's rows are read in (time, append) order, so the
writes of one point are neighbours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prober.lineproto import LineProtocolError, measurement_name, parse_line
from prober.measurement import FieldValue, Measurement
from prober.schema import (
    FIELD_CANARY,
    FIELD_DELIVERY_S,
    FIELD_ERROR,
    FIELD_ERROR_CLASS,
    FIELD_LOAD_S,
    FIELD_OPEN_S,
    FIELD_OUTCOME,
    FIELD_RECEIVE_DELAY_S,
    FIELD_SEND_DELAY_S,
    HEARTBEAT,
    MAIL_ABUSE,
    MAIL_ACCESS,
    MAIL_BLOCKLIST,
    MAIL_FILTER,
    MAIL_ROUNDTRIP,
    TAG_DIRECTION,
    TAG_MAILBOX,
    TAG_OUTCOME,
    TAG_PROFILE,
    TAG_PROTOCOL,
    TAG_RECIPIENT,
    TAG_ROUTE,
    TAG_SENDER,
    TAG_TARGET,
    TAG_VANTAGE,
    WEBMAIL_LOAD,
    AccessOutcome,
    ErrorClass,
    RoundtripOutcome,
    WebmailOutcome,
)
from prober.sla.query import (
    ARRIVED_NO_DELIVERY,
    BAD_LINE,
    DELAY_FIELDS,
    EVENT_OUTCOMES,
    HEARTBEAT_FIELD,
    MINUTE_NS,
    NO_UPTIME,
    NO_VANTAGE,
    NOT_A_NUMBER,
    NOT_JUDGED,
    OK_NO_TIME,
    UNKNOWN_OUTCOME,
    WEBMAIL_BUCKET_NS,
    AccessFailure,
    CanaryEvent,
    Delays,
    DelaySums,
    Inventory,
    RouteSeen,
    WebmailBucket,
    WebmailFailure,
    minute_spans,
)
from prober.spoolfile import POINTS, SCHEMA, SpoolReader

_SCRATCH = """
CREATE TABLE hb (vantage TEXT NOT NULL, minute INTEGER NOT NULL,
                 PRIMARY KEY (vantage, minute)) WITHOUT ROWID;
CREATE TABLE acc (time_ns INTEGER NOT NULL, minute INTEGER NOT NULL, vantage TEXT NOT NULL,
                  mailbox TEXT NOT NULL, protocol TEXT NOT NULL, ecls TEXT NOT NULL,
                  UNIQUE (vantage, mailbox, protocol, time_ns));
CREATE TABLE acc_ok (time_ns INTEGER NOT NULL, minute INTEGER NOT NULL,
                     vantage TEXT NOT NULL, mailbox TEXT NOT NULL, protocol TEXT NOT NULL,
                     UNIQUE (vantage, mailbox, protocol, time_ns));
CREATE TABLE rt (time_ns INTEGER NOT NULL, sid INTEGER NOT NULL, outcome TEXT,
                 canary TEXT, d REAL, s REAL, r REAL, error TEXT, ecls TEXT);
CREATE TABLE wm (time_ns INTEGER NOT NULL, vantage TEXT NOT NULL, profile TEXT NOT NULL,
                 target TEXT NOT NULL, outcome TEXT NOT NULL, open_s REAL, load_s REAL,
                 timeout_s REAL, cls TEXT, error TEXT, ecls TEXT,
                 UNIQUE (vantage, profile, target, outcome, time_ns));
"""
_BATCH = 20_000
_KNOWN_RT = frozenset(RoundtripOutcome)
_ARRIVED = frozenset((RoundtripOutcome.DELIVERED, RoundtripOutcome.LATE))
_KNOWN_ACCESS = frozenset(AccessOutcome)
_EVENTS = tuple(str(o) for o in EVENT_OUTCOMES)
# A field list without backslashes: key=value pairs, a string value in plain quotes.
_PAIR = r'[^,="]+=(?:"[^"]*"|[^,"]+)'
_FIELD = re.compile(r'([^,="]+)=("[^"]*"|[^,"]+)(?:,|\Z)')
_FIELDS = re.compile(f"{_PAIR}(?:,{_PAIR})*")
_PENDING = f'{FIELD_OUTCOME}="{RoundtripOutcome.PENDING}"'
_PENDING_RAW = f'"{RoundtripOutcome.PENDING}"'

Raw = dict[str, str]  # field -> its text in the line ('"s"', '1.5', '3i', 'true')


def _split(line: str) -> tuple[str, Raw, int]:
    """(series key, raw fields, time) of a line; LineProtocolError when it is not one.

    Lines without a backslash (nearly all) are cut with str methods and one regex; the
    others go through the full parser and back to raw text."""
    if "\\" not in line:
        try:
            key, rest = line.split(" ", 1)
            text, ts = rest.rsplit(" ", 1)
            if _FIELDS.fullmatch(text) and not key.endswith(","):
                return key, dict(_FIELD.findall(text)), int(ts)
        except ValueError:
            pass
    name, tags, fields, time_ns = parse_line(line)
    key = name + "".join(f",{k}={v}" for k, v in sorted(tags.items()))
    return key, {k: _raw(v) for k, v in fields.items()}, time_ns


def _raw(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value + '"'


def _tags(key: str) -> dict[str, str]:
    """The tags of a series key made by `_split` (escapes already resolved when the line had
    any: the full parser's key is rebuilt without them)."""
    parts = key.split(",")
    out = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        out[k] = v
    return out


def _text(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw[1:-1] if raw.startswith('"') else raw


class _NotANumber(ValueError):
    pass


def _number(raw: str | None) -> float | None:
    """A numeric field's value; None when absent; _NotANumber when it is text or a bool."""
    if raw is None:
        return None
    try:
        value = float(raw)  # the common case: a float as the writer prints it
    except ValueError:
        if raw.endswith(("i", "u")) and raw[:-1].lstrip("-").isdigit():
            return float(raw[:-1])
        raise _NotANumber(raw) from None
    if not math.isfinite(value):  # "inf", "nan": not something line protocol carries
        raise _NotANumber(raw)
    return value


class LocalEvidence:
    """Evidence of [start_ns, end_ns) from a spool, reduced in a scratch SQLite database."""

    def __init__(self, reader: SpoolReader, start_ns: int, end_ns: int, description: str,
                 focus: tuple[int, int] | None = None) -> None:
        """`focus`: the period judged (default: all of it); `inventory()` and `unusable()`
        count the points of the focus, the reductions answer for any range."""
        self.description = description
        self._focus = focus or (start_ns, end_ns)
        self._tmp = tempfile.TemporaryDirectory(prefix="prober-score-")
        self._db = sqlite3.connect(Path(self._tmp.name) / "scratch.db", isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -32768",
                       "temp_store = FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCRATCH)
        self._series: list[tuple[str, str, str, str, str]] = []  # sid -> route tags
        self._sid: dict[str, int] = {}
        self._unusable: dict[tuple[str, str], int] = defaultdict(int)
        self._inventory = Inventory()
        self._antispam: list[Measurement] = []
        self._watcher_down: dict[str, set[int]] = {}
        try:
            if reader.has_points:
                self._load(reader.connection, start_ns, end_ns)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._tmp.cleanup()

    # -- loading ---------------------------------------------------------------------------

    def _rows(self, spool: sqlite3.Connection, name: str, start_ns: int, end_ns: int,
              where: str = "") -> Iterator[str]:
        sql = (f"SELECT line FROM {POINTS} WHERE measurement = ? AND time_ns >= ? AND "
               f"time_ns < ? {where} ORDER BY time_ns, id")
        for (line,) in spool.execute(sql, (name, start_ns, end_ns)):
            yield line

    def _in_focus(self, time_ns: int) -> bool:
        return self._focus[0] <= time_ns < self._focus[1]

    def _drop(self, name: str, reason: str, time_ns: int | None, n: int = 1) -> None:
        if time_ns is None or self._in_focus(time_ns):
            self._unusable[(name, reason)] += n

    def _seen(self, name: str, vantage: str, time_ns: int) -> None:
        if self._in_focus(time_ns):
            self._inventory.points[(name, vantage)] = (
                self._inventory.points.get((name, vantage), 0) + 1)

    def _points(self, lines: Iterable[str], name: str) -> Iterator[tuple[str, Raw, int]]:
        """Decoded points, the writes of one point merged (they are neighbours)."""
        pending: dict[str, Raw] = {}
        at = None
        for line in lines:
            try:
                if _PENDING in line and "\\" not in line:
                    # a canary's first write: its fate, written next, carries every field
                    # again; only the outcome matters if no fate follows (still in flight)
                    key, _, rest = line.partition(" ")
                    fields, time_ns = {FIELD_OUTCOME: f'"{RoundtripOutcome.PENDING}"'}, int(
                        rest.rsplit(" ", 1)[1])
                else:
                    key, fields, time_ns = _split(line)
            except (LineProtocolError, ValueError, IndexError):
                self._drop(name, BAD_LINE, None)
                continue
            if time_ns != at:
                for k, f in pending.items():
                    yield k, f, at  # type: ignore[misc]
                pending = {}
                at = time_ns
            merged = pending.get(key)
            if merged is None:
                pending[key] = fields
            else:
                merged.update(fields)
        for k, f in pending.items():
            yield k, f, at  # type: ignore[misc]

    def _vantage(self, name: str, tags: dict[str, str], time_ns: int) -> str | None:
        v = tags.get(TAG_VANTAGE, "")
        if not v:
            self._drop(name, NO_VANTAGE, time_ns)
            return None
        self._seen(name, v, time_ns)
        return v

    def _load(self, spool: sqlite3.Connection, start_ns: int, end_ns: int) -> None:
        db = self._db
        db.execute("BEGIN")
        batch: list[tuple] = []

        def flush(sql: str) -> None:
            if batch:
                db.executemany(sql, batch)
                batch.clear()

        sql = "INSERT OR IGNORE INTO hb VALUES (?, ?)"
        for key, fields, time_ns in self._points(self._rows(spool, HEARTBEAT, start_ns, end_ns),
                                                 HEARTBEAT):
            v = self._vantage(HEARTBEAT, _tags(key), time_ns)
            if v is None:
                continue
            if HEARTBEAT_FIELD not in fields:
                self._drop(HEARTBEAT, NO_UPTIME, time_ns)
                continue
            batch.append((v, time_ns // MINUTE_NS))
            up, watchers = fields.get("watchers_up"), fields.get("watchers")
            with contextlib.suppress(_NotANumber):
                n_up, n_all = _number(up), _number(watchers)
                if n_up is not None and n_all is not None and n_up < n_all:
                    self._watcher_down.setdefault(v, set()).add(time_ns // MINUTE_NS)
            if len(batch) >= _BATCH:
                flush(sql)
        flush(sql)

        self._load_access(spool, start_ns, end_ns)
        self._antispam = [Measurement.from_line(line)
                          for name in (MAIL_FILTER, MAIL_BLOCKLIST, MAIL_ABUSE)
                          for line in self._rows(spool, name, start_ns, end_ns)]

        self._load_canaries(spool, start_ns, end_ns)
        db.execute("CREATE INDEX rt_time ON rt (time_ns)")
        for sid, n in db.execute("SELECT sid, count(*) FROM rt WHERE time_ns >= ? AND "
                                 "time_ns < ? GROUP BY sid", self._focus).fetchall():
            route, vantage, direction, sender, recipient = self._series[sid]
            seen = (MAIL_ROUNDTRIP, vantage)
            self._inventory.points[seen] = self._inventory.points.get(seen, 0) + n
            self._inventory.routes.append(RouteSeen(route, vantage, direction, sender,
                                                    recipient, n))

        sql = "INSERT OR REPLACE INTO wm VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        for key, fields, time_ns in self._points(
                self._rows(spool, WEBMAIL_LOAD, start_ns, end_ns), WEBMAIL_LOAD):
            tags = _tags(key)
            v = self._vantage(WEBMAIL_LOAD, tags, time_ns)
            if v is None:
                continue
            try:
                open_s = _number(fields.get(FIELD_OPEN_S))
                load_s = _number(fields.get(FIELD_LOAD_S))
                timeout_s = _number(fields.get("timeout_s"))
            except _NotANumber:
                self._drop(WEBMAIL_LOAD, NOT_A_NUMBER, time_ns)
                continue
            outcome = tags.get(TAG_OUTCOME, "")
            if outcome == WebmailOutcome.OK and open_s is None and load_s is None:
                self._drop(WEBMAIL_LOAD, OK_NO_TIME, time_ns)
                continue
            batch.append((time_ns, v, tags.get(TAG_PROFILE, ""), tags.get(TAG_TARGET, ""),
                          outcome, open_s, load_s, timeout_s,
                          _text(fields.get("contract_class")), _text(fields.get(FIELD_ERROR)),
                          _text(fields.get(FIELD_ERROR_CLASS))))
        flush(sql)
        db.execute("COMMIT")

    def _load_canaries(self, spool: sqlite3.Connection, start_ns: int, end_ns: int) -> None:
        """`_points` and `_split` unrolled for the month's largest measurement: a canary's
        pending write is taken without its fields (its fate carries them all again), its
        fate through one regex check and one findall."""
        sql = "INSERT INTO rt VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        batch: list[tuple] = []
        group: dict[str, Raw] = {}
        at = -1
        fullmatch, findall = _FIELDS.fullmatch, _FIELD.findall
        cursor = spool.execute(
            f"SELECT line FROM {POINTS} WHERE measurement = ? AND time_ns >= ? AND "
            f"time_ns < ? ORDER BY time_ns, id", (MAIL_ROUNDTRIP, start_ns, end_ns))
        for (line,) in cursor:
            try:
                if "\\" in line:
                    key, fields, time_ns = _split(line)
                else:
                    key, _, rest = line.partition(" ")
                    cut = rest.rindex(" ")
                    time_ns = int(rest[cut + 1:])
                    if _PENDING in rest:
                        fields = {FIELD_OUTCOME: _PENDING_RAW}
                    else:
                        text = rest[:cut]
                        if not fullmatch(text) or key.endswith(","):
                            key, fields, time_ns = _split(line)  # raises: not line protocol
                        else:
                            fields = dict(findall(text))
            except (LineProtocolError, ValueError):
                self._drop(MAIL_ROUNDTRIP, BAD_LINE, None)
                continue
            if time_ns != at:
                for k, f in group.items():
                    row = self._canary(k, f, at)
                    if row is not None:
                        batch.append(row)
                group = {}
                at = time_ns
                if len(batch) >= _BATCH:
                    self._db.executemany(sql, batch)
                    batch = []
            merged = group.get(key)
            if merged is None:
                group[key] = fields
            else:
                merged.update(fields)
        for k, f in group.items():
            row = self._canary(k, f, at)
            if row is not None:
                batch.append(row)
        self._db.executemany(sql, batch)

    def _load_access(self, spool: sqlite3.Connection, start_ns: int, end_ns: int) -> None:
        """Only failed logins are decoded point by point; the rest is counted per series in
        SQL (the series key is the line up to its first space, unless a tag escapes one)."""
        cut = "substr(line, 1, instr(line, ' ') - 1)"
        lo, hi = max(start_ns, self._focus[0]), min(end_ns, self._focus[1])
        counts = spool.execute(
            f"SELECT {cut}, count(*) FROM {POINTS} WHERE measurement = ? AND time_ns >= ? "
            f"AND time_ns < ? GROUP BY 1", (MAIL_ACCESS, lo, hi)).fetchall()
        for key, n in counts:
            if "\\" in key:  # an escaped separator: read those lines one by one
                for line in spool.execute(
                        f"SELECT line FROM {POINTS} WHERE measurement = ? AND time_ns >= ? "
                        f"AND time_ns < ? AND {cut} = ?", (MAIL_ACCESS, lo, hi, key)):
                    try:
                        self._count_access(_split(line)[0], 1)
                    except LineProtocolError:
                        self._drop(MAIL_ACCESS, BAD_LINE, None)
                continue
            self._count_access(key, n)
        rows = []
        # the LIKE is a superset (a string field could hold the words); the tags decide
        for key, fields, time_ns in self._points(
                self._rows(spool, MAIL_ACCESS, start_ns, end_ns,
                           f"AND line LIKE '%{TAG_OUTCOME}={AccessOutcome.FAIL}%'"), MAIL_ACCESS):
            tags = _tags(key)
            v = tags.get(TAG_VANTAGE, "")
            if v and tags.get(TAG_OUTCOME) == AccessOutcome.FAIL:
                # ErrorClass.PROBER: a check the prober failed to make; points without the
                # field (older agents) are the provider's failures, as they were
                rows.append((time_ns, time_ns // MINUTE_NS, v, tags.get(TAG_MAILBOX, ""),
                             tags.get(TAG_PROTOCOL, ""),
                             _text(fields.get(FIELD_ERROR_CLASS)) or ""))
        self._db.executemany("INSERT OR IGNORE INTO acc VALUES (?, ?, ?, ?, ?, ?)", rows)
        # the ok logins of the minutes with a failure (another address of the host that
        # answered: `[sla] dead_address = "all_fail"` reads them); only those minutes
        ok = []
        for lo_ns, hi_ns in minute_spans(r[1] for r in rows):
            for key, _fields, time_ns in self._points(
                    self._rows(spool, MAIL_ACCESS, lo_ns, hi_ns,
                               f"AND line LIKE '%{TAG_OUTCOME}={AccessOutcome.OK}%'"),
                    MAIL_ACCESS):
                tags = _tags(key)
                v = tags.get(TAG_VANTAGE, "")
                if v and tags.get(TAG_OUTCOME) == AccessOutcome.OK:
                    ok.append((time_ns, time_ns // MINUTE_NS, v, tags.get(TAG_MAILBOX, ""),
                               tags.get(TAG_PROTOCOL, "")))
        self._db.executemany("INSERT OR IGNORE INTO acc_ok VALUES (?, ?, ?, ?, ?)", ok)

    def _count_access(self, key: str, n: int) -> None:
        tags = _tags(key)
        v = tags.get(TAG_VANTAGE, "")
        if not v:
            self._unusable[(MAIL_ACCESS, NO_VANTAGE)] += n
            return
        outcome = tags.get(TAG_OUTCOME, "")
        if outcome not in _KNOWN_ACCESS:
            self._unusable[(MAIL_ACCESS, UNKNOWN_OUTCOME)] += n
        k = (v, tags.get(TAG_MAILBOX, ""), outcome)
        self._inventory.access[k] = self._inventory.access.get(k, 0) + n
        self._inventory.points[(MAIL_ACCESS, v)] = (
            self._inventory.points.get((MAIL_ACCESS, v), 0) + n)

    def _canary(self, key: str, fields: Raw, time_ns: int) -> tuple | None:
        sid = self._sid.get(key)
        if sid is None:
            tags = _tags(key)
            if not tags.get(TAG_VANTAGE):
                self._drop(MAIL_ROUNDTRIP, NO_VANTAGE, time_ns)
                return None
            sid = self._sid[key] = len(self._series)
            self._series.append((tags.get(TAG_ROUTE, ""), tags[TAG_VANTAGE],
                                 tags.get(TAG_DIRECTION, ""), tags.get(TAG_SENDER, ""),
                                 tags.get(TAG_RECIPIENT, "")))
        raw = fields.get(FIELD_OUTCOME)
        outcome = raw[1:-1] if raw is not None and raw[:1] == '"' else raw
        if outcome not in _KNOWN_RT:
            self._drop(MAIL_ROUNDTRIP, UNKNOWN_OUTCOME, time_ns)
        try:
            d = _number(fields.get(FIELD_DELIVERY_S))
            s = _number(fields.get(FIELD_SEND_DELAY_S))
            r = _number(fields.get(FIELD_RECEIVE_DELAY_S))
        except _NotANumber:
            self._drop(MAIL_ROUNDTRIP, NOT_A_NUMBER, time_ns)
            d = s = r = None
        if d is None and outcome in _ARRIVED:
            self._drop(MAIL_ROUNDTRIP, ARRIVED_NO_DELIVERY, time_ns)
        canary = fields.get(FIELD_CANARY)
        error = fields.get(FIELD_ERROR)
        return (time_ns, sid, outcome, _text(canary), d, s, r, _text(error),
                _text(fields.get(FIELD_ERROR_CLASS)))

    # -- the reductions --------------------------------------------------------------------

    def _sids(self, route: str | None = None, vantage: str | None = None) -> list[int]:
        return [i for i, (rt, v, _d, _s, _r) in enumerate(self._series)
                if (route is None or rt == route) and (vantage is None or v == vantage)]

    def vantages(self, start_ns: int, end_ns: int) -> set[str]:
        return {v for (v,) in self._db.execute(
            "SELECT DISTINCT vantage FROM hb WHERE minute >= ? AND minute < ?",
            (start_ns // MINUTE_NS, -(-end_ns // MINUTE_NS)))}

    def missing_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        lo, hi = start_ns // MINUTE_NS, -(-end_ns // MINUTE_NS)
        seen: dict[str, set[int]] = defaultdict(set)
        for v, m in self._db.execute("SELECT vantage, minute FROM hb WHERE minute >= ? AND "
                                     "minute < ?", (lo, hi)):
            seen[v].add(m)
        all_minutes = range(start_ns // MINUTE_NS, end_ns // MINUTE_NS)
        return {v: [m for m in all_minutes if m not in minutes] for v, minutes in seen.items()}

    def access_failures(self, start_ns: int, end_ns: int,
                        with_ok: bool = False) -> list[AccessFailure]:
        prober = str(ErrorClass.PROBER)
        rows = [AccessFailure(m, v, mb, proto, n, error_class=prober if ours else "")
                for m, v, mb, proto, ours, n in self._db.execute(
                    "SELECT minute, vantage, mailbox, protocol, ecls = ?, count(*) FROM acc "
                    "WHERE time_ns >= ? AND time_ns < ? GROUP BY 1, 2, 3, 4, 5",
                    (prober, start_ns, end_ns))]
        out = [f for f in rows if not f.error_class]
        not_made = [f for f in rows if f.error_class]
        if not with_ok:
            return out + not_made
        ok = {(m, v, mb, proto): n for m, v, mb, proto, n in self._db.execute(
            "SELECT minute, vantage, mailbox, protocol, count(*) FROM acc_ok WHERE "
            "time_ns >= ? AND time_ns < ? GROUP BY 1, 2, 3, 4", (start_ns, end_ns))}
        return [dataclasses.replace(f, ok=ok.get((f.minute, f.vantage, f.mailbox, f.protocol),
                                                 0)) for f in out] + not_made

    def canary_events(self, start_ns: int, end_ns: int,
                      over_s: float | None) -> list[CanaryEvent]:
        cond = f"outcome IN ({', '.join('?' * len(_EVENTS))})"
        params: list[object] = [start_ns, end_ns, *_EVENTS]
        if over_s is not None:
            cond += " OR d > ? OR s > ? OR r > ?"
            params += [over_s] * 3
        out = []
        for time_ns, sid, outcome, canary, d, s, r, error, ecls in self._db.execute(
                f"SELECT time_ns, sid, outcome, canary, d, s, r, error, ecls FROM rt WHERE "
                f"time_ns >= ? AND time_ns < ? AND ({cond})", params):
            route, vantage, direction, sender, recipient = self._series[sid]
            out.append(CanaryEvent(time_ns, vantage, route, direction, sender, recipient,
                                   outcome or "", canary or "", d, s, r, error or "",
                                   ecls or ""))
        out.sort(key=lambda e: (e.time_ns, e.vantage, e.route))
        return out

    def delay_sums(self, start_ns: int, end_ns: int) -> list[DelaySums]:
        series: dict[tuple[str, str, str], DelaySums] = {}
        for sid, nd, sd, ns, ss, nr, sr in self._db.execute(
                "SELECT sid, count(d), total(d), count(s), total(s), count(r), total(r) FROM rt "
                "WHERE time_ns >= ? AND time_ns < ? GROUP BY sid", (start_ns, end_ns)):
            route, vantage, direction, _s, _r = self._series[sid]
            key = (route, vantage, direction)
            acc = series.get(key)
            if acc is None:
                acc = series[key] = DelaySums(*key, n=dict.fromkeys(DELAY_FIELDS, 0),
                                              total=dict.fromkeys(DELAY_FIELDS, 0.0))
            acc.add(DelaySums(*key, n=dict(zip(DELAY_FIELDS, (nd, ns, nr), strict=True)),
                              total=dict(zip(DELAY_FIELDS, (sd, ss, sr), strict=True))))
        return list(series.values())

    def delay_points(self, route: str, vantage: str, start_ns: int,
                     end_ns: int) -> list[Delays]:
        sids = self._sids(route, vantage)
        if not sids:
            return []
        return [Delays(d, s, r) for d, s, r in self._db.execute(
            f"SELECT d, s, r FROM rt WHERE time_ns >= ? AND time_ns < ? AND sid IN "
            f"({', '.join(map(str, sids))}) AND (d IS NOT NULL OR s IS NOT NULL OR "
            f"r IS NOT NULL) ORDER BY time_ns", (start_ns, end_ns))]

    def delay_over(self, field_name: str, edges: Sequence[float], start_ns: int,
                   end_ns: int) -> dict[tuple[str, str], list[int]]:
        column = {FIELD_DELIVERY_S: "d", FIELD_SEND_DELAY_S: "s", FIELD_RECEIVE_DELAY_S: "r"}[
            field_name]
        cols = ", ".join(f"total({column} > {float(e)!r})" for e in edges)
        out: dict[tuple[str, str], list[int]] = {}
        for sid, *counts in self._db.execute(
                f"SELECT sid, {cols} FROM rt WHERE time_ns >= ? AND time_ns < ? AND {column} > "
                f"{float(min(edges))!r} GROUP BY sid", (start_ns, end_ns)):
            route, vantage = self._series[sid][:2]
            acc = out.setdefault((route, vantage), [0] * len(edges))
            for i, c in enumerate(counts):
                acc[i] += int(c)
        return out

    def webmail_buckets(self, start_ns: int, end_ns: int) -> list[WebmailBucket]:
        return [WebmailBucket(int(b), p, t, v, int(n), float(total), int(by_load))
                for b, p, t, v, n, total, by_load in self._db.execute(
                    f"SELECT time_ns - time_ns % {WEBMAIL_BUCKET_NS}, profile, target, vantage, "
                    "count(coalesce(open_s, load_s)), total(coalesce(open_s, load_s)), "
                    "total(open_s IS NULL AND load_s IS NOT NULL) FROM wm WHERE outcome = ? "
                    "AND time_ns >= ? AND time_ns < ? GROUP BY 1, 2, 3, 4",
                    (str(WebmailOutcome.OK), start_ns, end_ns)) if n]

    def webmail_failures(self, start_ns: int, end_ns: int) -> list[WebmailFailure]:
        out = [WebmailFailure(t, p, tg, v, o, timeout, error or "", ecls or "")
               for t, p, tg, v, o, timeout, error, ecls in self._db.execute(
                   "SELECT time_ns, profile, target, vantage, outcome, timeout_s, error, ecls "
                   "FROM wm "
                   "WHERE outcome != ? AND time_ns >= ? AND time_ns < ?",
                   (str(WebmailOutcome.OK), start_ns, end_ns))]
        out.sort(key=lambda f: (f.time_ns, f.vantage, f.target))
        return out

    def webmail_classes(self, start_ns: int, end_ns: int) -> dict[str, str]:
        out: dict[str, str] = {}
        for profile, cls in self._db.execute(
                "SELECT profile, cls FROM wm WHERE cls IS NOT NULL AND cls != '' AND "
                "time_ns >= ? AND time_ns < ? ORDER BY time_ns", (start_ns, end_ns)):
            out[profile] = cls
        return out

    def antispam_points(self, start_ns: int, end_ns: int) -> list[Measurement]:
        return [p for p in self._antispam if start_ns <= p.time_ns < end_ns]

    def watcher_down_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        lo, hi = start_ns // MINUTE_NS, -(-end_ns // MINUTE_NS)
        out = {v: sorted(m for m in ms if lo <= m < hi) for v, ms in self._watcher_down.items()}
        return {v: ms for v, ms in out.items() if ms}

    def canaries_not_judged(self, start_ns: int, end_ns: int
                            ) -> dict[tuple[str, str, str], int]:
        marks = ", ".join("?" * len(NOT_JUDGED))
        out: dict[tuple[str, str, str], int] = {}
        for sid, outcome, n in self._db.execute(
                f"SELECT sid, outcome, count(*) FROM rt WHERE time_ns >= ? AND time_ns < ? AND "
                f"outcome IN ({marks}) GROUP BY 1, 2",
                (start_ns, end_ns, *(str(o) for o in NOT_JUDGED))):
            route, vantage = self._series[sid][:2]
            key = (vantage, route, outcome)
            out[key] = out.get(key, 0) + n
        return out

    def inventory(self, start_ns: int, end_ns: int) -> Inventory:
        """What was read (the whole span the evidence was opened for)."""
        return self._inventory

    def unusable(self, start_ns: int, end_ns: int) -> dict[tuple[str, str], int]:
        return dict(self._unusable)


def spool_evidence(path: str, start_ns: int, end_ns: int,
                   focus: tuple[int, int] | None = None) -> LocalEvidence:
    """The points the local spool retains for [start_ns, end_ns), read without writing."""
    with SpoolReader(path) as reader:
        return LocalEvidence(reader, start_ns, end_ns, f"local spool {path}", focus)


class PointsEvidence:
    """Points held in memory (tests, the report demo) as evidence: written to a scratch
    spool and read back through the same reductions as a real one."""

    @staticmethod
    def from_measurements(measurements: Iterable[Measurement]) -> LocalEvidence:
        return PointsEvidence.from_lines((m.to_line() for m in measurements),
                                         "measurements in memory")

    @staticmethod
    def from_lines(lines: Iterable[str], description: str) -> LocalEvidence:
        with tempfile.TemporaryDirectory(prefix="prober-points-") as tmp:
            path = Path(tmp) / "points.db"
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.executescript(SCHEMA)
                conn.execute("BEGIN")
                conn.executemany(
                    f"INSERT INTO {POINTS} (measurement, time_ns, enqueued_ns, line) "
                    "VALUES (?, ?, 0, ?)", _rows(lines))
                conn.execute("COMMIT")
            finally:
                conn.close()
            with SpoolReader(path) as reader:
                return LocalEvidence(reader, 0, 2**63 - 1, description)


def _rows(lines: Iterable[str]) -> Iterator[tuple[str, int, str]]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            time_ns = int(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            time_ns = 0
        yield measurement_name(line), time_ns, line
