"""End to end: `prober run` on the local stack through a Dovecot outage, then `prober score`.

The requirement: run the daemon for several ticks with a Dovecot outage of a known number
of ticks, score that window, and find the down minutes equal to the outage within a tick.

How that is made meaningful and fast (reasoning):

- The judge works on whole UTC minutes (`MINUTE_NS` is a constant in prober/sla/query.py,
  not a setting): a minute is down when any contracted mailbox failed an access probe, or
  had a canary refused or lost, in it. An outage of a few 2 s ticks is a fraction of a
  minute, so "down minutes == outage" cannot mean "down minutes == outage seconds / 60".
  What it can mean, honestly: the down minutes are exactly the UTC minutes the outage
  window [Dovecot stopped, Dovecot back] overlaps, and every other minute the daemon was
  running in is known (heartbeats) and up. A tick of slack either side of the window is
  what a probe in flight at the stop, or the first probe after the restart, may add; every
  phase change is kept at least a tick away from a minute boundary, so that slack cannot
  move a failure into another minute and the expected set is exact.
- For "minutes outside the outage are not down" the run must cross a minute boundary,
  with only healthy ticks on one side of it. So the test waits for the daemon's first
  heartbeat, finds the next boundary, and either puts the outage (3 ticks, 6 s) right
  after it (healthy minute before) when the boundary is near, or right away and runs on a
  few ticks past the boundary (healthy minute after) when it is far. The run lasts about
  15-70 s depending on where in the minute it starts (about 40 s on average).
- `prober score` only evaluates minutes that are over (it scores a running month "up to
  now", rounded down to the minute), and one of the two minutes is still running when the
  daemon stops. Waiting up to a minute for it to end would double the runtime, so the
  command is run in-process (click's runner, the real command, config and spool) with its
  clock read as one second after the last minute the daemon wrote in: the daemon has
  stopped, so that is exactly what the command will print once that minute is over. The
  real command is also run as a subprocess on the real clock, and must agree on the
  minutes that are already over.
- The verdict is pinned on its boundary: with `fault_time.max_min` one less than the
  expected down minutes the clause is breached and `prober score` exits 1; with it equal
  to them it is only pending (the month is not over) and the exit is 2.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from prober.agent.scheduler import vantage_offset
from prober.cli import main as prober_cli
from tests.agent_helpers import own_state_dir, spool_points, wait_for
from tests.fixtures_mail import run_prober
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration

# `prober.commands.score` the module (the package may re-export the command by that name)
score_module = importlib.import_module("prober.commands.score")

VANTAGE = "score-e2e"
TICK_S = 2.0
OUTAGE_TICKS = 3
OUTAGE_S = OUTAGE_TICKS * TICK_S
MARGIN_S = TICK_S + 0.5  # every phase change stays over a tick from a minute boundary
START_BUDGET_S = 4.0  # Dovecot's restart (until it listens) takes well under this
POST_TICKS = 2  # healthy ticks after the restart
MINUTE_S = 60
CONTRACTED = ("alice@example.test", "bob@example.test")  # both ends of the internal route


def _config(stack: MailStack, tmp: Path, max_min: int) -> Path:
    extra = (f"[agent]\ntick_s = {TICK_S:g}\n"
             f"[sla.clauses.fault_time]\nmax_min = {max_min}\n")
    text = stack.probes_toml(vantage=VANTAGE, routes=[("alice-to-bob", "alice", "bob")],
                             extra=extra)
    # a state_dir of its own: no other test's points in this spool
    text = own_state_dir(text, stack, tmp)
    path = tmp / f"probes-max{max_min}.toml"
    path.write_text(text)
    return path


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _minute(t_s: float) -> int:
    return math.floor(t_s / MINUTE_S)


def _minutes(start_s: float, end_s: float) -> set[int]:
    return set(range(_minute(start_s), _minute(end_s) + 1))


def _hhmm(minute: int) -> str:
    return datetime.fromtimestamp(minute * MINUTE_S, UTC).strftime("%Y-%m-%d %H:%M")


def _score_at(config: Path, month: str, now_s: float,
              monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any]]:
    """`prober score --format json`, in-process, with its clock read as `now_s`."""
    with monkeypatch.context() as m:
        m.setattr(score_module, "time", SimpleNamespace(time_ns=lambda: int(now_s * 1e9)))
        result = CliRunner().invoke(prober_cli, ["score", "-c", str(config), "--month", month,
                                                 "--format", "json", "--source", "spool"])
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


def _clause(report: dict[str, Any], clause_id: str) -> dict[str, Any]:
    return next(c for c in report["clauses"] if c["id"] == clause_id)


def test_dovecot_outage_scored_to_the_minute(mail_stack: MailStack, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(mail_stack, tmp_path, max_min=0)
    log_path = tmp_path / "daemon.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prober.cli", "-v", "run", "-c",
                                 str(config)], stdout=log, stderr=log, env={**os.environ})
    dovecot_stopped = False
    try:
        wait_for("the first heartbeat",
                 lambda: bool(spool_points(tmp_path, "prober_heartbeat")), 20)
        ready = time.time()
        # the earliest start a tick after the first heartbeat, and over a tick clear of the
        # minute boundary just before it as well as of the next one
        start = ready + TICK_S
        start = max(start, math.floor(start / MINUTE_S) * MINUTE_S + MARGIN_S)
        boundary = math.ceil(start / MINUTE_S) * MINUTE_S
        # far boundary: the outage now, healthy ticks past the boundary; near: outage after it
        outage_first = boundary - start >= OUTAGE_S + START_BUDGET_S + MARGIN_S
        _sleep_until(start if outage_first else boundary + MARGIN_S)

        stop_begin = time.time()
        dovecot_stopped = True
        mail_stack.stop_dovecot()
        stopped = time.time()
        _sleep_until(stop_begin + OUTAGE_S)  # probes fail from the kick, stop_begin, on
        start_begin = time.time()
        mail_stack.start_dovecot()
        dovecot_stopped = False
        start_end = time.time()

        # healthy ticks after the restart (and past the boundary when the outage came first)
        _sleep_until(max(start_end, boundary if outage_first else 0.0)
                     + POST_TICKS * TICK_S + 0.5)
        wait_for("an ok IMAP and SMTP login after the restart", lambda: {
            p.tags["protocol"] for p in spool_points(tmp_path, "mail_access")
            if p.tags["outcome"] == "ok" and p.tags["mailbox"] == CONTRACTED[1]
            and p.time_ns / 1e9 > start_end} == {"imap", "smtp"}, 15)
    finally:
        if dovecot_stopped:
            mail_stack.start_dovecot()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    daemon_log = log_path.read_text(errors="replace")
    assert code == 0, daemon_log
    assert "Traceback" not in daemon_log, daemon_log

    # -- the design's preconditions: phase changes a tick clear of every minute boundary
    outage_minutes = _minutes(stop_begin - TICK_S, start_end + TICK_S)
    assert outage_minutes == _minutes(stopped, start_begin), (
        "the outage came within a tick of a minute boundary (a slow Dovecot stop/start?)",
        stop_begin, stopped, start_begin, start_end)
    heartbeats = spool_points(tmp_path, "prober_heartbeat")
    run_minutes = {p.time_ns // 10**9 // MINUTE_S for p in heartbeats}
    healthy_minutes = run_minutes - outage_minutes
    assert healthy_minutes, (run_minutes, outage_minutes)
    months = {datetime.fromtimestamp(m * MINUTE_S, UTC).strftime("%Y-%m")
              for m in run_minutes}
    if len(months) > 1:
        pytest.skip(f"the run crossed a month boundary ({sorted(months)}): scored per month")
    (month,) = months

    # -- the points: the outage is seen, for its number of ticks (within one), and only then
    access = [p for p in spool_points(tmp_path, "mail_access") if p.tags["mailbox"] in CONTRACTED]
    failed = [p for p in access if p.tags["outcome"] == "fail"]
    # IMAP logins are refused while Dovecot is down. SMTP AUTH is not required to fail: the
    # stack's Dovecot auth process outlives stop_dovecot() and keeps serving the smtpd
    # processes already connected to it (see the report), so only a fresh smtpd may fail.
    assert {p.tags["mailbox"] for p in failed if p.tags["protocol"] == "imap"} == set(
        CONTRACTED), failed
    assert all(stop_begin - TICK_S <= p.time_ns / 1e9 <= start_end + TICK_S
               for p in failed), [(p.tags, p.time_ns) for p in failed]
    offset = vantage_offset(VANTAGE, TICK_S)
    failing_ticks = {math.floor((p.time_ns / 1e9 - offset) / TICK_S) for p in failed
                     if p.tags["protocol"] == "imap" and p.tags["mailbox"] == CONTRACTED[1]}
    assert abs(len(failing_ticks) - OUTAGE_TICKS) <= 1, sorted(failing_ticks)
    assert any(p.tags["outcome"] == "ok" and p.time_ns / 1e9 < stop_begin for p in access)
    assert any(p.tags["outcome"] == "ok" and p.time_ns / 1e9 > start_end for p in access)
    refused = [p for p in spool_points(tmp_path, "mail_roundtrip")
               if p.fields.get("outcome") == "send_failed"]
    assert all(stop_begin - TICK_S <= p.time_ns / 1e9 <= start_end + TICK_S for p in refused)
    failure_minutes = {p.time_ns // 10**9 // MINUTE_S for p in [*failed, *refused]}
    assert failure_minutes == outage_minutes

    # -- the score, as it stands once the last minute the daemon ran in is over
    n_down = len(outage_minutes)
    now_s = (max(run_minutes) + 1) * MINUTE_S + 1.0
    exit_code, report = _score_at(config, month, now_s, monkeypatch)
    conn = report["connectivity"]
    assert report["period"]["evaluated_until"] == _hhmm(max(run_minutes) + 1)
    assert conn["vantages"] == [VANTAGE]
    assert conn["down_minutes"] == n_down, conn
    assert conn["down_minutes_by_mailbox"] == dict.fromkeys(CONTRACTED, n_down), conn
    assert [(i["start"], i["end"], i["minutes"]) for i in conn["incidents"]] == [
        (_hhmm(min(outage_minutes)), _hhmm(max(outage_minutes) + 1), n_down)], conn
    (incident,) = conn["incidents"]
    assert incident["vantages"] == [VANTAGE]
    assert incident["mailboxes"] == sorted(CONTRACTED)
    assert "imap access failed" in incident["causes"], incident
    # every other minute the daemon ran in is known and up; only the rest are unknown
    month_start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC).timestamp()
    evaluated = max(run_minutes) + 1 - _minute(month_start)
    assert conn["unknown_minutes"] == evaluated - len(run_minutes), conn
    assert conn["below_quorum_minutes_by_vantage"] == {}
    fault_time = _clause(report, "fault_time")
    assert (fault_time["verdict"], fault_time["value"]) == ("breach", n_down)
    assert _clause(report, "connectivity")["verdict"] == "pending"
    assert exit_code == report["exit_code"] == 1

    # one more allowed minute: not broken, and the month is running: pending, exit 2
    lenient = _config(mail_stack, tmp_path, max_min=n_down)
    exit_code, report = _score_at(lenient, month, now_s, monkeypatch)
    assert report["connectivity"]["down_minutes"] == n_down
    fault_time = _clause(report, "fault_time")
    assert (fault_time["verdict"], fault_time["value"]) == ("pending", n_down)
    assert "breach" not in {c["verdict"] for c in report["clauses"]}, report["clauses"]
    assert exit_code == report["exit_code"] == 2

    # the real command on the real clock agrees on the minutes already over
    before = _minute(time.time())
    done = run_prober("score", "-c", str(config), "--month", month, "--format", "json",
                      "--source", "spool", timeout=60)
    if _minute(time.time()) == before:
        over = {m for m in outage_minutes if m < before}
        assert json.loads(done.stdout)["connectivity"]["down_minutes"] == len(over), done
        assert done.returncode == (1 if over else 2), done.stderr
