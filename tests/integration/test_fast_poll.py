"""Fast arrival detection: polling while a canary is awaited beats Dovecot's 0.5 s IDLE push."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from pathlib import Path

import pytest

from prober.config import Config
from prober.probes.canary import CanaryId
from prober.probes.imap import Arrival, MailboxWatcher
from prober.probes.plan import context
from prober.probes.roundtrip import CanaryTarget, send_canary
from tests.agent_helpers import own_state_dir, spool_points
from tests.canary_helpers import TEST_KEY
from tests.fixtures_mail import load_config, run_prober
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration


async def _detections(config: Config, count: int) -> list[tuple[float, str]]:
    """(detection - SMTP 250 in s, how detected) for `count` canaries sent one by one."""
    route = config.routes[0]
    recipient = config.mailboxes[route.recipient]
    # no junk folder: its look (a poll of the inbox too) would race the IDLE push
    recipient = dataclasses.replace(recipient, imap=dataclasses.replace(recipient.imap,
                                                                        junk_folder=None))
    stop = asyncio.Event()
    watcher = MailboxWatcher(recipient, config.timeouts, config.canary, config.vantage.name,
                             key=TEST_KEY)
    task = asyncio.create_task(watcher.run(stop))
    out = []
    try:
        assert await watcher.wait_ready(10) and watcher.up, watcher.last_error
        while watcher.sweeps < 1:  # the first session sweeps before it waits: let it finish
            await asyncio.sleep(0.02)
        target, ctx = CanaryTarget.of(config, route), context(config)
        awaited: dict[str, asyncio.Future[Arrival]] = {}

        def expect(cid: CanaryId) -> None:
            awaited[cid.id] = watcher.expect(cid.id, fast_for_s=20)

        for i in range(count):
            sent = await send_canary(ctx, target, i, expect, key=TEST_KEY)
            assert sent.submission.ok, sent.submission.error
            arrival = await asyncio.wait_for(awaited[sent.canary.id], 20)
            out.append(((arrival.detected_ns - sent.submission.accepted_ns) / 1e9,
                        arrival.detect))
            # IDLE again between canaries, as a watcher does when nothing is awaited
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return out


def _with_fast_poll(config: Config, fast_poll_s: float) -> Config:
    return dataclasses.replace(config, canary=dataclasses.replace(config.canary,
                                                                  fast_poll_s=fast_poll_s))


def test_fast_poll_detects_before_dovecots_idle_push(mail_stack: MailStack,
                                                      tmp_path: Path) -> None:
    config = _with_fast_poll(load_config(mail_stack, tmp_path), 0.05)
    found = asyncio.run(_detections(config, 5))
    assert {how for _, how in found} == {"poll"}, found
    # Dovecot pushes to IDLE clients 0.5 s after delivery: polling every 50 ms is well under
    assert statistics.median(d for d, _ in found) < 0.3, found


def test_without_fast_poll_idle_alone_waits_for_the_push(mail_stack: MailStack,
                                                         tmp_path: Path) -> None:
    config = load_config(mail_stack, tmp_path)
    assert config.canary.fast_poll_s == 0  # the daemon's gentle default
    found = asyncio.run(_detections(config, 3))
    assert {how for _, how in found} == {"idle"}, found
    assert min(d for d, _ in found) >= 0.45, found


def test_the_daemon_opts_in_with_canary_fast_poll_s(mail_stack: MailStack,
                                                   tmp_path: Path) -> None:
    text = mail_stack.probes_toml(vantage="fastpoll", routes=[("a-to-b", "alice", "bob")],
                                  extra="[agent]\ntick_s = 2\n[canary]\nfast_poll_s = 0.05\n")
    path = tmp_path / "probes.toml"
    path.write_text(own_state_dir(text, mail_stack, tmp_path))
    r = run_prober("run", "-c", str(path), "--ticks", "3", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    delivered = [p for p in spool_points(tmp_path, "mail_roundtrip")
                 if p.fields["outcome"] == "delivered"]
    assert len(delivered) == 3, [p.fields for p in spool_points(tmp_path, "mail_roundtrip")]
    # each canary polled for from its send: found well before Dovecot's 0.5 s IDLE push
    assert {p.fields["detect"] for p in delivered} == {"poll"}
    assert statistics.median(float(p.fields["delivery_s"]) for p in delivered) < 0.3
