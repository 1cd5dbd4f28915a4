"""Authenticated canaries on the real Postfix + Dovecot stack: what counts, what is removed.

Issue 10: nobody without the key makes an arrival count, and the prober never deletes a
message that is not provably its own canary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from prober.agent.ledger import Ledger
from prober.config import Config, load
from prober.measurement import Measurement
from prober.probes.canary import (
    CHECK,
    CanaryId,
    CanaryKey,
    build_message,
    claim,
    new_canary_id,
)
from prober.probes.canary_key import KEY_FILE, load_canary_key
from prober.probes.imap import MailboxWatcher
from tests.agent_helpers import own_state_dir, spool_points, wait_for
from tests.canary_helpers import OTHER_KEY, TEST_KEY
from tests.fixtures_mail import load_config, run_prober
from tests.localstack.mail import HOLD_HEADER, MailStack

pytestmark = pytest.mark.integration

_BASE_CAPS = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ NAMESPACE CHILDREN " \
             "UNSELECT SPECIAL-USE"
SERVERS = {
    "uidplus": None,  # Dovecot's own: UIDPLUS and MOVE -> UID STORE + UID EXPUNGE
    "move-only": _BASE_CAPS + " MOVE",  # no UIDPLUS -> UID MOVE to Trash
    "neither": _BASE_CAPS,  # no UIDPLUS, no MOVE -> kept in place
}


@pytest.fixture(scope="module", params=list(SERVERS))
def sweep_stack(request: pytest.FixtureRequest, mail_stack: MailStack) -> Iterator[MailStack]:
    if SERVERS[request.param] is None:
        yield mail_stack
        return
    with MailStack(imap_capability=SERVERS[request.param]) as stack:
        yield stack


def _files(stack: MailStack, user: str, folder: str = "") -> dict[bytes, Path]:
    root = stack.maildir(user) / folder if folder else stack.maildir(user)
    return {p.read_bytes(): p for sub in ("new", "cur") if (root / sub).is_dir()
            for p in (root / sub).iterdir()}


def _canary(cid: CanaryId, to: str, **changes: str | None) -> bytes:
    msg = build_message(cid, "alice@example.test", to, datetime.now(UTC))
    for name, value in changes.items():
        name = name.replace("_", "-")
        del msg[name]
        if value is not None:
            msg[name] = value
    return msg.as_bytes()


def _signed(vantage: str, to: str, key: CanaryKey = TEST_KEY, stamp: int | None = None,
            seq: int = 1) -> CanaryId:
    return new_canary_id(vantage, "alice-to-carol", seq, key=key, recipient=to, stamp=stamp)


def _forward(cid: CanaryId, to: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "person@example.test"
    msg["To"] = to
    msg["Subject"] = "Fwd: " + cid.subject
    msg["Message-ID"] = "<fwd-1@client.example>"
    msg.set_content("FYI, what is this?\n\n-------- Forwarded Message --------\n"
                    f"Subject: {cid.subject}\nX-Prober-Canary: {cid.token}\n")
    return msg.as_bytes()


async def _watch_until_swept(config: Config, mailbox: str, vantage: str,
                             key: CanaryKey = TEST_KEY) -> MailboxWatcher:
    stop = asyncio.Event()
    watcher = MailboxWatcher(config.mailboxes[mailbox], config.timeouts, config.canary,
                             vantage, key=key)
    task = asyncio.create_task(watcher.run(stop))
    try:
        assert await watcher.wait_ready(10) and watcher.up, watcher.last_error
        for _ in range(100):
            if watcher.sweeps:
                break
            await asyncio.sleep(0.1)
        assert watcher.sweeps >= 1, "the first sweep never completed"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return watcher


def test_sweep_removes_only_verified_canaries_of_this_vantage(sweep_stack: MailStack,
                                                              tmp_path: Path,
                                                              request: pytest.FixtureRequest):
    server = request.node.callspec.params["sweep_stack"]
    vantage = f"sweeper-{server}"
    carol = sweep_stack.user("carol").address
    old = int(time.time()) - 600  # sweep_after_s = 60 in this test
    ours_old = [
        _canary(_signed(vantage, carol, stamp=old, seq=1), carol),
        # a gateway stripped the header: the Subject's MAC still proves it ours
        _canary(_signed(vantage, carol, stamp=old, seq=2), carol, X_Prober_Canary=None),
    ]
    genuine = _signed(vantage, carol, stamp=old, seq=3)
    legacy = CanaryId(vantage, "alice-to-carol", 4, "0123456789abcdef")
    keep_old = {
        "stranger, canary-format Subject, no MAC": _canary(legacy, carol),
        "stranger, canary-format Subject, made-up MAC": _canary(
            dataclasses.replace(genuine, id="fedcba9876543210"), carol),
        "MAC made with another key": _canary(
            _signed(vantage, carol, key=OTHER_KEY, stamp=old, seq=5), carol),
        "genuine canary copied from another mailbox": _canary(
            _signed(vantage, sweep_stack.user("bob").address, stamp=old, seq=6), carol),
        "a person's Re: reply": _canary(
            genuine, carol, Subject="Re: " + genuine.subject, From="person@example.test",
            Message_ID="<reply-1@client.example>", X_Prober_Canary=None,
            In_Reply_To=f"{genuine.message_id_prefix}example.test>"),
        "a forwarded canary": _forward(genuine, carol),
        "another vantage's canary": _canary(
            _signed("someone-else", carol, stamp=old, seq=7), carol),
    }
    flagged = {
        "a person's message flagged \\Deleted": (
            b"From: someone@example.test\r\nTo: carol@example.test\r\n"
            b"Subject: minutes of the meeting\r\nMessage-ID: <keep-me@example.test>\r\n"
            b"\r\nPlease keep.\r\n"),
        "our canary that a person flagged \\Deleted": _canary(
            _signed(vantage, carol, stamp=old, seq=8), carol),
    }
    fresh = _canary(_signed(vantage, carol, seq=9), carol)
    for content in ours_old + list(keep_old.values()):
        path = sweep_stack.deliver_local("carol", content)
        os.utime(path, (old, old))  # Maildir: INTERNALDATE = mtime
    for content in flagged.values():
        path = sweep_stack.deliver_local("carol", content, flags="T")
        os.utime(path, (old, old))
    sweep_stack.deliver_local("carol", fresh)

    config = load_config(sweep_stack, tmp_path, vantage=vantage,
                         extra="[canary]\nsweep_after_s = 60\n")
    watcher = asyncio.run(_watch_until_swept(config, "carol", vantage))

    left = _files(sweep_stack, "carol")
    for what, content in {**keep_old, **flagged, "fresh canary": fresh}.items():
        assert content in left, f"{what} was removed ({server})"
    trash = _files(sweep_stack, "carol", ".Trash")
    if server == "neither":
        assert watcher.swept == 0
        assert all(c in left for c in ours_old), "kept in place without UIDPLUS and MOVE"
    else:
        assert watcher.swept == 2, server
        assert not any(c in left for c in ours_old), "a verified old canary is still there"
        moved = [c for c in ours_old if c in trash]
        assert len(moved) == (2 if server == "move-only" else 0), server
    assert not any(c in trash for c in [*keep_old.values(), *flagged.values(), fresh])
    for content in [*ours_old, *keep_old.values(), *flagged.values(), fresh]:
        for files in (left, trash):
            if content in files:
                files[content].unlink()


# --- the daemon: forged arrivals never count ---------------------------------------------

def _daemon_config(stack: MailStack, tmp: Path, vantage: str, extra: str,
                   routes: list[tuple[str, str, str]], held: set[str]) -> Path:
    text = own_state_dir(stack.probes_toml(vantage=vantage, routes=routes, extra=extra),
                         stack, tmp)
    for name in held:  # this route's canaries wait in Postfix's hold queue until released
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\n'
                            f'headers = {{ "{HOLD_HEADER}" = "yes" }}\n')
    path = tmp / "probes.toml"
    path.write_text(text)
    return path


def _start(config: Path) -> subprocess.Popen:
    log = (config.parent / "daemon.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "prober.cli", "-v", "run", "-c",
                             str(config)], stdout=log, stderr=log)


def _log(config: Path) -> str:
    return (config.parent / "daemon.log").read_text(errors="replace")


def _points(tmp: Path, canary: str) -> list:
    return [p for p in spool_points(tmp, "mail_roundtrip") if p.fields["canary"] == canary]


def _forged(tmp: Path) -> int:
    beats = spool_points(tmp, "prober_heartbeat")
    return int(beats[-1].fields["forged_canaries"]) if beats else -1


def test_forged_arrivals_never_count_and_are_never_deleted(mail_stack: MailStack,
                                                          tmp_path: Path):
    vantage = "forge"
    bob = mail_stack.user("bob").address
    config = _daemon_config(mail_stack, tmp_path, vantage,
                            "[agent]\ntick_s = 2\n[canary]\nlate_after_s = 600\n"
                            "lost_after_s = 1200\n",
                            [("a-to-b", "alice", "bob"), ("b-to-c", "bob", "carol")],
                            held={"a-to-b"})
    proc = _start(config)
    planted: list[tuple[str, bytes]] = []

    def plant(user: str, content: bytes) -> None:
        mail_stack.deliver_local(user, content)
        planted.append((user, content))

    try:
        def first_held() -> list:
            return sorted((p for p in spool_points(tmp_path, "mail_roundtrip")
                           if p.tags["route"] == "a-to-b" and p.fields["outcome"] == "pending"),
                          key=lambda p: p.time_ns)

        wait_for("a held canary", lambda: bool(first_held()), 30)
        point = first_held()[0]
        canary, queue_id = str(point.fields["canary"]), str(point.fields["queue_id"])
        genuine = mail_stack.held_message(queue_id)
        assert canary.encode() in genuine and b"mac=" in genuine
        c = claim(genuine)
        assert c is not None
        real = c.canary
        # 1. the id of the canary in flight with a wrong MAC, into the right mailbox
        plant("bob", _canary(dataclasses.replace(real, mac="0" * len(real.mac or "")), bob))
        wait_for("the forgery counted", lambda: _forged(tmp_path) == 1, 20)
        time.sleep(1)  # a tick or two: nothing else may happen to the canary
        assert [p.fields["outcome"] for p in _points(tmp_path, canary)] == ["pending"]
        assert _forged(tmp_path) == 1
        # 2. the same id without any MAC (the format from before signed canaries)
        plant("bob", _canary(dataclasses.replace(real, stamp=None, mac=None), bob))
        # 3. signed with another key
        plant("bob", _canary(dataclasses.replace(
            real, mac=OTHER_KEY.mac(real, bob)), bob))
        # 4. the genuine canary's own headers, copied into another watched mailbox
        plant("carol", genuine)
        wait_for("four forgeries counted", lambda: _forged(tmp_path) == 4, 20)
        assert [p.fields["outcome"] for p in _points(tmp_path, canary)] == ["pending"]
        # the real canary, released now, counts with its real delay
        time.sleep(max(0.0, point.time_ns / 1e9 + 6 - time.time()))
        released_at = time.time()
        mail_stack.release(queue_id)
        wait_for("the real delivery", lambda: _points(tmp_path, canary)[-1].fields["outcome"]
                 == "delivered", 20)
        # 5, 6. a person's reply to the canary and a forward of it, into the same mailbox:
        # both carry its genuine MAC in their Subject, and neither is the canary
        plant("bob", _canary(real, bob, Subject="Re: " + real.subject,
                             From="person@example.test", X_Prober_Canary=None,
                             Message_ID="<reply-2@client.example>",
                             In_Reply_To=f"{real.message_id_prefix}example.test>"))
        plant("bob", _forward(real, bob))
        wait_for("the reply and the forward counted", lambda: _forged(tmp_path) >= 6, 40)
        assert _forged(tmp_path) == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, _log(config)
        mail_stack.purge_held()
    final = _points(tmp_path, canary)[-1].fields
    held_s = released_at - point.time_ns / 1e9
    print(f"held {held_s:.3f} s, delivery_s {final['delivery_s']:.3f} s, "
          f"forged_canaries {_forged(tmp_path)}")
    assert held_s >= 6
    assert held_s <= final["delivery_s"] < held_s + 3, (held_s, final)
    assert final["authenticated"] is True
    assert [p.fields["outcome"] for p in _points(tmp_path, canary)] == ["pending", "delivered"]
    assert _forged(tmp_path) == 6
    log = _log(config)
    for mailbox in ("bob", "carol"):
        assert re.search(rf"watcher mailbox={mailbox} folder=INBOX uid=\d+: claims to be a "
                         rf"canary of vantage {vantage} but", log), log
    # every forgery is still where it was put; the genuine canary itself was removed
    for user, content in planted:
        assert content in _files(mail_stack, user), f"a forgery in {user}'s mailbox was removed"
    ours = [body for body in _files(mail_stack, "bob")
            if canary.encode() in body and body not in {c for _, c in planted}]
    assert ours == [], "the genuine canary was not removed after it counted"
    key = (tmp_path / "state" / KEY_FILE).read_text().strip()
    assert key not in log
    for user, content in planted:
        path = _files(mail_stack, user).get(content)
        if path is not None:
            path.unlink()


def test_unsigned_canary_in_flight_at_the_upgrade_still_counts(mail_stack: MailStack,
                                                               tmp_path: Path):
    """A canary the previous version sent (no MAC) and left in the ledger is matched by its
    id after the upgrade, is `authenticated = false`, and is not removed."""
    vantage = "upgrade"
    bob = mail_stack.user("bob").address
    config = _daemon_config(mail_stack, tmp_path, vantage,
                            "[agent]\ntick_s = 2\n[canary]\nlate_after_s = 600\n"
                            "lost_after_s = 1200\n", [("a-to-b", "alice", "bob")],
                            held={"a-to-b"})
    legacy = CanaryId(vantage, "a-to-b", 1, "00aa11bb22cc33dd")
    accepted_ns = time.time_ns() - 5_000_000_000
    ledger = Ledger(tmp_path / "state" / "prober.db")
    ledger.enter(legacy.id, "a-to-b", "bob")
    ledger.record(Measurement("mail_roundtrip", {
        "vantage": vantage, "route": "a-to-b", "sender": mail_stack.user("alice").address,
        "recipient": bob, "direction": "internal"},
        {"outcome": "pending", "canary": legacy.id, "seq": 1}, accepted_ns))
    ledger.close()
    proc = _start(config)
    old_copy = _canary(legacy, bob)
    try:
        wait_for("the agent's first heartbeat", lambda: _forged(tmp_path) == 0, 30)
        # a MAC-less message claiming one of the new, signed canaries: not a delivery
        wait_for("a signed canary in flight", lambda: any(
            p.fields["outcome"] == "pending" for p in spool_points(tmp_path, "mail_roundtrip")
            if p.fields["canary"] != legacy.id), 20)
        signed = next(p for p in spool_points(tmp_path, "mail_roundtrip")
                      if p.fields["canary"] != legacy.id)
        unsigned_claim = CanaryId(vantage, "a-to-b", int(signed.fields["seq"]),
                                  str(signed.fields["canary"]))
        claim_copy = _canary(unsigned_claim, bob)
        mail_stack.deliver_local("bob", claim_copy)
        mail_stack.deliver_local("bob", old_copy)
        wait_for("the old canary matched", lambda: any(
            p.fields["outcome"] == "delivered" for p in _points(tmp_path, legacy.id)), 20)
        wait_for("the MAC-less claim refused", lambda: _forged(tmp_path) == 1, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, _log(config)
        mail_stack.purge_held()
    final = _points(tmp_path, legacy.id)[-1].fields
    assert final["authenticated"] is False
    assert 5 <= final["delivery_s"] < 10
    assert [p.fields["outcome"] for p in _points(tmp_path, str(signed.fields["canary"]))] \
        == ["pending"]
    left = _files(mail_stack, "bob")
    assert old_copy in left, "an unsigned canary was removed"
    assert claim_copy in left, "a MAC-less claim was removed"
    for content in (old_copy, claim_copy):
        left[content].unlink()


# --- the key stays secret ------------------------------------------------------------------

def _everything_printed(config: Path, tmp: Path) -> dict[str, str]:
    """What an operator, a log collector, InfluxDB and a report reader get to see."""
    month = datetime.now(UTC).strftime("%Y-%m")
    seen = {}
    for name, args in {
        "config check": ["config", "check", "-c", str(config)],
        "check": ["-vv", "check", "-c", str(config), "--json"],
        "run": ["-vv", "run", "-c", str(config), "--ticks", "2"],
        "score": ["score", "-c", str(config), "--month", month, "--source", "spool",
                  "--format", "html"],
        "score json": ["score", "-c", str(config), "--month", month, "--source", "spool",
                       "--format", "json"],
    }.items():
        r = run_prober(*args, timeout=120)
        assert r.returncode in (0, 1, 2), (name, r.returncode, r.stdout, r.stderr)
        seen[name] = r.stdout + r.stderr
    assert '"state": "OK"' in seen["check"], seen["check"]
    assert "started vantage=" in seen["run"]
    # the points themselves, as stored (the spool's SQLite file and its journal)
    for db in (tmp / "state").glob("prober.db*"):
        seen[db.name] = db.read_bytes().decode("latin-1")
    assert any("mail_roundtrip" in text for text in seen.values())
    return seen


def test_canary_key_never_appears_in_logs_points_config_or_reports(mail_stack: MailStack,
                                                                   tmp_path: Path):
    key_text = "canary-key-for-the-grep-test-" + os.urandom(12).hex()
    extra = '[agent]\ntick_s = 1\n[canary]\nkey_env = "PROBER_TEST_GREP_KEY"\n'
    config = tmp_path / "probes.toml"
    config.write_text(own_state_dir(mail_stack.probes_toml(vantage="grep", extra=extra),
                                    mail_stack, tmp_path))
    os.environ["PROBER_TEST_GREP_KEY"] = key_text
    try:
        seen = _everything_printed(config, tmp_path)
    finally:
        del os.environ["PROBER_TEST_GREP_KEY"]
    assert 'key = "****" # from env:PROBER_TEST_GREP_KEY' in seen["config check"]
    for where, text in seen.items():
        assert key_text not in text, f"the canary key appears in {where}"
    assert not (tmp_path / "state" / KEY_FILE).exists()


def test_generated_canary_key_never_appears_either(mail_stack: MailStack, tmp_path: Path):
    config = tmp_path / "probes.toml"
    config.write_text(own_state_dir(mail_stack.probes_toml(
        vantage="grep-auto", extra="[agent]\ntick_s = 1\n"), mail_stack, tmp_path))
    seen = _everything_printed(config, tmp_path)
    key_file = tmp_path / "state" / KEY_FILE
    key_text = key_file.read_text().strip()
    assert len(key_text) == 64 and oct(key_file.stat().st_mode & 0o777) == "0o600"
    # made by whichever ran first (here `prober check`), said so there, without the key
    assert f"created a new canary key in {key_file}" in seen["check"]
    for where, text in seen.items():
        assert key_text not in text, f"the generated canary key appears in {where}"


# --- prober check removes its own leftovers (issue 14) --------------------------------------

def test_check_removes_its_own_leftovers_past_their_wait_and_nothing_else(
        mail_stack: MailStack, tmp_path: Path):
    vantage = "leftovers"
    config_path = tmp_path / "probes.toml"
    config_path.write_text(own_state_dir(mail_stack.probes_toml(
        vantage=vantage, extra="[check]\nwait_s = 30\n"), mail_stack, tmp_path))
    key = load_canary_key(load(config_path))
    bob = mail_stack.user("bob").address
    old, recent = int(time.time()) - 300, int(time.time()) - 5

    def signed(driver: str, stamp: int, vantage: str = vantage) -> bytes:
        return _canary(new_canary_id(vantage, "alice-to-bob", 1, key=key, recipient=bob,
                                     driver=driver, stamp=stamp), bob)

    leftover = signed(CHECK, old)
    keep = {
        "the daemon's canary of the same age": signed("run", old),
        "a check canary still within its wait": signed(CHECK, recent),
        "another vantage's check canary": signed(CHECK, old, vantage="elsewhere"),
    }
    for content, at in [(leftover, old), *((c, old) for c in keep.values())]:
        path = mail_stack.deliver_local("bob", content)
        os.utime(path, (at, at))
    r = run_prober("check", "-c", str(config_path), "--no-write", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    left = _files(mail_stack, "bob")
    assert leftover not in left, "the earlier check's leftover is still there"
    for what, content in keep.items():
        assert content in left, f"{what} was removed"
        left[content].unlink()


def test_sweep_works_in_batches_newest_first_and_is_bounded(mail_stack: MailStack,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    import prober.probes.imap as imap

    monkeypatch.setattr(imap, "SWEEP_BATCH", 5)
    monkeypatch.setattr(imap, "SWEEP_MAX", 12)
    vantage = "batches"
    carol = mail_stack.user("carol").address
    old = int(time.time()) - 600

    def plant(content: bytes) -> bytes:
        os.utime(mail_stack.deliver_local("carol", content), (old, old))
        time.sleep(0.002)  # distinct Maildir names: UIDs in planting order
        return content

    def look_alike(i: int) -> bytes:  # a stranger's message: canary Subject, made-up MAC
        fake = dataclasses.replace(_signed(vantage, carol, stamp=old, seq=100 + i),
                                   mac=f"{i:020x}")
        return plant(_canary(fake, carol))

    beyond_the_bound = plant(_canary(_signed(vantage, carol, stamp=old, seq=1), carol))
    strangers = [look_alike(i) for i in range(6)]
    second_batch = plant(_canary(_signed(vantage, carol, stamp=old, seq=2), carol))
    strangers += [look_alike(i) for i in range(6, 12)]
    config = load_config(mail_stack, tmp_path, vantage=vantage,
                         extra="[canary]\nsweep_after_s = 60\n")
    watcher = asyncio.run(_watch_until_swept(config, "carol", vantage))
    left = _files(mail_stack, "carol")
    # newest first, 5 at a time: the canary 7th from the top is found in the second batch
    assert second_batch not in left and watcher.swept == 1
    # the 14th from the top is past the bound of 12 for this sweep: looked at next time
    assert beyond_the_bound in left
    assert all(s in left for s in strangers)
    for content in [beyond_the_bound, *strangers]:
        left[content].unlink()
