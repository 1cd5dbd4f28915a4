"""Minutes -> incidents -> clause verdicts, per DESIGN.md's scoring rules.

- A mailbox-minute at a vantage is down when that mailbox's SMTP or IMAP access failed in
  that minute, or a canary sent (or due to be received) in it was lost or refused; only the
  provider's side of a route counts (the sender of outbound mail, the recipient of inbound).
- A vantage is known in a minute when it wrote a heartbeat (or reported a failure) in it.
  A mailbox is down when a quorum of the known vantages saw it down (default: a majority);
  the service is down when any contracted mailbox is down. No vantage known: unknown.
- Maintenance windows and manual exclusions are never fault time; canaries accepted in
  them are left out of the delay figures too.
- Verdicts: "breach" when the figure is broken counting unknown minutes as up; "pass" when it
  holds even counting them as down, or when coverage reaches `min_coverage`; "unknown"
  otherwise; "pending" while the period is not over and not yet broken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from prober.config.sla import SlaSettings, Window
from prober.contract import Clause, with_overrides
from prober.schema import (
    FIELD_DELIVERY_S,
    FIELD_RECEIVE_DELAY_S,
    FIELD_SEND_DELAY_S,
    Direction,
    RoundtripOutcome,
)
from prober.sla.query import (
    MINUTE_NS,
    CanaryEvent,
    Delays,
    DelaySums,
    Evidence,
    WebmailFailure,
)

PASS, BREACH, UNKNOWN, PENDING = "pass", "breach", "unknown", "pending"
NOT_MEASURED = "not measured"
# Bin edges of the delay distribution (seconds); 60 and 3600 are the contract's lines.
DELAY_EDGES: tuple[float, ...] = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
SIDES = {"send": (FIELD_SEND_DELAY_S, (Direction.OUTBOUND, Direction.INTERNAL)),
         "receive": (FIELD_RECEIVE_DELAY_S, (Direction.INBOUND, Direction.INTERNAL))}


# ---------------------------------------------------------------- periods and minutes

@dataclass(frozen=True)
class Period:
    label: str
    start: datetime  # local, tz-aware
    end: datetime

    @property
    def start_ns(self) -> int:
        return _ns(self.start)

    @property
    def end_ns(self) -> int:
        return _ns(self.end)

    @property
    def minutes(self) -> int:
        return (self.end_ns - self.start_ns) // MINUTE_NS


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000


def month_period(year: int, month: int, tz: ZoneInfo) -> Period:
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return Period(f"{year:04d}-{month:02d}", start, end)


def year_period(year: int, tz: ZoneInfo) -> Period:
    return Period(f"{year:04d}", datetime(year, 1, 1, tzinfo=tz),
                  datetime(year + 1, 1, 1, tzinfo=tz))


def window_minutes(windows: Iterable[Window], start_ns: int, end_ns: int) -> set[int]:
    """Minutes of [start_ns, end_ns) that overlap any window (windows round outward)."""
    out: set[int] = set()
    lo, hi = start_ns // MINUTE_NS, end_ns // MINUTE_NS
    for w in windows:
        first = _ns(w.start) // MINUTE_NS
        last = -(-_ns(w.end) // MINUTE_NS)  # ceil
        out.update(range(max(first, lo), min(last, hi)))
    return out


def segments(start_min: int, end_min: int, skip: set[int]) -> list[tuple[int, int]]:
    """[start, end) in ns, split around the skipped minutes."""
    out = []
    cur = None
    for m in range(start_min, end_min):
        if m in skip:
            if cur is not None:
                out.append((cur * MINUTE_NS, m * MINUTE_NS))
                cur = None
        elif cur is None:
            cur = m
    if cur is not None:
        out.append((cur * MINUTE_NS, end_min * MINUTE_NS))
    return out


def local_day(minute: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(minute * 60, tz).date()


# ---------------------------------------------------------------- connectivity

@dataclass
class Incident:
    start_ns: int
    end_ns: int
    vantages: list[str]
    mailboxes: list[str]
    causes: list[str]

    @property
    def minutes(self) -> int:
        return (self.end_ns - self.start_ns) // MINUTE_NS


@dataclass
class Connectivity:
    start_ns: int
    end_ns: int  # evaluated up to here (the period's end, or now)
    vantages: list[str]
    down: set[int]  # minutes counted as fault time
    unknown: set[int]  # minutes with no vantage known (all of them, windows included)
    maintenance: set[int]
    excluded: set[int]  # exclusion minutes not already maintenance
    down_in_maintenance: int
    down_in_exclusions: int
    unknown_by_vantage: dict[str, int]
    down_by_mailbox: dict[str, int]
    incidents: list[Incident]
    below_quorum: dict[str, int]  # vantage -> mailbox-minutes it saw down without a quorum

    @property
    def evaluated_minutes(self) -> int:
        return (self.end_ns - self.start_ns) // MINUTE_NS

    @property
    def unknown_judged(self) -> int:
        """Unknown minutes that could have been fault time (outside windows)."""
        return len(self.unknown - self.maintenance - self.excluded)

    @property
    def coverage(self) -> float:
        judged = self.evaluated_minutes - len(self.maintenance | self.excluded)
        return 1.0 if judged <= 0 else 1.0 - self.unknown_judged / judged


def provider_side(event: CanaryEvent) -> list[str]:
    """The contracted mailboxes a lost or refused canary speaks about."""
    if event.outcome == RoundtripOutcome.SEND_FAILED:
        return ([event.sender] if event.direction in (Direction.OUTBOUND, Direction.INTERNAL)
                else [])
    if event.outcome == RoundtripOutcome.LOST:
        side = {Direction.OUTBOUND: [event.sender], Direction.INBOUND: [event.recipient],
                Direction.INTERNAL: [event.sender, event.recipient]}
        return side.get(event.direction, [event.sender, event.recipient])
    return []


def connectivity(evidence: Evidence, settings: SlaSettings, start_ns: int, end_ns: int,
                 events: Sequence[CanaryEvent], contracted: set[str] | None) -> Connectivity:
    lo, hi = start_ns // MINUTE_NS, end_ns // MINUTE_NS
    maint = window_minutes(settings.maintenance, start_ns, end_ns)
    excl = window_minutes(settings.exclusions, start_ns, end_ns) - maint
    vantages = sorted(evidence.vantages(start_ns, end_ns)) if hi > lo else []
    missing = evidence.missing_minutes(start_ns, end_ns) if vantages else {}
    missing_at: dict[int, set[str]] = defaultdict(set)
    for v, minutes in missing.items():
        for m in minutes:
            missing_at[m].add(v)

    # (minute, mailbox) -> vantage -> causes
    seen: dict[tuple[int, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in evidence.access_failures(start_ns, end_ns):
        if contracted is None or f.mailbox in contracted:
            seen[(f.minute, f.mailbox)][f.vantage].add(f"{f.protocol} access failed")
    for e in events:
        for mb in provider_side(e):
            if contracted is None or mb in contracted:
                cause = ("canary lost" if e.outcome == RoundtripOutcome.LOST
                         else "canary refused")
                seen[(e.time_ns // MINUTE_NS, mb)][e.vantage].add(cause)
    reporting: dict[int, set[str]] = defaultdict(set)  # a failure report proves a vantage alive
    for (m, _mb), by_vantage in seen.items():
        reporting[m].update(by_vantage)

    all_v = set(vantages)

    def known(m: int) -> set[str]:
        return (all_v - missing_at.get(m, set())) | reporting.get(m, set())

    down_mb: dict[int, dict[str, set[str]]] = defaultdict(dict)  # minute -> mailbox -> vantages
    causes_at: dict[int, set[str]] = defaultdict(set)
    below: dict[str, int] = defaultdict(int)
    for (m, mb), by_vantage in seen.items():
        if not lo <= m < hi:
            continue
        k = known(m)
        saw = set(by_vantage) & k
        need = len(k) // 2 + 1 if settings.quorum is None else min(settings.quorum, len(k))
        if saw and len(saw) >= need:
            down_mb[m][mb] = saw
            for v in saw:
                causes_at[m].update(by_vantage[v])
        else:
            for v in saw:
                below[v] += 1

    if vantages:
        unknown = {m for m in range(lo, hi)
                   if len(missing_at.get(m, ())) == len(all_v) and m not in reporting}
    else:
        unknown = set(range(lo, hi)) - set(reporting)
    all_down = set(down_mb)
    down = all_down - maint - excl
    by_mailbox: dict[str, int] = defaultdict(int)
    for m in down:
        for mb in down_mb[m]:
            by_mailbox[mb] += 1
    incidents = []
    for run in _runs(sorted(down)):
        vs: set[str] = set()
        mbs: set[str] = set()
        cs: set[str] = set()
        for m in run:
            for mb, saw in down_mb[m].items():
                mbs.add(mb)
                vs |= saw
            cs |= causes_at[m]
        incidents.append(Incident(run[0] * MINUTE_NS, (run[-1] + 1) * MINUTE_NS, sorted(vs),
                                  sorted(mbs), sorted(cs)))
    return Connectivity(
        start_ns=start_ns, end_ns=end_ns, vantages=vantages, down=down, unknown=unknown,
        maintenance=maint, excluded=excl, down_in_maintenance=len(all_down & maint),
        down_in_exclusions=len(all_down & excl),
        unknown_by_vantage={v: len(missing.get(v, [])) for v in vantages},
        down_by_mailbox=dict(sorted(by_mailbox.items())), incidents=incidents,
        below_quorum=dict(sorted(below.items())))


def _runs(minutes: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for m in minutes:
        if runs and runs[-1][-1] == m - 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


# ---------------------------------------------------------------- delays

@dataclass
class DelayResult:
    side: str  # send | receive
    n: int = 0  # arrived canaries judged
    total_s: float = 0.0
    n_split: int = 0  # judged by send_delay_s / receive_delay_s (hops told apart)
    n_total: int = 0  # judged by delivery_s (hops not told apart)
    over: list[CanaryEvent] = field(default_factory=list)  # arrived over the maximum
    lost: list[CanaryEvent] = field(default_factory=list)
    bins: list[int] = field(default_factory=list)  # len(DELAY_EDGES) + 1
    by_route: dict[str, list[float]] = field(default_factory=dict)  # route -> [n, sum]

    @property
    def mean_s(self) -> float | None:
        return self.total_s / self.n if self.n else None

    @property
    def over_count(self) -> int:
        return len(self.over) + len(self.lost)


def judged_delay(field_name: str, d: Delays | CanaryEvent) -> float | None:
    value = getattr(d, field_name)
    return value if value is not None else d.delivery_s


def delays(evidence: Evidence, side: str, max_s: float, segs: Sequence[tuple[int, int]],
           events: Sequence[CanaryEvent], skip: set[int]) -> DelayResult:
    field_name, directions = SIDES[side]
    result = DelayResult(side, bins=[0] * (len(DELAY_EDGES) + 1))
    series: dict[tuple[str, str, str], DelaySums] = {}
    for start, end in segs:
        for s in evidence.delay_sums(start, end):
            if s.direction not in directions:
                continue
            key = (s.route, s.vantage, s.direction)
            series.setdefault(key, DelaySums(*key)).add(s)

    # A series whose canaries all (or none) had their hops told apart is summed in the
    # database; only a mixed series is read point by point.
    use: dict[tuple[str, str], str] = {}
    mixed: list[tuple[str, str]] = []
    for (route, vantage, _d), s in series.items():
        arrived, k = s.n.get(FIELD_DELIVERY_S, 0), s.n.get(field_name, 0)
        per_route = result.by_route.setdefault(route, [0.0, 0.0])
        if arrived == 0 and k == 0:
            continue
        if k == arrived:
            result.n += k
            result.n_split += k
            result.total_s += s.total[field_name]
            use[(route, vantage)] = field_name
            per_route[0] += k
            per_route[1] += s.total[field_name]
        elif k == 0:
            result.n += arrived
            result.n_total += arrived
            result.total_s += s.total[FIELD_DELIVERY_S]
            use[(route, vantage)] = FIELD_DELIVERY_S
            per_route[0] += arrived
            per_route[1] += s.total[FIELD_DELIVERY_S]
        else:
            mixed.append((route, vantage))

    for route, vantage in mixed:
        for start, end in segs:
            for d in evidence.delay_points(route, vantage, start, end):
                value = judged_delay(field_name, d)
                if value is None:
                    continue
                result.n += 1
                if getattr(d, field_name) is not None:
                    result.n_split += 1
                else:
                    result.n_total += 1
                result.total_s += value
                result.by_route[route][0] += 1
                result.by_route[route][1] += value
                result.bins[sum(1 for e in DELAY_EDGES if value > e)] += 1

    for f in sorted(set(use.values())):
        over: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(DELAY_EDGES))
        for start, end in segs:
            for key, counts in evidence.delay_over(f, DELAY_EDGES, start, end).items():
                acc = over[key]
                for i, c in enumerate(counts):
                    acc[i] += c
        for key, chosen in use.items():
            if chosen != f:
                continue
            s = next(v for k, v in series.items() if k[:2] == key)
            n = s.n[chosen]
            counts = over.get(key, [0] * len(DELAY_EDGES))
            cumulative = [n, *counts]
            for i in range(len(DELAY_EDGES)):
                result.bins[i] += cumulative[i] - cumulative[i + 1]
            result.bins[-1] += counts[-1]

    for e in events:
        if e.direction not in directions or e.time_ns // MINUTE_NS in skip:
            continue
        if e.outcome == RoundtripOutcome.LOST:
            result.lost.append(e)
            continue
        value = judged_delay(field_name, e)
        if value is not None and value > max_s:
            result.over.append(e)
    return result


# ---------------------------------------------------------------- webmail

@dataclass
class ProfileResult:
    profile: str
    contract_class: str = ""
    n_ok: int = 0
    sum_ok: float = 0.0
    failures: list[WebmailFailure] = field(default_factory=list)
    failed_s: float = 0.0  # the failures, each at its timeout
    daily: dict[date, list[float]] = field(default_factory=dict)  # day -> [n, sum]

    @property
    def n(self) -> int:
        return self.n_ok + len(self.failures)

    @property
    def mean_s(self) -> float | None:
        return (self.sum_ok + self.failed_s) / self.n if self.n else None


def webmail(evidence: Evidence, settings: SlaSettings, segs: Sequence[tuple[int, int]],
            tz: ZoneInfo, clauses: dict[str, Clause]) -> dict[str, ProfileResult]:
    profiles: dict[str, ProfileResult] = {}
    classes: dict[str, str] = {}
    for start, end in segs:
        classes.update(evidence.webmail_classes(start, end))
    for start, end in segs:
        for b in evidence.webmail_buckets(start, end):
            p = profiles.setdefault(b.profile, ProfileResult(b.profile))
            p.n_ok += b.n
            p.sum_ok += b.total_s
            day = p.daily.setdefault(local_day(b.start_ns // MINUTE_NS, tz), [0.0, 0.0])
            day[0] += b.n
            day[1] += b.total_s
        for f in evidence.webmail_failures(start, end):
            p = profiles.setdefault(f.profile, ProfileResult(f.profile))
            at = f.timeout_s if f.timeout_s is not None else _fallback_timeout(
                settings, f.profile, classes, clauses)
            p.failures.append(f)
            p.failed_s += at
            day = p.daily.setdefault(local_day(f.time_ns // MINUTE_NS, tz), [0.0, 0.0])
            day[0] += 1
            day[1] += at
    for name, p in profiles.items():
        p.contract_class = _contract_class(name, classes, clauses)
    return dict(sorted(profiles.items()))


def _contract_class(profile: str, classes: dict[str, str], clauses: dict[str, Clause]) -> str:
    """narrowband / broadband: named in the clause's `profiles`, else what the loads declare."""
    for cls in ("narrowband", "broadband"):
        if profile in clauses[f"webmail_{cls}"].names("profiles"):
            return cls
    return classes.get(profile, "")


def _fallback_timeout(settings: SlaSettings, profile: str, classes: dict[str, str],
                      clauses: dict[str, Clause]) -> float:
    """For a failed load without timeout_s: the configured timeout, else twice the clause's
    limit (the webmail probe's own default)."""
    if settings.webmail_timeout_s is not None:
        return settings.webmail_timeout_s
    cls = _contract_class(profile, classes, clauses)
    if cls:
        return 2.0 * clauses[f"webmail_{cls}"].num("mean_max_s")
    return 60.0

# ---------------------------------------------------------------- verdicts

@dataclass
class Verdict:
    clause: Clause
    status: str
    figure: str = ""  # the measured figure, for people
    value: float | None = None
    detail: str = ""

    @property
    def penalty_owed(self) -> str:
        return self.clause.penalty if self.status == BREACH else ""


@dataclass
class YearResult:
    year: int
    through_ns: int  # evaluated up to here
    days: int  # calendar days of the year
    faulty_days: list[date]
    unknown_days: list[date]  # days with minutes no vantage saw (not already faulty)
    coverage: float
    complete: bool


@dataclass
class Scorecard:
    month: Period
    timezone: str
    source: str
    generated_ns: int
    evaluated_end_ns: int
    conn: Connectivity
    send: DelayResult
    receive: DelayResult
    webmail: dict[str, ProfileResult]
    events: list[CanaryEvent]
    maintenance: list[Window]
    exclusions: list[Window]
    year: YearResult | None
    year_explicit: bool
    verdicts: list[Verdict]
    webmail_timeout_s: float | None
    daily_down: dict[date, int]
    daily_unknown: dict[date, int]

    @property
    def exit_code(self) -> int:
        statuses = [v.status for v in self.verdicts
                    if not (v.clause.id == "fault_free_days" and not self.year_explicit
                            and v.status == PENDING)]
        if BREACH in statuses:
            return 1
        if UNKNOWN in statuses or PENDING in statuses:
            return 2
        return 0


def _status(broken: bool, holds_worst_case: bool, coverage_ok: bool, complete: bool) -> str:
    if broken:
        return BREACH
    if not complete:
        return PENDING
    if holds_worst_case or coverage_ok:
        return PASS
    return UNKNOWN


def score(evidence: Evidence, settings: SlaSettings, year: int, month: int,
          now_ns: int, contracted: set[str] | None = None,
          judge_year: int | None = None) -> Scorecard:
    tz = settings.tz
    clauses = with_overrides(settings.clauses)
    by_id = {c.id: c for c in clauses}
    period = month_period(year, month, tz)
    now_min = now_ns // MINUTE_NS
    end_ns = max(period.start_ns, min(period.end_ns, now_min * MINUTE_NS))
    complete = end_ns >= period.end_ns

    send_c, recv_c = by_id["send_delay"], by_id["receive_delay"]
    over_s = min(send_c.num("max_s"), recv_c.num("max_s"))
    events = (evidence.canary_events(period.start_ns, end_ns, over_s)
              if end_ns > period.start_ns else [])
    conn = connectivity(evidence, settings, period.start_ns, end_ns, events, contracted)
    skip = conn.maintenance | conn.excluded
    segs = segments(period.start_ns // MINUTE_NS, end_ns // MINUTE_NS, skip)
    send = delays(evidence, "send", send_c.num("max_s"), segs, events, skip)
    receive = delays(evidence, "receive", recv_c.num("max_s"), segs, events, skip)
    web = webmail(evidence, settings, segs, tz, by_id)

    daily_down: dict[date, int] = {}
    daily_unknown: dict[date, int] = {}
    day = period.start.date()
    while day < period.end.date():
        daily_down[day] = daily_unknown[day] = 0
        day += timedelta(days=1)
    for m in conn.down:
        daily_down[local_day(m, tz)] += 1
    for m in conn.unknown - skip:
        daily_unknown[local_day(m, tz)] += 1

    yr = judge_year if judge_year is not None else year
    year_result = _year(evidence, settings, yr, tz, now_ns, contracted,
                        None if judge_year is not None else period.end_ns, (year, conn))

    verdicts = _verdicts(clauses, settings, period, conn, send, receive, web, year_result,
                         complete)
    return Scorecard(
        month=period, timezone=settings.timezone, source=evidence.description,
        generated_ns=now_ns, evaluated_end_ns=end_ns, conn=conn, send=send, receive=receive,
        webmail=web, events=[e for e in events if e.time_ns // MINUTE_NS not in skip],
        maintenance=_clip(settings.maintenance, period), exclusions=_clip(settings.exclusions,
                                                                            period),
        year=year_result, year_explicit=judge_year is not None, verdicts=verdicts,
        webmail_timeout_s=settings.webmail_timeout_s, daily_down=daily_down,
        daily_unknown=daily_unknown)


def _clip(windows: Iterable[Window], period: Period) -> list[Window]:
    return [w for w in windows if w.end > period.start and w.start < period.end]


def _year(evidence: Evidence, settings: SlaSettings, year: int, tz: ZoneInfo, now_ns: int,
          contracted: set[str] | None, until_ns: int | None,
          known: tuple[int, Connectivity]) -> YearResult:
    """Fault-free days: each month of the year up to `until_ns` (or the year's end) and now."""
    yp = year_period(year, tz)
    through = min(yp.end_ns, until_ns if until_ns is not None else yp.end_ns,
                  now_ns // MINUTE_NS * MINUTE_NS)
    faulty: set[date] = set()
    unknown_days: set[date] = set()
    unknown_min = judged = 0
    for month in range(1, 13):
        p = month_period(year, month, tz)
        if p.start_ns >= through:
            break
        end = min(p.end_ns, through)
        if known[0] == year and known[1].start_ns == p.start_ns and known[1].end_ns == end:
            conn = known[1]
        else:
            events = evidence.canary_events(p.start_ns, end, None)
            conn = connectivity(evidence, settings, p.start_ns, end, events, contracted)
        faulty.update(local_day(m, tz) for m in conn.down)
        unknown_days.update(local_day(m, tz) for m in conn.unknown - conn.maintenance
                            - conn.excluded)
        unknown_min += conn.unknown_judged
        judged += conn.evaluated_minutes - len(conn.maintenance | conn.excluded)
    days = (yp.end.date() - yp.start.date()).days
    return YearResult(year=year, through_ns=through, days=days, faulty_days=sorted(faulty),
                      unknown_days=sorted(unknown_days - faulty),
                      coverage=1.0 if judged <= 0 else 1.0 - unknown_min / judged,
                      complete=through >= yp.end_ns)


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _verdicts(clauses: Sequence[Clause], settings: SlaSettings, period: Period,
              conn: Connectivity, send: DelayResult, receive: DelayResult,
              web: dict[str, ProfileResult], year: YearResult | None,
              complete: bool) -> list[Verdict]:
    cov_ok = conn.coverage >= settings.min_coverage
    down = len(conn.down)
    unk = conn.unknown_judged
    cov = f"coverage {conn.coverage * 100:.2f} %, {unk} min unknown"
    out = []
    for c in clauses:
        if not c.measured:
            out.append(Verdict(c, NOT_MEASURED, detail=c.note))
        elif c.id == "connectivity":
            limit = int(c.num("below_min"))
            out.append(Verdict(c, _status(down >= limit, down + unk < limit, cov_ok, complete),
                               f"{down} min", down,
                               f"{len(conn.incidents)} incidents; {cov}"))
        elif c.id == "fault_time":
            limit = int(c.num("max_min"))
            out.append(Verdict(c, _status(down > limit, down + unk <= limit, cov_ok, complete),
                               f"{down} min", down, f"{len(conn.incidents)} incidents; {cov}"))
        elif c.id == "adjustment_time":
            limit = int(c.num("max_min"))
            m = len(conn.maintenance)
            out.append(Verdict(c, _status(m > limit, True, True, complete), f"{m} min", m,
                               f"{len(_clip(settings.maintenance, period))} maintenance windows; "
                               f"{conn.down_in_maintenance} min down inside them"))
        elif c.id == "availability":
            total = period.minutes
            avail = 100.0 * (total - down) / total
            worst = 100.0 * (total - down - unk) / total
            limit_pct = c.num("min_pct")
            out.append(Verdict(c, _status(avail < limit_pct, worst >= limit_pct, cov_ok, complete),
                               f"{avail:.4f} %", avail,
                               f"({total} - {down}) / {total} calendar minutes; {cov}"))
        elif c.id == "fault_free_days":
            out.append(_year_verdict(c, settings, year))
        elif c.id in ("send_delay", "receive_delay"):
            r = send if c.id == "send_delay" else receive
            out.append(_delay_verdict(c, r, complete))
        elif c.id.startswith("webmail_"):
            out.append(_webmail_verdict(c, web, complete))
        else:
            out.append(Verdict(c, NOT_MEASURED, detail="no rule for this clause"))
    return out


def _year_verdict(c: Clause, settings: SlaSettings, y: YearResult | None) -> Verdict:
    if y is None:
        return Verdict(c, NOT_MEASURED, detail="no year given")
    allowed = y.days - int(c.num("min_days"))
    faulty = len(y.faulty_days)
    status = _status(faulty > allowed, faulty + len(y.unknown_days) <= allowed,
                     y.coverage >= settings.min_coverage, y.complete)
    free = y.days - faulty
    through = datetime.fromtimestamp(y.through_ns / 1e9, UTC).date()
    return Verdict(c, status, f"{free} days", free,
                   f"{y.year}: {faulty} days with faults (at most {allowed} allowed), "
                   f"{len(y.unknown_days)} days with minutes no vantage saw; evaluated "
                   f"through {through}")


def _delay_verdict(c: Clause, r: DelayResult, complete: bool) -> Verdict:
    mean_max = c.num("mean_max_s")
    max_over = int(c.num("max_over"))
    mean = r.mean_s
    # the count of late canaries only grows; a mean can still come down in a running month
    broken = r.over_count > max_over or (complete and mean is not None and mean > mean_max)
    basis = []
    if r.n_split:
        basis.append(f"{r.n_split} by {SIDES[r.side][0]}")
    if r.n_total:
        basis.append(f"{r.n_total} by delivery_s (hops not told apart)")
    detail = (f"{r.n} canaries arrived ({', '.join(basis) or 'none'}); {len(r.over)} over "
              f"{_fmt(c.num('max_s'), 0)} s, {len(r.lost)} lost")
    figure = (f"mean {mean:.2f} s, {r.over_count} over max" if mean is not None
              else f"no canary arrived, {r.over_count} over max")
    if broken:
        return Verdict(c, BREACH, figure, mean, detail)
    if r.n == 0:
        return Verdict(c, UNKNOWN, figure, mean, detail + "; no data")
    return Verdict(c, PASS if complete else PENDING, figure, mean, detail)


def _webmail_verdict(c: Clause, web: dict[str, ProfileResult], complete: bool) -> Verdict:
    cls = c.id.removeprefix("webmail_")
    chosen = [p for p in web.values() if p.contract_class == cls]
    names = [p.profile for p in chosen] or list(c.names("profiles"))
    n = sum(p.n for p in chosen)
    fails = sum(len(p.failures) for p in chosen)
    if n == 0:
        return Verdict(c, UNKNOWN, "no page loads", None,
                       f"no loads with profile {', '.join(names)}")
    mean = sum(p.sum_ok + p.failed_s for p in chosen) / n
    limit = c.num("mean_max_s")
    detail = f"{n} loads, {fails} failed (counted at their timeout)"
    if mean > limit and complete:
        return Verdict(c, BREACH, f"mean {mean:.2f} s", mean, detail)
    return Verdict(c, PASS if complete else PENDING, f"mean {mean:.2f} s", mean, detail)
