"""`prober check`: an access check the prober itself failed to make (error_class "prober")
is UNKNOWN, not the provider's CRITICAL; a provider's failure beside it still wins."""

from __future__ import annotations

from prober.commands.check import CheckResult, _access_row
from prober.commands.nagios import CRITICAL, UNKNOWN
from prober.measurement import Measurement

EMFILE = ("connect: prober: no file descriptor left in the prober's process (EMFILE): "
          "[Errno 24] Too many open files")


def _point(error: str, error_class: str | None) -> Measurement:
    return Measurement("mail_access", {"vantage": "v1", "mailbox": "a@example.test",
                                       "protocol": "imap", "outcome": "fail"},
                       {"total_s": 0.01, "error": error, "error_class": error_class}, 1)


def test_a_check_we_failed_to_make_is_unknown() -> None:
    row = _access_row(_point(EMFILE, "prober"), 14)
    assert row.state == UNKNOWN
    assert row.detail == f"not measured (the prober's own failure): {EMFILE}"


def test_the_providers_failure_stays_critical_and_wins() -> None:
    theirs = _access_row(_point("connect: refused: connection refused", "refused"), 14)
    old = _access_row(_point("connect: protocol: Too many open files", None), 14)
    assert theirs.state == CRITICAL and old.state == CRITICAL
    ours = _access_row(_point(EMFILE, "prober"), 14)
    assert CheckResult([ours], [], []).state == UNKNOWN
    assert CheckResult([ours, theirs], [], []).state == CRITICAL
