"""Detection lag on the local stack: how long after delivery the prober notices a canary.

Prints, for IDLE, for IDLE with the fast poll while a canary is awaited (`prober check`'s
way, [check] fast_poll_s) and for polling, over N canaries sent one after another:
  after_250      our detection - the SMTP 250 (delivery_s; both on our clock)
  after_visible  our detection - INTERNALDATE (the server's "visible" stamp; 1 s resolution,
                 so individual values carry up to 1 s of rounding)
Usage: python bench/detection_lag.py [--count 50] [--poll-s 1.0] [--fast-poll-s 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

# the local test servers live under tests/, which is not installed: run from a clone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from prober.config import load
from prober.probes.canary import CanaryKey
from prober.probes.imap import MailboxWatcher
from prober.probes.plan import context
from prober.probes.roundtrip import CanaryTarget, send_canary
from tests.localstack.mail import MailStack


async def measure(config, count: int) -> tuple[list[float], list[float], set[str]]:
    route = config.routes[0]
    target = CanaryTarget.of(config, route)
    recipient = target.recipient
    stop = asyncio.Event()
    key = CanaryKey(secrets.token_bytes(32), "bench")
    watcher = MailboxWatcher(recipient, config.timeouts, config.canary, config.vantage.name,
                             key=key)
    task = asyncio.create_task(watcher.run(stop))
    await watcher.wait_ready(10)
    after_250, after_visible, modes = [], [], set()
    for i in range(count):
        expected: list[asyncio.Future] = []
        sent = await send_canary(context(config), target, i,
                                 lambda cid, into=expected: into.append(watcher.expect(cid.id)),
                                 key=key)
        (fut,) = expected
        arrival = await asyncio.wait_for(fut, 30)
        after_250.append((arrival.detected_ns - sent.submission.accepted_ns) / 1e9)
        after_visible.append((arrival.detected_ns - arrival.internaldate_ns) / 1e9)
        modes.add(arrival.detect)
        await asyncio.sleep(0.05 + (i % 7) * 0.03)  # spread arrivals over the poll cycle
    stop.set()
    await task
    return after_250, after_visible, modes


def describe(values: list[float]) -> str:
    q = statistics.quantiles(values, n=20)
    return (f"median {statistics.median(values) * 1000:7.1f} ms  p95 {q[18] * 1000:7.1f} ms  "
            f"max {max(values) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--fast-poll-s", type=float, default=0.05)
    args = parser.parse_args()
    with MailStack() as stack, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(stack.env())
        path = Path(tmp) / "probes.toml"
        path.write_text(stack.probes_toml())
        config = load(path)
        print(f"detection lag over {args.count} canaries, local Postfix + Dovecot")
        a, v, modes = asyncio.run(measure(config, args.count))
        print(f"IDLE   after_250:     {describe(a)}   (detected by {', '.join(sorted(modes))})")
        print(f"IDLE   after_visible: {describe(v)}")
        fast = dataclasses.replace(config, canary=dataclasses.replace(
            config.canary, fast_poll_s=args.fast_poll_s))
        a, v, modes = asyncio.run(measure(fast, args.count))
        print(f"IDLE+fast poll {args.fast_poll_s:g}s after_250:     {describe(a)}   "
              f"(detected by {', '.join(sorted(modes))})")
        print(f"IDLE+fast poll {args.fast_poll_s:g}s after_visible: {describe(v)}")
        bob = config.mailboxes["bob"]
        polled = dataclasses.replace(bob, imap=dataclasses.replace(bob.imap, idle=False))
        config = dataclasses.replace(
            config, mailboxes={**config.mailboxes, "bob": polled},
            canary=dataclasses.replace(config.canary, poll_s=args.poll_s))
        a, v, modes = asyncio.run(measure(config, args.count))
        print(f"poll {args.poll_s:g}s after_250:     {describe(a)}   "
              f"(detected by {', '.join(sorted(modes))})")
        print(f"poll {args.poll_s:g}s after_visible: {describe(v)}")


if __name__ == "__main__":
    main()
