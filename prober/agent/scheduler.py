"""Minute ticks: when each tick and each route's canary starts, and ticks that were missed."""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from dataclasses import dataclass


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
    started: float  # when the loop got to it


class TickClock:
    """Yields ticks on the wall clock at `k * tick_s + offset`.

    A tick is late when the loop reaches it more than `tolerance_s` after its time (a
    blocked loop, a suspended VM); when a whole tick passed unseen it is skipped, not
    run in a burst, and counted in `missed`.
    """

    def __init__(self, tick_s: float, offset_s: float, tolerance_s: float | None = None) -> None:
        self.tick_s = tick_s
        self.offset_s = offset_s
        self.tolerance_s = tolerance_s if tolerance_s is not None else min(5.0, tick_s / 4)
        self.missed = 0
        self._next: int | None = None

    def _due(self, number: int) -> float:
        return number * self.tick_s + self.offset_s

    async def next(self, stop: asyncio.Event) -> Tick | None:
        now = time.time()
        if self._next is None:
            self._next = math.ceil((now - self.offset_s) / self.tick_s)
        delay = self._due(self._next) - now
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return None
            except TimeoutError:
                pass
        if stop.is_set():
            return None
        now = time.time()
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
        return Tick(number, self._due(number), now)
