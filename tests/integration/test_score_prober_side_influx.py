"""Access checks and canaries the prober itself failed to make (error_class "prober"),
judged over the real InfluxDB 1.6.7 (InfluxQL) and over a spool file: no down minute, no
refused canary, the same counts by name from both; points without error_class (written
before this version) are still the provider's failures."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import spool_evidence
from prober.sla.query import SEND_FAILED_PROBER, InfluxEvidence, InfluxTarget
from prober.sla.score import Scorecard, score
from tests.evidence import write_both, write_influx
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration
NOW = time.time_ns()
MIN = 60 * 10**9
SEP = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 10**9
EMFILE = ("connect: prober: no file descriptor left in the prober's process (EMFILE): "
          "[Errno 24] Too many open files")
ALICE = "alice@example.test"


def _access(minute: int, outcome: str, **fields: object) -> Measurement:
    return Measurement("mail_access", {"vantage": "v1", "mailbox": ALICE, "protocol": "imap",
                                       "outcome": outcome},
                       {"total_s": 0.01, **fields}, SEP + minute * MIN)  # type: ignore[arg-type]


def _canary(minute: int, **fields: object) -> Measurement:
    return Measurement("mail_roundtrip", {"vantage": "v1", "route": "a-to-b", "sender": ALICE,
                                          "recipient": "bob@example.test",
                                          "direction": "internal"},
                       {"outcome": "send_failed", "canary": f"c{minute}", **fields},
                       SEP + minute * MIN)  # type: ignore[arg-type]


def _points() -> list[Measurement]:
    hbs = [Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0},
                       SEP + m * MIN) for m in range(0, 3000)]
    ours = [_access(100 + i, "fail", error=EMFILE, error_class="prober") for i in range(20)]
    ours += [_access(100 + i, "ok") for i in range(20, 40)]
    ours += [_canary(300 + i, error=EMFILE, error_class="prober") for i in range(4)]
    # a provider's failure, and one written before error_class existed: both charged
    theirs = [_access(500, "fail", error="connect: refused: connection refused",
                      error_class="refused"),
              _access(600, "fail", error="connect: protocol: Too many open files"),
              _canary(700, error="data: protocol: 554 rejected", error_class="protocol")]
    return hbs + ours + theirs


def test_influxql_and_the_spool_charge_nothing_for_the_probers_own_failures(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    body = [m.to_line() for m in _points()]
    write_both(influxdb1.url, influx_db, tmp_path / "prober.db", body)
    ev = InfluxEvidence(InfluxTarget(influxdb1.url, influx_db))
    try:
        influx = score(ev, SlaSettings(), 2026, 9, now_ns=NOW)
    finally:
        ev.close()
    local = score(spool_evidence(str(tmp_path / "prober.db"), influx.month.start_ns,
                                 influx.month.end_ns),
                  SlaSettings(), 2026, 9, now_ns=NOW)
    cards: tuple[Scorecard, Scorecard] = (influx, local)
    for card in cards:
        down = sorted(m - SEP // MIN for m in card.conn.down)
        print(card.source, "down", down, "not measured", card.conn.not_measured,
              "not judged", card.not_judged, "events", len(card.events))
        assert down == [500, 600, 700]
        assert card.conn.not_measured == {("v1", ALICE, "imap"): [20, 20]}
        assert card.not_judged.get(SEND_FAILED_PROBER) == 4
        assert [e.error_class for e in card.events] == ["protocol"]


def test_dashboard_panels_show_the_probers_own_failures_apart(influxdb1: InfluxDB1,
                                                              influx_db: str) -> None:
    """The Grafana panels of failures leave out what the prober failed to make and show it
    as its own series (InfluxDB 1.6.7)."""
    import json

    body = [m.to_line() for m in _points()]
    write_influx(influxdb1.url, influx_db, body)
    dash = json.loads((Path(__file__).resolve().parents[2] / "dashboards" /
                       "prober-sla.json").read_text())

    def counts(title: str) -> list[int]:
        panel = next(p for p in dash["panels"] if p["title"].startswith(title))
        out = []
        for t in panel["targets"]:
            q = t["query"].replace("$timeFilter", f"time >= {SEP} AND time < {SEP + 3000 * MIN}")
            res = influxdb1.query(q, db=influx_db)["results"][0]
            out.append(sum(int(row[1]) for s in res.get("series", []) for row in s["values"]))
        return out

    got = {"access": counts("Failed mailbox logins"), "canaries": counts("Canaries lost")}
    print(got)
    # the provider's: one refused login, one refused canary; ours: 20 checks, 4 canaries
    # (the login failure written before error_class existed has none: in neither series)
    assert got == {"access": [1, 20], "canaries": [1, 4]}
