"""`prober check` rows for webmail: the contract's limit per profile decides the state."""

from __future__ import annotations

from prober.commands.webmail_check import CRITICAL, OK, UNKNOWN, WARNING, row_for, worst_state
from prober.config.profiles import resolve_profile
from prober.config.webmail import WebmailTarget
from prober.contract import Contract, resolve
from prober.measurement import Measurement


def point(outcome: str, **fields: object) -> Measurement:
    base: dict[str, object] = {"timeout_s": 60.0, "requests": 12, "bytes": 150_000}
    base.update(fields)
    return Measurement("webmail_load", {"vantage": "v", "target": "mail",
                                        "profile": "narrowband", "outcome": outcome},
                       base)  # type: ignore[arg-type]


NB = resolve_profile("narrowband")
BB = resolve_profile("broadband")
C = Contract()


def test_under_the_limit_is_ok_over_is_the_targets_choice() -> None:
    target = WebmailTarget("mail", "https://m/")
    ok = row_for(target, NB, point("ok", load_s=29.0), C)
    assert (ok.state, ok.target, ok.values["open_s"]) == (OK, "mail/narrowband", 29.0)
    assert "page opened in 29.0 s on narrowband (narrowband limit 30 s)" in ok.detail
    slow = row_for(target, BB, point("ok", load_s=12.5), C)
    assert slow.state == WARNING and slow.detail.startswith("over the contract's limit")
    strict = WebmailTarget("mail", "https://m/", over_threshold="critical")
    assert row_for(strict, BB, point("ok", load_s=12.5), C).state == CRITICAL
    assert slow.perfdata() == "webmail_mail/broadband=12.500s;10;"


def test_login_is_judged_too_and_failures_are_critical() -> None:
    target = WebmailTarget("mail", "https://m/")
    row = row_for(target, BB, point("ok", load_s=4.0, login_s=11.0), C)
    assert row.state == WARNING and row.values["open_s"] == 11.0
    assert row.detail.startswith("over the contract's limit: page opened in 4.0 s, the inbox "
                                 "11.0 s after the login on broadband")
    # the inbox time is the inbox's, not the login page's (issue 15)
    fast = row_for(target, BB, point("ok", load_s=3.6, login_s=0.48), C)
    assert fast.state == OK and fast.values["open_s"] == 3.6
    assert "page opened in 3.6 s, the inbox 0.5 s after the login" in fast.detail
    failed = row_for(target, BB, point("timeout", error="the load timed out after 20 s"), C)
    assert failed.state == CRITICAL and failed.values["open_s"] is None
    assert failed.detail == "timeout: the load timed out after 20 s"
    assert failed.perfdata() == "webmail_mail/broadband=U;10;"
    assert worst_state([row, failed]) == CRITICAL


def test_an_overridden_limit_decides_the_row() -> None:
    target = WebmailTarget("mail", "https://m/")
    five = resolve({"webmail_broadband": {"mean_max_s": 5}})
    row = row_for(target, BB, point("ok", load_s=6.0), five)
    assert row.state == WARNING and row.values["threshold_s"] == 5.0
    assert "(broadband limit 5 s)" in row.detail
    assert row.perfdata() == "webmail_mail/broadband=6.000s;5;"


def test_a_load_the_prober_failed_to_make_is_unknown_not_critical() -> None:
    from prober.commands.check import CheckResult, Row

    target = WebmailTarget("mail", "https://m/")
    ours = row_for(target, BB, point("fail", error="Chromium (/usr/bin/chromium) could not be "
                                     "started: ...", error_class="prober"), C)
    print(ours.state, ours.detail)
    assert ours.state == UNKNOWN and ours.values["open_s"] is None
    assert ours.detail.startswith("not measured (the prober's own failure): Chromium")
    theirs = row_for(target, BB, point("fail", error="connect: refused",
                                       error_class="refused"), C)
    assert theirs.state == CRITICAL
    # Nagios' max_state_alt: CRITICAL > WARNING > UNKNOWN > OK
    assert worst_state([ours, theirs]) == CRITICAL
    ok = Row("smtp", "a@x", OK)
    assert CheckResult([ok, Row("webmail", "mail/bb", UNKNOWN)], [], []).state == UNKNOWN
    assert CheckResult([Row("webmail", "mail/bb", UNKNOWN), Row("smtp", "a@x", WARNING)],
                       [], []).state == WARNING
    assert CheckResult([Row("webmail", "mail/bb", UNKNOWN), Row("smtp", "a@x", CRITICAL)],
                       [], []).state == CRITICAL
