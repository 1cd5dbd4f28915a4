"""What one tick measures, as data: both drivers (`prober run`, `prober check`) loop over it.

`plan(config)` lists the access checks (one per mailbox and protocol), the canaries (one
per route), the webmail loads (one per target and profile; each target says its own
cadence, `interval_s`) and the periodic §4/§5 probes (filter tests, blocklist and abuse@
checks, each at its own `interval_s`).
A driver decides when and how often; the plan decides what, so the daemon and the
one-shot check cannot measure different things.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prober.config import Config
from prober.config.mail import Mailbox
from prober.measurement import Measurement
from prober.probes.access import IMAP, SMTP, imap_access, smtp_access
from prober.probes.base import ProbeContext, ProbeFn
from prober.probes.canary import CanaryKey
from prober.probes.roundtrip import CanaryTarget
from prober.probes.webmail_point import WebmailLoad

AccessFn = Callable[[ProbeContext, Mailbox], Awaitable[list[Measurement]]]


@dataclass(frozen=True)
class AccessCheck:
    mailbox: Mailbox
    protocol: str  # the `protocol` tag: smtp or imap
    probe: AccessFn


@dataclass(frozen=True)
class Periodic:
    """A probe run every `interval_s` rather than every tick."""

    name: str  # unique within the plan, e.g. "filter spam-in"
    kind: str  # filter | blocklist | abuse
    interval_s: float
    probe: ProbeFn
    target: Any


@dataclass(frozen=True)
class Plan:
    access: tuple[AccessCheck, ...]
    canaries: tuple[CanaryTarget, ...]
    webmail: tuple[WebmailLoad, ...]
    periodic: tuple[Periodic, ...] = ()

    @property
    def recipients(self) -> list[str]:
        """Mailbox names that need a watcher: every canary's recipient, once."""
        return sorted({c.route.recipient for c in self.canaries})


_ACCESS: tuple[tuple[str, AccessFn], ...] = ((SMTP, smtp_access), (IMAP, imap_access))


def plan(config: Config, routes: Iterable[str] | None = None,
         key: CanaryKey | None = None) -> Plan:
    """Everything a tick runs, in config order; `routes` narrows the canaries (check --route).
    The filter tests are signed like canaries: without `key` they are left out."""
    wanted = set(routes) if routes else None
    return Plan(
        access=tuple(AccessCheck(mb, proto, fn) for mb in config.mailboxes.values()
                     for proto, fn in _ACCESS),
        canaries=tuple(CanaryTarget.of(config, r) for r in config.routes
                       if wanted is None or r.name in wanted),
        webmail=tuple(WebmailLoad(t, p) for t in config.webmail for p in t.profiles),
        periodic=_periodic(config, key),
    )


def _periodic(config: Config, key: CanaryKey | None) -> tuple[Periodic, ...]:
    out: list[Periodic] = []
    if key is not None and config.filters:
        # zipfile and the email parser only when a filter test is configured
        from prober.probes.mailfilter import FilterTarget

        out += [Periodic(f"filter {f.name}", "filter", f.interval_s, _filter,
                         FilterTarget(f, config.mailboxes[f.sender],
                                      config.mailboxes[f.recipient], key))
                for f in config.filters]
    spam = config.antispam
    if spam.blocklist is not None:
        out.append(Periodic("blocklist", "blocklist", spam.blocklist.interval_s, _blocklist,
                            spam.blocklist))
    if spam.abuse is not None:
        out.append(Periodic("abuse", "abuse", spam.abuse.interval_s, _abuse, spam.abuse))
    return tuple(out)


# The §4/§5 probes load their libraries (dnspython) only when one is configured and due.
async def _filter(ctx: ProbeContext, target: Any) -> list[Measurement]:
    from prober.probes import mailfilter

    return await mailfilter.probe(ctx, target)


async def _blocklist(ctx: ProbeContext, target: Any) -> list[Measurement]:
    from prober.probes import blocklist

    return await blocklist.probe(ctx, target)


async def _abuse(ctx: ProbeContext, target: Any) -> list[Measurement]:
    from prober.probes import abuse

    return await abuse.probe(ctx, target)


def context(config: Config, deadline: float | None = None) -> ProbeContext:
    return ProbeContext(config.vantage.name, config.timeouts, config.contract, deadline)
