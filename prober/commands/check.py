"""`prober check`: the one-shot driver over the same probes the daemon uses.

Every mailbox gets a fresh SMTP and IMAP login, every route one canary; the result is a
Nagios-style state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), a one-line summary with
perfdata, and a table (or JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prober.commands.check_leftovers import Leftovers
from prober.commands.nagios import (
    CRITICAL,
    NOT_MEASURED,
    OK,
    SEVERITY,
    STATE_NAMES,
    UNKNOWN,
    WARNING,
    worst,
)
from prober.config import Config
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.canary import CHECK, CanaryId
from prober.probes.canary_key import load_canary_key
from prober.probes.imap import Arrival, MailboxWatcher
from prober.probes.plan import WebmailLoad, context, plan
from prober.probes.roundtrip import CanaryTarget, Sent, fate, roundtrip_point, send_canary
from prober.schema import (
    FIELD_ADDRESSES,
    FIELD_CERT_EXPIRY_DAYS,
    FIELD_CERT_SUBJECT,
    FIELD_DELIVERY_S,
    FIELD_ERROR,
    FIELD_ERROR_CLASS,
    FIELD_OUTCOME,
    FIELD_PEER_IP,
    MAIL_BLOCKLIST,
    TAG_MAILBOX,
    TAG_OUTCOME,
    TAG_PROTOCOL,
    AccessOutcome,
    ErrorClass,
    RoundtripOutcome,
)


@dataclass
class Row:
    check: str  # smtp, imap, canary, webmail
    target: str
    state: int
    values: dict[str, float | None] = field(default_factory=dict)
    detail: str = ""


@dataclass
class CheckResult:
    rows: list[Row]
    measurements: list[Measurement]
    perfdata: list[str]
    delivery_note: str = ""
    notes: list[str] = field(default_factory=list)  # earlier checks' canaries settled now
    # messages the watchers saw that claimed to be this vantage's canaries but were not
    # (MAC wrong or missing, a copy, a reply or forward): never counted, never removed,
    # no state of their own (nothing the provider is charged with), but always shown
    forged: int = 0

    @property
    def state(self) -> int:
        return worst((r.state for r in self.rows), default=UNKNOWN)

    def summary(self) -> str:
        bad = [r for r in self.rows if r.state != OK]
        if not self.rows:
            text = "nothing to check: no mailboxes or routes configured"
        elif not bad:
            canaries = sum(1 for r in self.rows if r.check == "canary")
            pages = sum(1 for r in self.rows if r.check == "webmail")
            spam = sum(1 for r in self.rows if r.check in ("blocklist", "abuse"))
            text = (f"{_n(len(self.rows) - canaries - pages - spam, 'access check')} ok, "
                    f"{_n(canaries, 'canary', 'canaries')} delivered")
            if pages:
                text += f", {_n(pages, 'webmail load')} within the contract"
            if spam:
                text += f", {_n(spam, 'anti-spam check')} ok"
        else:
            ranked = sorted(bad, key=lambda r: -SEVERITY[r.state])
            text = "; ".join(f"{r.check} {r.target}: {r.detail}" for r in ranked[:3])
            if len(ranked) > 3:
                text += f"; and {len(ranked) - 3} more"
        if self.forged:
            # first in the text, whatever the state: someone is sending look-alikes
            text = f"{self.forged_text()}; {text}"
        return f"PROBER {STATE_NAMES[self.state]} - {text}"

    def forged_text(self) -> str:
        return (f"{_n(self.forged, 'forged canary', 'forged canaries')} seen (claimed to be "
                f"this vantage's, MAC wrong or missing: not counted, left in place)")

    def first_line(self) -> str:
        return self.summary() + (" | " + " ".join(self.perfdata) if self.perfdata else "")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _perf(label: str, value: float | None, warn: str = "", crit: str = "") -> str:
    """One Nagios perfdata item, e.g. `delivery_a-to-b=1.200s;60;3600` (U: no value)."""
    label = "".join("_" if c in " ='|" else c for c in label)
    shown = "U" if value is None else f"{value:.3f}s"
    return f"{label}={shown};{warn};{crit}".rstrip(";")


async def run_check(config: Config, routes: list[str] | None = None,
                    seqs: Callable[[], int] | None = None,
                    leftovers: Leftovers | None = None,
                    deadline: float | None = None) -> CheckResult:
    """One pass over `plan(config)`: the same access checks, canaries and page loads as a
    tick of `prober run`. `seqs` numbers the canaries from the agent's counter (the
    ledger's, shared with `prober run` on the same spool); without it they are numbered 0:
    nothing of this run is written. With `leftovers`, this run's canaries are entered in
    the check's ledger, and earlier checks' canaries get their final points. `deadline`
    (time.monotonic()) ends the wait for canaries early enough for the check to answer
    before the monitoring system gives up on it (`prober check --timeout`)."""
    todo = plan(config, routes)
    ctx = context(config, deadline)
    vantage = ctx.vantage
    # A one-shot check cannot wait a minute for the junk folder's next look, nor Dovecot's
    # 0.5 s before it pushes a new message to IDLE: it polls while its canaries are awaited.
    settings = dataclasses.replace(config.canary,
                                   junk_poll_s=min(config.canary.junk_poll_s, 5.0),
                                   fast_poll_s=config.check.fast_poll_s)
    key = load_canary_key(config)
    stop = asyncio.Event()
    # Canaries of earlier checks past their wait are this check's leftovers: swept at
    # connect (signed, of this vantage, sent by `prober check`; the daemon's are not touched)
    watchers = {name: MailboxWatcher(config.mailboxes[name], ctx.timeouts, settings, vantage,
                                     leftovers.on_arrival if leftovers else None,
                                     key=key, check_leftovers_after_s=config.check.wait_s)
                for name in todo.recipients}
    tasks = [asyncio.create_task(w.run(stop)) for w in watchers.values()]
    expected: dict[str, asyncio.Future[Arrival]] = {}
    try:
        access = asyncio.gather(*(check.probe(ctx, check.mailbox) for check in todo.access))
        webmail = asyncio.ensure_future(_webmail_rows(ctx, todo.webmail))
        # the blocklist and abuse@ checks take seconds; the filter tests wait minutes for
        # what a filter does, which is the daemon's to measure, not a monitoring check's
        listed = asyncio.gather(*(job.probe(ctx, job.target) for job in todo.periodic
                                  if job.kind in ("blocklist", "abuse")))
        await asyncio.gather(*(w.wait_ready(ctx.timeouts.connect_s + 2 * ctx.timeouts.command_s)
                               for w in watchers.values()))

        def expect(target: CanaryTarget) -> Callable[[CanaryId], None]:
            def register(cid: CanaryId) -> None:
                if leftovers is not None:  # before the send: a later check can settle it
                    leftovers.ledger.enter(cid.id, target.route.name, target.route.recipient,
                                           cid.seq, target.tags(vantage))
                expected[cid.id] = watchers[target.route.recipient].expect(
                    cid.id, fast_for_s=config.check.wait_s)
            return register

        sends = await asyncio.gather(*(
            send_canary(ctx, target, seqs() if seqs else 0, expect(target), key=key,
                        driver=CHECK)
            for target in todo.canaries))
        wait_s = config.check.wait_s
        if deadline is not None:
            wait_s = max(0.0, min(wait_s, deadline - time.monotonic()))
        arrivals = await _await_arrivals(sends, watchers, expected, wait_s)
        access_points = [p for points in await access for p in points]
        webmail_rows = await webmail
        periodic_points = [p for points in await listed for p in points]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True),
                                   ctx.timeouts.command_s + 5)
    rows: list[Row] = []
    perf: list[str] = []
    measurements: list[Measurement] = list(access_points)
    for point in access_points:
        row = _access_row(point, config.check.cert_warning_days)
        rows.append(row)
        perf.append(_perf(f"{point.tags[TAG_PROTOCOL]}_{row.target.replace(' ', '')}",
                          _seconds(point.fields.get("total_s"))))
    for sent in sends:
        arrival = arrivals.get(sent.canary.id)
        outcome = fate(sent, arrival, config.canary.late_after_s)
        point = roundtrip_point(vantage, sent, outcome, arrival)
        if leftovers is not None:
            leftovers.ledger.record(point)
        measurements.append(point)
        row = _canary_row(config, sent, point, watchers[sent.route.recipient], wait_s)
        rows.append(row)
        perf.append(_perf(f"delivery_{sent.route.name}", row.values.get(FIELD_DELIVERY_S),
                          _num(config.check.warning_s), _num(config.check.critical_s)))
    notes: list[str] = []
    if leftovers is not None:
        leftovers.settle([a for w in watchers.values() for a in w.swept_canaries])
        measurements.extend(leftovers.points)
        notes = leftovers.notes
    for wrow in webmail_rows:
        rows.append(Row(wrow.check, wrow.target, wrow.state,
                        {"load_s": wrow.values.get("open_s")}, wrow.detail))
        perf.append(wrow.perfdata())
        if wrow.measurement is not None:
            measurements.append(wrow.measurement)
    for point in periodic_points:
        measurements.append(point)
        rows.append(_antispam_row(point))
    forged = sum(w.forged for w in watchers.values())
    if watchers:
        perf.append(f"forged_canaries={forged};;")
    return CheckResult(rows, measurements, perf, notes=notes, forged=forged)


def _antispam_row(point: Measurement) -> Row:
    """A blocklist or abuse@ row: a listing or a refusal is the provider's to fix soon, a
    WARNING; a failed query says so rather than pass."""
    error = point.fields.get(FIELD_ERROR)
    if point.name == MAIL_BLOCKLIST:
        target = f"{point.tags['subject']} on {point.tags['zone']}"
        if error:
            return Row("blocklist", target, WARNING, {}, f"not checked: {error}")
        if point.fields.get("listed") is True:
            return Row("blocklist", target, WARNING, {},
                       f"listed ({point.fields.get('answer')})")
        return Row("blocklist", target, OK, {}, "not listed")
    if error:
        return Row("abuse", point.tags["address"], WARNING, {}, str(error))
    return Row("abuse", point.tags["address"], OK, {},
               f"accepts mail ({point.fields.get('smtp_code')})")


async def _webmail_rows(ctx: ProbeContext, loads: tuple[WebmailLoad, ...],
                        concurrency: int = 4) -> list[Any]:
    """One cold load per target and profile, `concurrency` at a time (each on its own
    emulated line), rows in plan order."""
    if not loads:
        return []
    # httpx/h2 only when a webmail target is configured
    from prober.commands.webmail_check import row_for
    from prober.probes import webmail

    gate = asyncio.Semaphore(concurrency)

    async def one(load: WebmailLoad) -> Any:
        async with gate:
            (m,) = await webmail.probe(ctx, load)
        return row_for(load.target, load.profile, m, ctx.contract)

    return list(await asyncio.gather(*(one(load) for load in loads)))


def _num(x: float) -> str:
    return f"{x:g}"


async def _await_arrivals(sends: list[Sent], watchers: dict[str, MailboxWatcher],
                          expected: dict[str, asyncio.Future[Arrival]],
                          wait_s: float) -> dict[str, Arrival]:
    waiting: dict[asyncio.Future[Arrival], str] = {}
    for sent in sends:
        watcher = watchers[sent.route.recipient]
        # An uncertain send may still arrive; a refused one cannot.
        if (sent.submission.ok or sent.submission.uncertain) and watcher.up:
            waiting[expected[sent.canary.id]] = sent.canary.id
    arrivals: dict[str, Arrival] = {}
    if waiting:
        done, _ = await asyncio.wait(waiting, timeout=wait_s)
        for fut in done:
            arrivals[waiting[fut]] = fut.result()
    for sent in sends:
        watchers[sent.route.recipient].forget(sent.canary.id)
    return arrivals


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _access_row(point: Measurement, cert_warning_days: float) -> Row:
    f = point.fields
    ok = point.tags[TAG_OUTCOME] == AccessOutcome.OK
    target = point.tags[TAG_MAILBOX]
    addresses = f.get(FIELD_ADDRESSES)
    if isinstance(addresses, int) and addresses > 1:  # which of the host's addresses
        target += f" [{f.get(FIELD_PEER_IP)}]"
    values = {k: _seconds(f.get(k)) for k in ("connect_s", "tls_s", "auth_s", "select_s",
                                               "total_s")}
    if not ok and f.get(FIELD_ERROR_CLASS) == ErrorClass.PROBER:
        # the prober could not make the check (no descriptor left, a bug): nothing is known
        # about the server, which is Nagios' UNKNOWN, not the provider's CRITICAL
        return Row(point.tags[TAG_PROTOCOL], target, UNKNOWN, values,
                   f"{NOT_MEASURED}: {f.get(FIELD_ERROR)}")
    row = Row(point.tags[TAG_PROTOCOL], target, OK if ok else CRITICAL, values,
              "ok" if ok else str(f.get(FIELD_ERROR)))
    return cert_verdict(row, point, cert_warning_days) if ok else row


def cert_verdict(row: Row, point: Measurement, warning_days: float) -> Row:
    """WARNING when the server's certificate expires within `warning_days`; CRITICAL once
    expired (only reachable with tls_verify = false: a verified handshake refuses it)."""
    days = point.fields.get(FIELD_CERT_EXPIRY_DAYS)
    if not isinstance(days, (int, float)) or days > warning_days:
        return row
    subject = point.fields.get(FIELD_CERT_SUBJECT) or "the server's certificate"
    expiry = datetime.fromtimestamp(point.time_ns / 1e9 + days * 86400, UTC)
    when = expiry.strftime("%Y-%m-%d %H:%M UTC")
    if days <= 0:
        return dataclasses.replace(row, state=CRITICAL, detail=(
            f"certificate {subject} expired {-days:.1f} days ago ({when})"))
    return dataclasses.replace(row, state=WARNING, detail=(
        f"certificate {subject} expires in {days:.1f} days ({when}, "
        f"warning at {warning_days:g})"))


def _waited(config: Config, waited_s: float | None) -> str:
    if waited_s is None or waited_s >= config.check.wait_s:
        return f"{config.check.wait_s:g}"
    return f"{waited_s:.0f} (cut from wait_s = {config.check.wait_s:g} by --timeout)"


def _canary_row(config: Config, sent: Sent, point: Measurement,
                watcher: MailboxWatcher, waited_s: float | None = None) -> Row:
    f = point.fields
    outcome = str(f[FIELD_OUTCOME])
    values = {"connect_s": _seconds(f.get("smtp_connect_s")),
              "tls_s": _seconds(f.get("smtp_tls_s")), "auth_s": _seconds(f.get("smtp_auth_s")),
              "data_s": _seconds(f.get("smtp_data_s")),
              "delivery_s": _seconds(f.get(FIELD_DELIVERY_S))}
    delivery = values["delivery_s"]
    target = f"{sent.route.name} ({sent.sender.address} -> {sent.recipient.address})"
    if (outcome == RoundtripOutcome.SEND_FAILED
            and f.get(FIELD_ERROR_CLASS) == ErrorClass.PROBER):
        return Row("canary", target, UNKNOWN, values,
                   f"{NOT_MEASURED}: {outcome}: {f.get(FIELD_ERROR)}")
    if outcome in (RoundtripOutcome.SEND_FAILED, RoundtripOutcome.SEND_UNCERTAIN):
        return Row("canary", target, CRITICAL, values, f"{outcome}: {f.get(FIELD_ERROR)}")
    if delivery is None:
        # "not delivered" is never known here: the canary may be in the mailbox unseen
        # (the IMAP side failed) or arrive after the wait; a later check settles its point
        down = watcher.last_error if not watcher.up else None
        if down is not None and down.kind == ErrorClass.PROBER:
            # our watcher could not look (no descriptor left): nothing known, UNKNOWN
            return Row("canary", target, UNKNOWN, values,
                       f"{NOT_MEASURED}: delivery unknown: IMAP watcher down: {down}")
        why = (f"delivery unknown: IMAP watcher down: {down}" if down is not None
               else f"not seen within {_waited(config, waited_s)} s (pending)")
        return Row("canary", target, CRITICAL, values, why)
    detail = f"{outcome} in {delivery:.2f} s via {f.get('detect')}"
    if delivery > config.check.critical_s:
        return Row("canary", target, CRITICAL, values,
                   detail + f" (> {config.check.critical_s:g} s)")
    if delivery > config.check.warning_s:
        return Row("canary", target, WARNING, values,
                   detail + f" (> {config.check.warning_s:g} s)")
    if f.get("folder") not in (None, config.mailboxes[sent.route.recipient].imap.folder):
        return Row("canary", target, WARNING, values, detail + f", landed in {f.get('folder')}")
    return Row("canary", target, OK, values, detail)


COLUMNS = ("connect_s", "tls_s", "auth_s", "data_s", "select_s", "delivery_s", "load_s")


def render_table(result: CheckResult) -> str:
    header = ["CHECK", "TARGET", "STATE", "CONNECT", "TLS", "AUTH", "DATA", "SELECT",
              "DELIVERY", "LOAD", "DETAIL"]
    lines = [header]
    for r in result.rows:
        cells = [r.check, r.target, STATE_NAMES[r.state]]
        for col in COLUMNS:
            v = r.values.get(col)
            cells.append("-" if v is None else f"{v:.3f}")
        cells.append(r.detail)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
                   + "  " + line[-1])
    if result.forged:
        text = result.forged_text()
        out.append(text[0].upper() + text[1:])
    return "\n".join(s.rstrip() for s in out)


def as_json(result: CheckResult) -> dict:
    return {
        "state": STATE_NAMES[result.state],
        "exit_code": result.state,
        "summary": result.summary(),
        "perfdata": result.perfdata,
        "rows": [{"check": r.check, "target": r.target, "state": STATE_NAMES[r.state],
                  **r.values, "detail": r.detail} for r in result.rows],
        "delivery": result.delivery_note,
        "earlier_checks": result.notes,
        "forged_canaries": result.forged,
        "measurements": [m.to_line() for m in result.measurements],
    }
