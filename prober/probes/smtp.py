"""Timed SMTP submission over aiosmtplib: connect, TLS, AUTH, DATA, each a phase."""

from __future__ import annotations

import base64
import contextlib
import re
import time
from dataclasses import dataclass, field

import aiosmtplib

from prober.config.mail import Mailbox, Timeouts
from prober.probes.connect import Address, open_socket
from prober.probes.errors import ProbeError, classify, mask, masked
from prober.probes.oauth import SASL_ABORT, challenge_text, sasl_initial, token_cache
from prober.probes.tls import Facts, client_context, peer_facts, tls_facts

_QUEUED = re.compile(r"queued as\s+([A-Za-z0-9]+)", re.I)
# RFC 3463 class.subject.detail at the start of the reply text, e.g. "5.7.1 ..."
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")


@dataclass
class Submission:
    """What one SMTP session did. Phases are seconds; absent phases were not reached."""

    phases: dict[str, float] = field(default_factory=dict)
    accepted_ns: int | None = None  # our clock at the 250 after DATA
    accepted_mono: float | None = None  # the same moment on the monotonic clock (durations)
    started_ns: int = 0
    code: int | None = None
    reply: str = ""
    enhanced_code: str | None = None  # RFC 3463, from the last reply, e.g. "2.0.0"
    queue_id: str | None = None
    error: ProbeError | None = None
    uncertain: bool = False  # the connection died after the message was handed over
    # peer_ip, and once TLS is up its version, cipher and certificate (probes/tls.py)
    facts: Facts = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


async def submit(mailbox: Mailbox, timeouts: Timeouts, message: bytes | None = None,
                 recipients: list[str] | None = None,
                 address: Address | None = None) -> Submission:
    """Log in and, when `message` is given, submit it. Never raises: failures are in `.error`.

    Phases: connect_s = DNS + TCP; tls_s = STARTTLS exchange + handshake, or for implicit
    TLS the handshake; the 220 greeting and the first EHLO count to whichever comes first
    on the wire (connect_s for STARTTLS, tls_s for implicit TLS); auth_s = AUTH;
    data_s = MAIL FROM through the 250 after the message; total_s = all of it.
    With `address`, that address of the host only (connect_s is then TCP alone).
    """
    ep = mailbox.smtp
    result = Submission(started_ns=time.time_ns())
    t0 = time.monotonic()
    mark = t0
    step = "connect"
    smtp: aiosmtplib.SMTP | None = None

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        result.phases[name] = now - mark
        mark = now

    try:
        sock = await open_socket(ep.host, ep.port, timeouts.connect_s, ep.family, address)
        result.facts.update(peer_facts(sock))
        implicit = ep.tls == "tls"
        ctx = client_context(ep) if ep.tls != "none" else None
        if implicit:
            phase("connect_s")
            step = "tls"
        smtp = aiosmtplib.SMTP(hostname=ep.host, sock=sock, use_tls=implicit, start_tls=False,
                               tls_context=ctx, timeout=timeouts.command_s)
        await smtp.connect()
        await smtp.ehlo()
        if ep.tls == "starttls":
            phase("connect_s")
            step = "tls"
            if not smtp.supports_extension("starttls"):
                raise ProbeError("tls", "tls", "server does not offer STARTTLS")
            await smtp.starttls(tls_context=ctx)
            await smtp.ehlo()
            phase("tls_s")
        elif implicit:
            phase("tls_s")
        else:
            phase("connect_s")
        if ctx is not None:
            result.facts.update(tls_facts(smtp.get_transport_info("ssl_object")))
            mark = time.monotonic()  # reading the certificate is our time, not the server's
        step = "auth"
        await _login(smtp, mailbox, timeouts)
        phase("auth_s")
        if message is not None:
            step = "data"
            await smtp.mail(mailbox.address)
            for rcpt in recipients or []:
                await smtp.rcpt(rcpt)
            try:
                response = await smtp.data(message)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
                # The message may or may not have been queued: only its arrival will tell.
                result.uncertain = True
                raise
            result.accepted_ns = time.time_ns()
            result.accepted_mono = time.monotonic()
            result.code = response.code
            result.reply = response.message
            result.enhanced_code = enhanced_code(response.code, response.message)
            match = _QUEUED.search(response.message)
            result.queue_id = match[1] if match else None
            phase("data_s")
        # the work is done; a rude goodbye does not make it fail
        with contextlib.suppress(aiosmtplib.SMTPException):
            await smtp.quit()
    except aiosmtplib.SMTPAuthenticationError as exc:
        result.code = exc.code
        result.enhanced_code = enhanced_code(exc.code, exc.message)
        result.error = ProbeError("auth", "auth", f"{exc.code} {exc.message}")
    except aiosmtplib.SMTPResponseException as exc:
        result.code = exc.code
        result.enhanced_code = enhanced_code(exc.code, exc.message)
        result.error = ProbeError("protocol", step, f"{exc.code} {exc.message}")
    except aiosmtplib.SMTPServerDisconnected as exc:
        result.error = ProbeError("closed", step, f"server closed the connection ({exc})")
    except Exception as exc:
        result.error = classify(exc, step)
    finally:
        if smtp is not None and smtp.is_connected:
            smtp.close()
    if result.error is not None and mailbox.password is not None:
        # a server may echo what it was sent: the password, or AUTH PLAIN/LOGIN's base64
        result.error = masked(result.error, auth_forms(mailbox.user, mailbox.password.reveal()))
    result.phases["total_s"] = time.monotonic() - t0
    return result


def auth_forms(user: str, password: str) -> tuple[str, ...]:
    """The password as it crosses the wire in AUTH PLAIN and AUTH LOGIN, and as itself."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return (password, b64(password), b64(f"\0{user}\0{password}"), b64(f"{user}\0{password}"))


def enhanced_code(code: int, text: str) -> str | None:
    """The enhanced status code a reply starts with, when its class agrees with the basic
    code's first digit (RFC 3463 section 2); None when the server sent none."""
    match = _ENHANCED.match(text.lstrip())
    if match is None or str(code)[:1] != match[1]:
        return None
    return ".".join(match.groups())


async def _login(smtp: aiosmtplib.SMTP, mailbox: Mailbox, timeouts: Timeouts) -> None:
    """AUTH with the password, or SASL XOAUTH2 / OAUTHBEARER with the mailbox's token."""
    if mailbox.oauth2 is None:
        assert mailbox.password is not None
        await smtp.login(mailbox.user, mailbox.password.reveal())
        return
    mechanism = mailbox.oauth2.mechanism
    if mechanism not in smtp.server_auth_methods:
        offered = " ".join(smtp.server_auth_methods).upper() or "none"
        raise ProbeError("auth", "auth", f"server does not offer AUTH {mechanism.upper()} "
                         f"(offers {offered})")
    cache = token_cache(mailbox)
    token = await cache.get(timeouts.command_s)
    ep = mailbox.smtp
    initial = sasl_initial(mechanism, mailbox.user, token, ep.host, ep.port)
    response = await smtp.execute_command(b"AUTH", mechanism.upper().encode(),
                                          initial.encode())
    detail = ""
    if response.code == 334:  # the failure's JSON, then the server waits for our abort
        detail = challenge_text(response.message)
        response = await smtp.execute_command(SASL_ABORT[mechanism].encode())
    if response.code != 235:
        cache.drop(token)
        # a server that echoes our initial response must not put the token into an error
        text = mask(response.message, (token, initial))
        raise aiosmtplib.SMTPAuthenticationError(
            response.code, text + (f" {detail}" if detail else ""))
