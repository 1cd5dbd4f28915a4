"""§4/§5 verdicts from filter, blocklist and abuse evidence."""

from __future__ import annotations

from dataclasses import replace

from prober.contract import Clause
from prober.sla.filters import (
    BREACH,
    NS_PER_DAY,
    PASS,
    UNKNOWN,
    AbuseEvent,
    BlocklistEvent,
    FilterEvent,
    judge_spam,
    judge_virus,
)

T0 = 1_793_491_200 * 10**9  # 2026-11-01T00:00Z
END = T0 + 30 * NS_PER_DAY
SPAM = Clause("anti_spam", "4", "t", "p", "", "month", "fee",
              {"listed_max_h": 24.0})
VIRUS = Clause("anti_virus", "5", "t", "p", "", "month", "fee",
               {"extra_delay_max_s": 30.0})


def daily(kind: str, variant: str, outcome: str = "junk", ok: bool = True,
          extra: float | None = None, days: int = 30) -> list[FilterEvent]:
    return [FilterEvent(T0 + d * NS_PER_DAY + 3600 * 10**9, "v1", "f", kind, variant, "junk",
                        outcome, ok, extra) for d in range(days)]


def test_a_month_of_expected_outcomes_passes() -> None:
    v = judge_spam(SPAM, daily("spam", "gtube"), [], [], T0, END)
    assert v.status == PASS and v.evidence == []
    v = judge_virus(VIRUS, daily("virus", "exe", "stripped", extra=0.2), T0, END)
    assert v.status == PASS and "extra delay max 0.2 s" in v.figure


def test_one_unexpected_outcome_is_a_breach_with_its_evidence() -> None:
    events = daily("spam", "gtube")
    events[5] = replace(events[5], outcome="inbox", as_expected=False)
    v = judge_spam(SPAM, events, [], [], T0, END)
    assert v.status == BREACH
    assert v.evidence == ["2026-11-06 01:00 v1 GTUBE: inbox, expected junk"]


def test_added_scanning_delay_over_the_limit_is_a_breach() -> None:
    events = daily("virus", "zip", "stripped", extra=0.5)
    events[2] = replace(events[2], extra_delay_s=95.0)
    v = judge_virus(VIRUS, events, T0, END)
    assert v.status == BREACH and "scanning added 95.0 s" in v.evidence[0]


def test_few_tests_are_not_enough_data_never_a_pass() -> None:
    v = judge_virus(VIRUS, daily("virus", "exe", "stripped", days=3), T0, END)
    assert v.status == UNKNOWN and "3 of 30 days" in v.detail
    # an unknown outcome (mailbox unreadable) is no test at all
    unknown = [replace(e, outcome="unknown", as_expected=None) for e in daily("spam", "gtube")]
    assert judge_spam(SPAM, unknown, [], [], T0, END).status == UNKNOWN


def test_a_listing_longer_than_a_working_day_and_a_dead_abuse_contact() -> None:
    spam = daily("spam", "gtube")
    hour = 3600 * 10**9
    lists = [BlocklistEvent(T0 + h * hour, "v1", "bl.test", "192.0.2.1", 3 <= h < 40)
             for h in range(60)]
    v = judge_spam(SPAM, spam, lists, [], T0, END)
    assert v.status == BREACH and "192.0.2.1 on bl.test" in v.evidence[0]
    short = [replace(e, listed=3 <= i < 10) for i, e in enumerate(lists)]
    assert judge_spam(SPAM, spam, short, [], T0, END).status == PASS
    abuse = [AbuseEvent(T0 + 2 * NS_PER_DAY + h * hour, "v1", "abuse@x", False, 550, "rcpt")
             for h in range(30)]
    v = judge_spam(SPAM, spam, [], abuse, T0, END)
    assert v.status == BREACH and "abuse@x refused from" in v.evidence[0]
    assert "(29.0 h)" in v.evidence[0]
    abuse[12] = replace(abuse[12], ok=True)  # answered in between: two runs under 24 h
    assert judge_spam(SPAM, spam, [], abuse, T0, END).status == PASS
    # one refused check on a day the agent barely ran is no unanswered day
    one = [AbuseEvent(T0 + 5 * NS_PER_DAY, "v1", "abuse@x", False, 550, "rcpt")]
    assert judge_spam(SPAM, spam, [], one, T0, END).status == PASS
