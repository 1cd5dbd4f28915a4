"""The deliver room's settings: `[spool]` and `[influx]`."""

from __future__ import annotations

from dataclasses import dataclass

from prober.config.reader import Secret, Section


@dataclass(frozen=True)
class SpoolSettings:
    path: str


@dataclass(frozen=True)
class InfluxSettings:
    api: str
    url: str
    token: Secret | None = None


def parse_spool(root: Section, state_dir: str) -> SpoolSettings:
    s = root.table("spool")
    path = f"{state_dir}/prober.db"
    if s is None:
        return SpoolSettings(path=path)
    spool = SpoolSettings(path=s.str("path", path))
    s.check_unknown()
    return spool


def parse_influx(root: Section) -> InfluxSettings | None:
    s = root.table("influx")
    if s is None:
        return None
    influx = InfluxSettings(api=s.choice("api", ("v2", "v1"), "v2"), url=s.str("url"),
                            token=s.secret("token", required=False))
    s.check_unknown()
    return influx
