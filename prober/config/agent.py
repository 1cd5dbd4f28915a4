"""The daemon's own settings: `[agent]`."""

from __future__ import annotations

from dataclasses import dataclass

from prober.config.reader import Section


@dataclass(frozen=True)
class AgentSettings:
    tick_s: float = 60.0
    concurrency: int = 32
    stop_grace_s: float = 30.0
    access_every_ticks: int = 1


def parse_agent(root: Section) -> AgentSettings:
    s = root.table("agent")
    if s is None:
        return AgentSettings()
    a = AgentSettings(
        tick_s=s.number("tick_s", 60.0, minimum=0.5, maximum=3600),
        concurrency=s.integer("concurrency", 32, minimum=1, maximum=10000),
        stop_grace_s=s.number("stop_grace_s", 30.0, minimum=0, maximum=3600),
        access_every_ticks=s.integer("access_every_ticks", 1, minimum=1, maximum=10_000),
    )
    s.check_unknown()
    return a
