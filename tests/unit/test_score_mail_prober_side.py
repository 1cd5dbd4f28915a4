"""An access check or a canary the prober itself failed to make (error_class "prober": no
file descriptor left, a bug of ours) is no evidence about the provider: never a down
minute nor a refused canary; counted and named; a minute no vantage could check is
unknown, so many of them are "not enough data". Points without error_class (older agents)
are judged as they were."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.query import SEND_FAILED_PROBER
from prober.sla.report import render, to_dict
from prober.sla.score import BREACH, PASS, UNKNOWN, Scorecard, score

MIN = 60 * 10**9
SEP = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 10**9
EMFILE = ("connect: prober: no file descriptor left in the prober's process (EMFILE): "
          "[Errno 24] Too many open files")


def _card(ms: list[Measurement], vantages: tuple[str, ...] = ("v1",)) -> Scorecard:
    hbs = [Measurement("prober_heartbeat", {"vantage": v}, {"uptime_s": 1.0}, SEP + m * MIN)
           for v in vantages for m in range(30 * 1440)]
    return score(PointsEvidence.from_measurements(hbs + ms), SlaSettings(), 2026, 9,
                 now_ns=time.time_ns())


def _access(minute: int, ok: bool, vantage: str = "v1", **fields: object) -> Measurement:
    return Measurement("mail_access", {"vantage": vantage, "mailbox": "a@example.test",
                                       "protocol": "smtp", "outcome": "ok" if ok else "fail"},
                       {"total_s": 0.01, **fields}, SEP + minute * MIN)  # type: ignore[arg-type]


def _canary(minute: int, **fields: object) -> Measurement:
    return Measurement("mail_roundtrip", {"vantage": "v1", "route": "a-to-b",
                                          "sender": "a@example.test",
                                          "recipient": "b@example.test",
                                          "direction": "internal"},
                       {"outcome": "send_failed", "canary": f"c{minute}", **fields},
                       SEP + minute * MIN)  # type: ignore[arg-type]


def _verdict(card: Scorecard, clause: str):  # type: ignore[no-untyped-def]
    return next(v for v in card.verdicts if v.clause.id == clause)


def test_prober_side_access_failures_are_no_down_minute() -> None:
    ours = [_access(100 + i, False, error=EMFILE, error_class="prober") for i in range(3)]
    card = _card(ours)
    print("down", len(card.conn.down), "unknown", card.conn.unknown_judged,
          "not measured", card.conn.not_measured)
    # before: 3 down minutes charged to the provider (outcome fail)
    assert card.conn.down == set()
    assert card.conn.not_measured == {("v1", "a@example.test", "smtp"): [3, 3]}
    # the only vantage could not check the mailbox: those minutes are unknown
    assert card.conn.unknown_judged == 3
    conn = _verdict(card, "connectivity")
    assert conn.status == PASS, conn.detail
    assert "3 access checks the prober failed to make (not charged" in conn.detail
    doc = to_dict(card)["connectivity"]["access_not_measured"]
    assert doc == [{"vantage": "v1", "mailbox": "a@example.test", "protocol": "smtp",
                    "checks": 3, "minutes": 3}]
    assert "Access checks not measured" in render(card, "table")


def test_old_points_and_provider_classes_are_still_charged() -> None:
    old = [_access(100, False, error="connect: protocol: Too many open files")]
    refused = [_access(200, False, error="connect: refused: connection refused",
                       error_class="refused")]
    card = _card(old + refused)
    assert len(card.conn.down) == 2 and not card.conn.not_measured


def test_many_minutes_not_measured_are_not_enough_data() -> None:
    # a week of a vantage out of descriptors: 10080 of 43200 minutes nobody checked
    ours = [_access(m, False, error=EMFILE, error_class="prober") for m in range(7 * 1440)]
    card = _card(ours)
    v = _verdict(card, "connectivity")
    print(v.status, v.coverage, v.detail)
    assert card.conn.down == set()
    assert v.status == UNKNOWN and "not enough data" in v.detail


def test_a_blind_vantage_does_not_vouch_for_the_mailbox() -> None:
    # v2 saw the provider refuse, v1 could not check (its own failure): v1 is no vote for
    # "up", so the minute is down on v2's word, as when v1 has no heartbeat
    v1 = _access(50, False, "v1", error=EMFILE, error_class="prober")
    v2 = _access(50, False, "v2", error="connect: refused: connection refused",
                 error_class="refused")
    card = _card([v1, v2], ("v1", "v2"))
    assert len(card.conn.down) == 1 and card.conn.unknown_judged == 0
    # v1 checked and found it up: no quorum of two, not down
    card = _card([_access(50, True, "v1"), v2], ("v1", "v2"))
    assert card.conn.down == set()


def test_a_canary_the_prober_failed_to_send_is_not_charged() -> None:
    ours = _canary(100, error=EMFILE, error_class="prober")
    card = _card([ours])
    print("down", len(card.conn.down), "events", card.events, "not judged", card.not_judged)
    assert card.conn.down == set() and card.events == []
    assert card.not_judged == {SEND_FAILED_PROBER: 1}
    assert "the prober failed to make the submission itself" in render(card, "table")
    # the provider's refusal is still a down minute and listed
    theirs = _canary(100, error="data: protocol: 554 5.7.1 rejected", error_class="protocol")
    card = _card([theirs])
    assert len(card.conn.down) == 1 and len(card.events) == 1
    assert _verdict(card, "connectivity").status in (PASS, BREACH)
