"""The connectivity minute: a fresh SMTP login and a fresh IMAP login + EXAMINE per mailbox."""

from __future__ import annotations

import time

from prober.config.mail import Mailbox, Timeouts
from prober.measurement import Measurement
from prober.probes.errors import ProbeError, classify
from prober.probes.imap_session import ImapSession
from prober.probes.smtp import submit
from prober.probes.tls import Facts


def _point(vantage: str, mailbox: Mailbox, protocol: str, phases: dict[str, float],
           error: ProbeError | None, started_ns: int, facts: Facts) -> Measurement:
    return Measurement("mail_access", {
        "vantage": vantage,
        "mailbox": mailbox.address,
        "protocol": protocol,
        "outcome": "fail" if error else "ok",
    }, {
        "connect_s": phases.get("connect_s"),
        "tls_s": phases.get("tls_s"),
        "auth_s": phases.get("auth_s"),
        "select_s": phases.get("select_s"),
        "total_s": phases.get("total_s"),
        "error": str(error) if error else None,
        "error_class": error.kind if error else None,
        **facts,
    }, started_ns)


async def smtp_access(vantage: str, mailbox: Mailbox, timeouts: Timeouts) -> Measurement:
    result = await submit(mailbox, timeouts)
    return _point(vantage, mailbox, "smtp", result.phases, result.error, result.started_ns,
                  result.facts)


async def imap_access(vantage: str, mailbox: Mailbox, timeouts: Timeouts) -> Measurement:
    """EXAMINE (the read-only SELECT) so that our look leaves \\Recent and flags alone."""
    started = time.time_ns()
    t0 = time.monotonic()
    sess = ImapSession(mailbox.imap.endpoint, timeouts)
    error: ProbeError | None = None
    step = "connect"
    try:
        await sess.connect()
        step = "auth"
        await sess.login(mailbox.user, mailbox.password.reveal())
        step = "select"
        await sess.select(mailbox.imap.folder, readonly=True)
    except Exception as exc:
        error = classify(exc, step)
    finally:
        await sess.logout()
    sess.phases["total_s"] = time.monotonic() - t0
    return _point(vantage, mailbox, "imap", sess.phases, error, started, sess.facts)
