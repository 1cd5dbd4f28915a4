"""The scorecard for people and programs: terminal table, JSON, Markdown, and one
self-contained HTML file with inline SVG charts (no scripts, nothing fetched)."""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from prober.schema import RoundtripOutcome
from prober.sla.query import SEND_FAILED_PROBER, CanaryEvent
from prober.sla.score import (
    BREACH,
    DELAY_EDGES,
    NOT_MEASURED,
    PASS,
    DelayResult,
    Incident,
    Scorecard,
)

FORMATS = ("table", "json", "markdown", "html")
NOT_JUDGED_WHY: dict[str, str] = {
    RoundtripOutcome.PENDING: "its fate was not known yet when scored",
    RoundtripOutcome.SEND_UNCERTAIN: "the provider's answer to the submission was not seen",
    RoundtripOutcome.ABANDONED: "the agent gave up its SMTP session before the provider's "
                                "answer, and the canary never arrived: not the provider's",
    SEND_FAILED_PROBER: "the prober failed to make the submission itself (no file "
                        "descriptor, memory or local port left; an error in the prober): "
                        "not the provider's",
}
LIST_LIMIT = 50  # evidence rows shown in table/markdown; JSON and HTML carry more


def _t(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def _local(ns: int, card: Scorecard) -> str:
    tz = card.month.start.tzinfo
    return datetime.fromtimestamp(ns / 1e9, tz).strftime("%Y-%m-%d %H:%M %Z")


def _event(e: CanaryEvent) -> dict[str, Any]:
    return {"time": _t(e.time_ns), "time_ns": e.time_ns, "vantage": e.vantage, "route": e.route,
            "direction": e.direction, "sender": e.sender, "recipient": e.recipient,
            "outcome": e.outcome, "canary": e.canary, "delivery_s": e.delivery_s,
            "send_delay_s": e.send_delay_s, "receive_delay_s": e.receive_delay_s,
            "error": e.error}


def _incident(i: Incident) -> dict[str, Any]:
    return {"start": _t(i.start_ns), "end": _t(i.end_ns), "start_ns": i.start_ns,
            "end_ns": i.end_ns, "minutes": i.minutes, "vantages": i.vantages,
            "mailboxes": i.mailboxes, "causes": i.causes}


def _delay(r: DelayResult) -> dict[str, Any]:
    return {"arrived": r.n, "mean_s": r.mean_s, "judged_by_split_hops": r.n_split,
            "judged_by_delivery_s": r.n_total, "over_max": [_event(e) for e in r.over],
            "lost": [_event(e) for e in r.lost], "over_max_count": r.over_count,
            "histogram": {"edges_s": list(DELAY_EDGES), "counts": r.bins, "lost": len(r.lost)},
            "by_route": {k: {"n": int(v[0]), "mean_s": v[1] / v[0] if v[0] else None}
                         for k, v in sorted(r.by_route.items())}}


def to_dict(card: Scorecard) -> dict[str, Any]:
    c = card.conn
    return {
        "month": card.month.label,
        "timezone": card.timezone,
        "period": {"start": card.month.start.isoformat(), "end": card.month.end.isoformat(),
                   "evaluated_until": _t(card.evaluated_end_ns),
                   "calendar_minutes": card.month.minutes},
        "source": card.source,
        "exit_code": card.exit_code,
        "clauses": [{
            "id": v.clause.id, "section": v.clause.section, "title": v.clause.title,
            "promise": v.clause.promise_text(), "period": v.clause.period,
            "limits": {k: list(x) if isinstance(x, tuple) else x
                       for k, x in v.clause.params.items()},
            "verdict": v.status, "measured": v.figure, "value": v.value, "detail": v.detail,
            "penalty": v.clause.penalty, "penalty_owed": v.penalty_owed,
            "coverage": v.coverage.share, "min_coverage": v.coverage.minimum,
            "absent": list(v.coverage.absent),
        } for v in card.verdicts],
        "scope": _scope(card),
        "unusable_points": [{"measurement": m, "reason": r, "points": n}
                            for (m, r), n in card.unusable.items()],
        "canaries_not_judged": card.not_judged,
        "penalties_owed": sorted({v.penalty_owed for v in card.verdicts if v.penalty_owed}),
        "antispam_evidence": card.antispam_evidence,
        "connectivity": {
            "vantages": c.vantages, "down_minutes": len(c.down),
            "unknown_minutes": len(c.unknown), "unknown_minutes_judged": c.unknown_judged,
            "coverage": c.coverage, "unknown_minutes_by_vantage": c.unknown_by_vantage,
            "maintenance_minutes": len(c.maintenance), "excluded_minutes": len(c.excluded),
            "down_minutes_in_maintenance": c.down_in_maintenance,
            "down_minutes_in_exclusions": c.down_in_exclusions,
            "down_minutes_by_mailbox": c.down_by_mailbox,
            "watcher_down_minutes_by_vantage": card.watcher_down,
            "below_quorum_minutes_by_vantage": c.below_quorum,
            "dead_address_rule": card.dead_address,
            "dead_address_minutes_not_charged_by_mailbox": c.dead_address,
            "access_not_measured": [
                {"vantage": v, "mailbox": mb, "protocol": proto, "checks": n, "minutes": mins}
                for (v, mb, proto), (n, mins) in c.not_measured.items()],
            "incidents": [_incident(i) for i in c.incidents],
            "down_minutes_by_day": {d.isoformat(): n for d, n in card.daily_down.items()},
            "unknown_minutes_by_day": {d.isoformat(): n for d, n in card.daily_unknown.items()},
        },
        "maintenance": [{"start": w.start.isoformat(), "end": w.end.isoformat(),
                         "reason": w.reason} for w in card.maintenance],
        "exclusions": [{"start": w.start.isoformat(), "end": w.end.isoformat(),
                        "reason": w.reason} for w in card.exclusions],
        "send_delay": _delay(card.send),
        "receive_delay": _delay(card.receive),
        "canaries_late_lost_refused": [_event(e) for e in card.events],
        "webmail": {p.profile: {
            "contract_class": p.contract_class, "loads": p.n, "failed": len(p.failures),
            "not_measured": [{"time": _t(f.time_ns), "vantage": f.vantage, "target": f.target,
                              "error": f.error} for f in p.not_measured],
            "mean_s": p.mean_s, "judged_by_load_s": p.n_by_load,
            "failures": [{"time": _t(f.time_ns), "vantage": f.vantage, "target": f.target,
                          "outcome": f.outcome, "timeout_s": f.timeout_s, "error": f.error}
                         for f in p.failures],
            "daily_mean_s": {d.isoformat(): v[1] / v[0] for d, v in sorted(p.daily.items())
                             if v[0]},
        } for p in card.webmail.values()},
        "fault_free_days": None if card.year is None else {
            "year": card.year.year, "days": card.year.days,
            "faulty_days": [d.isoformat() for d in card.year.faulty_days],
            "days_with_unknown_minutes": len(card.year.unknown_days),
            "coverage": card.year.coverage, "complete": card.year.complete,
        },
    }


def _scope(card: Scorecard) -> dict[str, Any]:
    sc = card.scope
    c = card.conn
    judged = c.judged_minutes
    by_vantage = {}
    for v in sorted({*sc.found_vantages, *(sc.declared_vantages or ())}):
        missing = c.missing_judged_by_vantage.get(v, judged)
        by_vantage[v] = {"declared": sc.declared_vantages is not None
                         and v in sc.declared_vantages,
                         "points": sc.points_by_vantage.get(v, 0),
                         "coverage": 1.0 - missing / judged if judged > 0 else 1.0}
    return {
        "vantages": {"declared": list(sc.declared_vantages) if sc.declared_vantages is not None
                     else None, "found": sc.found_vantages, "absent": sc.absent_vantages,
                     "coverage_by_vantage": by_vantage},
        "mailboxes": {"declared": list(sc.declared_mailboxes)
                      if sc.declared_mailboxes is not None else None,
                      "found": sc.found_mailboxes, "absent": sc.absent_mailboxes},
        "routes": {"declared": list(sc.declared_routes) if sc.declared_routes is not None
                   else None, "found": sc.found_routes, "absent": sc.absent_routes},
    }


def render(card: Scorecard, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_dict(card), indent=2, default=str) + "\n"
    if fmt == "markdown":
        return render_markdown(card)
    if fmt == "html":
        return render_html(card)
    if fmt == "table":
        return render_table(card)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


# ---------------------------------------------------------------- text forms

def _clause_rows(card: Scorecard) -> list[list[str]]:
    return [[f"§{v.clause.section}" if v.clause.section else "", v.clause.title,
             v.clause.promise_text(), v.figure or "-", v.status.upper() if v.status == BREACH
             else v.status, v.penalty_owed or "-"] for v in card.verdicts]


def _evidence_sections(card: Scorecard) -> list[tuple[str, list[str], list[list[str]]]]:
    c = card.conn
    sections = []
    sections.append(("Incidents (runs of down minutes)",
                     ["start", "end", "min", "vantages", "mailboxes", "causes"],
                     [[_local(i.start_ns, card), _local(i.end_ns, card), str(i.minutes),
                       " ".join(i.vantages), " ".join(i.mailboxes), ", ".join(i.causes)]
                      for i in c.incidents]))
    if c.dead_address:
        sections.append((f"Minutes with a dead address beside a working one, not charged "
                         f"([sla] dead_address = \"{card.dead_address}\")",
                         ["mailbox", "minutes"],
                         [[mb, str(n)] for mb, n in c.dead_address.items()]))
    if c.not_measured:
        sections.append(("Access checks not measured (the prober's own failure, error_class "
                         "prober: never charged; minutes the vantage did not see)",
                         ["vantage", "mailbox", "protocol", "checks", "minutes"],
                         [[v, mb, proto, str(n), str(mins)]
                          for (v, mb, proto), (n, mins) in c.not_measured.items()]))
    rows = []
    for side, r in (("send", card.send), ("receive", card.receive)):
        for e in [*r.over, *r.lost]:
            judged = (e.send_delay_s if side == "send" else e.receive_delay_s)
            if judged is None:
                judged = e.delivery_s
            rows.append([side, _local(e.time_ns, card), e.vantage, e.route, e.outcome,
                         "-" if judged is None else f"{judged:.1f}", e.canary])
    sections.append(("Canaries over the maximum or lost",
                     ["clause", "accepted", "vantage", "route", "outcome", "delay s", "canary"],
                     rows))
    scope = _scope(card)
    sections.append(("Coverage per clause",
                     ["clause", "coverage", "minimum", "declared but absent"],
                     [[v.clause.id, f"{v.coverage.share * 100:.2f} %",
                       f"{v.coverage.minimum * 100:g} %", ", ".join(v.coverage.absent) or "-"]
                      for v in card.verdicts if v.status != NOT_MEASURED]))
    # a watcher down is the vantage's own fault: coverage, never the provider's fault time
    sections.append(("Data coverage per vantage (judged minutes with a heartbeat; minutes "
                     "its IMAP watcher was down)",
                     ["vantage", "declared", "points", "coverage", "unknown min",
                      "watcher down min"],
                     [[v, "yes" if d["declared"] else "no", str(d["points"]),
                       f"{d['coverage'] * 100:.2f} %",
                       str(c.unknown_by_vantage.get(v, c.evaluated_minutes)),
                       str(card.watcher_down.get(v, 0))]
                      for v, d in scope["vantages"]["coverage_by_vantage"].items()]
                     + [["(no vantage at all)", "", "", "", str(len(c.unknown)), ""]]))
    rows = []
    for kind in ("vantages", "mailboxes", "routes"):
        d = scope[kind]
        found = d["found"] if isinstance(d["found"], list) else list(d["found"])
        rows.append([kind, "-" if d["declared"] is None else ", ".join(d["declared"]) or "-",
                     ", ".join(found) or "none", ", ".join(d["absent"]) or "-"])
    sections.append(("What the contract covers and what the evidence holds",
                     ["what", "declared ([sla])", "found in the evidence", "absent"], rows))
    sections.append(("Canaries not judged (under coverage; never charged to the provider)",
                     ["outcome", "canaries", "why"],
                     [[o, str(n), NOT_JUDGED_WHY.get(o, "")]
                      for o, n in card.not_judged.items()]))
    sections.append(("Points read and not judged",
                     ["measurement", "reason", "points"],
                     [[m, r, str(n)] for (m, r), n in card.unusable.items()]))
    sections.append(("Maintenance windows and exclusions",
                     ["kind", "start", "end", "reason"],
                     [["maintenance", w.start.isoformat(), w.end.isoformat(), w.reason]
                      for w in card.maintenance]
                     + [["exclusion", w.start.isoformat(), w.end.isoformat(), w.reason]
                        for w in card.exclusions]))
    rows = []
    for v in card.verdicts:
        if v.clause.id in ("anti_spam", "anti_virus") and v.status != NOT_MEASURED:
            found = card.antispam_evidence.get(v.clause.id, [])
            rows += [[f"§{v.clause.section}", e] for e in found]
            rows.append([f"§{v.clause.section}", "what a probe can and cannot establish: "
                         + v.clause.note])
    if rows:
        sections.append(("Anti-spam (§4) and anti-virus (§5): failures, and the probe's reach",
                         ["clause", "evidence"], rows))
    sections.append(("Webmail page loads per profile",
                     ["profile", "class", "loads", "failed", "without open_s",
                      "not measured (prober)", "mean s"],
                     [[p.profile, p.contract_class or "-", str(p.n), str(len(p.failures)),
                       str(p.n_by_load), str(len(p.not_measured)),
                       "-" if p.mean_s is None else f"{p.mean_s:.2f}"]
                      for p in card.webmail.values()]))
    return sections


def _summary(card: Scorecard) -> list[str]:
    c = card.conn
    owed = sorted({v.penalty_owed for v in card.verdicts if v.penalty_owed})
    return [
        f"SLA scorecard {card.month.label} ({card.timezone}), from {card.source}",
        f"evaluated until {_local(card.evaluated_end_ns, card)}; vantages: "
        f"{', '.join(c.vantages) or 'none'}; down {len(c.down)} min, unknown {len(c.unknown)} "
        f"min, coverage {c.coverage * 100:.2f} %, maintenance {len(c.maintenance)} min, "
        f"excluded {len(c.excluded)} min",
        "penalties owed: " + ("; ".join(owed) if owed else "none"),
    ]


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = min(max(widths[i], len(cell)), 60)
    def line(cells: list[str]) -> str:
        # the last column is never cut: nothing comes after it to keep aligned, and it is
        # where the evidence's words go
        last = len(cells) - 1
        return "  ".join(cell if i == last else cell[:60].ljust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()
    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def render_table(card: Scorecard) -> str:
    parts = ["\n".join(_summary(card)), "",
             _text_table(["§", "clause", "promise", "measured", "verdict", "penalty owed"],
                         _clause_rows(card))]
    for title, header, rows in _evidence_sections(card):
        parts += ["", title + ":"]
        if rows:
            parts.append(_text_table(header, rows[:LIST_LIMIT]))
            if len(rows) > LIST_LIMIT:
                parts.append(f"... and {len(rows) - LIST_LIMIT} more (see --format json)")
        else:
            parts.append("  none")
    return "\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_markdown(card: Scorecard) -> str:
    summary = _summary(card)
    parts = [f"# {summary[0]}", "", summary[1], "", f"**{summary[2]}**", "",
             _md_table(["§", "clause", "promise", "measured", "verdict", "penalty owed"],
                       _clause_rows(card))]
    for title, header, rows in _evidence_sections(card):
        parts += ["", f"## {title}", ""]
        parts.append(_md_table(header, rows[:LIST_LIMIT]) if rows else "none")
        if len(rows) > LIST_LIMIT:
            parts += ["", f"... and {len(rows) - LIST_LIMIT} more (see the JSON report)"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- HTML and SVG charts

def _e(x: object) -> str:
    return html.escape(str(x))


def _frame(title: str, width: int, height: int, left: int, top: int, w: float, h: float,
           ymax: float, unit: str) -> list[str]:
    """The SVG's opening, its title and the horizontal grid with the y-axis labels."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{_e(title)}">',
           f'<text x="{left}" y="18" class="t">{_e(title)}</text>']
    for k in range(5):
        v = ymax * k / 4
        y = top + h - h * k / 4
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
                   f'<text x="{left - 5}" y="{y + 4:.1f}" class="a" text-anchor="end">'
                   f'{v:.0f}{unit}</text>')
    return out


def _threshold_lines(lines: Sequence[tuple[float, str]], left: int, top: int, w: float, h: float,
                     ymax: float) -> list[str]:
    """The contract's limits (1 min, 1 h, 10 s, 30 s) as labelled horizontal lines."""
    out = []
    for value, text in lines:
        y = top + h - h * value / ymax
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" class="l"/>'
                   f'<text x="{left + w - 4}" y="{y - 4:.1f}" class="lt" text-anchor="end">'
                   f'{_e(text)}</text>')
    return out


def _legend(series: list, left: int, height: int) -> list[str]:
    """A colour box and the name of each series, in a row under the chart."""
    out, x = [], left
    for name, color, _ in series:
        out.append(f'<rect x="{x}" y="{height - 16}" width="10" height="10" '
                   f'fill="{color}"/><text x="{x + 14}" y="{height - 7}" class="a">'
                   f'{_e(name)}</text>')
        x += 20 + 8 * len(name)
    return out


def _svg_bars(title: str, labels: list[str], series: list[tuple[str, str, list[float]]],
              lines: Sequence[tuple[float, str]] = (), vlines: Sequence[tuple[float, str]] = (),
              unit: str = "", width: int = 1000, height: int = 260) -> str:
    """Stacked bars per label; `lines` are horizontal (value), `vlines` vertical (bar index)."""
    left, bottom, top, right = 55, 50, 30, 15
    w, h = width - left - right, height - top - bottom
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    ymax = max([*totals, *(v for v, _ in lines), 1.0]) * 1.1
    n = max(len(labels), 1)
    bw = w / n
    out = _frame(title, width, height, left, top, w, h, ymax, unit)
    for i, label in enumerate(labels):
        y: float = top + h
        for _name, color, values in series:
            bh = h * values[i] / ymax
            if bh > 0:
                out.append(f'<rect x="{left + i * bw + 1:.1f}" y="{y - bh:.1f}" '
                           f'width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" fill="{color}">'
                           f'<title>{_e(label)}: {values[i]:g}</title></rect>')
                y -= bh
        if n <= 40 or i % max(1, n // 30) == 0:
            out.append(f'<text x="{left + (i + 0.5) * bw:.1f}" y="{top + h + 14}" class="a" '
                       f'text-anchor="middle">{_e(label)}</text>')
        if n <= 12 and totals[i] > 0:
            # few wide bars (a distribution): print the count, a handful of lost canaries
            # next to thousands of prompt ones would otherwise be invisible
            out.append(f'<text x="{left + (i + 0.5) * bw:.1f}" y="{y - 4:.1f}" class="v" '
                       f'text-anchor="middle">{totals[i]:g}</text>')
    out.extend(_threshold_lines(lines, left, top, w, h, ymax))
    for index, text in vlines:
        x = left + index * bw
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + h}" class="l"/>'
                   f'<text x="{x + 4:.1f}" y="{top + 12}" class="lt">{_e(text)}</text>')
    out.extend(_legend(series, left, height))
    out.append("</svg>")
    return "".join(out)


def _svg_lines(title: str, labels: list[str], series: list[tuple[str, str, list[float | None]]],
               lines: list[tuple[float, str]], unit: str = "s", width: int = 1000,
               height: int = 260) -> str:
    """One point per label, the labels evenly spaced: pass every day of the period (None
    where a series has no value) so that the x axis is a time axis, not a list of days."""
    left, bottom, top, right = 55, 50, 30, 15
    w, h = width - left - right, height - top - bottom
    values = [v for _, _, vs in series for v in vs if v is not None]
    ymax = max([*values, *(v for v, _ in lines), 1.0]) * 1.1
    n = max(len(labels), 1)
    step = w / max(n - 1, 1)
    out = _frame(title, width, height, left, top, w, h, ymax, unit)
    for i, label in enumerate(labels):
        if n <= 40 or i % max(1, n // 30) == 0:
            out.append(f'<text x="{left + i * step:.1f}" y="{top + h + 14}" class="a" '
                       f'text-anchor="middle">{_e(label)}</text>')
    out.extend(_threshold_lines(lines, left, top, w, h, ymax))
    for name, color, vs in series:
        # a gap in the data (days without loads) is a gap in the line, not a straight join
        runs: list[list[tuple[int, float]]] = []
        for i, v in enumerate(vs):
            if v is None:
                continue
            if runs and runs[-1][-1][0] == i - 1:
                runs[-1].append((i, v))
            else:
                runs.append([(i, v)])
        for run in runs:
            pts = " ".join(f"{left + i * step:.1f},{top + h - h * v / ymax:.1f}" for i, v in run)
            if len(run) > 1:
                out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                           f'stroke-width="2"/>')
            for i, v in run:
                out.append(f'<circle cx="{left + i * step:.1f}" cy="{top + h - h * v / ymax:.1f}" '
                           f'r="3" fill="{color}"><title>{_e(name)} {_e(labels[i])}: '
                           f'{v:.2f} s</title></circle>')
    out.extend(_legend(series, left, height))
    out.append("</svg>")
    return "".join(out)


def _svg_down_days(title: str, labels: list[str], down: list[int], unknown: list[int],
                   day_minutes: list[int], width: int = 1000, height: int = 300) -> str:
    """Down minutes per day on their own scale, with the count printed over every day that
    has any; the minutes no vantage saw in a grey strip underneath, shaded by their share
    of the day. Drawn on one scale, a month's few down minutes vanish next to a day of
    unknown ones (6 minutes were once 0.7 px high)."""
    left, top, right = 55, 30, 15
    strip_h, gap = 18, 22
    bottom = 50 + strip_h + gap
    w, h = width - left - right, height - top - bottom
    ymax = max([*down, 10]) * 1.15
    n = max(len(labels), 1)
    bw = w / n
    out = _frame(title, width, height, left, top, w, h, ymax, "")
    for i, label in enumerate(labels):
        x = left + i * bw
        if down[i] > 0:
            bh = max(h * down[i] / ymax, 2.0)
            out.append(f'<rect x="{x + 1:.1f}" y="{top + h - bh:.1f}" width="{max(bw - 2, 1):.1f}" '
                       f'height="{bh:.1f}" fill="#c0392b"><title>{_e(label)}: {down[i]} min '
                       f'down</title></rect>'
                       f'<text x="{x + bw / 2:.1f}" y="{top + h - bh - 4:.1f}" class="v" '
                       f'text-anchor="middle" fill="#c0392b">{down[i]}</text>')
        share = unknown[i] / day_minutes[i] if day_minutes[i] else 0.0
        y0 = top + h + gap
        out.append(f'<rect x="{x + 1:.1f}" y="{y0}" width="{max(bw - 2, 1):.1f}" '
                   f'height="{strip_h}" fill="#7f7f7f" fill-opacity="{share:.3f}" '
                   f'stroke="#ddd"><title>{_e(label)}: {unknown[i]} of {day_minutes[i]} min '
                   f'unknown</title></rect>')
        if unknown[i] and bw >= 24:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y0 + 13}" class="a" '
                       f'text-anchor="middle">{unknown[i]}</text>')
        if n <= 40 or i % max(1, n // 30) == 0:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{top + h + 14}" class="a" '
                       f'text-anchor="middle">{_e(label)}</text>')
    y0 = top + h + gap
    out.append(f'<text x="{left - 5}" y="{y0 + 13}" class="a" text-anchor="end">unknown</text>')
    out.append(f'<rect x="{left}" y="{height - 16}" width="10" height="10" fill="#c0392b"/>'
               f'<text x="{left + 14}" y="{height - 7}" class="a">down minutes (scale at the '
               f'left)</text><rect x="{left + 210}" y="{height - 16}" width="10" height="10" '
               f'fill="#7f7f7f"/><text x="{left + 224}" y="{height - 7}" class="a">minutes no '
               f'vantage saw (strip, darker = more of the day; the number is minutes)</text>')
    out.append("</svg>")
    return "".join(out)


def _bin_labels() -> list[str]:
    def short(s: float) -> str:
        return f"{s / 60:g}m" if s >= 60 else f"{s:g}s"
    labels = [f"≤{short(DELAY_EDGES[0])}"]
    labels += [f"{short(a)}–{short(b)}" for a, b in itertools.pairwise(DELAY_EDGES)]
    labels.append(f">{short(DELAY_EDGES[-1])}")
    return [*labels, "lost"]


def _day_minutes(card: Scorecard, days: list[date]) -> list[int]:
    tz = card.month.start.tzinfo
    out = []
    for d in days:
        start = datetime.combine(d, time(0), tz)
        end = datetime.combine(d + timedelta(days=1), time(0), tz)
        out.append(int((end.timestamp() - start.timestamp()) // 60))
    return out


def _delay_chart(side: str, r: DelayResult, directions: str) -> str:
    labels = _bin_labels()
    i60 = DELAY_EDGES.index(60.0) + 1
    i3600 = DELAY_EDGES.index(3600.0) + 1
    color = "#2e86c1" if side == "send" else "#28b463"
    return _svg_bars(
        f"{side.capitalize()} delay: canaries per delay bin ({directions}; each canary once, "
        f"{r.n} arrived, {len(r.lost)} lost)", labels,
        [(f"{side} side", color, [float(x) for x in r.bins] + [float(len(r.lost))])],
        vlines=[(i60, "1 min (mean limit)"), (i3600, "1 h (maximum)")])


def _page_open_limits(card: Scorecard) -> list[tuple[float, str]]:
    out = []
    for v in card.verdicts:
        if v.clause.id.startswith("webmail_"):
            limit = v.clause.num("mean_max_s")
            out.append((limit, f"{limit:g} s {v.clause.id.removeprefix('webmail_')}"))
    return out


def charts(card: Scorecard) -> list[str]:
    days = list(card.daily_down)
    down_chart = _svg_down_days(
        "Minutes down per day (after quorum, maintenance and exclusions)",
        [d.strftime("%d") for d in days], [card.daily_down[d] for d in days],
        [card.daily_unknown[d] for d in days], _day_minutes(card, days))
    send_chart = _delay_chart("send", card.send, "outbound and internal")
    receive_chart = _delay_chart("receive", card.receive, "inbound and internal")
    profiles = list(card.webmail.values())
    colors = ["#8e44ad", "#d35400", "#16a085", "#2c3e50", "#f1c40f"]
    web_chart = _svg_lines(
        "Webmail page open time per profile: daily mean (failed loads at their timeout)",
        [d.strftime("%d") for d in days],
        [(f"{p.profile} ({p.contract_class or '?'})", colors[i % len(colors)],
          [p.daily[d][1] / p.daily[d][0] if d in p.daily and p.daily[d][0] else None
           for d in days]) for i, p in enumerate(profiles)],
        lines=_page_open_limits(card))
    return [down_chart, send_chart, receive_chart, web_chart]


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1040px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2}.pass{background:#d5f5e3}.breach{background:#f5b7b1;font-weight:bold}
.unknown,.pending{background:#fcf3cf}.nm{color:#888}
svg{display:block;margin:8px 0;background:#fff;border:1px solid #eee}
svg .t{font-size:14px;font-weight:bold}svg .a{font-size:11px;fill:#555}
svg .g{stroke:#eee}svg .v{font-size:12px;font-weight:bold}
svg .l{stroke:#000;stroke-dasharray:5 4}svg .lt{font-size:11px}
"""


def _html_table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(card: Scorecard) -> str:
    summary = _summary(card)
    classes = [{PASS: "pass", BREACH: "breach", NOT_MEASURED: "nm"}.get(v.status, "unknown")
               for v in card.verdicts]
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{_e(summary[0])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(summary[0])}</h1><p>{_e(summary[1])}</p><p><b>{_e(summary[2])}</b></p>",
             _html_table(["§", "clause", "promise", "measured", "verdict", "penalty owed"],
                         _clause_rows(card), classes),
             "<h2>Charts</h2>", *charts(card)]
    for title, header, rows in _evidence_sections(card):
        parts.append(f"<h2>{_e(title)}</h2>")
        parts.append(_html_table(header, rows[:500]) if rows else "<p>none</p>")
        if len(rows) > 500:
            parts.append(f"<p>... and {len(rows) - 500} more (see the JSON report)</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
