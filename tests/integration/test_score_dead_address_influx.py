"""`[sla] dead_address` over the real InfluxDB 1.6.7 (InfluxQL) and over a spool file:
both read the ok logins beside the failed ones and give the same minutes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prober.config.sla import SlaSettings
from prober.sla.local import spool_evidence
from prober.sla.query import InfluxEvidence, InfluxTarget
from prober.sla.score import Scorecard, score
from tests.evidence import write_both
from tests.localstack.influx import InfluxDB1
from tests.sla_scenarios import BOB, dead_address

pytestmark = pytest.mark.integration
NOW = time.time_ns()


def test_influxql_and_the_spool_apply_the_dead_address_rule(influxdb1: InfluxDB1,
                                                            influx_db: str,
                                                            tmp_path: Path) -> None:
    points, contracted = dead_address()
    body = [m.to_line() for m in points]
    write_both(influxdb1.url, influx_db, tmp_path / "prober.db", body)

    def both(rule: str) -> tuple[Scorecard, Scorecard]:
        sla = SlaSettings(mailboxes=(BOB,), dead_address=rule)
        ev = InfluxEvidence(InfluxTarget(influxdb1.url, influx_db))
        try:
            influx = score(ev, sla, 2026, 9, now_ns=NOW, contracted=contracted)
        finally:
            ev.close()
        local = score(spool_evidence(str(tmp_path / "prober.db"), influx.month.start_ns,
                                     influx.month.end_ns),
                      sla, 2026, 9, now_ns=NOW, contracted=contracted)
        return influx, local

    for rule, down, listed in (("fault", 55, {}), ("all_fail", 5, {BOB: 50})):
        influx, local = both(rule)
        print(rule, len(influx.conn.down), influx.conn.dead_address,
              len(local.conn.down), local.conn.dead_address)
        assert len(influx.conn.down) == len(local.conn.down) == down, rule
        assert influx.conn.dead_address == local.conn.dead_address == listed, rule
