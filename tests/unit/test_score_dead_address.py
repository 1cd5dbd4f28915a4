"""`[sla] dead_address`: one dead address of a host with several is a failed minute by
default ("fault"); with "all_fail" only when no address answered, the other minutes
listed, not charged (issue 16's rule, configurable as the README says)."""

from __future__ import annotations

import time

from prober.config.sla import SlaSettings
from prober.sla.local import PointsEvidence
from prober.sla.report import render, to_dict
from prober.sla.score import BREACH, PASS, Scorecard, score
from tests.sla_scenarios import BOB, dead_address


def card(rule: str) -> Scorecard:
    points, contracted = dead_address()
    return score(PointsEvidence.from_measurements(points),
                 SlaSettings(mailboxes=(BOB,), dead_address=rule), 2026, 9,
                 now_ns=time.time_ns(), contracted=contracted)


def test_a_dead_address_is_a_fault_by_default_and_listed_not_charged_with_all_fail() -> None:
    fault, all_fail = card("fault"), card("all_fail")
    status = {c: {v.clause.id: v.status for v in k.verdicts}["connectivity"]
              for c, k in (("fault", fault), ("all_fail", all_fail))}
    print("down", len(fault.conn.down), len(all_fail.conn.down), status,
          all_fail.conn.dead_address)
    assert len(fault.conn.down) == 55 and status["fault"] == BREACH  # 55 >= 44
    assert fault.conn.dead_address == {}
    assert len(all_fail.conn.down) == 5 and status["all_fail"] == PASS
    assert all_fail.conn.dead_address == {BOB: 50}
    d = to_dict(all_fail)["connectivity"]
    assert d["dead_address_rule"] == "all_fail"
    assert d["dead_address_minutes_not_charged_by_mailbox"] == {BOB: 50}
    assert 'not charged ([sla] dead_address = "all_fail")' in render(all_fail, "table")
