"""A page load the prober itself failed to make (error_class "prober": Chromium would not
start, no descriptor left) is no evidence about the provider: never in the mean at its
timeout, counted and named, and it lowers the webmail clause's coverage."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.report import render, to_dict
from prober.sla.score import BREACH, PASS, UNKNOWN, Scorecard, score

MIN = 60 * 10**9
SEP = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 10**9


def _card(ms: list[Measurement]) -> Scorecard:
    hbs = [Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0}, SEP + m * MIN)
           for m in range(30 * 1440)]
    return score(PointsEvidence.from_measurements(hbs + ms), SlaSettings(), 2026, 9,
                 now_ns=time.time_ns(), contracted=set())


def _load(minute: int, outcome: str, **fields: object) -> Measurement:
    base: dict[str, object] = {"contract_class": "broadband", "threshold_s": 10.0,
                               "timeout_s": 200.0}
    base.update(fields)
    return Measurement("webmail_load", {"vantage": "v1", "target": "mail",
                                        "profile": "broadband", "outcome": outcome},
                       base, SEP + minute * MIN)  # type: ignore[arg-type]


NO_CHROMIUM = ("Chromium (/usr/bin/chromium) could not be started: Failed to launch chromium "
               "because executable doesn't exist")


def _verdict(card: Scorecard, clause: str):  # type: ignore[no-untyped-def]
    return next(v for v in card.verdicts if v.clause.id == clause)


def test_a_prober_side_failure_is_not_charged_at_its_timeout() -> None:
    ok = [_load(10 + 60 * i, "ok", load_s=9.5, open_s=9.5) for i in range(100)]
    ours = _load(5, "fail", error=NO_CHROMIUM, error_class="prober")
    card = _card([*ok, ours])
    p = card.webmail["broadband"]
    print("mean", p.mean_s, "failures", len(p.failures), "not measured", len(p.not_measured))
    # before: the failure counted at its 200 s timeout, mean (950 + 200) / 101 = 11.4: breach
    assert p.mean_s == 9.5 and p.failures == [] and len(p.not_measured) == 1
    v = _verdict(card, "webmail_broadband")
    assert v.status == PASS, v.detail
    assert "1 loads the prober failed to make (not charged" in v.detail
    assert "could not be started" in v.detail
    assert v.coverage is not None and v.coverage.share == 100 / 101
    assert to_dict(card)["webmail"]["broadband"]["not_measured"][0]["error"] == NO_CHROMIUM
    assert "not measured (prober)" in render(card, "table")

    # a failure of the provider's is still charged at its timeout
    theirs = _load(5, "fail", error="connect: refused", error_class="refused")
    assert _verdict(_card([*ok, theirs]), "webmail_broadband").status == BREACH


def test_many_prober_side_failures_are_not_enough_data() -> None:
    ok = [_load(10 + 60 * i, "ok", load_s=2.0, open_s=2.0) for i in range(10)]
    ours = [_load(20 + 60 * i, "fail", error=NO_CHROMIUM, error_class="prober")
            for i in range(5)]
    v = _verdict(_card(ok + ours), "webmail_broadband")
    print(v.status, v.detail)
    assert v.status == UNKNOWN and "not enough data" in v.detail
    assert "5 loads the prober failed to make" in v.detail
    only_ours = _verdict(_card(ours), "webmail_broadband")
    assert only_ours.status == UNKNOWN and "no loads with profile" in only_ours.detail
    assert "5 loads the prober failed to make" in only_ours.detail
