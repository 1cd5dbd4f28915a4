"""Send and receive delay told apart, end to end, between two providers on loopback.

Two stacks are two providers: example.test (the provider under contract: alice) and
other.test (the far end: dave), each relaying the other's domain to it over SMTP. A canary
is held a known time at each provider (Postfix HOLD, then release), so the truth is known:
the provider's own hold must show in its send delay (outbound) or its receive delay
(inbound), and the other provider's hold must not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.config import Config, load
from prober.probes.imap import MailboxWatcher
from prober.probes.plan import context
from prober.probes.roundtrip import CanaryTarget, fate, roundtrip_point, send_canary
from tests.canary_helpers import TEST_KEY
from tests.localstack.mail import HOLD_HEADER, MailStack, User

pytestmark = pytest.mark.integration
PROVIDER_HOLD_S = 4.0  # at example.test, the provider under contract
OTHER_HOLD_S = 3.0  # at other.test


@pytest.fixture(scope="module")
def two_providers() -> Iterator[tuple[MailStack, MailStack]]:
    ours = MailStack(users=[User("alice", "alice-secret-1")])
    theirs = MailStack(domain="other.test", users=[User("dave", "dave-secret-4")])
    ours.relay = {"other.test": theirs.smtp_port}
    theirs.relay = {"example.test": ours.smtp_port}
    with theirs, ours:
        os.environ.update({**ours.env(), **theirs.env()})
        yield ours, theirs


def _config(ours: MailStack, theirs: MailStack, tmp: Path) -> Config:
    hold = f'headers = {{ "{HOLD_HEADER}" = "yes" }}\n'
    text = (f'[vantage]\nname = "split"\nstate_dir = "{tmp / "state"}"\n'
            + ours.mailbox_toml("alice") + theirs.mailbox_toml("dave")
            + '[[route]]\nname = "out"\nfrom = "alice"\nto = "dave"\ndirection = "outbound"\n'
            + hold
            + '[[route]]\nname = "in"\nfrom = "dave"\nto = "alice"\ndirection = "inbound"\n'
            + hold)
    (tmp / "probes.toml").write_text(text)
    return load(tmp / "probes.toml")


async def _through(config: Config, route_name: str,
                   holds: list[tuple[MailStack, float]]) -> dict:
    """One canary on the route, held at each stack in turn for the given time."""
    route = next(r for r in config.routes if r.name == route_name)
    recipient = config.mailboxes[route.recipient]
    stop = asyncio.Event()
    watcher = MailboxWatcher(recipient, config.timeouts, config.canary, "split", key=TEST_KEY)
    task = asyncio.create_task(watcher.run(stop))
    try:
        assert await watcher.wait_ready(10) and watcher.up, watcher.last_error
        expected: list[asyncio.Future] = []
        ctx = dataclasses.replace(context(config), vantage="split")
        sent = await send_canary(ctx, CanaryTarget.of(config, route), 1,
                                 lambda cid: expected.append(watcher.expect(cid.id)),
                                 key=TEST_KEY)
        (arrived,) = expected
        assert sent.submission.ok, sent.submission.error
        for stack, seconds in holds:
            (queue_id,) = await asyncio.to_thread(stack.wait_held, 1, 15)
            await asyncio.sleep(seconds)
            await asyncio.to_thread(stack.release, queue_id)
        arrival = await asyncio.wait_for(arrived, 20)
        point = roundtrip_point("split", sent, fate(sent, arrival, 3600), arrival)
        return dict(point.fields)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def test_outbound_send_delay_is_the_providers_hold_only(two_providers, tmp_path: Path):
    ours, theirs = two_providers
    config = _config(ours, theirs, tmp_path)
    assert config.routes[0].provider_domains == ("example.test",)
    f = asyncio.run(_through(config, "out", [(ours, PROVIDER_HOLD_S), (theirs, OTHER_HOLD_S)]))
    assert f["outcome"] == "delivered"
    assert f["hops"] == 3  # our submission, their MX, their LMTP
    # Received stamps have whole seconds: +-1 s around the known hold
    assert PROVIDER_HOLD_S - 1 <= f["send_delay_s"] <= PROVIDER_HOLD_S + 1.5, f
    assert f["receive_delay_s"] is None
    assert f["delivery_s"] >= PROVIDER_HOLD_S + OTHER_HOLD_S
    assert f["clock_skew"] is False


def test_inbound_receive_delay_is_the_providers_hold_only(two_providers, tmp_path: Path):
    ours, theirs = two_providers
    config = _config(ours, theirs, tmp_path)
    assert config.routes[1].provider_domains == ("example.test",)
    f = asyncio.run(_through(config, "in", [(theirs, OTHER_HOLD_S), (ours, PROVIDER_HOLD_S)]))
    assert f["outcome"] == "delivered"
    assert f["hops"] == 3  # their submission, our MX, our LMTP
    assert PROVIDER_HOLD_S - 1 <= f["receive_delay_s"] <= PROVIDER_HOLD_S + 1.5, f
    assert f["send_delay_s"] is None
    assert f["delivery_s"] >= PROVIDER_HOLD_S + OTHER_HOLD_S
