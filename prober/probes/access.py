"""The connectivity minute: a fresh SMTP login and a fresh IMAP login + EXAMINE per mailbox,
on each address of the server's host name.

A customer's client connects to one of the addresses the name resolves to (A and AAAA, a
pool of front ends), so every one of them is tried on its own, concurrently, and gets its
own point (`family` tag, `peer_ip` field): a dead IPv6 front end or one dead member of a
pool is a failure of that address, not hidden by a fallback to the next.

Both are ProbeFns (`prober.probes.base`): `await smtp_access(ctx, mailbox)`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prober.config.mail import Endpoint, Mailbox, Timeouts
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.connect import MAX_ADDRESSES, Address, resolve
from prober.probes.errors import ProbeError, classify
from prober.probes.imap_session import ImapSession
from prober.probes.smtp import submit
from prober.probes.tls import Facts
from prober.schema import (
    FIELD_ADDRESSES,
    FIELD_ERROR,
    FIELD_ERROR_CLASS,
    FIELD_PEER_IP,
    MAIL_ACCESS,
    TAG_FAMILY,
    TAG_MAILBOX,
    TAG_OUTCOME,
    TAG_PROTOCOL,
    TAG_VANTAGE,
    AccessOutcome,
)

SMTP, IMAP = "smtp", "imap"  # the `protocol` tag


@dataclass(frozen=True)
class Attempt:
    """One session with one address: its phases, how it failed, what the connection was."""

    phases: dict[str, float]
    error: ProbeError | None
    facts: Facts


Once = Callable[[Mailbox, Timeouts, Address], Awaitable[Attempt]]


def _point(vantage: str, mailbox: Mailbox, protocol: str, phases: dict[str, float],
           error: ProbeError | None, started_ns: int, facts: Facts,
           family: str | None) -> Measurement:
    tags = {
        TAG_VANTAGE: vantage,
        TAG_MAILBOX: mailbox.address,
        TAG_PROTOCOL: protocol,
        TAG_OUTCOME: AccessOutcome.FAIL if error else AccessOutcome.OK,
    }
    if family is not None:
        tags[TAG_FAMILY] = family
    return Measurement(MAIL_ACCESS, tags, {
        "connect_s": phases.get("connect_s"),
        "tls_s": phases.get("tls_s"),
        "auth_s": phases.get("auth_s"),
        "select_s": phases.get("select_s"),
        "total_s": phases.get("total_s"),
        FIELD_ERROR: str(error) if error else None,
        FIELD_ERROR_CLASS: error.kind if error else None,
        **facts,
    }, started_ns)


async def _each_address(vantage: str, mailbox: Mailbox, protocol: str, endpoint: Endpoint,
                        timeouts: Timeouts, once: Once) -> list[Measurement]:
    """One point per address of the host (the first MAX_ADDRESSES; `addresses` counts all).

    The one name lookup is charged to every address's connect_s and total_s, as a client
    pays it before connecting. The points share the check's start as timestamp, the i-th
    one plus i ns, so points of one series (same family and outcome) never overwrite
    each other.
    """
    started = time.time_ns()
    t0 = time.monotonic()
    configured = None if endpoint.family == "any" else endpoint.family
    try:
        addresses = await resolve(endpoint.host, endpoint.port, timeouts.connect_s,
                                  endpoint.family)
    except ProbeError as error:
        return [_point(vantage, mailbox, protocol, {"total_s": time.monotonic() - t0}, error,
                       started, {}, configured)]
    dns_s = time.monotonic() - t0
    probed = addresses[:MAX_ADDRESSES]
    attempts = await asyncio.gather(*(once(mailbox, timeouts, a) for a in probed))
    points = []
    for i, (address, attempt) in enumerate(zip(probed, attempts, strict=True)):
        phases = dict(attempt.phases)
        for name in ("connect_s", "total_s"):
            if name in phases:
                phases[name] += dns_s
        facts: Facts = {**attempt.facts, FIELD_PEER_IP: address.ip,
                        FIELD_ADDRESSES: len(addresses)}
        points.append(_point(vantage, mailbox, protocol, phases, attempt.error, started + i,
                             facts, address.family_name))
    return points


async def _smtp_once(mailbox: Mailbox, timeouts: Timeouts, address: Address) -> Attempt:
    result = await submit(mailbox, timeouts, address=address)
    return Attempt(result.phases, result.error, result.facts)


async def _imap_once(mailbox: Mailbox, timeouts: Timeouts, address: Address) -> Attempt:
    """EXAMINE (the read-only SELECT) so that our look leaves \\Recent and flags alone."""
    t0 = time.monotonic()
    sess = ImapSession(mailbox.imap.endpoint, timeouts, address=address)
    error: ProbeError | None = None
    step = "connect"
    try:
        await sess.connect()
        step = "auth"
        await sess.authenticate(mailbox)
        step = "select"
        await sess.select(mailbox.imap.folder, readonly=True)
    except Exception as exc:
        error = classify(exc, step)
    finally:
        await sess.logout()
    sess.phases["total_s"] = time.monotonic() - t0
    return Attempt(sess.phases, error, sess.facts)


async def smtp_access(ctx: ProbeContext, mailbox: Mailbox) -> list[Measurement]:
    return await _each_address(ctx.vantage, mailbox, SMTP, mailbox.smtp, ctx.timeouts,
                               _smtp_once)


async def imap_access(ctx: ProbeContext, mailbox: Mailbox) -> list[Measurement]:
    return await _each_address(ctx.vantage, mailbox, IMAP, mailbox.imap.endpoint, ctx.timeouts,
                               _imap_once)
