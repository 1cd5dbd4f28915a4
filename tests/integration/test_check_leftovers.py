"""`prober check` settles what earlier checks left open (issue 14).

A canary that arrives after its check stopped waiting is removed by the next check and its
point rewritten, same series and timestamp, to a final outcome; one never delivered becomes
`lost` once lost_after_s has passed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from prober.measurement import Measurement
from prober.probes.canary import claim
from tests.agent_helpers import own_state_dir
from tests.fixtures_mail import run_prober
from tests.localstack.mail import HOLD_HEADER, MailStack

pytestmark = pytest.mark.integration
VANTAGE = "settle"


def _configs(stack: MailStack, tmp: Path, extra: str = "") -> tuple[Path, Path]:
    """Two configs on one state dir (one key, one ledger): the first holds its canary."""
    base = stack.probes_toml(vantage=VANTAGE, routes=[("alice-to-bob", "alice", "bob")],
                             extra="[check]\nwait_s = 2\n" + extra)
    base = own_state_dir(base, stack, tmp)
    held = base.replace('direction = "internal"\n',
                        f'direction = "internal"\nheaders = {{ "{HOLD_HEADER}" = "yes" }}\n')
    paths = tmp / "held.toml", tmp / "plain.toml"
    paths[0].write_text(held)
    paths[1].write_text(base)
    return paths


def _check(path: Path) -> dict:
    r = run_prober("check", "-c", str(path), "--json")
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    doc = json.loads(r.stdout)
    doc["exit"] = r.returncode
    return doc


def _roundtrips(doc: dict) -> list[Measurement]:
    return [Measurement.from_line(m) for m in doc["measurements"]
            if m.startswith("mail_roundtrip,")]


def _in_mailbox(stack: MailStack, canary_id: str) -> bool:
    for sub in ("new", "cur"):
        for path in (stack.maildir("bob") / sub).iterdir():
            c = claim(path.read_bytes().split(b"\r\n\r\n", 1)[0])
            if c is not None and c.canary.id == canary_id:
                return True
    return False


def _held_since(stack: MailStack, before: set[str]) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = [q for q in stack.held() if q not in before]
        if new:
            (queue_id,) = new
            return queue_id
        time.sleep(0.05)
    raise AssertionError("the first check's canary was not held")


def test_a_canary_that_came_after_its_check_gave_up_is_settled_by_the_next(
        mail_stack: MailStack, tmp_path: Path) -> None:
    held, plain = _configs(mail_stack, tmp_path)
    before = set(mail_stack.held())
    first = _check(held)
    queue_id = _held_since(mail_stack, before)
    (pending,) = _roundtrips(first)
    canary = str(pending.fields["canary"])
    assert first["exit"] == 2 and pending.fields["outcome"] == "pending"
    assert first["earlier_checks"] == []

    time.sleep(1.5)  # held for a while: its delay must show it
    mail_stack.release(queue_id)
    deadline = time.monotonic() + 10
    while not _in_mailbox(mail_stack, canary):
        assert time.monotonic() < deadline, "the released canary never reached bob"
        time.sleep(0.05)
    time.sleep(3)  # older than wait_s by the server's date and its own stamp: a leftover

    second = _check(plain)
    assert second["exit"] == 0, second
    settled = [p for p in _roundtrips(second) if p.fields["canary"] == canary]
    assert len(settled) == 1, second["measurements"]
    (point,) = settled
    # the same series and timestamp: InfluxDB replaces the pending point
    assert (point.tags, point.time_ns) == (pending.tags, pending.time_ns)
    assert point.fields["outcome"] == "delivered"
    assert point.fields["detect"] == "sweep"
    # the delay is the server's INTERNALDATE, not when the second check looked
    assert point.fields["delivery_s"] == max(float(point.fields["visible_s"]), 0.0)
    assert 1.0 <= float(point.fields["delivery_s"]) < 6.0
    assert point.fields["seq"] == pending.fields["seq"]
    (note,) = second["earlier_checks"]
    assert canary in note and "pending -> delivered" in note
    assert not _in_mailbox(mail_stack, canary), "the leftover is still in the mailbox"

    third = _check(plain)  # settled once: never again
    assert third["earlier_checks"] == []
    assert all(p.fields["canary"] != canary for p in _roundtrips(third))


def test_a_canary_never_delivered_becomes_lost_after_lost_after_s(
        mail_stack: MailStack, tmp_path: Path) -> None:
    held, plain = _configs(mail_stack, tmp_path,
                           extra="[canary]\nlate_after_s = 1\nlost_after_s = 8\n")
    before = set(mail_stack.held())
    first = _check(held)
    queue_id = _held_since(mail_stack, before)
    mail_stack.purge_held()  # never delivered
    assert queue_id not in mail_stack.held()
    (pending,) = _roundtrips(first)
    assert pending.fields["outcome"] == "pending"

    early = _check(plain)  # not yet lost_after_s: nothing to settle
    assert (time.time_ns() - pending.time_ns) / 1e9 < 8, "too slow to tell"
    assert early["earlier_checks"] == []
    time.sleep(max(0.0, 8.5 - (time.time_ns() - pending.time_ns) / 1e9))
    later = _check(plain)
    lost = [p for p in _roundtrips(later) if p.fields["canary"] == pending.fields["canary"]]
    assert len(lost) == 1 and lost[0].fields["outcome"] == "lost"
    assert (lost[0].tags, lost[0].time_ns) == (pending.tags, pending.time_ns)
    (note,) = later["earlier_checks"]
    assert "pending -> lost" in note


def test_imap_login_failing_is_delivery_unknown_and_the_next_check_settles_it(
        mail_stack: MailStack, tmp_path: Path) -> None:
    _, plain = _configs(mail_stack, tmp_path)
    bad_login = tmp_path / "bad-login.toml"
    env_name = mail_stack.password_env("bob")
    bad_login.write_text(plain.read_text().replace(f'password_env = "{env_name}"',
                                                   'password_env = "PROBER_TEST_WRONG_BOB"'))
    r = run_prober("check", "-c", str(bad_login), "--json",
                   env={"PROBER_TEST_WRONG_BOB": "not-bobs-password"})
    first = json.loads(r.stdout)
    assert r.returncode == 2, r.stdout
    (row,) = [x for x in first["rows"] if x["check"] == "canary"]
    # delivered (Postfix took it, Dovecot saved it) but unseen: not "not delivered"
    assert row["detail"].startswith("delivery unknown: IMAP watcher down: auth: "), row
    (pending,) = _roundtrips(first)
    assert pending.fields["outcome"] == "pending"
    canary = str(pending.fields["canary"])
    deadline = time.monotonic() + 10
    while not _in_mailbox(mail_stack, canary):
        assert time.monotonic() < deadline, "the canary never reached bob"
        time.sleep(0.05)
    time.sleep(3)  # past wait_s: a leftover

    second = _check(plain)
    (point,) = [p for p in _roundtrips(second) if p.fields["canary"] == canary]
    assert point.fields["outcome"] == "delivered" and point.time_ns == pending.time_ns
    assert 0 <= float(point.fields["delivery_s"]) < 3  # INTERNALDATE: soon after acceptance
    assert not _in_mailbox(mail_stack, canary)


def test_by_default_a_check_answers_before_the_monitors_60_s(mail_stack: MailStack,
                                                              tmp_path: Path) -> None:
    # no --timeout, no wait_s: the defaults a Nagios, Icinga 2 or Checkmk user starts with
    text = own_state_dir(mail_stack.probes_toml(vantage=VANTAGE,
                                                routes=[("alice-to-bob", "alice", "bob")]),
                         mail_stack, tmp_path)
    path = tmp_path / "probes.toml"
    path.write_text(text.replace(
        'direction = "internal"\n',
        f'direction = "internal"\nheaders = {{ "{HOLD_HEADER}" = "yes" }}\n'))
    t0 = time.monotonic()
    r = run_prober("check", "-c", str(path), timeout=75)
    took = time.monotonic() - t0
    mail_stack.purge_held()
    assert took < 60, f"{took:.1f} s: the monitoring system would have killed it"
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith("PROBER CRITICAL - canary alice-to-bob"), r.stdout
    assert "not seen within" in r.stdout and "(pending)" in r.stdout
