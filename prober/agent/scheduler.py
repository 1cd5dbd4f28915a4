"""Minute ticks: when each tick and each route's canary starts, and ticks that were missed."""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from dataclasses import dataclass

from prober.agent.clock import STEP_S, SYSTEM, Clock

log = logging.getLogger("prober.agent")
# The longest single wait: the clock looks at both clocks at least this often, so a
# backward wall-clock step cannot leave it asleep for the size of the step.
MAX_WAIT_S = 1.0


def stable_fraction(name: str) -> float:
    """A number in [0, 1) that depends only on `name`: the same on every start and host."""
    return (zlib.crc32(name.encode()) & 0xFFFFFFFF) / 2**32


def vantage_offset(vantage: str, tick_s: float) -> float:
    """Within the first half of the tick, so several agents don't hit the provider at once."""
    return stable_fraction("vantage:" + vantage) * tick_s * 0.5


def route_offset(route: str, tick_s: float) -> float:
    """Spread over a further 40 % of the tick, by route name: adding a route moves no other."""
    return stable_fraction("route:" + route) * tick_s * 0.4


@dataclass
class Tick:
    number: int  # ticks since the epoch (wall clock / tick_s)
    scheduled: float  # wall-clock time the tick was due
    started: float  # when the loop got to it (wall clock)
    started_mono: float = 0.0  # the same moment on the monotonic clock

    def mono_at(self, wall: float) -> float:
        """The monotonic time at which the wall clock (as it runs now) shows `wall`."""
        return self.started_mono + (wall - self.started)


class TickClock:
    """Yields ticks on the wall clock at `k * tick_s + offset`.

    A tick is late when the loop reaches it more than `tolerance_s` after its time (a
    blocked loop, a suspended VM); when a whole tick passed unseen it is skipped, not
    run in a burst, and counted in `missed`. A wall-clock step (the wall and the monotonic
    clock disagree by more than STEP_S) is not a missed tick: the schedule moves to the
    new wall time (the next boundary after it: no stop after a backward step, no burst
    after a forward one), and the step is logged and counted in `steps`.
    """

    def __init__(self, tick_s: float, offset_s: float, tolerance_s: float | None = None,
                 clock: Clock | None = None, step_s: float = STEP_S) -> None:
        self.tick_s = tick_s
        self.offset_s = offset_s
        self.tolerance_s = tolerance_s if tolerance_s is not None else min(5.0, tick_s / 4)
        self.clock = clock or SYSTEM
        self.step_s = step_s
        self.missed = 0
        self.steps = 0
        self.looked_mono = self.clock.monotonic()  # the last time the clock looked (watchdog)
        self._next: int | None = None
        self._skew: float | None = None  # wall - monotonic at the last look

    def _due(self, number: int) -> float:
        return number * self.tick_s + self.offset_s

    def _first(self, wall: float) -> int:
        return math.ceil((wall - self.offset_s) / self.tick_s)

    def _look(self) -> float:
        """The wall time now; a step since the last look moves the schedule."""
        wall, mono = self.clock.time(), self.clock.monotonic()
        skew = wall - mono
        if self._skew is not None and abs(skew - self._skew) > self.step_s:
            self.steps += 1
            log.warning("wall clock stepped by %+.1f s (the monotonic clock did not): ticks "
                        "follow the new wall time; durations stay on the monotonic clock",
                        skew - self._skew)
            if self._next is not None:
                # the tick we were waiting for, moved by the step: the first boundary of the
                # new wall time at (or within the tolerance before) that same moment
                moved = self._due(self._next) + (skew - self._skew)
                self._next = self._first(moved - self.tolerance_s)
        self._skew = skew
        self.looked_mono = mono
        return wall

    async def next(self, stop: asyncio.Event) -> Tick | None:
        while True:
            now = self._look()
            if self._next is None:
                self._next = self._first(now)
            delay = self._due(self._next) - now
            if delay <= 0 or stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), min(delay, MAX_WAIT_S))
                return None
            except TimeoutError:
                pass
        if stop.is_set():
            return None
        number = self._next
        lateness = now - self._due(number)
        if lateness > self.tick_s:
            skipped = int(lateness // self.tick_s)
            self.missed += skipped
            number += skipped
            lateness = now - self._due(number)
        if lateness > self.tolerance_s:
            self.missed += 1
        self._next = number + 1
        return Tick(number, self._due(number), now, self.clock.monotonic())
