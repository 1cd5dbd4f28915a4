"""The hourly sweep of old canaries does not pause arrival detection (real Dovecot).

A canary that arrives while a long sweep runs was detected only once the sweep was over:
the sweep's duration (or, when its EXISTS went by during the sweep's own commands, the
wait to the next IDLE renewal) was added to its delivery_s, charged to the provider.

Dovecot answers a SEARCH of a test mailbox in milliseconds; a provider's big mailbox takes
seconds. A proxy in front of Dovecot holds each SEARCH command for SEARCH_DELAY_S, which
is what a slow server looks like from the prober's side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prober.config.mail import Endpoint
from prober.probes.canary import build_message, new_canary_id
from prober.probes.imap import Arrival, MailboxWatcher
from tests.canary_helpers import TEST_KEY
from tests.faults import PipeProxy
from tests.fixtures_mail import load_config
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration

OLD_CANARIES = 20
SEARCH_DELAY_S = 4.0


class SlowSearchProxy(PipeProxy):
    """127.0.0.1:port -> Dovecot's plain IMAP port; a client chunk holding a SEARCH
    command reaches the server SEARCH_DELAY_S late. Everything else flows as it comes."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.searches = 0

    def client_chunk(self, data: bytes) -> bool:
        if b" SEARCH " in data.upper():
            self.searches += 1
            time.sleep(SEARCH_DELAY_S)
        return True


def test_a_canary_arriving_during_the_sweep_is_detected_as_it_comes(mail_stack: MailStack,
                                                                    tmp_path: Path) -> None:
    vantage = "sweep-apart"
    carol = mail_stack.user("carol").address
    old = int(time.time()) - 7200
    planted = []
    for seq in range(1, OLD_CANARIES + 1):
        cid = new_canary_id(vantage, "a-to-c", seq, key=TEST_KEY, recipient=carol, stamp=old)
        msg = build_message(cid, "alice@example.test", carol, datetime.fromtimestamp(old, UTC))
        path = mail_stack.deliver_local("carol", msg.as_bytes())
        os.utime(path, (old, old))
        planted.append(path)
    fresh = new_canary_id(vantage, "a-to-c", OLD_CANARIES + 1, key=TEST_KEY, recipient=carol)
    config = load_config(mail_stack, tmp_path, vantage=vantage,
                         extra="[canary]\nsweep_after_s = 60\n")
    box = config.mailboxes["carol"]
    proxy = SlowSearchProxy(mail_stack.imap_port)
    # plain IMAP through the proxy (Dovecot takes LOGIN in clear from loopback)
    box = dataclasses.replace(box, imap=dataclasses.replace(
        box.imap, endpoint=Endpoint("127.0.0.1", proxy.port, "none")))
    seen: dict[str, float] = {}

    def on_arrival(a: Arrival) -> bool:
        seen.setdefault(a.canary.id, time.monotonic())
        return a.canary.id == fresh.id

    async def run() -> tuple[float, float | None, float]:
        stop = asyncio.Event()
        watcher = MailboxWatcher(box, config.timeouts, config.canary,
                                 vantage, on_arrival, key=TEST_KEY)
        task = asyncio.create_task(watcher.run(stop))
        try:
            assert await watcher.wait_ready(30) and watcher.up, watcher.last_error
            await asyncio.sleep(0.3)  # the first sweep starts at once: let it get going
            delivered = time.monotonic()
            msg = build_message(fresh, "alice@example.test", carol, datetime.now(UTC))
            mail_stack.deliver_local("carol", msg.as_bytes())
            swept_at = None
            for _ in range(1200):
                if swept_at is None and watcher.sweeps:
                    swept_at = time.monotonic()
                if swept_at is not None and fresh.id in seen:
                    break
                await asyncio.sleep(0.05)
            return delivered, seen.get(fresh.id), (swept_at or 0.0) - delivered
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)

    try:
        with proxy:
            delivered, detected, sweep_left = asyncio.run(run())
        assert proxy.searches >= 1
        assert detected is not None, "the fresh canary was never detected"
        delay = detected - delivered
        print(f"sweep still ran {sweep_left:.2f} s after the delivery; detected after "
              f"{delay:.2f} s")
        assert sweep_left > 2.0, "the sweep was over before the canary came: nothing shown"
        # Dovecot pushes to IDLE 0.5 s after a delivery (docs/field-notes.md)
        assert delay < 1.5
    finally:
        for path in planted:
            if path.exists():
                path.unlink()
