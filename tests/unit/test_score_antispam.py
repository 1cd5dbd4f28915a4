"""§4 and §5 in `prober score`: verdicts from mail_filter / mail_blocklist / mail_abuse
points, with their evidence in every report format."""

from __future__ import annotations

import json

import pytest

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.report import FORMATS, render
from prober.sla.score import BREACH, NOT_MEASURED, PASS, UNKNOWN, score

T0 = 1_793_491_200 * 10**9  # 2026-11-01T00:00Z
DAY = 86_400 * 10**9
END = T0 + 30 * DAY


def filt(day: int, kind: str, variant: str, outcome: str, ok: bool,
         extra: float | None = None) -> Measurement:
    return Measurement("mail_filter", {"vantage": "v1", "route": "f", "kind": kind,
                                       "variant": variant, "expected": "junk"},
                       {"outcome": outcome, "as_expected": ok, "extra_delay_s": extra},
                       T0 + day * DAY + 3600 * 10**9)


def verdicts(points: list[Measurement]) -> dict[str, object]:
    card = score(PointsEvidence.from_measurements(points), SlaSettings(), 2026, 11,
                 now_ns=END + DAY)
    return {v.clause.id: v for v in card.verdicts}, card


def test_no_probe_configured_is_not_measured() -> None:
    v, _ = verdicts([Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0},
                                 T0)])
    assert v["anti_spam"].status == NOT_MEASURED and v["anti_virus"].status == NOT_MEASURED


def test_a_month_of_good_tests_passes_and_a_miss_is_a_breach_in_every_format() -> None:
    good = [filt(d, "spam", "gtube", "junk", True) for d in range(30)]
    good += [filt(d, "virus", "exe", "stripped", True, 0.2) for d in range(30)]
    v, _ = verdicts(good)
    assert v["anti_spam"].status == PASS and v["anti_virus"].status == PASS
    bad = list(good)
    bad[40] = filt(10, "virus", "exe", "delivered", False, 0.1)
    v, card = verdicts(bad)
    assert v["anti_virus"].status == BREACH and v["anti_spam"].status == PASS
    assert v["anti_virus"].penalty_owed == "month's fee waived"
    for fmt in FORMATS:
        out = render(card, fmt)
        assert "2026-11-11 01:00 v1 .exe: delivered, expected junk" in out, fmt
        assert "signature update frequency is not observable" in out, fmt
    data = json.loads(render(card, "json"))
    clause = next(c for c in data["clauses"] if c["id"] == "anti_virus")
    assert clause["verdict"] == BREACH


@pytest.mark.parametrize("days", [1, 20])
def test_too_few_days_tested_is_not_enough_data(days: int) -> None:
    v, _ = verdicts([filt(d, "spam", "gtube", "junk", True) for d in range(days)])
    assert v["anti_spam"].status == UNKNOWN
