"""§4/§5 from the real InfluxDB 1.6.7: the raw filter, blocklist and abuse points read back
over InfluxQL give the same verdicts and evidence as the spool."""

from __future__ import annotations

import httpx
import pytest

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.query import InfluxEvidence, InfluxTarget
from prober.sla.score import BREACH, PASS, score
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration
T0 = 1_793_491_200 * 10**9  # 2026-11-01T00:00Z
DAY = 86_400 * 10**9
HOUR = 3600 * 10**9


def month() -> list[Measurement]:
    out = []
    for d in range(30):
        out.append(Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0},
                               T0 + d * DAY))
        out.append(Measurement("mail_filter", {"vantage": "v1", "route": "sp", "kind": "spam",
                                               "variant": "gtube", "expected": "junk"},
                               {"outcome": "junk", "as_expected": True, "folder": "Junk"},
                               T0 + d * DAY + HOUR))
        out.append(Measurement("mail_filter", {"vantage": "v1", "route": "av", "kind": "virus",
                                               "variant": "zip", "expected": "strip"},
                               {"outcome": "stripped", "as_expected": True,
                                "extra_delay_s": 0.4 if d != 12 else 75.0},
                               T0 + d * DAY + 2 * HOUR))
    for h in range(48):  # listed for 30 h: over a working day
        out.append(Measurement("mail_blocklist", {"vantage": "v1", "zone": "bl.test",
                                                  "subject": "192.0.2.1"},
                               {"listed": 2 <= h < 32, "answer": ""}, T0 + h * HOUR))
    return out


def test_influx_gives_the_same_antispam_verdicts_as_the_spool(influxdb1: InfluxDB1,
                                                              influx_db: str) -> None:
    points = month()
    r = httpx.post(f"{influxdb1.url}/write", params={"db": influx_db, "precision": "ns"},
                   content="\n".join(p.to_line() for p in points).encode(), timeout=30)
    assert r.status_code == 204, r.text
    now = T0 + 31 * DAY
    ev = InfluxEvidence(InfluxTarget(influxdb1.url, influx_db))
    try:
        from_influx = score(ev, SlaSettings(), 2026, 11, now_ns=now)
    finally:
        ev.close()
    from_spool = score(PointsEvidence.from_measurements(points), SlaSettings(), 2026, 11,
                       now_ns=now)
    for card in (from_influx, from_spool):
        v = {x.clause.id: x for x in card.verdicts}
        assert v["anti_virus"].status == BREACH
        assert v["anti_spam"].status == BREACH
        assert any("scanning added 75.0 s" in e for e in card.antispam_evidence["anti_virus"])
        assert any("192.0.2.1 on bl.test" in e and "(30.0 h)" in e
                   for e in card.antispam_evidence["anti_spam"])
    assert from_influx.antispam_evidence == from_spool.antispam_evidence
    assert PASS not in {from_influx.verdicts[i].status for i in range(len(from_influx.verdicts))
                        if from_influx.verdicts[i].clause.id in ("anti_spam", "anti_virus")}
