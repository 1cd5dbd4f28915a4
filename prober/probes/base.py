"""The one shape every probe has, like blackbox_exporter's ProbeFn.

A probe is `async def probe(ctx: ProbeContext, target) -> list[Measurement]`: the caller
hands it who is measuring, its time limits and the contract; the probe never learns
which driver called it (`prober check` or `prober run`) or where its points go.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prober.config.mail import Timeouts
from prober.contract import Contract
from prober.measurement import Measurement


@dataclass(frozen=True)
class ProbeContext:
    vantage: str
    timeouts: Timeouts
    contract: Contract
    # time.monotonic() by which the probe must have returned; None: its own timeouts only
    deadline: float | None = None


ProbeFn = Callable[[ProbeContext, Any], Awaitable[list[Measurement]]]
