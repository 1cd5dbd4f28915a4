"""§4/§5 on the local stack: GTUBE and EICAR canaries through a real Postfix whose
submissions pass a before-queue content filter (the provider's filter stand-in), into a
real Dovecot. Each expected outcome is recognised, each unexpected one reported."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from prober.config import parse
from prober.config.filters import FilterProbe
from prober.contract import Contract
from prober.probes import mailfilter as filter_probe
from prober.probes.base import ProbeContext
from prober.probes.canary import CanaryKey
from tests.localstack.filter import ContentFilter, Policy
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration
KEY = CanaryKey(b"k" * 32, "test")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[MailStack, ContentFilter]]:
    with MailStack(content_filter=True) as st, \
            ContentFilter(st.reinject_port, port=st.filter_port) as f:
        yield st, f


def run(st: MailStack, kind: str, expect: str, variants: tuple[str, ...] = ("gtube",),
        wait_s: float = 8.0, key: CanaryKey = KEY) -> dict[str, dict]:
    import os

    os.environ.update(st.env())
    cfg = parse(__import__("tomllib").loads(st.probes_toml()), "probes.toml")
    ctx = ProbeContext(cfg.vantage.name, cfg.timeouts, Contract())
    target = filter_probe.FilterTarget(
        FilterProbe("f1", kind, "alice", "bob", expect, variants, wait_s=wait_s),
        cfg.mailboxes["alice"], cfg.mailboxes["bob"], key)
    points = asyncio.run(filter_probe.probe(ctx, target))
    assert all(p.name == "mail_filter" for p in points)
    return {p.tags["variant"]: {**p.fields, **p.tags} for p in points}


def test_spam_outcomes_expected_and_not(stack: tuple[MailStack, ContentFilter]) -> None:
    st, f = stack
    f.policy = Policy(spam="junk")
    got = run(st, "spam", "junk")["gtube"]
    assert (got["outcome"], got["as_expected"], got["folder"]) == ("junk", True, "Junk")
    assert 0 <= got["delay_s"] < 8
    # GTUBE delivered to the inbox when junk was expected: reported, not passed
    f.policy = Policy(spam="pass")
    got = run(st, "spam", "junk")["gtube"]
    assert (got["outcome"], got["as_expected"], got["folder"]) == ("inbox", False, "INBOX")
    f.policy = Policy(spam="reject")
    got = run(st, "spam", "reject")["gtube"]
    assert (got["outcome"], got["as_expected"], got["smtp_code"]) == ("rejected", True, 550)
    f.policy = Policy(spam="tag")
    got = run(st, "spam", "tagged")["gtube"]
    assert (got["outcome"], got["as_expected"]) == ("tagged", True)
    f.policy = Policy(spam="quarantine")
    got = run(st, "spam", "quarantine", wait_s=3)["gtube"]
    assert (got["outcome"], got["as_expected"]) == ("quarantined", True)
    assert got.get("delay_s") is None


def test_virus_strip_expected_and_an_exe_delivered_intact(
        stack: tuple[MailStack, ContentFilter]) -> None:
    st, f = stack
    f.policy = Policy(virus="strip", infected_delay_s=1.5)
    got = run(st, "virus", "strip", ("doc", "xls", "exe", "dll", "zip", "html"))
    assert set(got) == {"doc", "xls", "exe", "dll", "zip", "html"}
    for variant, fields in got.items():
        assert (fields["outcome"], fields["as_expected"]) == ("stripped", True), variant
        # the infected copy waited 1.5 s in the scanner, the clean twin did not
        assert 1.0 < fields["extra_delay_s"] < 4.0, (variant, fields)
    f.policy = Policy(virus="pass")
    got = run(st, "virus", "strip", ("exe",))["exe"]
    assert (got["outcome"], got["as_expected"]) == ("delivered", False)
    f.policy = Policy(virus="reject")
    got = run(st, "virus", "reject", ("zip",))["zip"]
    assert (got["outcome"], got["as_expected"], got["smtp_code"]) == ("rejected", True, 554)


def test_the_probe_removes_its_own_test_message_and_nothing_else(
        stack: tuple[MailStack, ContentFilter]) -> None:
    st, f = stack
    f.policy = Policy(spam="pass")
    stranger = (b"From: someone@else.test\r\nTo: bob@example.test\r\n"
                b"Subject: [prober] filter test GTUBE .gtube 0123456789abcdef mac=00\r\n"
                b"X-Prober-Filter: v=local; f=f1; k=gtube; c=0; id=0123456789abcdef; "
                b"t=1; mac=0000000000\r\n\r\nnot ours\r\n")
    st.deliver_local("bob", stranger)
    got = run(st, "spam", "junk")["gtube"]
    assert got["outcome"] == "inbox"
    maildir = st.maildir("bob")
    left = [p.read_bytes() for d in ("new", "cur") for p in (maildir / d).iterdir()]
    assert sum(b"not ours" in b for b in left) == 1  # (Dovecot moves it new/ -> cur/)
    assert not any(got["canary"].encode() in b for b in left)
    assert sum(b"X-Prober-Filter" in b for b in left) == 1
