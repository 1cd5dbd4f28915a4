"""Deliver a one-shot run's measurements: spool first, then InfluxDB when configured.

`prober check` calls `deliver()`; the daemon uses Spool and InfluxWriter directly.
"""

from __future__ import annotations

from collections.abc import Iterable

from prober.agent.spool import Spool, SpoolFull
from prober.config import Config
from prober.measurement import Measurement


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def deliver(config: Config, measurements: Iterable[Measurement]) -> str:
    """Append to the spool; with [influx] configured, drain it once.

    Returns a one-line human status. Raises SpoolError when the spool cannot be opened or
    written (a problem the caller must show as a failure, with the file named).
    """
    batch = list(measurements)
    with Spool(config.spool.path, config.spool) as spool:
        try:
            n = spool.append(batch)
        except SpoolFull as exc:
            return f"{_points(len(batch))} NOT stored: {exc}"
        if config.influx is None:
            return (f"{_points(n)} kept in the local spool {spool.path} "
                    "(no [influx] configured)")
        from prober.agent.influx import InfluxWriter  # httpx: only with [influx]

        writer = InfluxWriter(config.influx, spool)
        try:
            result = writer.drain_once()
        finally:
            writer.close()
        dead = f"; {result.dead} refused by InfluxDB (dead-letter table)" if result.dead else ""
        if result.ok:
            older = result.delivered + result.dead - n
            backlog = f" (with {_points(older)} spooled earlier)" if older > 0 else ""
            return (f"{_points(n)} delivered to InfluxDB at {config.influx.target}"
                    f"{backlog}{dead}")
        return (f"{_points(n)} spooled, {result.remaining} waiting in {spool.path} "
                f"({result.error}){dead}")
