"""The judge's settings: `[sla]`, `[[maintenance]]`, `[[exclusion]]`."""

from __future__ import annotations

from dataclasses import dataclass

from prober.config.reader import Section


@dataclass(frozen=True)
class SlaSettings:
    timezone: str = "UTC"


def parse_sla(root: Section) -> SlaSettings:
    s = root.table("sla")
    if s is None:
        return SlaSettings()
    sla = SlaSettings(timezone=s.str("timezone", "UTC"))
    s.check_unknown()
    return sla
