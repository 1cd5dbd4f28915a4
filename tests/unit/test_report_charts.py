"""The HTML report's charts say what the figures say: a few down minutes stand out among
many unknown ones, an internal canary is counted once per chart, and the webmail chart's
x axis is the calendar."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import PointsEvidence
from prober.sla.report import charts
from prober.sla.score import Scorecard, score

MIN = 60 * 10**9
SEP = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 10**9


def _card(ms: list[Measurement]) -> Scorecard:
    return score(PointsEvidence.from_measurements(ms), SlaSettings(mailboxes=("a@x.test",)),
                 2026, 9, now_ns=time.time_ns(), contracted={"a@x.test"})


def _hb(day: int, minute: int) -> Measurement:
    return Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0},
                       SEP + ((day - 1) * 1440 + minute) * MIN)


def test_six_down_minutes_are_drawn_tall_beside_thousands_of_unknown_ones() -> None:
    # one vantage alive on day 3 only, for 2 hours; alice's IMAP fails for 6 of them
    ms = [_hb(3, m) for m in range(600, 720)]
    ms += [Measurement("mail_access", {"vantage": "v1", "mailbox": "a@x.test",
                                       "protocol": "imap", "outcome": "fail"},
                       {"total_s": 0.1}, SEP + (2 * 1440 + 650 + i) * MIN) for i in range(6)]
    card = _card(ms)
    assert len(card.conn.down) == 6
    svg = charts(card)[0]
    bars = re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" '
                      r'fill="#c0392b"><title>03: 6 min down', svg)
    assert len(bars) == 1
    assert float(bars[0][1]) > 60  # of a 220 px plot: plainly visible
    assert ">6</text>" in svg  # and its count is printed over it
    # the unknown minutes are a shaded strip with their own number, not bars on one scale
    assert 'fill-opacity="1.000"' in svg and "1440 of 1440 min unknown" in svg
    assert "1320 of 1440 min unknown" in svg


def test_the_delay_charts_count_an_internal_canary_once_each() -> None:
    ms = [_hb(d, m) for d in (5,) for m in range(0, 1440)]
    for i in range(91):
        ms.append(Measurement("mail_roundtrip", {
            "vantage": "v1", "route": "int", "sender": "a@x.test", "recipient": "b@x.test",
            "direction": "internal"}, {"outcome": "delivered", "canary": f"c{i}",
                                       "delivery_s": 3.0, "send_delay_s": 1.0,
                                       "receive_delay_s": 2.0}, SEP + (4 * 1440 + i) * MIN))
    card = _card(ms)
    send_svg, receive_svg = charts(card)[1:3]
    for svg in (send_svg, receive_svg):
        counts = [float(x) for x in re.findall(r'class="v" text-anchor="middle">([\d.]+)<', svg)]
        assert counts == [91.0]  # not 182: one bar, one count, one canary each
        assert "91 arrived" in svg


def test_webmail_chart_spaces_days_by_date() -> None:
    ms = []
    for day in (1, 2, 20):
        ms.append(Measurement("webmail_load", {"vantage": "v1", "target": "wm",
                                               "profile": "broadband", "outcome": "ok"},
                              {"load_s": 2.0, "open_s": 2.0, "contract_class": "broadband"},
                              SEP + (day - 1) * 1440 * MIN))
    svg = charts(_card(ms))[3]
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert len(xs) == 3
    # day 1 -> 2 is one day, day 2 -> 20 is eighteen
    assert (xs[2] - xs[1]) / (xs[1] - xs[0]) == pytest.approx(18.0, rel=5e-3)  # 0.1 px rounding
    assert "<polyline" in svg  # days 1 and 2 are joined; day 20 stands alone
    assert svg.count("<polyline") == 1

