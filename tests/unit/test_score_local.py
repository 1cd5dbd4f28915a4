"""The spool's SQLite reductions keep InfluxDB's point semantics."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.score import Scorecard, score

MIN = 60 * 10**9
SEP = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 10**9


def _card(ms: list[Measurement]) -> Scorecard:
    return score(PointsEvidence.from_measurements(ms), SlaSettings(mailboxes=("a@x.test",)),
                 2026, 9, now_ns=time.time_ns(), contracted={"a@x.test"})


def _hb(day: int, minute: int) -> Measurement:
    return Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0},
                       SEP + ((day - 1) * 1440 + minute) * MIN)


def test_a_late_arrival_after_a_lost_verdict_is_one_canary_late() -> None:
    """The agent writes pending, then lost, then (it arrived after all) late, at one series and
    timestamp: one point, its last fields winning, as InfluxDB keeps it."""
    tags = {"vantage": "v1", "route": "int", "sender": "a@x.test", "recipient": "b@x.test",
            "direction": "internal"}
    at = SEP + (4 * 1440 + 30) * MIN
    ms = [_hb(5, m) for m in range(0, 1440)]
    ms += [Measurement("mail_roundtrip", tags, {"outcome": "pending", "canary": "c1"}, at),
           Measurement("mail_roundtrip", tags, {"outcome": "lost", "canary": "c1"}, at),
           Measurement("mail_roundtrip", tags, {"outcome": "late", "canary": "c1",
                                                "delivery_s": 4000.0}, at)]
    card = _card(ms)
    assert [(e.outcome, e.canary, e.delivery_s) for e in card.events] == [("late", "c1", 4000.0)]
    assert card.send.lost == [] and len(card.send.over) == 1
    assert card.conn.down == set()  # a late canary is not a down minute
    assert card.not_judged == {}
