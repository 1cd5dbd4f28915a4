"""Canary round trips through the real Postfix + Dovecot stack."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from prober.config import Config
from prober.probes.canary import CanaryId, recognise
from prober.probes.imap import MailboxWatcher
from prober.probes.plan import context
from prober.probes.roundtrip import CanaryTarget, Sent, fate, roundtrip_point, send_canary
from tests.canary_helpers import TEST_KEY
from tests.fixtures_mail import load_config
from tests.localstack.mail import HOLD_HEADER, MailStack

pytestmark = pytest.mark.integration


async def _round_trips(config: Config, count: int, wait_s: float = 10.0,
                       extra_headers: dict[str, str] | None = None,
                       while_waiting=None) -> list[tuple[Sent, dict]]:
    """Send `count` canaries on the first route; return each with its final point's fields."""
    route = config.routes[0]
    recipient = config.mailboxes[route.recipient]
    stop = asyncio.Event()
    watcher = MailboxWatcher(recipient, config.timeouts, config.canary, config.vantage.name,
                             key=TEST_KEY)
    task = asyncio.create_task(watcher.run(stop))
    try:
        assert await watcher.wait_ready(10), "watcher never connected"
        assert watcher.up, f"watcher failed: {watcher.last_error}"
        config = dataclasses.replace(config, canary=dataclasses.replace(
            config.canary, headers=tuple((extra_headers or {}).items())))
        target = CanaryTarget.of(config, route)
        ctx = context(config)
        futures: dict[str, asyncio.Future] = {}

        def expect(cid: CanaryId) -> None:
            futures[cid.id] = watcher.expect(cid.id)

        sends = []
        # four at a time: submissions overlap as on a busy agent
        for start in range(0, count, 4):
            sends.extend(await asyncio.gather(*(
                send_canary(ctx, target, seq, expect, key=TEST_KEY)
                for seq in range(start, min(start + 4, count)))))
        assert set(futures) == {s.canary.id for s in sends}
        assert sorted(s.canary.seq for s in sends) == list(range(count))
        for s in sends:
            assert s.submission.ok, s.submission.error
        if while_waiting is not None:
            await while_waiting()
        done, _ = await asyncio.wait(futures.values(), timeout=wait_s)
        results = []
        for sent in sends:
            fut = futures[sent.canary.id]
            arrival = fut.result() if fut in done else None
            point = roundtrip_point(config.vantage.name, sent,
                                    fate(sent, arrival, config.canary.late_after_s), arrival)
            results.append((sent, dict(point.fields)))
        return results
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _canaries_in(stack: MailStack, user: str) -> set[str]:
    """Ids of the canaries still in a Maildir (other tests share the session's mailboxes)."""
    found = set()
    for sub in ("new", "cur"):
        for path in (stack.maildir(user) / sub).iterdir():
            cid = recognise(path.read_bytes().split(b"\r\n\r\n", 1)[0])
            if cid is not None:
                found.add(cid.id)
    return found


def _assert_delivered(results: list[tuple[Sent, dict]], detect: str) -> None:
    assert len(results) == 20
    for _sent, f in results:
        assert f["outcome"] == "delivered", f
        assert 0 < f["delivery_s"] < 5
        assert f["detect"] == detect, f
        assert f["folder"] == "INBOX"
        assert f["smtp_code"] == 250 and f["queue_id"]
        for phase in ("smtp_connect_s", "smtp_tls_s", "smtp_auth_s", "smtp_data_s",
                      "smtp_total_s"):
            assert f[phase] is not None and f[phase] >= 0, (phase, f)
        assert f["hops"] == 2  # Postfix submission, Dovecot LMTP
    assert len({s.canary.id for s, _ in results}) == 20


def test_twenty_canaries_starttls_detected_by_idle(mail_stack: MailStack, tmp_path: Path):
    config = load_config(mail_stack, tmp_path)
    results = asyncio.run(_round_trips(config, 20))
    _assert_delivered(results, "idle")
    # our canaries were removed from the mailbox after they were seen
    left = _canaries_in(mail_stack, "bob")
    assert not left & {s.canary.id for s, _ in results}


def test_twenty_canaries_imaps_and_implicit_tls_submission(mail_stack: MailStack,
                                                           tmp_path: Path):
    config = load_config(mail_stack, tmp_path, imap_tls="tls", smtp_tls="tls")
    assert config.mailboxes["bob"].imap.endpoint.port == mail_stack.imaps_port
    _assert_delivered(asyncio.run(_round_trips(config, 20)), "idle")


def test_twenty_canaries_poll_fallback_without_idle(mail_stack_noidle: MailStack,
                                                    tmp_path: Path):
    config = load_config(mail_stack_noidle, tmp_path)
    config = dataclasses.replace(config, canary=dataclasses.replace(config.canary, poll_s=0.2))
    _assert_delivered(asyncio.run(_round_trips(config, 20)), "poll")


def test_held_canary_delivery_counts_the_hold(mail_stack: MailStack, tmp_path: Path):
    config = load_config(mail_stack, tmp_path)
    held_s = 15.0

    async def hold_then_release() -> None:
        queue_id = (await asyncio.to_thread(mail_stack.wait_held, 1))[0]
        await asyncio.sleep(held_s)
        await asyncio.to_thread(mail_stack.release, queue_id)

    t0 = time.monotonic()
    [(_sent, f)] = asyncio.run(_round_trips(config, 1, wait_s=held_s + 10,
                                           extra_headers={HOLD_HEADER: "yes"},
                                           while_waiting=hold_then_release))
    assert f["outcome"] == "delivered"
    assert held_s <= f["delivery_s"] < held_s + 5
    assert f["visible_s"] >= held_s - 1  # INTERNALDATE has whole seconds only
    assert time.monotonic() - t0 >= held_s


def test_person_marked_deleted_message_survives_cleanup(mail_stack: MailStack,
                                                        tmp_path: Path):
    person = (b"From: someone@example.test\r\nTo: bob@example.test\r\n"
              b"Subject: minutes of the meeting\r\nMessage-ID: <keep-me@example.test>\r\n"
              b"\r\nPlease keep.\r\n")
    # Maildir flag T is IMAP's \Deleted: a plain EXPUNGE would remove it.
    kept = mail_stack.deliver_local("bob", person, flags="T")
    config = load_config(mail_stack, tmp_path)
    results = asyncio.run(_round_trips(config, 3))
    assert [f["outcome"] for _, f in results] == ["delivered"] * 3
    assert kept.exists(), "a person's \\Deleted message was removed"
    assert b"Please keep." in kept.read_bytes()
    assert not _canaries_in(mail_stack, "bob") & {s.canary.id for s, _ in results}
    kept.unlink()
