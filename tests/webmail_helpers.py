"""Running one webmail load from a test, through the probe's one entry point."""

from __future__ import annotations

import asyncio

from prober.config.mail import Timeouts
from prober.config.profiles import Profile
from prober.config.webmail import WebmailTarget
from prober.contract import Contract
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.webmail import WebmailLoad, probe


def context(vantage: str = "test", contract: Contract | None = None) -> ProbeContext:
    return ProbeContext(vantage, Timeouts(), contract or Contract())


async def load_async(target: WebmailTarget, profile: Profile, vantage: str = "test",
                     contract: Contract | None = None) -> Measurement:
    (m,) = await probe(context(vantage, contract), WebmailLoad(target, profile))
    return m


def load(target: WebmailTarget, profile: Profile, vantage: str = "test",
         contract: Contract | None = None) -> Measurement:
    return asyncio.run(load_async(target, profile, vantage, contract))
