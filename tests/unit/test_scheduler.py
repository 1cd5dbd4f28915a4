"""Tick offsets and the TickClock: on time, late, skipped, stopped."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from prober.agent.scheduler import (
    Tick,
    TickClock,
    route_offset,
    stable_fraction,
    vantage_offset,
)

# serial (about 5 s): real clocks with 10 ms margins (a wall clock set 10 ms before a
# tick) and real 0.2 s ticks held to +-60 %; beside four workers a tick was numbered one
# late and another came 0.27 s late (scripts/test.sh runs this file alone)
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"name-{i}" for i in range(2000)] + ["", "v1", "a-to-b", "ü-vantage", "x" * 300]

R = TypeVar("R")


def run(coro_fn: Callable[[], Awaitable[R]]) -> R:
    async def main() -> R:
        return await coro_fn()
    return asyncio.run(main())


# -- offsets -------------------------------------------------------------------------------------

def test_stable_fraction_is_in_unit_interval_and_spread() -> None:
    values = [stable_fraction(n) for n in NAMES]
    assert all(0.0 <= v < 1.0 for v in values)
    assert min(values) < 0.01 and max(values) > 0.99
    assert 0.45 < sum(values) / len(values) < 0.55
    assert len(set(values)) > len(values) * 0.99  # not a handful of buckets


def test_stable_fraction_is_the_same_in_another_process_with_another_hash_seed() -> None:
    names = ["v1", "vantage:v1", "route:a-to-b", "probe-host-7"]
    here = [stable_fraction(n) for n in names]
    assert here == [stable_fraction(n) for n in names]
    code = ("from prober.agent.scheduler import stable_fraction;"
            f"print(repr([stable_fraction(n) for n in {names!r}]))")
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=30, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.stdout.strip() == repr(here)
    # crc32-based, pinned: a change here moves every agent's tick on every host
    assert stable_fraction("vantage:v1") == pytest.approx(0.42002107948064804, abs=1e-15)


@pytest.mark.parametrize("tick_s", [60.0, 0.2, 3600.0])
def test_vantage_offset_is_within_the_first_half_of_the_tick(tick_s: float) -> None:
    offsets = [vantage_offset(n, tick_s) for n in NAMES]
    assert all(0.0 <= o < tick_s / 2 for o in offsets)
    assert max(offsets) > tick_s / 2 * 0.98  # uses the whole half, not a sliver of it
    assert vantage_offset("v1", tick_s) == pytest.approx(
        stable_fraction("vantage:v1") * tick_s / 2)


@pytest.mark.parametrize("tick_s", [60.0, 0.2, 3600.0])
def test_route_offset_is_within_forty_percent_of_the_tick(tick_s: float) -> None:
    offsets = [route_offset(n, tick_s) for n in NAMES]
    assert all(0.0 <= o < tick_s * 0.4 for o in offsets)
    assert max(offsets) > tick_s * 0.4 * 0.98
    assert route_offset("a-to-b", tick_s) == pytest.approx(
        stable_fraction("route:a-to-b") * tick_s * 0.4)
    # vantage + route offset: every canary of a tick starts within that tick
    assert all(vantage_offset(n, tick_s) + route_offset(n, tick_s) < tick_s * 0.9
               for n in NAMES)


def test_offsets_differ_between_names_and_between_vantage_and_route() -> None:
    vantages = {vantage_offset(f"probe-{i}", 60.0) for i in range(50)}
    routes = {route_offset(f"route-{i}", 60.0) for i in range(50)}
    assert len(vantages) == 50 and len(routes) == 50
    assert vantage_offset("a", 60.0) != vantage_offset("b", 60.0)
    # the same word as a vantage and as a route is salted differently
    assert stable_fraction("vantage:x") != stable_fraction("route:x")
    assert vantage_offset("x", 60.0) / 0.5 != route_offset("x", 60.0) / 0.4


def test_route_offsets_depend_on_the_route_name_only() -> None:
    before = {r: route_offset(r, 60.0) for r in ("a-to-b", "b-to-a")}
    after = {r: route_offset(r, 60.0) for r in ("new-route", "a-to-b", "b-to-a")}
    assert after["a-to-b"] == before["a-to-b"] and after["b-to-a"] == before["b-to-a"]


def test_default_tolerance_is_a_quarter_tick_at_most_five_seconds() -> None:
    assert TickClock(60.0, 0.0).tolerance_s == 5.0
    assert TickClock(8.0, 0.0).tolerance_s == 2.0
    assert TickClock(8.0, 0.0, tolerance_s=0.5).tolerance_s == 0.5


# -- TickClock on a shifted wall clock -------------------------------------------------------------
# The clock's `time.time()` is the real one plus a shift the test controls: a jump of the shift
# is a loop that was blocked (or a VM suspended) for that long, without waiting for it.

class ShiftedTime:
    """Both clocks shifted alike: time passed (a blocked loop), not a wall-clock step."""

    def __init__(self) -> None:
        self.shift = 0.0

    def time(self) -> float:
        return time.time() + self.shift

    def monotonic(self) -> float:
        return time.monotonic() + self.shift

    def set(self, wall: float) -> None:
        self.shift = wall - time.time()


@pytest.fixture
def wall() -> ShiftedTime:
    return ShiftedTime()


TICK = 10.0
OFFSET = 3.0


def due(n: int) -> float:
    return n * TICK + OFFSET


def test_first_tick_is_the_next_one_due_on_the_wall_clock(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    wall.set(due(1000) - 0.02)
    t0 = time.monotonic()
    tick = run(lambda: clock.next(asyncio.Event()))
    waited = time.monotonic() - t0
    assert tick is not None
    assert tick.number == 1000
    assert tick.scheduled == due(1000)
    assert 0.0 <= tick.started - tick.scheduled < 0.5
    assert 0.01 < waited < 0.5  # it waited for the tick, it did not start at once
    assert clock.missed == 0


def test_a_tick_just_past_at_the_first_call_is_not_run_the_next_one_is(
        wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    wall.set(due(1000) + 0.5)

    async def first_call() -> Tick | None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await clock.next(stop)

    assert run(first_call) is None  # 1000 is not run late at start: it waits for 1001
    assert next_after(clock, wall, due(1001) - 0.01).number == 1001
    assert clock.missed == 0


def next_after(clock: TickClock, wall: ShiftedTime, at: float) -> Tick:
    wall.set(at)
    tick = run(lambda: clock.next(asyncio.Event()))
    assert tick is not None
    return tick


def test_consecutive_ticks_are_numbered_in_order(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    first = next_after(clock, wall, due(500) - 0.01)
    second = next_after(clock, wall, due(501) - 0.01)
    third = next_after(clock, wall, due(502) + 0.1)
    assert [t.number for t in (first, second, third)] == [500, 501, 502]
    assert [t.scheduled for t in (first, second, third)] == [due(500), due(501), due(502)]
    assert clock.missed == 0


def test_a_late_tick_within_tolerance_is_not_missed(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)  # tolerance 2.5 s
    next_after(clock, wall, due(1000) - 0.01)
    tick = next_after(clock, wall, due(1001) + 2.0)
    assert tick.number == 1001 and tick.scheduled == due(1001)
    assert clock.missed == 0


def test_a_tick_late_beyond_tolerance_runs_and_is_counted(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    next_after(clock, wall, due(1000) - 0.01)
    tick = next_after(clock, wall, due(1001) + 4.0)
    assert tick.number == 1001
    assert tick.started - tick.scheduled == pytest.approx(4.0, abs=0.2)
    assert clock.missed == 1


def test_whole_ticks_passed_unseen_are_skipped_and_counted(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    next_after(clock, wall, due(1000) - 0.01)
    # blocked for three ticks and a bit: 1001 and 1002 passed whole; 1003 is 1 s late
    tick = next_after(clock, wall, due(1003) + 1.0)
    assert tick.number == 1003 and tick.scheduled == due(1003)
    assert clock.missed == 2
    # 2.5 ticks: 1004 skipped, 1005 runs 5 s late (beyond tolerance), both counted
    tick = next_after(clock, wall, due(1005) + 5.0)
    assert tick.number == 1005
    assert clock.missed == 4


def test_no_burst_after_a_skip_the_next_tick_waits_for_its_time(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    next_after(clock, wall, due(1000) - 0.01)
    wall.set(due(1004) + 0.5)
    stop = asyncio.Event()

    async def two_calls() -> tuple[Tick | None, Tick | None, float]:
        first = await clock.next(stop)
        asyncio.get_running_loop().call_later(0.1, stop.set)
        t0 = time.monotonic()
        second = await clock.next(stop)  # 1005 is 9.5 s away: only the stop ends this wait
        return first, second, time.monotonic() - t0

    first, second, waited = run(two_calls)
    assert first is not None and first.number == 1004
    assert second is None
    assert 0.05 < waited < 1.0
    assert clock.missed == 3


def test_stop_already_set_returns_none_at_once(wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    stop = asyncio.Event()
    stop.set()
    wall.set(due(7) - 5.0)  # 5 s before a tick
    t0 = time.monotonic()
    assert run(lambda: clock.next(stop)) is None
    wall.set(due(7) + 0.1)  # and with the tick already due
    assert run(lambda: clock.next(stop)) is None
    assert time.monotonic() - t0 < 0.5
    assert clock.missed == 0


def test_stop_during_the_wait_returns_none_promptly_then_the_clock_goes_on(
        wall: ShiftedTime) -> None:
    clock = TickClock(TICK, OFFSET, clock=wall)
    wall.set(due(42) - 6.0)

    async def stopped_wait() -> tuple[Tick | None, float]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        t0 = time.monotonic()
        return await clock.next(stop), time.monotonic() - t0

    tick, waited = run(stopped_wait)
    assert tick is None
    assert waited < 0.5
    # a later call still yields the tick it was waiting for
    assert next_after(clock, wall, due(42) - 0.01).number == 42
    assert clock.missed == 0


# -- TickClock on the real clock -------------------------------------------------------------------

def test_real_clock_ticks_at_k_tick_plus_offset() -> None:
    tick_s, offset = 0.1, 0.037
    clock = TickClock(tick_s, offset, tolerance_s=0.05)

    async def ticks() -> list[Tick]:
        stop = asyncio.Event()
        out = []
        for _ in range(3):
            tick = await clock.next(stop)
            assert tick is not None
            out.append(tick)
        return out

    t0 = time.time()
    got = run(ticks)
    assert [t.number for t in got] == [got[0].number + i for i in range(3)]
    assert got[0].scheduled >= t0 - 1e-3 and got[0].scheduled < t0 + tick_s
    for t in got:
        assert t.scheduled == pytest.approx(t.number * tick_s + offset, abs=1e-6)
        assert -2e-3 <= t.started - t.scheduled < 0.05
    assert clock.missed == 0


def test_real_clock_blocked_loop_skips_instead_of_bursting() -> None:
    tick_s = 0.1
    clock = TickClock(tick_s, 0.0, tolerance_s=0.02)

    async def blocked() -> tuple[Tick, Tick, Tick]:
        stop = asyncio.Event()
        first = await clock.next(stop)
        assert first is not None
        time.sleep(2.5 * tick_s)  # the loop is blocked: tick +1 passes whole, +2 is late
        second = await clock.next(stop)
        third = await clock.next(stop)
        assert second is not None and third is not None
        return first, second, third

    first, second, third = run(blocked)
    assert second.number == first.number + 2  # +1 skipped, not run in a burst
    assert second.started - second.scheduled > 0.02
    assert clock.missed == 2
    # and +3 waited for its own time
    assert third.number == second.number + 1
    assert third.started - third.scheduled >= -2e-3
    assert third.started - second.started > 0.01


# -- wall-clock steps ------------------------------------------------------------------------------

class SteppedClock:
    """The wall clock steps (NTP, `date -s`); the monotonic clock runs on."""

    def __init__(self) -> None:
        self.step = 0.0

    def time(self) -> float:
        return time.time() + self.step

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.mark.parametrize("steps", [(5 * 3600.0, -6 * 3600.0), (-3600.0, 3600.0)])
def test_wall_clock_steps_both_ways_keep_the_cadence(steps: tuple[float, float]) -> None:
    tick_s = 0.2
    wall = SteppedClock()
    clock = TickClock(tick_s, 0.05, tolerance_s=0.1, clock=wall)

    async def ticks() -> list[tuple[Tick, float]]:
        stop = asyncio.Event()
        out = []
        for i in range(9):
            if i in (3, 6):
                wall.step += steps[0 if i == 3 else 1]
            tick = await clock.next(stop)
            assert tick is not None
            out.append((tick, time.monotonic()))
        return out

    got = run(ticks)
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(got)]
    # neither stopped (a backward step waiting out the hour) nor a burst (a forward one
    # running 90000 ticks at once): one tick per tick_s, on the monotonic clock
    assert all(0.5 * tick_s < g < 1.6 * tick_s for g in gaps), gaps
    assert clock.steps == 2
    assert clock.missed == 0
    # ticks follow the wall clock as it reads after each step
    for tick, _ in got:
        assert tick.scheduled == pytest.approx(tick.number * tick_s + 0.05, abs=1e-6)
        assert abs(tick.started - tick.scheduled) < 0.1


def test_a_small_wall_clock_adjustment_is_not_a_step() -> None:
    wall = SteppedClock()
    clock = TickClock(0.1, 0.0, tolerance_s=0.05, clock=wall)

    async def two() -> None:
        stop = asyncio.Event()
        await clock.next(stop)
        wall.step += 0.5  # NTP's slew-sized correction: below STEP_S
        await clock.next(stop)

    run(two)
    assert clock.steps == 0
