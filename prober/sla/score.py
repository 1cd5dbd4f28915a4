"""Minutes -> incidents -> clause verdicts, per the scoring rules in docs/judge.md.

- A mailbox-minute at a vantage is down when that mailbox's SMTP or IMAP access failed in
  that minute, or a canary sent (or due to be received) in it was lost or refused; only the
  provider's side of a route counts (the sender of outbound mail, the recipient of inbound).
- A vantage is known in a minute when it wrote a heartbeat (or reported a failure) in it.
  A mailbox is down when a quorum of the known vantages saw it down (default: a majority);
  the service is down when any contracted mailbox is down. No vantage known: unknown.
- Maintenance windows and manual exclusions are never fault time; canaries accepted in
  them are left out of the delay figures too.
- Scope: `[sla] vantages`, `mailboxes` and `routes` declare what the contract covers; what
  is declared and absent from the evidence is reported and lowers the coverage of every
  clause it feeds; points outside the scope are counted as unusable, never judged.
- Coverage per clause (the share of the expected evidence present), against a minimum per
  clause. Verdicts: "breach" when the evidence proves it (counting unknown minutes as up,
  counting only late and lost canaries already seen), whatever the coverage, said in
  words; "pass" when it holds even counting unknown minutes as down, or when coverage
  reaches the minimum, and never while a declared vantage, mailbox or route is absent;
  "not enough data" otherwise; "pending" while the period is not over and not yet broken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from prober.config.sla import DEAD_ADDRESS_ALL_FAIL, DEAD_ADDRESS_FAULT, SlaSettings, Window
from prober.contract import Clause, with_overrides
from prober.schema import (
    FIELD_DELIVERY_S,
    FIELD_RECEIVE_DELAY_S,
    FIELD_SEND_DELAY_S,
    Direction,
    ErrorClass,
    RoundtripOutcome,
)
from prober.sla.filters import (
    AbuseEvent,
    BlocklistEvent,
    FilterEvent,
    events_from,
    judge_spam,
    judge_virus,
)
from prober.sla.query import (
    MINUTE_NS,
    SEND_FAILED_PROBER,
    CanaryEvent,
    Delays,
    DelaySums,
    Evidence,
    Inventory,
    WebmailFailure,
)
from prober.sla.scope import RECEIVE_SIDE, SEND_SIDE, Scope, ScopedEvidence

PASS, BREACH, UNKNOWN, PENDING = "pass", "breach", "not enough data", "pending"
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
    missing_judged_by_vantage: dict[str, int]  # minutes outside windows without a heartbeat
    down_by_mailbox: dict[str, int]
    incidents: list[Incident]
    below_quorum: dict[str, int]  # vantage -> mailbox-minutes it saw down without a quorum
    # `[sla] dead_address = "all_fail"`: mailbox -> minutes with a failed address while
    # another address of the host answered, not charged by that rule
    dead_address: dict[str, int] = field(default_factory=dict)
    # access checks the prober itself failed to make (error_class "prober"): never a down
    # minute; (vantage, mailbox, protocol) -> [checks, judged minutes], listed by name
    not_measured: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)

    @property
    def evaluated_minutes(self) -> int:
        return (self.end_ns - self.start_ns) // MINUTE_NS

    @property
    def unknown_judged(self) -> int:
        """Unknown minutes that could have been fault time (outside windows)."""
        return len(self.unknown - self.maintenance - self.excluded)

    @property
    def judged_minutes(self) -> int:
        return self.evaluated_minutes - len(self.maintenance | self.excluded)

    @property
    def coverage(self) -> float:
        judged = self.judged_minutes
        return 1.0 if judged <= 0 else 1.0 - self.unknown_judged / judged

    def vantage_coverage(self, declared: Sequence[str] | None) -> float:
        """With declared vantages: the share of (declared vantage, judged minute) pairs with
        a heartbeat, an absent vantage counting all its minutes; else `coverage`."""
        if not declared:
            return self.coverage
        judged = self.judged_minutes
        if judged <= 0:
            return 1.0
        missing = sum(self.missing_judged_by_vantage.get(v, judged) for v in declared)
        return 1.0 - missing / (judged * len(declared))


def provider_side(event: CanaryEvent) -> list[str]:
    """The contracted mailboxes a lost or refused canary speaks about; none for a send the
    prober itself failed to make (error_class "prober")."""
    if event.error_class == ErrorClass.PROBER:
        return []
    if event.outcome == RoundtripOutcome.SEND_FAILED:
        return ([event.sender] if event.direction in (Direction.OUTBOUND, Direction.INTERNAL)
                else [])
    if event.outcome == RoundtripOutcome.LOST:
        side: dict[str, list[str]] = {
            Direction.OUTBOUND: [event.sender], Direction.INBOUND: [event.recipient],
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
    all_fail = settings.dead_address == DEAD_ADDRESS_ALL_FAIL
    dead_address: dict[str, set[int]] = defaultdict(set)  # mailbox -> minutes not charged
    # (minute, mailbox) -> vantages whose check of it the prober failed to make: they
    # cannot vouch for the mailbox being up in that minute, nor say it was down
    blind: dict[tuple[int, str], set[str]] = defaultdict(set)
    not_made: dict[tuple[str, str, str], list[int]] = {}
    for f in evidence.access_failures(start_ns, end_ns, with_ok=all_fail):
        if contracted is None or f.mailbox in contracted:
            if f.error_class == ErrorClass.PROBER:
                if lo <= f.minute < hi:
                    blind[(f.minute, f.mailbox)].add(f.vantage)
                    entry = not_made.setdefault((f.vantage, f.mailbox, f.protocol), [0, 0])
                    entry[0] += f.count
                    entry[1] += f.minute not in maint and f.minute not in excl
                continue
            if all_fail and f.ok:
                # another address of the host answered in this minute: by the configured
                # rule not a failed minute; counted and listed, never dropped in silence
                if lo <= f.minute < hi:
                    dead_address[f.mailbox].add(f.minute)
                continue
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
        k = known(m) - (blind.get((m, mb), set()) - set(by_vantage))
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
    # a minute in which no vantage could check a mailbox (every one that was up failed on
    # its own side) is unknown for the service too: that mailbox may have been down
    for (m, mb), blinded in blind.items():
        if mb not in down_mb.get(m, {}) and not (known(m) - blinded):
            unknown.add(m)
    # a vantage's minute with a check it failed to make is a minute it did not see, for
    # the coverage (as a minute without its heartbeat)
    blind_by_vantage: dict[str, set[int]] = defaultdict(set)
    for (m, _mb), blinded in blind.items():
        for v in blinded:
            blind_by_vantage[v].add(m)
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
        missing_judged_by_vantage={v: len((set(missing.get(v, ())) | blind_by_vantage[v])
                                          - maint - excl) for v in vantages},
        down_by_mailbox=dict(sorted(by_mailbox.items())), incidents=incidents,
        below_quorum=dict(sorted(below.items())),
        dead_address={mb: len(ms - maint - excl) for mb, ms in sorted(dead_address.items())
                      if ms - maint - excl},
        not_measured=dict(sorted(not_made.items())))


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
            for rv, counts in evidence.delay_over(f, DELAY_EDGES, start, end).items():
                acc = over[rv]
                for i, c in enumerate(counts):
                    acc[i] += c
        for rv, chosen in use.items():
            if chosen != f:
                continue
            s = next(v for k, v in series.items() if k[:2] == rv)
            n = s.n[chosen]
            counts = over.get(rv, [0] * len(DELAY_EDGES))
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
    n_by_load: int = 0  # of n_ok: loads without open_s, judged by load_s
    failures: list[WebmailFailure] = field(default_factory=list)
    failed_s: float = 0.0  # the failures, each at its timeout
    # loads the prober itself failed to make (error_class "prober": Chromium would not
    # start, no descriptor left): no evidence about the provider, so neither a failure nor
    # in the mean; they lower the clause's coverage and are listed
    not_measured: list[WebmailFailure] = field(default_factory=list)
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
            p.n_by_load += b.n_by_load
            day = p.daily.setdefault(local_day(b.start_ns // MINUTE_NS, tz), [0.0, 0.0])
            day[0] += b.n
            day[1] += b.total_s
        for f in evidence.webmail_failures(start, end):
            p = profiles.setdefault(f.profile, ProfileResult(f.profile))
            if f.error_class == ErrorClass.PROBER:
                p.not_measured.append(f)
                continue
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

@dataclass(frozen=True)
class Coverage:
    """How much of the evidence a clause needs is there, against the clause's minimum."""

    share: float
    minimum: float
    absent: tuple[str, ...] = ()  # declared and never seen: "vantage v3", "route int"

    @property
    def ok(self) -> bool:
        return self.share >= self.minimum and not self.absent

    def words(self) -> str:
        text = f"coverage {self.share * 100:.2f} % (minimum {self.minimum * 100:g} %)"
        if self.absent:
            text += "; declared but absent from the evidence: " + ", ".join(self.absent)
        return text


FULL = Coverage(1.0, 0.0)


# §4/§5: the share of the period's days with a completed test that a verdict needs
ANTISPAM_MIN_DAYS = 0.9


@dataclass
class AntispamEvidence:
    filters: list[FilterEvent]
    lists: list[BlocklistEvent]
    abuse: list[AbuseEvent]
    end_ns: int  # evaluated up to here
    evidence: dict[str, list[str]] = field(default_factory=dict)  # filled by the verdicts


@dataclass
class Verdict:
    clause: Clause
    status: str
    figure: str = ""  # the measured figure, for people
    value: float | None = None
    detail: str = ""
    coverage: Coverage = FULL

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
    scope: Scope = field(default_factory=lambda: Scope(None, None, None))
    # (measurement, reason) -> points read and not judged (scope, unreadable, incomplete)
    unusable: dict[tuple[str, str], int] = field(default_factory=dict)
    # outcome -> canaries not judged (pending when scored, send_uncertain, ...): reported with
    # the coverage, never charged to the provider
    not_judged: dict[str, int] = field(default_factory=dict)
    # §4/§5: every failure found, per clause id, with its evidence
    antispam_evidence: dict[str, list[str]] = field(default_factory=dict)
    # per vantage, judged minutes in which one of its IMAP watchers was not connected: it
    # could not see arrivals then. Our fault, so coverage, never provider fault time
    watcher_down: dict[str, int] = field(default_factory=dict)
    dead_address: str = DEAD_ADDRESS_FAULT  # `[sla] dead_address`, the rule applied

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


def _status(broken: bool, holds_worst_case: bool, cov: Coverage,
            complete: bool) -> tuple[str, str]:
    """(status, words): a proven breach stands whatever the coverage; a pass needs the
    figure to hold in the worst case or enough coverage, and nothing declared absent."""
    if broken:
        return BREACH, ("" if cov.ok else f"; proven although {cov.words()}: counting every "
                        "minute no vantage saw as up, the limit is already broken")
    if not complete:
        return PENDING, ""
    if cov.absent:
        return UNKNOWN, f"; not enough data: {cov.words()}"
    if holds_worst_case:
        return PASS, ("" if cov.ok else f"; holds even counting every minute no vantage saw "
                      f"as down ({cov.words()})")
    if cov.ok:
        return PASS, ""
    return UNKNOWN, f"; not enough data: {cov.words()}"


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

    inv = (evidence.inventory(period.start_ns, end_ns) if end_ns > period.start_ns
           else Inventory())
    scope = Scope.of(inv, settings, contracted)
    unusable = (dict(evidence.unusable(period.start_ns, end_ns))
                if end_ns > period.start_ns else {})
    for k, n in scope.out_of_scope.items():
        unusable[k] = unusable.get(k, 0) + n
    evidence = ScopedEvidence(evidence, scope)
    not_judged: dict[str, int] = {}
    if end_ns > period.start_ns:
        for (_v, _r, outcome), n in evidence.canaries_not_judged(period.start_ns,
                                                                 end_ns).items():
            not_judged[outcome] = not_judged.get(outcome, 0) + n

    send_c, recv_c = by_id["send_delay"], by_id["receive_delay"]
    over_s = min(send_c.num("max_s"), recv_c.num("max_s"))
    events = (evidence.canary_events(period.start_ns, end_ns, over_s)
              if end_ns > period.start_ns else [])
    # sends the prober itself failed to make: neither delivered nor lost, never charged;
    # counted apart with the outcomes not judged (as `abandoned`)
    not_sent = [e for e in events if e.error_class == ErrorClass.PROBER]
    if not_sent:
        events = [e for e in events if e.error_class != ErrorClass.PROBER]
        not_judged[SEND_FAILED_PROBER] = len(not_sent)
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

    filters, lists, abuse = events_from(evidence.antispam_points(period.start_ns, end_ns)
                                        if end_ns > period.start_ns else [])
    antispam = AntispamEvidence(filters, lists, abuse, end_ns)
    watcher_down = ({v: len(set(ms) - skip) for v, ms in
                     evidence.watcher_down_minutes(period.start_ns, end_ns).items()}
                    if end_ns > period.start_ns else {})
    verdicts = _verdicts(clauses, settings, period, conn, send, receive, web, year_result,
                         complete, scope, antispam)
    return Scorecard(
        month=period, timezone=settings.timezone, source=evidence.description,
        generated_ns=now_ns, evaluated_end_ns=end_ns, conn=conn, send=send, receive=receive,
        webmail=web, events=[e for e in events if e.time_ns // MINUTE_NS not in skip],
        maintenance=_clip(settings.maintenance, period), exclusions=_clip(settings.exclusions,
                                                                            period),
        year=year_result, year_explicit=judge_year is not None, verdicts=verdicts,
        webmail_timeout_s=settings.webmail_timeout_s, daily_down=daily_down,
        daily_unknown=daily_unknown, scope=scope, not_judged=dict(sorted(not_judged.items())),
        unusable=dict(sorted(unusable.items())), antispam_evidence=antispam.evidence,
        watcher_down={v: n for v, n in sorted(watcher_down.items()) if n},
        dead_address=settings.dead_address)


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
    vantage_missing = 0.0  # declared vantage-minutes without a heartbeat
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
        judged += conn.judged_minutes
        vantage_missing += (1.0 - conn.vantage_coverage(settings.vantages)) * conn.judged_minutes
    days = (yp.end.date() - yp.start.date()).days
    return YearResult(year=year, through_ns=through, days=days, faulty_days=sorted(faulty),
                      unknown_days=sorted(unknown_days - faulty),
                      coverage=(1.0 if judged <= 0 else
                                1.0 - (vantage_missing if settings.vantages else unknown_min)
                                / judged),
                      complete=through >= yp.end_ns)


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _coverage(c: Clause, settings: SlaSettings, conn: Connectivity, scope: Scope,
              year: YearResult | None, web: dict[str, ProfileResult]) -> Coverage:
    """The share of the evidence clause `c` needs that is there. Vantages feed every clause
    (their heartbeat minutes), mailboxes and routes the connectivity family, routes of the
    right direction the delay clauses; the adjustment time needs only the config."""
    minimum = settings.clause_min_coverage.get(c.id, settings.min_coverage)
    if c.id == "adjustment_time":
        return Coverage(1.0, minimum)
    vantages = tuple(f"vantage {v}" for v in scope.absent_vantages)
    time_share = (year.coverage if c.id == "fault_free_days" and year is not None
                  else conn.vantage_coverage(settings.vantages))
    if c.id.startswith("webmail_"):
        # a load the prober failed to make is a load not measured
        chosen = [p for p in web.values() if p.contract_class == c.id.removeprefix("webmail_")]
        made = sum(p.n for p in chosen)
        missed = sum(len(p.not_measured) for p in chosen)
        share = made / (made + missed) if missed else 1.0
        return Coverage(time_share * share, minimum, vantages)
    if c.id in ("send_delay", "receive_delay"):
        share, absent = scope.route_share(SEND_SIDE if c.id == "send_delay" else RECEIVE_SIDE)
        return Coverage(time_share * share, minimum,
                        vantages + tuple(f"route {r}" for r in absent))
    share, absent = scope.route_share()
    return Coverage(time_share * scope.mailbox_share() * share, minimum,
                    vantages + tuple(f"mailbox {m}" for m in scope.absent_mailboxes)
                    + tuple(f"route {r}" for r in absent))


def _verdicts(clauses: Sequence[Clause], settings: SlaSettings, period: Period,
              conn: Connectivity, send: DelayResult, receive: DelayResult,
              web: dict[str, ProfileResult], year: YearResult | None,
              complete: bool, scope: Scope, antispam: AntispamEvidence) -> list[Verdict]:
    down = len(conn.down)
    unk = conn.unknown_judged
    cov_text = f"{unk} min no vantage saw"
    made_not = sum(n for n, _ in conn.not_measured.values())
    if made_not:
        first = next(iter(conn.not_measured))
        cov_text += (f"; {made_not} access checks the prober failed to make (not charged; "
                     f"e.g. {first[0]} {first[2]} {first[1]})")
    out = []
    for c in clauses:
        if not c.measured:
            out.append(Verdict(c, NOT_MEASURED, detail=c.note))
            continue
        cov = _coverage(c, settings, conn, scope, year, web)
        if c.id == "connectivity":
            limit = int(c.num("below_min"))
            status, words = _status(down >= limit, down + unk < limit, cov, complete)
            out.append(Verdict(c, status, f"{down} min", down,
                               f"{len(conn.incidents)} incidents; {cov_text}{words}", cov))
        elif c.id == "fault_time":
            limit = int(c.num("max_min"))
            status, words = _status(down > limit, down + unk <= limit, cov, complete)
            out.append(Verdict(c, status, f"{down} min", down,
                               f"{len(conn.incidents)} incidents; {cov_text}{words}", cov))
        elif c.id == "adjustment_time":
            limit = int(c.num("max_min"))
            m = len(conn.maintenance)
            status, words = _status(m > limit, True, cov, complete)
            out.append(Verdict(c, status, f"{m} min", m,
                               f"{len(_clip(settings.maintenance, period))} maintenance windows; "
                               f"{conn.down_in_maintenance} min down inside them", cov))
        elif c.id == "availability":
            total = period.minutes
            avail = 100.0 * (total - down) / total
            worst = 100.0 * (total - down - unk) / total
            limit_pct = c.num("min_pct")
            status, words = _status(avail < limit_pct, worst >= limit_pct, cov, complete)
            out.append(Verdict(c, status, f"{avail:.4f} %", avail,
                               f"({total} - {down}) / {total} calendar minutes; {cov_text}"
                               f"{words}", cov))
        elif c.id == "fault_free_days":
            out.append(_year_verdict(c, year, cov))
        elif c.id in ("send_delay", "receive_delay"):
            r = send if c.id == "send_delay" else receive
            out.append(_delay_verdict(c, r, complete, cov))
        elif c.id.startswith("webmail_"):
            out.append(_webmail_verdict(c, web, complete, cov))
        elif c.id in ("anti_spam", "anti_virus"):
            out.append(_antispam_verdict(c, settings, antispam, period, complete))
        else:
            out.append(Verdict(c, NOT_MEASURED, detail="no rule for this clause"))
    return out


def _antispam_verdict(c: Clause, settings: SlaSettings, antispam: AntispamEvidence,
                      period: Period, complete: bool) -> Verdict:
    """§4/§5 from the filter tests (and for §4 the blocklist and abuse@ checks). No such
    points at all: the probes are not configured, so "not measured", not "not enough data"."""
    kind = "spam" if c.id == "anti_spam" else "virus"
    filters, lists, abuse = antispam.filters, antispam.lists, antispam.abuse
    ran = [e for e in filters if e.kind == kind]
    if not ran and not (kind == "spam" and (lists or abuse)):
        return Verdict(c, NOT_MEASURED, detail=f"no {'GTUBE' if kind == 'spam' else 'EICAR'} "
                       "test in the period ([[filter]] probes); " + c.note)
    minimum = settings.clause_min_coverage.get(c.id, ANTISPAM_MIN_DAYS)
    end = antispam.end_ns
    v = (judge_spam(c, filters, lists, abuse, period.start_ns, end, minimum)
         if kind == "spam" else judge_virus(c, filters, period.start_ns, end, minimum))
    status = v.status
    if status == PASS and not complete:
        status = PENDING
    detail = v.detail + "; " + c.note
    if v.evidence:
        shown = v.evidence[:5]
        detail += "; " + "; ".join(shown) + (f"; and {len(v.evidence) - 5} more"
                                             if len(v.evidence) > 5 else "")
    antispam.evidence[c.id] = v.evidence
    return Verdict(c, status, v.figure, v.value, detail, Coverage(v.coverage, minimum))


def _year_verdict(c: Clause, y: YearResult | None, cov: Coverage) -> Verdict:
    if y is None:
        return Verdict(c, NOT_MEASURED, detail="no year given")
    allowed = y.days - int(c.num("min_days"))
    faulty = len(y.faulty_days)
    status, words = _status(faulty > allowed, faulty + len(y.unknown_days) <= allowed, cov,
                            y.complete)
    free = y.days - faulty
    through = datetime.fromtimestamp(y.through_ns / 1e9, UTC).date()
    return Verdict(c, status, f"{free} days", free,
                   f"{y.year}: {faulty} days with faults (at most {allowed} allowed), "
                   f"{len(y.unknown_days)} days with minutes no vantage saw; evaluated "
                   f"through {through}{words}", cov)


def _delay_verdict(c: Clause, r: DelayResult, complete: bool, cov: Coverage) -> Verdict:
    mean_max = c.num("mean_max_s")
    max_over = int(c.num("max_over"))
    mean = r.mean_s
    basis = []
    if r.n_split:
        basis.append(f"{r.n_split} by {SIDES[r.side][0]}")
    if r.n_total:
        basis.append(f"{r.n_total} by delivery_s (hops not told apart)")
    detail = (f"{r.n} canaries arrived ({', '.join(basis) or 'none'}); {len(r.over)} over "
              f"{_fmt(c.num('max_s'), 0)} s, {len(r.lost)} lost")
    figure = (f"mean {mean:.2f} s, {r.over_count} over max" if mean is not None
              else f"no canary arrived, {r.over_count} over max")
    # Late and lost canaries only add up: more than allowed is proven whatever is missing.
    # A mean is not: the canaries not seen could bring it down, so it needs the coverage.
    if r.over_count > max_over:
        _, words = _status(True, False, cov, complete)
        return Verdict(c, BREACH, figure, mean, detail + words, cov)
    if not complete:
        return Verdict(c, PENDING, figure, mean, detail, cov)
    if r.n == 0:
        return Verdict(c, UNKNOWN, figure, mean, detail + "; not enough data: no canary "
                       f"arrived ({cov.words()})", cov)
    if not cov.ok:
        return Verdict(c, UNKNOWN, figure, mean, detail + f"; not enough data: {cov.words()}",
                       cov)
    if mean is not None and mean > mean_max:
        return Verdict(c, BREACH, figure, mean, detail, cov)
    return Verdict(c, PASS, figure, mean, detail, cov)


def _first_not_measured(profiles: Sequence[ProfileResult]) -> str:
    first = min((f for p in profiles for f in p.not_measured), key=lambda f: f.time_ns)
    return f"{first.vantage} {first.target}/{first.profile}: {first.error or 'no error text'}"


def _webmail_verdict(c: Clause, web: dict[str, ProfileResult], complete: bool,
                     cov: Coverage) -> Verdict:
    cls = c.id.removeprefix("webmail_")
    chosen = [p for p in web.values() if p.contract_class == cls]
    names = [p.profile for p in chosen] or list(c.names("profiles"))
    n = sum(p.n for p in chosen)
    fails = sum(len(p.failures) for p in chosen)
    by_load = sum(p.n_by_load for p in chosen)
    missed = sum(len(p.not_measured) for p in chosen)
    not_made = (f"{missed} loads the prober failed to make (not charged; e.g. "
                f"{_first_not_measured(chosen)})" if missed else "")
    if n == 0:
        why = f"no loads with profile {', '.join(names)}"
        return Verdict(c, UNKNOWN, "no page loads", None,
                       f"not enough data: {why}" + (f"; {not_made}" if missed else ""), cov)
    mean = sum(p.sum_ok + p.failed_s for p in chosen) / n
    limit = c.num("mean_max_s")
    detail = f"{n} loads, {fails} failed (counted at their timeout)"
    if by_load:
        detail += f", {by_load} without open_s judged by load_s"
    if missed:
        detail += f"; {not_made}"
    figure = f"mean {mean:.2f} s"
    # a mean over the limit is not proven while loads are missing: they could lower it
    if not complete:
        return Verdict(c, PENDING, figure, mean, detail, cov)
    if not cov.ok:
        return Verdict(c, UNKNOWN, figure, mean, detail + f"; not enough data: {cov.words()}",
                       cov)
    return Verdict(c, BREACH if mean > limit else PASS, figure, mean, detail, cov)
