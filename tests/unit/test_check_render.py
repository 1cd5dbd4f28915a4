"""`prober check` output: perfdata, state, summary line, table, JSON, canary row thresholds."""

from __future__ import annotations

import json

import pytest

from prober.commands.check import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    CheckResult,
    Row,
    _canary_row,
    _perf,
    as_json,
    render_table,
)
from prober.config import Config, parse
from prober.measurement import Measurement
from prober.probes.canary import CanaryId
from prober.probes.errors import ProbeError
from prober.probes.imap import Arrival, MailboxWatcher
from prober.probes.roundtrip import CanaryTarget, Sent, fate, roundtrip_point
from prober.probes.smtp import Submission
from tests.canary_helpers import TEST_KEY

ACCEPTED_NS = 1_795_555_680_000_000_000
CID = CanaryId("probe-1", "corp-to-ext", 1795555680, "0123456789abcdef")


# --- _perf ------------------------------------------------------------------------------


def test_perf_with_thresholds() -> None:
    assert _perf("delivery_x", 1.2, "60", "3600") == "delivery_x=1.200s;60;3600"


def test_perf_without_thresholds_has_no_trailing_separators() -> None:
    assert _perf("smtp_corp", 0.0456) == "smtp_corp=0.046s"


def test_perf_unknown_value_is_u() -> None:
    assert _perf("delivery_x", None, "60", "3600") == "delivery_x=U;60;3600"
    assert _perf("imap_corp", None) == "imap_corp=U"


def test_perf_only_critical_keeps_empty_warning_slot() -> None:
    assert _perf("x", 2.0, "", "5") == "x=2.000s;;5"


@pytest.mark.parametrize(("label", "expected"), [
    ("a b", "a_b"),
    ("a=b", "a_b"),
    ("it's", "it_s"),
    ("a|b", "a_b"),
    ("delivery_corp-to-ext.1", "delivery_corp-to-ext.1"),
])
def test_perf_label_sanitised(label: str, expected: str) -> None:
    item = _perf(label, 1.0)
    assert item == f"{expected}=1.000s"
    # one item, one '=' : Nagios splits perfdata on spaces and label/value on '='
    assert " " not in item and item.count("=") == 1


# --- CheckResult ------------------------------------------------------------------------


def rows(*states: int) -> list[Row]:
    return [Row("smtp", f"mb{i}", s, {"total_s": 0.5}, "ok" if s == OK else f"bad {i}")
            for i, s in enumerate(states)]


@pytest.mark.parametrize(("states", "expected"), [
    ((), UNKNOWN),
    ((OK,), OK),
    ((OK, WARNING, OK), WARNING),
    ((WARNING, CRITICAL, OK), CRITICAL),
    ((OK, UNKNOWN), UNKNOWN),
])
def test_state_is_worst_row(states: tuple[int, ...], expected: int) -> None:
    assert CheckResult(rows(*states), [], []).state == expected


def test_summary_all_ok_counts_access_checks_and_canaries() -> None:
    r = CheckResult([*rows(OK, OK), Row("canary", "r1", OK, {}, "delivered")], [],
                    ["smtp_mb0=0.500s", "delivery_r1=1.200s;60;3600"])
    assert r.summary() == "PROBER OK - 2 access checks ok, 1 canary delivered"
    assert r.first_line() == ("PROBER OK - 2 access checks ok, 1 canary delivered | "
                              "smtp_mb0=0.500s delivery_r1=1.200s;60;3600")


def test_summary_lists_worst_first() -> None:
    r = CheckResult(rows(OK, WARNING, CRITICAL), [], ["x=1.000s"])
    assert r.summary() == "PROBER CRITICAL - smtp mb2: bad 2; smtp mb1: bad 1"
    first = r.first_line()
    assert first.startswith("PROBER CRITICAL - ")
    head, perf = first.split(" | ")
    assert head == r.summary()
    assert perf == "x=1.000s"
    assert "\n" not in first


def test_summary_caps_at_three_problems() -> None:
    r = CheckResult(rows(WARNING, CRITICAL, WARNING, CRITICAL, WARNING), [], [])
    text = r.summary()
    assert text.startswith("PROBER CRITICAL - smtp mb1: bad 1; smtp mb3: bad 3; smtp mb0: ")
    assert text.endswith("; and 2 more")


def test_summary_without_rows_is_unknown() -> None:
    r = CheckResult([], [], [])
    assert r.summary().startswith("PROBER UNKNOWN - nothing to check")
    assert " | " not in r.first_line()


# --- table and JSON ---------------------------------------------------------------------


def sample() -> CheckResult:
    return CheckResult(
        [Row("smtp", "corp", OK, {"connect_s": 0.01, "tls_s": 0.2, "auth_s": 0.3,
                                  "total_s": 0.5}, "ok"),
         Row("imap", "corp", CRITICAL, {"connect_s": None, "select_s": None},
             "connect: refused: connection refused"),
         Row("canary", "r1 (a@corp.example -> b@ext.example.org)", WARNING,
             {"data_s": 0.1234, "delivery_s": 61.0}, "delivered in 61.00 s via idle (> 60 s)")],
        [Measurement("mail_access", {"protocol": "smtp", "mailbox": "corp"},
                     {"total_s": 0.5}, ACCEPTED_NS)],
        ["smtp_corp=0.500s", "imap_corp=U", "delivery_r1=61.000s;60;3600"],
        "delivered to the spool",
    )


def test_render_table_columns_and_cells() -> None:
    lines = render_table(sample()).splitlines()
    assert lines[0].split() == ["CHECK", "TARGET", "STATE", "CONNECT", "TLS", "AUTH", "DATA",
                                "SELECT", "DELIVERY", "LOAD", "DETAIL"]
    assert len(lines) == 4
    assert lines[1].split() == ["smtp", "corp", "OK", "0.010", "0.200", "0.300", "-", "-",
                                "-", "-", "ok"]
    assert lines[2].split()[:9] == ["imap", "corp", "CRITICAL", "-", "-", "-", "-", "-", "-"]
    assert lines[2].endswith("connect: refused: connection refused")
    canary = lines[3]
    assert canary.startswith("canary  r1 (a@corp.example -> b@ext.example.org)  WARNING")
    assert "0.123" in canary and "61.000" in canary
    # columns line up: every cell of a column starts at the header's offset
    for col in ("STATE", "CONNECT", "DELIVERY", "DETAIL"):
        start = lines[0].index(col)
        assert all(line[start - 2:start] == "  " for line in lines)
        assert all(line[start] != " " for line in lines)
    assert all(line == line.rstrip() for line in lines)


def test_as_json_keys_and_values() -> None:
    data = as_json(sample())
    assert set(data) == {"state", "exit_code", "summary", "perfdata", "rows", "delivery",
                         "earlier_checks", "forged_canaries", "measurements"}
    assert data["earlier_checks"] == [] and data["forged_canaries"] == 0
    assert (data["state"], data["exit_code"]) == ("CRITICAL", 2)
    assert data["summary"].startswith("PROBER CRITICAL - imap corp: ")
    assert data["perfdata"] == ["smtp_corp=0.500s", "imap_corp=U",
                                "delivery_r1=61.000s;60;3600"]
    assert data["delivery"] == "delivered to the spool"
    assert data["rows"][0] == {"check": "smtp", "target": "corp", "state": "OK",
                               "connect_s": 0.01, "tls_s": 0.2, "auth_s": 0.3,
                               "total_s": 0.5, "detail": "ok"}
    assert data["rows"][1]["connect_s"] is None
    assert data["measurements"] == [
        f"mail_access,mailbox=corp,protocol=smtp total_s=0.5 {ACCEPTED_NS}"]
    json.dumps(data)  # serialisable as is


# --- the canary row ---------------------------------------------------------------------


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("PROBER_TEST_PW", "pw")
    mb = {"password_env": "PROBER_TEST_PW",
          "smtp": {"host": "smtp.corp.example", "tls": "starttls"}}
    return parse({
        "vantage": {"name": "probe-1", "state_dir": "/nonexistent/state"},
        "mailbox": [
            {"name": "corp", "address": "probe@corp.example", **mb,
             "imap": {"host": "imap.corp.example", "tls": "tls"}},
            {"name": "ext", "address": "probe@ext.example.org", **mb,
             "imap": {"host": "imap.ext.example.org", "tls": "tls", "folder": "Probe"}},
        ],
        "route": [{"name": "corp-to-ext", "from": "corp", "to": "ext",
                   "direction": "outbound"}],
        "check": {"warning_s": 60, "critical_s": 300, "wait_s": 90},
    }, "/etc/prober/probes.toml")


def make_sent(config: Config, submission: Submission | None = None) -> Sent:
    route = config.routes[0]
    sub = submission or Submission(
        phases={"connect_s": 0.01, "tls_s": 0.02, "auth_s": 0.03, "data_s": 0.04,
                "total_s": 0.1},
        accepted_ns=ACCEPTED_NS, started_ns=ACCEPTED_NS - 100_000_000, code=250)
    return Sent(CanaryTarget.of(config, route), CID, sub)


def arrival(delivery_s: float, folder: str = "Probe") -> Arrival:
    return Arrival(CID, "ext", folder, 42, ACCEPTED_NS + 1_000_000_000,
                   ACCEPTED_NS + int(delivery_s * 1e9), "idle", b"Subject: x\r\n\r\n")


def watcher(config: Config, up: bool = True, error: ProbeError | None = None) -> MailboxWatcher:
    w = MailboxWatcher(config.mailboxes["ext"], config.timeouts, config.canary, "probe-1",
                       key=TEST_KEY)
    w.up = up
    w.last_error = error
    return w


def canary_row(config: Config, sent: Sent, arr: Arrival | None,
               w: MailboxWatcher | None = None) -> Row:
    outcome = fate(sent, arr, config.canary.late_after_s)
    point = roundtrip_point("probe-1", sent, outcome, arr)
    return _canary_row(config, sent, point, w or watcher(config))


def test_canary_row_ok(config: Config) -> None:
    row = canary_row(config, make_sent(config), arrival(1.2))
    assert row.state == OK
    assert row.check == "canary"
    assert row.target == "corp-to-ext (probe@corp.example -> probe@ext.example.org)"
    assert row.detail == "delivered in 1.20 s via idle"
    assert row.values == pytest.approx({"connect_s": 0.01, "tls_s": 0.02, "auth_s": 0.03,
                                        "data_s": 0.04, "delivery_s": 1.2})


@pytest.mark.parametrize(("delivery_s", "state", "suffix"), [
    (60.0, OK, ""),
    (60.5, WARNING, " (> 60 s)"),
    (300.0, WARNING, " (> 60 s)"),
    (300.5, CRITICAL, " (> 300 s)"),
])
def test_canary_row_thresholds_from_config(config: Config, delivery_s: float, state: int,
                                           suffix: str) -> None:
    row = canary_row(config, make_sent(config), arrival(delivery_s))
    assert row.state == state
    assert row.detail == f"delivered in {delivery_s:.2f} s via idle{suffix}"


def test_canary_row_in_junk_is_warning(config: Config) -> None:
    row = canary_row(config, make_sent(config), arrival(1.0, folder="Junk"))
    assert row.state == WARNING
    assert row.detail.endswith(", landed in Junk")


def test_canary_row_in_inbox_when_probe_folder_configured_is_warning(config: Config) -> None:
    row = canary_row(config, make_sent(config), arrival(1.0, folder="INBOX"))
    assert row.state == WARNING
    assert row.detail.endswith("landed in INBOX")


def test_canary_row_send_failed(config: Config) -> None:
    sub = Submission(phases={"connect_s": 0.01, "total_s": 0.05}, started_ns=ACCEPTED_NS,
                     code=535, error=ProbeError("auth", "auth", "535 5.7.8 bad credentials"))
    row = canary_row(config, make_sent(config, sub), None)
    assert row.state == CRITICAL
    assert row.detail == "send_failed: auth: 535 5.7.8 bad credentials"
    assert row.values["connect_s"] == pytest.approx(0.01)
    assert row.values["delivery_s"] is None


def test_canary_row_send_uncertain(config: Config) -> None:
    sub = Submission(started_ns=ACCEPTED_NS, uncertain=True,
                     error=ProbeError("closed", "data", "server closed the connection"))
    row = canary_row(config, make_sent(config, sub), None)
    assert row.state == CRITICAL
    assert row.detail.startswith("send_uncertain: data: closed: ")


def test_canary_row_not_seen_in_time(config: Config) -> None:
    row = canary_row(config, make_sent(config), None)
    assert row.state == CRITICAL
    assert row.detail == "not seen within 90 s (pending)"
    assert row.values["delivery_s"] is None


def test_canary_row_watcher_down(config: Config) -> None:
    down = watcher(config, up=False,
                   error=ProbeError("refused", "connect", "connection refused"))
    row = canary_row(config, make_sent(config), None, down)
    assert row.state == CRITICAL
    assert row.detail == ("delivery unknown: IMAP watcher down: "
                          "connect: refused: connection refused")


def test_canary_row_perf_matches_run_check_format(config: Config) -> None:
    row = canary_row(config, make_sent(config), arrival(1.2))
    item = _perf(f"delivery_{config.routes[0].name}", row.values["delivery_s"],
                 f"{config.check.warning_s:g}", f"{config.check.critical_s:g}")
    assert item == "delivery_corp-to-ext=1.200s;60;300"
