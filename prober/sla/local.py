"""The reductions of sla/query.py, in Python over points held in memory.

Used when no InfluxDB is configured (the points come from the local spool) and by tests.
Points written twice at the same series and timestamp are merged the way InfluxDB merges
them: the later write's fields win, fields it lacks are kept (a canary's "pending" point
rewritten with its fate is one point).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from prober.measurement import FieldValue, Measurement
from prober.schema import (
    FIELD_CANARY,
    FIELD_DELIVERY_S,
    FIELD_ERROR,
    FIELD_OPEN_S,
    FIELD_OUTCOME,
    FIELD_RECEIVE_DELAY_S,
    FIELD_SEND_DELAY_S,
    HEARTBEAT,
    MAIL_ACCESS,
    MAIL_ROUNDTRIP,
    MEASUREMENTS,
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
    WebmailOutcome,
)
from prober.sla.query import (
    DELAY_FIELDS,
    EVENT_OUTCOMES,
    HEARTBEAT_FIELD,
    MINUTE_NS,
    WEBMAIL_BUCKET_NS,
    AccessFailure,
    CanaryEvent,
    Delays,
    DelaySums,
    WebmailBucket,
    WebmailFailure,
)
from prober.spoolfile import SpoolReader


class PointsEvidence:
    def __init__(self, points: Iterable[Measurement],
                 description: str = "points in memory") -> None:
        self.description = description
        merged: dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, FieldValue]] = {}
        for p in points:
            key = (p.name, tuple(sorted((k, v) for k, v in p.tags.items() if v != "")), p.time_ns)
            merged.setdefault(key, {}).update(p.fields)
        self._by_name: dict[str, list[Measurement]] = defaultdict(list)
        for (name, tags, time_ns), fields in merged.items():
            self._by_name[name].append(Measurement(name, dict(tags), fields, time_ns))
        for pts in self._by_name.values():
            pts.sort(key=lambda p: p.time_ns)

    @classmethod
    def from_measurements(cls, measurements: Iterable[Measurement]) -> PointsEvidence:
        return cls((Measurement(m.name, dict(m.tags), m.present_fields(), m.time_ns)
                    for m in measurements), "measurements in memory")

    @classmethod
    def from_lines(cls, lines: Iterable[str], description: str) -> PointsEvidence:
        return cls((Measurement.from_line(line) for line in lines if line.strip()), description)

    def _points(self, name: str, start_ns: int, end_ns: int) -> Iterable[Measurement]:
        for p in self._by_name.get(name, []):
            if start_ns <= p.time_ns < end_ns:
                yield p

    def vantages(self, start_ns: int, end_ns: int) -> set[str]:
        return {p.tags.get(TAG_VANTAGE, "") for p in self._points(HEARTBEAT, start_ns,
                                                                 end_ns)
                if HEARTBEAT_FIELD in p.fields}

    def missing_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        seen: dict[str, set[int]] = defaultdict(set)
        for p in self._points(HEARTBEAT, start_ns, end_ns):
            if HEARTBEAT_FIELD in p.fields:
                seen[p.tags.get(TAG_VANTAGE, "")].add(p.time_ns // MINUTE_NS)
        all_minutes = range(start_ns // MINUTE_NS, end_ns // MINUTE_NS)
        return {v: [m for m in all_minutes if m not in minutes] for v, minutes in seen.items()}

    def access_failures(self, start_ns: int, end_ns: int) -> list[AccessFailure]:
        counts: dict[tuple[int, str, str, str], int] = defaultdict(int)
        for p in self._points(MAIL_ACCESS, start_ns, end_ns):
            if p.tags.get(TAG_OUTCOME) == AccessOutcome.FAIL:
                t = p.tags
                counts[(p.time_ns // MINUTE_NS, t.get(TAG_VANTAGE, ""), t.get(TAG_MAILBOX, ""),
                        t.get(TAG_PROTOCOL, ""))] += 1
        return [AccessFailure(m, v, mb, proto, n) for (m, v, mb, proto), n in counts.items()]

    def canary_events(self, start_ns: int, end_ns: int,
                      over_s: float | None) -> list[CanaryEvent]:
        out = []
        for p in self._points(MAIL_ROUNDTRIP, start_ns, end_ns):
            f = p.fields
            over = over_s is not None and any(isinstance(f.get(k), int | float) and f[k] > over_s  # type: ignore[operator]
                       for k in DELAY_FIELDS)
            if f.get(FIELD_OUTCOME) in EVENT_OUTCOMES or over:
                t = p.tags
                out.append(CanaryEvent(
                    time_ns=p.time_ns, vantage=t.get(TAG_VANTAGE, ""), route=t.get(TAG_ROUTE, ""),
                    direction=t.get(TAG_DIRECTION, ""), sender=t.get(TAG_SENDER, ""),
                    recipient=t.get(TAG_RECIPIENT, ""), outcome=str(f.get(FIELD_OUTCOME, "")),
                    canary=str(f.get(FIELD_CANARY, "")), delivery_s=_num(f.get(FIELD_DELIVERY_S)),
                    send_delay_s=_num(f.get(FIELD_SEND_DELAY_S)),
                    receive_delay_s=_num(f.get(FIELD_RECEIVE_DELAY_S)),
                    error=str(f.get(FIELD_ERROR, ""))))
        out.sort(key=lambda e: (e.time_ns, e.vantage, e.route))
        return out

    def delay_sums(self, start_ns: int, end_ns: int) -> list[DelaySums]:
        series: dict[tuple[str, str, str], DelaySums] = {}
        for p in self._points(MAIL_ROUNDTRIP, start_ns, end_ns):
            t = p.tags
            key = (t.get(TAG_ROUTE, ""), t.get(TAG_VANTAGE, ""), t.get(TAG_DIRECTION, ""))
            sums = series.get(key)
            if sums is None:
                sums = series[key] = DelaySums(*key, n=dict.fromkeys(DELAY_FIELDS, 0),
                                               total=dict.fromkeys(DELAY_FIELDS, 0.0))
            for f in DELAY_FIELDS:
                value = _num(p.fields.get(f))
                if value is not None:
                    sums.n[f] += 1
                    sums.total[f] += value
        return list(series.values())

    def delay_points(self, route: str, vantage: str, start_ns: int,
                     end_ns: int) -> list[Delays]:
        out = []
        for p in self._points(MAIL_ROUNDTRIP, start_ns, end_ns):
            if p.tags.get(TAG_ROUTE, "") == route and p.tags.get(TAG_VANTAGE, "") == vantage:
                d = Delays(*(_num(p.fields.get(f)) for f in DELAY_FIELDS))
                if d != Delays(None, None, None):
                    out.append(d)
        return out

    def delay_over(self, field_name: str, edges: Sequence[float], start_ns: int,
                   end_ns: int) -> dict[tuple[str, str], list[int]]:
        out: dict[tuple[str, str], list[int]] = {}
        for p in self._points(MAIL_ROUNDTRIP, start_ns, end_ns):
            value = _num(p.fields.get(field_name))
            if value is None:
                continue
            hits = [1 if value > e else 0 for e in edges]
            if any(hits):
                key = (p.tags.get(TAG_ROUTE, ""), p.tags.get(TAG_VANTAGE, ""))
                counts = out.setdefault(key, [0] * len(edges))
                for i, h in enumerate(hits):
                    counts[i] += h
        return out

    def webmail_buckets(self, start_ns: int, end_ns: int) -> list[WebmailBucket]:
        acc: dict[tuple[int, str, str, str], list[float]] = {}
        for p in self._points(WEBMAIL_LOAD, start_ns, end_ns):
            value = _num(p.fields.get(FIELD_OPEN_S))
            if p.tags.get(TAG_OUTCOME) != WebmailOutcome.OK or value is None:
                continue
            t = p.tags
            key = (p.time_ns - p.time_ns % WEBMAIL_BUCKET_NS, t.get(TAG_PROFILE, ""),
                   t.get(TAG_TARGET, ""), t.get(TAG_VANTAGE, ""))
            slot = acc.setdefault(key, [0, 0.0])
            slot[0] += 1
            slot[1] += value
        return [WebmailBucket(k[0], k[1], k[2], k[3], int(v[0]), v[1]) for k, v in acc.items()]

    def webmail_failures(self, start_ns: int, end_ns: int) -> list[WebmailFailure]:
        out = []
        for p in self._points(WEBMAIL_LOAD, start_ns, end_ns):
            if p.tags.get(TAG_OUTCOME, "") == WebmailOutcome.OK:
                continue
            t = p.tags
            out.append(WebmailFailure(p.time_ns, t.get(TAG_PROFILE, ""), t.get(TAG_TARGET, ""),
                                      t.get(TAG_VANTAGE, ""), t.get(TAG_OUTCOME, ""),
                                      _num(p.fields.get("timeout_s")),
                                      str(p.fields.get(FIELD_ERROR, ""))))
        out.sort(key=lambda f: (f.time_ns, f.vantage, f.target))
        return out


    def webmail_classes(self, start_ns: int, end_ns: int) -> dict[str, str]:
        out = {}
        for p in self._points(WEBMAIL_LOAD, start_ns, end_ns):
            cls = p.fields.get("contract_class")
            if isinstance(cls, str) and cls:
                out[p.tags.get(TAG_PROFILE, "")] = cls
        return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def spool_evidence(path: str, start_ns: int, end_ns: int) -> PointsEvidence:
    """The points the local spool retains for [start_ns, end_ns), read without writing."""
    with SpoolReader(path) as spool:
        lines: list[str] = []
        for name in MEASUREMENTS:
            lines.extend(spool.read_lines(measurement=name, start_ns=start_ns, end_ns=end_ns))
    return PointsEvidence.from_lines(lines, f"local spool {path}")
