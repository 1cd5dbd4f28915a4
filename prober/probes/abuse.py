"""§4 abuse contact: does the provider's abuse@ address accept mail?

An SMTP session to the host that receives for the domain, up to RCPT TO and no further:
MAIL FROM, RCPT TO:<abuse@...>, RSET, QUIT. Nothing is delivered, so the check can run
every hour without bothering anyone; a 250/251 to RCPT is the evidence that the address
exists and takes mail. Port 25 between MTAs is plain text with no login, so no secret is
involved.
"""

from __future__ import annotations

import contextlib
import time

import aiosmtplib

from prober.config.filters import AbuseCheck
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.connect import open_socket
from prober.probes.errors import ProbeError, classify
from prober.schema import MAIL_ABUSE, AccessOutcome


async def probe(ctx: ProbeContext, check: AbuseCheck) -> list[Measurement]:
    started = time.time_ns()
    t0 = time.monotonic()
    code: int | None = None
    reply = ""
    error: ProbeError | None = None
    step = "connect"
    smtp: aiosmtplib.SMTP | None = None
    try:
        sock = await open_socket(check.host, check.port, ctx.timeouts.connect_s)
        smtp = aiosmtplib.SMTP(hostname=check.host, sock=sock, use_tls=False, start_tls=False,
                               timeout=ctx.timeouts.command_s)
        step = "greeting"
        await smtp.connect()
        await smtp.ehlo()
        step = "mail"
        await smtp.mail(check.sender)
        step = "rcpt"
        response = await smtp.rcpt(check.address)
        code, reply = response.code, response.message
        with contextlib.suppress(aiosmtplib.SMTPException):
            await smtp.rset()
            await smtp.quit()
    except aiosmtplib.SMTPResponseException as exc:
        code, reply = exc.code, exc.message
        error = ProbeError("protocol", step, f"{exc.code} {exc.message}")
    except aiosmtplib.SMTPServerDisconnected as exc:
        error = ProbeError("closed", step, f"server closed the connection ({exc})")
    except Exception as exc:
        error = classify(exc, step)
    finally:
        if smtp is not None and smtp.is_connected:
            smtp.close()
    return [Measurement(MAIL_ABUSE, {
        "vantage": ctx.vantage, "address": check.address,
        "outcome": AccessOutcome.FAIL if error else AccessOutcome.OK,
    }, {
        "smtp_code": code, "reply": reply or None, "host": check.host,
        "total_s": time.monotonic() - t0,
        "error": str(error) if error else None,
        "error_class": error.kind if error else None,
    }, started)]
