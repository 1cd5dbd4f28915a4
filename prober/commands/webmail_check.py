"""`prober check` rows for the webmail targets: one cold load per target and profile.

State per row, against the contract's page-open limit of the profile (30 s narrowband,
10 s broadband unless `[sla.clauses.*]` says otherwise; asked of the resolved Contract, as
the score and the probe's timeout do): OK at or under it; over it, the
target's `over_threshold` state (WARNING by default: the contract judges the monthly
mean, so one slow load is a warning, not yet a breach); CRITICAL when the load did not
complete (timeout, HTTP error, failure). The rows carry the same fields as
prober.commands.check.Row (check, target, state, values, detail) plus the Measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from prober.commands.nagios import CRITICAL, NOT_MEASURED, OK, UNKNOWN, WARNING, worst
from prober.config.mail import Timeouts
from prober.config.profiles import Profile
from prober.config.webmail import WebmailTarget, page_open_clause
from prober.contract import Contract
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.webmail import WebmailLoad, judged_seconds, probe
from prober.schema import FIELD_ERROR_CLASS, ErrorClass

_OVER = {"warning": WARNING, "critical": CRITICAL}


@dataclass
class WebmailRow:
    check: str  # always "webmail"
    target: str  # "<target>/<profile>"
    state: int
    values: dict[str, float | None] = field(default_factory=dict)
    detail: str = ""
    measurement: Measurement | None = None

    def perfdata(self) -> str:
        """Nagios perfdata, e.g. `webmail_mail/broadband=3.210s;10;`."""
        label = "".join("_" if c in " ='|" else c for c in f"webmail_{self.target}")
        value = self.values.get("open_s")
        shown = "U" if value is None else f"{value:.3f}s"
        warn = self.values.get("threshold_s")
        return f"{label}={shown};{'' if warn is None else f'{warn:g}'};"


def row_for(target: WebmailTarget, profile: Profile, m: Measurement,
            contract: Contract) -> WebmailRow:
    f = m.fields
    outcome = m.tags["outcome"]
    clause = page_open_clause(contract, profile)
    threshold = clause.num("mean_max_s")
    values: dict[str, float | None] = {
        "open_s": judged_seconds(m) if outcome == "ok" else None,
        "load_s": _num(f.get("load_s")),
        "login_s": _num(f.get("login_s")),
        "ttfb_s": _num(f.get("ttfb_s")),
        "threshold_s": threshold,
        "bytes": _num(f.get("bytes")),
        "requests": _num(f.get("requests")),
    }
    name = f"{target.name}/{profile.name}"
    if f.get(FIELD_ERROR_CLASS) == ErrorClass.PROBER:
        # the prober could not make the load (no Chromium, no descriptor left): nothing is
        # known about the page, which is Nagios' UNKNOWN, not the provider's CRITICAL
        return WebmailRow("webmail", name, UNKNOWN, values,
                          f"{NOT_MEASURED}: {f.get('error')}", m)
    if outcome != "ok":
        return WebmailRow("webmail", name, CRITICAL, values, f"{outcome}: {f.get('error')}", m)
    opened = judged_seconds(m)
    load_s, login_s = values["load_s"], values["login_s"]
    # Both pages when there was a login: the judged figure is the slower of the two, and
    # each time is named for the page it belongs to.
    what = (f"page opened in {load_s:.1f} s, the inbox {login_s:.1f} s after the login"
            if load_s is not None and login_s is not None else f"page opened in {opened:.1f} s")
    cls = clause.id.removeprefix("webmail_")
    detail = (f"{what} on {profile.name} ({cls} limit {threshold:g} s), "
              f"{f.get('requests')} requests, {f.get('bytes')} bytes")
    if f.get("failed_requests"):
        detail += f", {f.get('failed_requests')} failed"
    if opened > threshold:
        return WebmailRow("webmail", name, _OVER[target.over_threshold], values,
                          "over the contract's limit: " + detail, m)
    return WebmailRow("webmail", name, OK, values, detail, m)


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def check_webmail(targets: Iterable[WebmailTarget], vantage: str, contract: Contract,
                        concurrency: int = 4) -> list[WebmailRow]:
    """One load per target and profile, `concurrency` at a time (each on its own emulated
    line, so they do not slow each other down), rows in config order."""
    gate = asyncio.Semaphore(concurrency)
    jobs = [(t, p) for t in targets for p in t.profiles]
    ctx = ProbeContext(vantage, Timeouts(), contract)

    async def one(target: WebmailTarget, profile: Profile) -> WebmailRow:
        async with gate:
            (m,) = await probe(ctx, WebmailLoad(target, profile))
        return row_for(target, profile, m, contract)

    return list(await asyncio.gather(*(one(t, p) for t, p in jobs)))


def worst_state(rows: Iterable[WebmailRow]) -> int:
    return worst((r.state for r in rows), default=OK)
