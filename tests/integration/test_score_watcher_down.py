"""Minutes in which a vantage's IMAP watcher was down are that vantage's own fault: listed
under coverage, per vantage, from InfluxDB 1.6.7 and the spool alike, and never down time."""

from __future__ import annotations

import json

import httpx
import pytest

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.query import InfluxEvidence, InfluxTarget
from prober.sla.report import render
from prober.sla.score import score
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration
T0 = 1_793_491_200 * 10**9  # 2026-11-01T00:00Z
MIN = 60 * 10**9


def day() -> list[Measurement]:
    out = []
    for m in range(24 * 60):
        for v in ("v1", "v2"):
            # v2's watcher is down from 10:00 to 10:07 (eight heartbeats)
            up = 0 if v == "v2" and 600 <= m < 608 else 2
            out.append(Measurement("prober_heartbeat", {"vantage": v},
                                   {"uptime_s": 1.0, "watchers": 2, "watchers_up": up},
                                   T0 + m * MIN + 5 * 10**9))
    # an older agent's heartbeat, without the watcher fields: nothing is assumed
    out.append(Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 2.0},
                           T0 + 700 * MIN + 30 * 10**9))
    return out


def test_watcher_down_minutes_are_coverage_not_down(influxdb1: InfluxDB1,
                                                    influx_db: str) -> None:
    points = day()
    r = httpx.post(f"{influxdb1.url}/write", params={"db": influx_db, "precision": "ns"},
                   content="\n".join(p.to_line() for p in points).encode(), timeout=30)
    assert r.status_code == 204, r.text
    now = T0 + 24 * 60 * MIN
    ev = InfluxEvidence(InfluxTarget(influxdb1.url, influx_db))
    try:
        cards = [score(ev, SlaSettings(), 2026, 11, now_ns=now)]
    finally:
        ev.close()
    cards.append(score(PointsEvidence.from_measurements(points), SlaSettings(), 2026, 11,
                       now_ns=now))
    for card in cards:
        assert card.watcher_down == {"v2": 8}
        assert card.conn.down == set() and card.conn.incidents == []
        for fmt in ("table", "markdown", "html"):
            assert "watcher down min" in render(card, fmt), fmt
        data = json.loads(render(card, "json"))
        assert data["connectivity"]["watcher_down_minutes_by_vantage"] == {"v2": 8}
