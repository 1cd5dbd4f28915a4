"""Authenticated canaries on the real Postfix + Dovecot stack: what counts, what is removed.

Issue 10: nobody without the key makes an arrival count, and the prober never deletes a
message that is not provably its own canary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from prober.config import Config
from prober.probes.canary import CanaryId, CanaryKey, build_message, new_canary_id
from prober.probes.imap import MailboxWatcher
from tests.canary_helpers import OTHER_KEY, TEST_KEY
from tests.fixtures_mail import load_config
from tests.localstack.mail import MailStack

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
