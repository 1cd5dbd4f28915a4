"""What one tick measures, as data: both drivers (`prober run`, `prober check`) loop over it.

`plan(config)` lists the access checks (one per mailbox and protocol), the canaries (one
per route) and the webmail loads (one per target and profile; each target says its own
cadence, `interval_s`).
A driver decides when and how often; the plan decides what, so the daemon and the
one-shot check cannot measure different things.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from prober.config import Config
from prober.config.mail import Mailbox
from prober.measurement import Measurement
from prober.probes.access import IMAP, SMTP, imap_access, smtp_access
from prober.probes.base import ProbeContext
from prober.probes.roundtrip import CanaryTarget
from prober.probes.webmail_point import WebmailLoad

AccessFn = Callable[[ProbeContext, Mailbox], Awaitable[list[Measurement]]]


@dataclass(frozen=True)
class AccessCheck:
    mailbox: Mailbox
    protocol: str  # the `protocol` tag: smtp or imap
    probe: AccessFn


@dataclass(frozen=True)
class Plan:
    access: tuple[AccessCheck, ...]
    canaries: tuple[CanaryTarget, ...]
    webmail: tuple[WebmailLoad, ...]

    @property
    def recipients(self) -> list[str]:
        """Mailbox names that need a watcher: every canary's recipient, once."""
        return sorted({c.route.recipient for c in self.canaries})


_ACCESS: tuple[tuple[str, AccessFn], ...] = ((SMTP, smtp_access), (IMAP, imap_access))


def plan(config: Config, routes: Iterable[str] | None = None) -> Plan:
    """Everything a tick runs, in config order; `routes` narrows the canaries (check --route)."""
    wanted = set(routes) if routes else None
    return Plan(
        access=tuple(AccessCheck(mb, proto, fn) for mb in config.mailboxes.values()
                     for proto, fn in _ACCESS),
        canaries=tuple(CanaryTarget.of(config, r) for r in config.routes
                       if wanted is None or r.name in wanted),
        webmail=tuple(WebmailLoad(t, p) for t in config.webmail for p in t.profiles),
    )


def context(config: Config, deadline: float | None = None) -> ProbeContext:
    return ProbeContext(config.vantage.name, config.timeouts, config.contract, deadline)
