"""The same measurements written where the judge reads them: InfluxDB 1.x and a spool file."""

from __future__ import annotations

from pathlib import Path

import httpx

from prober.agent.spool import Spool
from prober.config.delivery import SpoolSettings


def write_influx(url: str, db: str, lines: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/write", params={"db": db, "precision": "ns"},
                        content="\n".join(lines).encode())
        assert r.status_code == 204, r.text


def write_both(url: str, db: str, spool_path: Path, lines: list[str]) -> None:
    """Into InfluxDB and into a spool that keeps them (retained, ten years' age)."""
    write_influx(url, db, lines)
    settings = SpoolSettings(path=str(spool_path), retain=True, max_age_s=10 * 365 * 86400.0)
    with Spool(settings.path, settings) as spool:
        spool.append_lines(lines)
