"""Reduce the raw points of a period to what scoring needs, in the database.

One small interface, `Evidence`, with two implementations:
- `InfluxEvidence`: InfluxQL over `/query` (InfluxDB 1.x, 2.x with a DBRP mapping, 3.x).
  The reductions run in the database (`GROUP BY time(1m)`, counts, sums, a subquery for the
  minutes without a heartbeat): a month of one-minute data for many routes comes back as a
  few thousand rows, never as millions of raw points.
- `prober.sla.local.PointsEvidence`: the same reductions in Python over points read back
  from the local spool (no InfluxDB configured) or handed over by tests.

Every method takes a half-open range [start_ns, end_ns) whose ends are whole minutes; sums
and counts are additive, so the scorer asks once per stretch between maintenance windows.
The queries are listed, next to the schema, in docs/judge.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from prober.measurement import Measurement
from prober.schema import (
    ARRIVED,
    FIELD_CANARY,
    FIELD_DELIVERY_S,
    FIELD_ERROR,
    FIELD_ERROR_CLASS,
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

MINUTE_NS = 60 * 1_000_000_000
WEBMAIL_BUCKET_NS = 15 * MINUTE_NS  # fine enough for any time zone's day boundary
DELAY_FIELDS = (FIELD_DELIVERY_S, FIELD_SEND_DELAY_S, FIELD_RECEIVE_DELAY_S)
# The outcomes a report lists as evidence; "lost" and "send_failed" also make a minute down.
EVENT_OUTCOMES = (RoundtripOutcome.LOST, RoundtripOutcome.LATE, RoundtripOutcome.SEND_FAILED)
# The heartbeat field whose presence says "this vantage was alive in this minute".
HEARTBEAT_FIELD = "uptime_s"


class QueryError(RuntimeError):
    """The database refused a query or could not be reached; the message says which."""


@dataclass(frozen=True)
class AccessFailure:
    minute: int  # minutes since the epoch (UTC)
    vantage: str
    mailbox: str
    protocol: str
    count: int
    ok: int = 0  # ok points of the same minute and series (asked for with `with_ok`)
    # ErrorClass.PROBER: checks the prober itself failed to make (no descriptor left, a
    # bug): no evidence about the provider, never a failed minute; "" for the provider's
    error_class: str = ""


@dataclass(frozen=True)
class CanaryEvent:
    time_ns: int
    vantage: str
    route: str
    direction: str
    sender: str
    recipient: str
    outcome: str
    canary: str = ""
    delivery_s: float | None = None
    send_delay_s: float | None = None
    receive_delay_s: float | None = None
    error: str = ""
    error_class: str = ""  # ErrorClass.PROBER: a send the prober failed to make, not charged


@dataclass
class DelaySums:
    """Counts and sums of the delay fields of one (route, vantage, direction) series."""

    route: str
    vantage: str
    direction: str
    n: dict[str, int] = field(default_factory=dict)  # field -> count
    total: dict[str, float] = field(default_factory=dict)  # field -> sum

    def add(self, other: DelaySums) -> None:
        for f in DELAY_FIELDS:
            self.n[f] = self.n.get(f, 0) + other.n.get(f, 0)
            self.total[f] = self.total.get(f, 0.0) + other.total.get(f, 0.0)


@dataclass(frozen=True)
class Delays:
    """The delay fields of one arrived canary (for series that mix split and unsplit hops)."""

    delivery_s: float | None
    send_delay_s: float | None
    receive_delay_s: float | None


@dataclass(frozen=True)
class WebmailBucket:
    start_ns: int  # a 15-minute bucket
    profile: str
    target: str
    vantage: str
    n: int
    total_s: float
    n_by_load: int = 0  # of n: ok loads without open_s, judged by load_s


@dataclass(frozen=True)
class RouteSeen:
    """A route as the data tags it, with how many points it has."""

    route: str
    vantage: str
    direction: str
    sender: str
    recipient: str
    points: int


@dataclass
class Inventory:
    """What the evidence holds: points per measurement and vantage, the mailboxes checked,
    the routes' canaries; the judge compares it with what `[sla]` declares."""

    points: dict[tuple[str, str], int] = field(default_factory=dict)  # (measurement, vantage)
    # (vantage, mailbox, outcome) -> mail_access points
    access: dict[tuple[str, str, str], int] = field(default_factory=dict)
    routes: list[RouteSeen] = field(default_factory=list)


# The canary outcomes the clauses judge; the others (still pending when scored, an answer
# to the submission never seen, a canary the provider never accepted) are counted apart,
# under coverage, and never charged to the provider.
JUDGED = (RoundtripOutcome.DELIVERED, RoundtripOutcome.LATE, RoundtripOutcome.LOST,
          RoundtripOutcome.SEND_FAILED)
NOT_JUDGED = tuple(o for o in RoundtripOutcome if o not in JUDGED)
# A `send_failed` canary whose error_class is `prober`: the prober failed to make the
# submission (no descriptor, memory or local port left; a bug). Counted apart under this
# name with the outcomes not judged, never charged.
SEND_FAILED_PROBER = f"{RoundtripOutcome.SEND_FAILED} ({ErrorClass.PROBER})"

# Why a point read cannot be used; the report counts each per measurement.
NO_UPTIME = "no uptime_s field (not a heartbeat this judge can read)"
NO_VANTAGE = "no vantage tag"
ARRIVED_NO_DELIVERY = "delivered or late without delivery_s"
UNKNOWN_OUTCOME = "an outcome this judge does not know"
OK_NO_TIME = "ok load without open_s or load_s"
BAD_LINE = "not valid line protocol"
NOT_A_NUMBER = "a delay that is not a number"


@dataclass(frozen=True)
class WebmailFailure:
    time_ns: int
    profile: str
    target: str
    vantage: str
    outcome: str
    timeout_s: float | None
    error: str
    error_class: str = ""  # ErrorClass.PROBER: the prober's own failure, never charged


class Evidence(Protocol):
    """What the scorer needs from the stored points of [start_ns, end_ns)."""

    description: str

    def vantages(self, start_ns: int, end_ns: int) -> set[str]:
        """Vantages with at least one heartbeat in the range."""
        ...

    def missing_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        """Per vantage of `vantages()`, the minutes of the range without a heartbeat."""
        ...

    def access_failures(self, start_ns: int, end_ns: int,
                        with_ok: bool = False) -> list[AccessFailure]:
        """Failed logins per minute, vantage, mailbox and protocol; `with_ok`: with the
        ok logins of the same minute and series (another address of the host answered)."""
        ...

    def canary_events(self, start_ns: int, end_ns: int,
                      over_s: float | None) -> list[CanaryEvent]:
        """Canaries lost, late or refused, or with a delay field over `over_s`."""
        ...

    def delay_sums(self, start_ns: int, end_ns: int) -> list[DelaySums]:
        ...

    def delay_points(self, route: str, vantage: str, start_ns: int,
                     end_ns: int) -> list[Delays]:
        ...

    def delay_over(self, field_name: str, edges: Sequence[float], start_ns: int,
                   end_ns: int) -> dict[tuple[str, str], list[int]]:
        """Per (route, vantage), how many values of the field exceed each edge."""
        ...

    def webmail_buckets(self, start_ns: int, end_ns: int) -> list[WebmailBucket]:
        """Successful loads: count and sum of open_s per 15 minutes, profile, target, vantage."""
        ...

    def webmail_failures(self, start_ns: int, end_ns: int) -> list[WebmailFailure]:
        ...

    def webmail_classes(self, start_ns: int, end_ns: int) -> dict[str, str]:
        """Profile -> the contract class (narrowband, broadband) its loads declare."""
        ...

    def inventory(self, start_ns: int, end_ns: int) -> Inventory:
        ...

    def watcher_down_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        """Per vantage, the minutes whose heartbeat says one of its IMAP watchers was not
        connected: the vantage could not see arrivals then (our fault, shown as coverage)."""
        ...

    def antispam_points(self, start_ns: int, end_ns: int) -> list[Measurement]:
        """The §4/§5 points (mail_filter, mail_blocklist, mail_abuse) of the range, raw:
        a few a day per probe, so nothing to reduce."""
        ...

    def unusable(self, start_ns: int, end_ns: int) -> dict[tuple[str, str], int]:
        """(measurement, reason) -> points read that no reduction can use."""
        ...

    def canaries_not_judged(self, start_ns: int, end_ns: int
                            ) -> dict[tuple[str, str, str], int]:
        """(vantage, route, outcome) -> canaries whose outcome is one of NOT_JUDGED."""
        ...


def _q(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _range(start_ns: int, end_ns: int) -> str:
    return f"time >= {start_ns} AND time < {end_ns}"


# The InfluxQL behind each reduction; docs/judge.md shows them with example ranges.
def q_vantages(start_ns: int, end_ns: int) -> str:
    return (f"SELECT count({HEARTBEAT_FIELD}) FROM {HEARTBEAT} "
            f"WHERE {_range(start_ns, end_ns)} GROUP BY vantage")


def q_missing(start_ns: int, end_ns: int) -> str:
    return (f"SELECT n FROM (SELECT count({HEARTBEAT_FIELD}) AS n FROM {HEARTBEAT} "
            f"WHERE {_range(start_ns, end_ns)} GROUP BY time(1m), vantage fill(0)) "
            f"WHERE n = 0 GROUP BY vantage")


def q_watcher_down(start_ns: int, end_ns: int) -> str:
    # a field compared with a field: InfluxDB 1.6 and later answer it
    return (f"SELECT count(watchers_up) FROM {HEARTBEAT} WHERE watchers_up < watchers AND "
            f"{_range(start_ns, end_ns)} GROUP BY time(1m), {TAG_VANTAGE} fill(none)")


def q_antispam(name: str, start_ns: int, end_ns: int) -> str:
    return f"SELECT * FROM {name} WHERE {_range(start_ns, end_ns)} GROUP BY *"


def q_access_failures(start_ns: int, end_ns: int) -> str:
    return (f"SELECT count(*) FROM {MAIL_ACCESS} WHERE outcome = {_q(AccessOutcome.FAIL)} AND "
            f"{_range(start_ns, end_ns)} GROUP BY time(1m), vantage, mailbox, protocol "
            f"fill(none)")


def q_access_prober(start_ns: int, end_ns: int) -> str:
    """The failed checks the prober itself failed to make: taken off q_access_failures'
    counts (a subtraction, so points without error_class, older ones, stay failures)."""
    return (f"SELECT count(*) FROM {MAIL_ACCESS} WHERE outcome = {_q(AccessOutcome.FAIL)} AND "
            f"{FIELD_ERROR_CLASS} = {_q(ErrorClass.PROBER)} AND {_range(start_ns, end_ns)} "
            f"GROUP BY time(1m), vantage, mailbox, protocol fill(none)")


def q_access_ok(start_ns: int, end_ns: int) -> str:
    """The ok logins of a run of minutes with a failure, per minute and series (one
    statement per run: InfluxQL takes no OR of time ranges, it silently answers none)."""
    return (f"SELECT count(*) FROM {MAIL_ACCESS} WHERE outcome = {_q(AccessOutcome.OK)} AND "
            f"{_range(start_ns, end_ns)} GROUP BY time(1m), vantage, mailbox, protocol "
            f"fill(none)")


def minute_spans(minutes: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive minutes as [start_ns, end_ns) ranges."""
    spans: list[tuple[int, int]] = []
    for m in sorted(set(minutes)):
        if spans and spans[-1][1] == m * MINUTE_NS:
            spans[-1] = (spans[-1][0], (m + 1) * MINUTE_NS)
        else:
            spans.append((m * MINUTE_NS, (m + 1) * MINUTE_NS))
    return spans


# statements per request when asking for the ok logins beside failures
SPANS_PER_QUERY = 50


def q_canary_events(start_ns: int, end_ns: int, over_s: float | None) -> str:
    cond = [f"outcome = {_q(o)}" for o in EVENT_OUTCOMES]
    if over_s is not None:
        cond += [f"{f} > {float(over_s)!r}" for f in DELAY_FIELDS]
    return (f"SELECT canary, outcome, delivery_s, send_delay_s, receive_delay_s, error, "
            f"error_class FROM {MAIL_ROUNDTRIP} WHERE {_range(start_ns, end_ns)} AND "
            f"({' OR '.join(cond)}) "
            f"GROUP BY route, vantage, direction, sender, recipient")


def q_delay_sums(start_ns: int, end_ns: int) -> str:
    cols = ", ".join(f"count({f}) AS n_{f}, sum({f}) AS sum_{f}" for f in DELAY_FIELDS)
    return (f"SELECT {cols} FROM {MAIL_ROUNDTRIP} WHERE {_range(start_ns, end_ns)} "
            f"GROUP BY route, vantage, direction")


def q_delay_points(route: str, vantage: str, start_ns: int, end_ns: int) -> str:
    return (f"SELECT delivery_s, send_delay_s, receive_delay_s FROM {MAIL_ROUNDTRIP} "
            f"WHERE route = {_q(route)} AND vantage = {_q(vantage)} AND "
            f"{_range(start_ns, end_ns)}")


def q_delay_over(field_name: str, edge: float, start_ns: int, end_ns: int) -> str:
    if field_name not in DELAY_FIELDS:
        raise ValueError(f"not a delay field: {field_name}")
    return (f"SELECT count({field_name}) FROM {MAIL_ROUNDTRIP} WHERE {field_name} > {edge!r} "
            f"AND {_range(start_ns, end_ns)} GROUP BY route, vantage")


def q_webmail_buckets(start_ns: int, end_ns: int) -> str:
    # load_s too: an ok load without a login opens when it loads, and points written before
    # open_s existed (or by an older agent) carry load_s only
    return (f"SELECT count(open_s), sum(open_s), count(load_s) AS n_load, sum(load_s) AS "
            f"sum_load FROM {WEBMAIL_LOAD} "
            f"WHERE outcome = {_q(WebmailOutcome.OK)} AND "
            f"{_range(start_ns, end_ns)} GROUP BY time(15m), profile, target, vantage "
            f"fill(none)")


def q_webmail_ok_points(profile: str, target: str, vantage: str, start_ns: int,
                        end_ns: int) -> str:
    return (f"SELECT open_s, load_s FROM {WEBMAIL_LOAD} WHERE outcome = "
            f"{_q(WebmailOutcome.OK)} AND profile = {_q(profile)} AND target = {_q(target)} "
            f"AND vantage = {_q(vantage)} AND {_range(start_ns, end_ns)}")


def q_inventory(start_ns: int, end_ns: int) -> list[str]:
    r = _range(start_ns, end_ns)
    return [
        f"SELECT count({HEARTBEAT_FIELD}) FROM {HEARTBEAT} WHERE {r} GROUP BY vantage",
        f"SELECT count(total_s) FROM {MAIL_ACCESS} WHERE {r} GROUP BY vantage, mailbox, outcome",
        f"SELECT count(outcome) FROM {MAIL_ROUNDTRIP} WHERE {r} GROUP BY vantage, route, "
        f"direction, sender, recipient",
        f"SELECT count(*) FROM {WEBMAIL_LOAD} WHERE {r} GROUP BY vantage",
    ]


def q_unusable(start_ns: int, end_ns: int) -> list[str]:
    r = _range(start_ns, end_ns)
    known = " AND ".join(f"outcome != {_q(o)}" for o in RoundtripOutcome)
    arrived = " OR ".join(f"outcome = {_q(o)}" for o in ARRIVED)
    return [
        f"SELECT count(*) FROM {HEARTBEAT} WHERE {r}",
        f"SELECT count(outcome) AS n, count(delivery_s) AS d FROM {MAIL_ROUNDTRIP} WHERE {r} "
        f"AND ({arrived})",
        f"SELECT count(outcome) FROM {MAIL_ROUNDTRIP} WHERE {r} AND {known}",
        f"SELECT count(total_s) FROM {MAIL_ACCESS} WHERE {r} AND outcome != "
        f"{_q(AccessOutcome.OK)} AND outcome != {_q(AccessOutcome.FAIL)}",
        f"SELECT count(*) FROM {WEBMAIL_LOAD} WHERE {r} AND outcome = {_q(WebmailOutcome.OK)}",
    ]


def q_not_judged(outcome: str, start_ns: int, end_ns: int) -> str:
    return (f"SELECT count(outcome) FROM {MAIL_ROUNDTRIP} WHERE outcome = {_q(outcome)} AND "
            f"{_range(start_ns, end_ns)} GROUP BY vantage, route")


def q_webmail_failures(start_ns: int, end_ns: int) -> str:
    return (f"SELECT timeout_s, load_s, error, error_class FROM {WEBMAIL_LOAD} "
            f"WHERE outcome != {_q(WebmailOutcome.OK)} AND "
            f"{_range(start_ns, end_ns)} GROUP BY profile, target, vantage, outcome")


def q_webmail_classes(start_ns: int, end_ns: int) -> str:
    return (f"SELECT last(contract_class) FROM {WEBMAIL_LOAD} WHERE {_range(start_ns, end_ns)} "
            f"GROUP BY profile")


@dataclass(frozen=True)
class InfluxTarget:
    url: str
    database: str
    retention_policy: str | None = None
    token: str | None = None  # v2/v3: "Authorization: Token ..."
    username: str | None = None  # v1: basic auth
    password: str | None = None
    verify: str | bool = True  # a CA file, or whether to verify TLS at all

    def __repr__(self) -> str:  # never show the token or password
        return f"InfluxTarget({self.url!r}, db={self.database!r})"


class InfluxEvidence:
    """The reductions as InfluxQL over `GET /query` (db = the v1 database or the v2 bucket)."""

    def __init__(self, target: InfluxTarget, timeout_s: float = 120.0,
                 client: httpx.Client | None = None) -> None:
        self.target = target
        self.description = f"InfluxDB {target.url} database {target.database}"
        headers = {"Accept": "application/json"}
        auth = None
        if target.token:
            headers["Authorization"] = f"Token {target.token}"
        elif target.username:
            auth = httpx.BasicAuth(target.username, target.password or "")
        self._client = client or httpx.Client(base_url=target.url.rstrip("/"), headers=headers,
                                              auth=auth, timeout=timeout_s,
                                              verify=target.verify)
        self.queries = 0  # statements sent, for the bench

    def close(self) -> None:
        self._client.close()

    def run(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Run statements in one request; per statement, its series (name, tags, rows)."""
        params = {"db": self.target.database, "q": ";\n".join(statements), "epoch": "ns"}
        if self.target.retention_policy:
            params["rp"] = self.target.retention_policy
        self.queries += len(statements)
        try:
            r = self._client.post("/query", data=params)
        except httpx.HTTPError as exc:
            raise QueryError(f"cannot query {self.target.url}/query: "
                             f"{type(exc).__name__}: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            raise QueryError(f"{self.target.url}/query answered HTTP {r.status_code}: "
                             f"{r.text[:300]}") from None
        if r.status_code != 200 or "error" in body:
            raise QueryError(f"{self.target.url}/query answered HTTP {r.status_code}: "
                             f"{body.get('error', body)} (database {self.target.database!r})")
        out: list[list[dict[str, Any]]] = []
        results = body.get("results", [])
        for i, statement in enumerate(statements):
            result = results[i] if i < len(results) else {}
            if "error" in result:
                raise QueryError(f"{self.target.url} refused {statement!r}: {result['error']}")
            series = []
            for s in result.get("series", []):
                cols = s.get("columns", [])
                rows = [dict(zip(cols, values, strict=False)) for values in s.get("values", [])]
                series.append({"name": s.get("name"), "tags": s.get("tags", {}), "rows": rows})
            out.append(series)
        return out

    def _one(self, statement: str) -> list[dict[str, Any]]:
        return self.run([statement])[0]

    def vantages(self, start_ns: int, end_ns: int) -> set[str]:
        found = set()
        for s in self._one(q_vantages(start_ns, end_ns)):
            if any((row.get("count") or 0) > 0 for row in s["rows"]):
                found.add(s["tags"].get(TAG_VANTAGE, ""))
        return found

    def missing_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        missing: dict[str, list[int]] = {v: [] for v in self.vantages(start_ns, end_ns)}
        for s in self._one(q_missing(start_ns, end_ns)):
            v = s["tags"].get(TAG_VANTAGE, "")
            if v in missing:
                missing[v].extend(row["time"] // MINUTE_NS for row in s["rows"])
        return missing

    def access_failures(self, start_ns: int, end_ns: int,
                        with_ok: bool = False) -> list[AccessFailure]:
        failed, ours = self.run([q_access_failures(start_ns, end_ns),
                                 q_access_prober(start_ns, end_ns)])
        prober = {(m, *key): n for m, key, n in self._access_counts(ours)}
        out = [AccessFailure(m, *key, n - prober.get((m, *key), 0))
               for m, key, n in self._access_counts(failed) if n > prober.get((m, *key), 0)]
        not_made = [AccessFailure(*k, n, error_class=ErrorClass.PROBER)
                    for k, n in prober.items()]
        if not with_ok or not out:
            return out + not_made
        spans = minute_spans(f.minute for f in out)
        ok: dict[tuple[int, str, str, str], int] = {}
        for i in range(0, len(spans), SPANS_PER_QUERY):
            for result in self.run([q_access_ok(a, b) for a, b in spans[i:i + SPANS_PER_QUERY]]):
                for m, key, n in self._access_counts(result):
                    ok[(m, *key)] = ok.get((m, *key), 0) + n
        return [dataclasses.replace(f, ok=ok.get((f.minute, f.vantage, f.mailbox, f.protocol),
                                                 0)) for f in out] + not_made

    @staticmethod
    def _access_counts(series: list[dict[str, Any]]
                       ) -> Iterator[tuple[int, tuple[str, str, str], int]]:
        for s in series:
            tags = s["tags"]
            key = (tags.get(TAG_VANTAGE, ""), tags.get(TAG_MAILBOX, ""),
                   tags.get(TAG_PROTOCOL, ""))
            for row in s["rows"]:
                # count(*) gives one column per field; the point count is the largest
                n = max((v for k, v in row.items() if k != "time" and v), default=0)
                if n:
                    yield row["time"] // MINUTE_NS, key, int(n)

    def canary_events(self, start_ns: int, end_ns: int,
                      over_s: float | None) -> list[CanaryEvent]:
        out = []
        for s in self._one(q_canary_events(start_ns, end_ns, over_s)):
            t = s["tags"]
            for row in s["rows"]:
                out.append(CanaryEvent(
                    time_ns=row["time"], vantage=t.get(TAG_VANTAGE, ""), route=t.get(TAG_ROUTE, ""),
                    direction=t.get(TAG_DIRECTION, ""), sender=t.get(TAG_SENDER, ""),
                    recipient=t.get(TAG_RECIPIENT, ""), outcome=row.get(FIELD_OUTCOME) or "",
                    canary=row.get(FIELD_CANARY) or "",
                    delivery_s=_float(row.get(FIELD_DELIVERY_S)),
                    send_delay_s=_float(row.get(FIELD_SEND_DELAY_S)),
                    receive_delay_s=_float(row.get(FIELD_RECEIVE_DELAY_S)),
                    error=row.get(FIELD_ERROR) or "",
                    error_class=str(row.get(FIELD_ERROR_CLASS) or "")))
        out.sort(key=lambda e: (e.time_ns, e.vantage, e.route))
        return out

    def delay_sums(self, start_ns: int, end_ns: int) -> list[DelaySums]:
        out = []
        for s in self._one(q_delay_sums(start_ns, end_ns)):
            t = s["tags"]
            sums = DelaySums(t.get(TAG_ROUTE, ""), t.get(TAG_VANTAGE, ""), t.get(TAG_DIRECTION, ""))
            for row in s["rows"]:
                for f in DELAY_FIELDS:
                    sums.n[f] = sums.n.get(f, 0) + int(row.get(f"n_{f}") or 0)
                    sums.total[f] = sums.total.get(f, 0.0) + float(row.get(f"sum_{f}") or 0.0)
            out.append(sums)
        return out

    def delay_points(self, route: str, vantage: str, start_ns: int,
                     end_ns: int) -> list[Delays]:
        out = []
        for s in self._one(q_delay_points(route, vantage, start_ns, end_ns)):
            for row in s["rows"]:
                out.append(Delays(_float(row.get(FIELD_DELIVERY_S)),
                                  _float(row.get(FIELD_SEND_DELAY_S)),
                                  _float(row.get(FIELD_RECEIVE_DELAY_S))))
        return out

    def delay_over(self, field_name: str, edges: Sequence[float], start_ns: int,
                   end_ns: int) -> dict[tuple[str, str], list[int]]:
        results = self.run([q_delay_over(field_name, e, start_ns, end_ns) for e in edges])
        out: dict[tuple[str, str], list[int]] = {}
        for i, series in enumerate(results):
            for s in series:
                key = (s["tags"].get(TAG_ROUTE, ""), s["tags"].get(TAG_VANTAGE, ""))
                counts = out.setdefault(key, [0] * len(edges))
                counts[i] += sum(int(row.get("count") or 0) for row in s["rows"])
        return out

    def webmail_buckets(self, start_ns: int, end_ns: int) -> list[WebmailBucket]:
        out = []
        for s in self._one(q_webmail_buckets(start_ns, end_ns)):
            t = s["tags"]
            profile, target = t.get(TAG_PROFILE, ""), t.get(TAG_TARGET, "")
            vantage = t.get(TAG_VANTAGE, "")
            for row in s["rows"]:
                n_open, n_load = int(row.get("count") or 0), int(row.get("n_load") or 0)
                if n_open == 0 and n_load == 0:
                    continue
                if n_open == n_load:  # every load has both: open_s is the figure
                    out.append(WebmailBucket(row["time"], profile, target, vantage, n_open,
                                             float(row.get("sum") or 0.0)))
                elif n_open == 0:  # none has open_s: each opened when it loaded
                    out.append(WebmailBucket(row["time"], profile, target, vantage, n_load,
                                             float(row.get("sum_load") or 0.0), n_load))
                else:  # a bucket that mixes both (an agent upgraded in it): point by point
                    n = n_by_load = 0
                    total = 0.0
                    for ps in self._one(q_webmail_ok_points(
                            profile, target, vantage, row["time"],
                            min(end_ns, row["time"] + WEBMAIL_BUCKET_NS))):
                        for p in ps["rows"]:
                            value = _float(p.get("open_s"))
                            if value is None:
                                value = _float(p.get("load_s"))
                                n_by_load += value is not None
                            if value is not None:
                                n += 1
                                total += value
                    out.append(WebmailBucket(row["time"], profile, target, vantage, n, total,
                                             n_by_load))
        return out

    def watcher_down_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for s in self._one(q_watcher_down(start_ns, end_ns)):
            minutes = [int(row["time"]) // MINUTE_NS for row in s["rows"]
                       if (row.get("count") or 0) > 0]
            if minutes:
                out[s["tags"].get(TAG_VANTAGE, "")] = minutes
        return out

    def antispam_points(self, start_ns: int, end_ns: int) -> list[Measurement]:
        out = []
        names = (MAIL_FILTER, MAIL_BLOCKLIST, MAIL_ABUSE)
        for name, result in zip(names, self.run([q_antispam(n, start_ns, end_ns)
                                                 for n in names]), strict=True):
            for s in result:
                tags = {k: v for k, v in s["tags"].items() if v}
                for row in s["rows"]:
                    fields = {k: v for k, v in row.items() if k != "time" and v is not None}
                    if fields:
                        out.append(Measurement(name, tags, fields, int(row["time"])))
        return out

    def inventory(self, start_ns: int, end_ns: int) -> Inventory:
        hb, access, rt, wm = self.run(q_inventory(start_ns, end_ns))
        inv = Inventory()
        for name, result in ((HEARTBEAT, hb), (WEBMAIL_LOAD, wm)):
            for s in result:
                n = sum(_max_count(row) for row in s["rows"])
                if n:
                    key = (name, s["tags"].get(TAG_VANTAGE, ""))
                    inv.points[key] = inv.points.get(key, 0) + n
        for s in access:
            t = s["tags"]
            n = sum(int(row.get("count") or 0) for row in s["rows"])
            if n:
                inv.access[(t.get(TAG_VANTAGE, ""), t.get(TAG_MAILBOX, ""),
                            t.get(TAG_OUTCOME, ""))] = n
                key = (MAIL_ACCESS, t.get(TAG_VANTAGE, ""))
                inv.points[key] = inv.points.get(key, 0) + n
        for s in rt:
            t = s["tags"]
            n = sum(int(row.get("count") or 0) for row in s["rows"])
            if n:
                inv.routes.append(RouteSeen(t.get(TAG_ROUTE, ""), t.get(TAG_VANTAGE, ""),
                                            t.get(TAG_DIRECTION, ""), t.get(TAG_SENDER, ""),
                                            t.get(TAG_RECIPIENT, ""), n))
                key = (MAIL_ROUNDTRIP, t.get(TAG_VANTAGE, ""))
                inv.points[key] = inv.points.get(key, 0) + n
        return inv

    def canaries_not_judged(self, start_ns: int, end_ns: int
                            ) -> dict[tuple[str, str, str], int]:
        out: dict[tuple[str, str, str], int] = {}
        results = self.run([q_not_judged(o, start_ns, end_ns) for o in NOT_JUDGED])
        for outcome, series in zip(NOT_JUDGED, results, strict=True):
            for s in series:
                n = sum(int(r.get("count") or 0) for r in s["rows"])
                if n:
                    key = (s["tags"].get(TAG_VANTAGE, ""), s["tags"].get(TAG_ROUTE, ""),
                           str(outcome))
                    out[key] = out.get(key, 0) + n
        return out

    def unusable(self, start_ns: int, end_ns: int) -> dict[tuple[str, str], int]:
        hb, arrived, unknown_rt, unknown_acc, wm_ok = self.run(q_unusable(start_ns, end_ns))
        out: dict[tuple[str, str], int] = {}

        def add(name: str, reason: str, n: int) -> None:
            if n > 0:
                out[(name, reason)] = out.get((name, reason), 0) + n

        # count(*) gives a count per field; a field on every point gives the point count
        hb_points = sum(_max_count(r) for s in hb for r in s["rows"])
        with_uptime = sum(int(r.get(f"count_{HEARTBEAT_FIELD}") or 0)
                          for s in hb for r in s["rows"])
        add(HEARTBEAT, NO_UPTIME, hb_points - with_uptime)
        for s in arrived:
            for r in s["rows"]:
                add(MAIL_ROUNDTRIP, ARRIVED_NO_DELIVERY, int(r.get("n") or 0) - int(r.get("d")
                                                                                  or 0))
        add(MAIL_ROUNDTRIP, UNKNOWN_OUTCOME, sum(int(r.get("count") or 0) for s in unknown_rt
                                                  for r in s["rows"]))
        add(MAIL_ACCESS, UNKNOWN_OUTCOME, sum(int(r.get("count") or 0) for s in unknown_acc
                                               for r in s["rows"]))
        for s in wm_ok:
            for r in s["rows"]:
                usable = max(int(r.get("count_open_s") or 0), int(r.get("count_load_s") or 0))
                add(WEBMAIL_LOAD, OK_NO_TIME, _max_count(r) - usable)
        return out

    def webmail_failures(self, start_ns: int, end_ns: int) -> list[WebmailFailure]:
        out = []
        for s in self._one(q_webmail_failures(start_ns, end_ns)):
            t = s["tags"]
            for row in s["rows"]:
                out.append(WebmailFailure(row["time"], t.get(TAG_PROFILE, ""),
                                          t.get(TAG_TARGET, ""), t.get(TAG_VANTAGE, ""),
                                          t.get(TAG_OUTCOME, ""),
                                          _float(row.get("timeout_s")), row.get(FIELD_ERROR) or "",
                                          str(row.get(FIELD_ERROR_CLASS) or "")))
        out.sort(key=lambda f: (f.time_ns, f.vantage, f.target))
        return out


    def webmail_classes(self, start_ns: int, end_ns: int) -> dict[str, str]:
        out = {}
        for s in self._one(q_webmail_classes(start_ns, end_ns)):
            for row in s["rows"]:
                if row.get("last"):
                    out[s["tags"].get(TAG_PROFILE, "")] = str(row["last"])
        return out


def _max_count(row: dict[str, Any]) -> int:
    """The points behind a `count(*)` row: the count of the field that most points carry."""
    return max((int(v) for k, v in row.items() if k != "time" and isinstance(v, int | float)
                and not isinstance(v, bool)), default=0)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def influx_target(settings: Any) -> InfluxTarget:
    """The `[influx]` settings (deliver room's InfluxSettings) as a query target.

    v1: `database` (+ `retention_policy`, `username`/`password`); v2: the bucket, which
    InfluxDB 2.x/3.x map to an InfluxQL database (a bucket "db/rp" of 1.8 splits into both).
    """
    api = getattr(settings, "api", "v2")
    url = settings.url
    token = getattr(settings, "token", None)
    user = getattr(settings, "username", None)
    password = getattr(settings, "password", None)
    rp = getattr(settings, "retention_policy", None) or None
    if api == "v1":
        database = getattr(settings, "database", None)
    else:
        database = getattr(settings, "bucket", None)
        if database and "/" in database:
            database, rp = database.split("/", 1)
    if not database:
        raise QueryError("[influx] names no database (v1 `database`) or bucket (v2 `bucket`) "
                         "to query")
    return InfluxTarget(
        url=url, database=database, retention_policy=rp or None,
        token=_reveal(token) if api != "v1" else None,
        username=_reveal(user) if api == "v1" else None,
        password=_reveal(password) if api == "v1" else None,
        verify=getattr(settings, "ca_file", None) or getattr(settings, "tls_verify", True))


def _reveal(value: Any) -> str | None:
    if value is None:
        return None
    return value.reveal() if hasattr(value, "reveal") else str(value)


def minutes_of(ranges: Iterable[tuple[int, int]]) -> int:
    return sum((end - start) // MINUTE_NS for start, end in ranges)
