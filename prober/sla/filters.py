"""§4 anti-spam and §5 anti-virus, judged from `mail_filter`, `mail_blocklist` and
`mail_abuse` points.

What a probe can establish, and what it cannot (the report says this in words):
- It can: that the filter recognised the industry's test strings (GTUBE, EICAR in each
  attachment type of the contract) and did what the customer's configuration expects
  (reject, junk, tag, quarantine, strip); that scanning added no delay against a clean
  copy of the same attachment type sent at the same moment; that the abuse@ address takes
  mail; how long a provider address stayed on a DNS blocklist.
- It cannot: how often signatures are updated (a fresh test string is detected by any
  signature set), whether custom rules exist, or how fast the provider answers a
  complaint. Those stay with the provider's records.

A clause is "not enough data" when fewer than its minimum share of the period's days
(default 90 %, `[sla.clauses.ID] min_coverage`) have a completed test; a breach needs
evidence, never an absence of it, and stands whatever the coverage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prober.contract import Clause
from prober.measurement import Measurement
from prober.schema import MAIL_ABUSE, MAIL_BLOCKLIST, MAIL_FILTER

NS_PER_DAY = 86_400 * 10**9
BREACH, PASS, UNKNOWN = "breach", "pass", "not enough data"


@dataclass(frozen=True)
class FilterEvent:
    time_ns: int
    vantage: str
    route: str
    kind: str
    variant: str
    expected: str
    outcome: str
    as_expected: bool | None
    extra_delay_s: float | None = None
    smtp_code: int | None = None
    folder: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class BlocklistEvent:
    time_ns: int
    vantage: str
    zone: str
    subject: str
    listed: bool | None  # None: the query failed
    answer: str = ""


@dataclass(frozen=True)
class AbuseEvent:
    time_ns: int
    vantage: str
    address: str
    ok: bool
    smtp_code: int | None = None
    error: str | None = None


@dataclass
class FilterVerdict:
    status: str
    figure: str
    value: float | None
    detail: str
    evidence: list[str] = field(default_factory=list)
    coverage: float = 0.0  # share of the period's days with a completed test


def _str(v: object) -> str | None:
    return None if v is None else str(v)


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: object) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def events_from(points: Iterable[Measurement]) -> tuple[list[FilterEvent],
                                                          list[BlocklistEvent],
                                                          list[AbuseEvent]]:
    """The three kinds of §4/§5 evidence from raw points (spool or InfluxDB rows)."""
    filters, lists, abuse = [], [], []
    for p in points:
        f, t = p.fields, p.tags
        if p.name == MAIL_FILTER:
            expected = f.get("as_expected")
            filters.append(FilterEvent(
                p.time_ns, t.get("vantage", ""), t.get("route", ""), t.get("kind", ""),
                t.get("variant", ""), t.get("expected", ""), str(f.get("outcome", "")),
                expected if isinstance(expected, bool) else None,
                _float(f.get("extra_delay_s")), _int(f.get("smtp_code")),
                _str(f.get("folder")), _str(f.get("error"))))
        elif p.name == MAIL_BLOCKLIST:
            listed = f.get("listed")
            lists.append(BlocklistEvent(p.time_ns, t.get("vantage", ""), t.get("zone", ""),
                                        t.get("subject", ""),
                                        listed if isinstance(listed, bool) else None,
                                        str(f.get("answer") or "")))
        elif p.name == MAIL_ABUSE:
            abuse.append(AbuseEvent(p.time_ns, t.get("vantage", ""), t.get("address", ""),
                                    t.get("outcome") == "ok", _int(f.get("smtp_code")),
                                    _str(f.get("error"))))
    return filters, lists, abuse


def _days_covered(times: Iterable[int], start_ns: int) -> set[int]:
    return {(t - start_ns) // NS_PER_DAY for t in times}


def _when(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def _coverage(events: Sequence[FilterEvent | BlocklistEvent | AbuseEvent], start_ns: int,
              end_ns: int) -> tuple[float, int, int]:
    days = max(1, -(-(end_ns - start_ns) // NS_PER_DAY))
    covered = len(_days_covered((e.time_ns for e in events), start_ns))
    return covered / days, covered, days


def judge_virus(clause: Clause, events: Sequence[FilterEvent], start_ns: int,
                end_ns: int, minimum: float = 0.9) -> FilterVerdict:
    tests = [e for e in events if e.kind == "virus" and e.as_expected is not None]
    cov, covered, days = _coverage(tests, start_ns, end_ns)
    misses = [e for e in tests if not e.as_expected]
    slow = [e for e in tests if e.extra_delay_s is not None
            and e.extra_delay_s > clause.num("extra_delay_max_s")]
    evidence = [f"{_when(e.time_ns)} {e.vantage} .{e.variant}: {e.outcome}, expected "
                f"{e.expected}" + (f" ({e.error})" if e.error else "") for e in misses]
    evidence += [f"{_when(e.time_ns)} {e.vantage} .{e.variant}: scanning added "
                 f"{e.extra_delay_s:.1f} s against a clean copy" for e in slow]
    delays = [e.extra_delay_s for e in tests if e.extra_delay_s is not None]
    figure = (f"{len(tests) - len(misses)}/{len(tests)} as expected; extra delay max "
              f"{max(delays):.1f} s" if delays else f"{len(tests) - len(misses)}/{len(tests)} "
              "as expected")
    variants = sorted({e.variant for e in tests})
    detail = (f"tests on {covered} of {days} days; attachment types tested: "
              f"{', '.join(variants) or 'none'}")
    return _decide(bool(misses or slow), cov, minimum, figure, len(misses) + len(slow), detail,
                   evidence)


def judge_spam(clause: Clause, events: Sequence[FilterEvent],
               lists: Sequence[BlocklistEvent], abuse: Sequence[AbuseEvent], start_ns: int,
               end_ns: int, minimum: float = 0.9) -> FilterVerdict:
    tests = [e for e in events if e.kind == "spam" and e.as_expected is not None]
    cov, covered, days = _coverage(tests, start_ns, end_ns)
    misses = [e for e in tests if not e.as_expected]
    evidence = [f"{_when(e.time_ns)} {e.vantage} GTUBE: {e.outcome}, expected {e.expected}"
                for e in misses]
    # listed sources: a subject on a zone longer than the clause allows (one working day)
    max_ns = int(clause.num("listed_max_h") * 3600 * 1e9)
    spans = _listed_spans(lists)
    long_listed = [(k, a, b) for k, runs in spans.items() for a, b in runs if b - a > max_ns]
    evidence += [f"{subject} on {zone} from {_when(a)} to {_when(b)} "
                 f"({(b - a) / 3.6e12:.1f} h)" for (zone, subject), a, b in long_listed]
    # the abuse contact: refused at every check for longer than the same working day (a
    # single refused check is an unanswered moment, not an unanswered complaint)
    refused = _refused_runs(abuse)
    long_refused = [(a, b, e) for a, b, e in refused if b - a > max_ns]
    evidence += [f"{e.address} refused from {_when(a)} to {_when(b)} "
                 f"({(b - a) / 3.6e12:.1f} h): {e.error}" for a, b, e in long_refused]
    figure = f"{len(tests) - len(misses)}/{len(tests)} GTUBE tests as expected"
    if lists:
        figure += f"; {len(long_listed)} listings over {clause.num('listed_max_h'):g} h"
    if abuse:
        figure += f"; abuse contact refused over {clause.num('listed_max_h'):g} h " \
            f"{len(long_refused)} times"
    detail = f"tests on {covered} of {days} days"
    return _decide(bool(misses or long_listed or long_refused), cov, minimum, figure,
                   len(evidence), detail, evidence)


def _refused_runs(abuse: Sequence[AbuseEvent]) -> list[tuple[int, int, AbuseEvent]]:
    """Runs of consecutive refused abuse@ checks: (first refusal, the check that ended the
    run or the last refusal, the last refusal)."""
    out = []
    start: int | None = None
    last: AbuseEvent | None = None
    for e in sorted(abuse, key=lambda x: x.time_ns):
        if not e.ok:
            start = e.time_ns if start is None else start
            last = e
        elif start is not None and last is not None:
            out.append((start, e.time_ns, last))
            start, last = None, None
    if start is not None and last is not None:
        out.append((start, last.time_ns, last))
    return out


def _listed_spans(lists: Sequence[BlocklistEvent]) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Runs of consecutive checks that found a subject listed, per zone and subject (any
    vantage: a listing is a fact about the zone, not about the line)."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    series: dict[tuple[str, str], list[BlocklistEvent]] = defaultdict(list)
    for e in lists:
        if e.listed is not None:
            series[(e.zone, e.subject)].append(e)
    for key, es in series.items():
        start: int | None = None
        last = 0
        for e in sorted(es, key=lambda x: x.time_ns):
            if e.listed and start is None:
                start = e.time_ns
            elif not e.listed and start is not None:
                out[key].append((start, e.time_ns))
                start = None
            last = e.time_ns
        if start is not None:
            out[key].append((start, last))
    return out


def _decide(broken: bool, coverage: float, minimum: float, figure: str, value: float,
            detail: str, evidence: list[str]) -> FilterVerdict:
    if broken:
        # evidence of a failure is a breach whatever the coverage
        return FilterVerdict(BREACH, figure, value, detail, evidence, coverage)
    if coverage < minimum:
        return FilterVerdict(UNKNOWN, figure, value,
                             f"{detail}; under the minimum of {minimum * 100:g} % of days "
                             "tested", evidence, coverage)
    return FilterVerdict(PASS, figure, value, detail, evidence, coverage)
