"""The agent's clocks, injectable: the wall clock for timestamps and tick times, the
monotonic clock for durations. A test hands the agent a clock whose wall time steps (NTP
fixing a wrong clock, an operator's `date -s`) while its monotonic time runs on."""

from __future__ import annotations

import time
from typing import Protocol

STEP_S = 2.0  # a disagreement between the two clocks larger than this is a wall-clock step


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM = SystemClock()


def time_ns(clock: Clock) -> int:
    return int(clock.time() * 1e9)
