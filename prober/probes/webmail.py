"""The webmail probe: one cold page load of a target over a profile's line.

A thin front: it picks the engine the target names (`engine = "httpx"`, the default, or
`"browser"`) and hands it the job. What a load is and the point it becomes live in
webmail_point; each engine is its own module, imported only when a target uses it (the
browser engine needs the optional Playwright).
"""

from __future__ import annotations

from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.webmail_point import WebmailLoad, judged_seconds

__all__ = ["WebmailLoad", "judged_seconds", "probe"]


async def probe(ctx: ProbeContext, load: WebmailLoad) -> list[Measurement]:
    """One `webmail_load` point. Never raises for what the target does: every way a load
    can end is an outcome with its reason. `ctx.deadline` is not applied: a load is bounded
    by its own timeout (twice the contract's limit unless the target sets one), because
    cutting it shorter would record a timeout the provider did not cause."""
    if load.target.engine == "browser":
        from prober.probes import webmail_browser

        return await webmail_browser.load(ctx, load)
    from prober.probes import webmail_httpx

    return await webmail_httpx.load(ctx, load)

