"""§4 evidence besides the spam canary: the DNS blocklist check against a DNSBL zone served
on loopback, and the abuse@ RCPT check against the local Postfix's port-25 listener."""

from __future__ import annotations

import asyncio

import pytest

from prober.config.filters import AbuseCheck, Blocklist
from prober.config.mail import Timeouts
from prober.contract import Contract
from prober.probes import abuse, blocklist
from prober.probes.base import ProbeContext
from tests.localstack.dnsbl import Dnsbl
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration

CTX = ProbeContext("v1", Timeouts(connect_s=2, command_s=2), Contract())


def test_a_listed_ip_is_found_and_the_rest_are_not() -> None:
    with Dnsbl("bl.test", listed=["127.0.0.2", "spammy.example"],
               refused=["127.0.0.9"]) as zone:
        bl = Blocklist(zones=("bl.test",),
                       subjects=("127.0.0.2", "127.0.0.3", "spammy.example", "clean.example",
                                 "127.0.0.9"),
                       nameserver=f"127.0.0.1:{zone.port}")
        points = asyncio.run(blocklist.probe(CTX, bl))
    by_subject = {p.tags["subject"]: p for p in points}
    assert [p.name for p in points] == ["mail_blocklist"] * 5
    assert by_subject["127.0.0.2"].fields["listed"] is True
    assert by_subject["127.0.0.2"].fields["answer"] == "127.0.0.2"
    assert by_subject["spammy.example"].fields["listed"] is True
    assert by_subject["127.0.0.3"].fields["listed"] is False
    assert by_subject["clean.example"].fields["listed"] is False
    # the zone's own "refused" code is never read as a listing
    refused = by_subject["127.0.0.9"].fields
    assert "listed" not in refused and "refused" in str(refused["error"])
    assert all(p.tags["zone"] == "bl.test" and p.tags["vantage"] == "v1" for p in points)


def test_a_dead_nameserver_is_a_named_timeout_not_a_verdict() -> None:
    bl = Blocklist(("bl.test",), ("127.0.0.2",), nameserver="127.0.0.1:9")
    (point,) = asyncio.run(blocklist.probe(
        ProbeContext("v1", Timeouts(connect_s=1, command_s=1), Contract()), bl))
    assert "listed" not in point.fields
    assert point.fields["error_class"] in ("timeout", "dns")


def test_blocklist_query_names() -> None:
    assert blocklist.query_name("192.0.2.7", "zen.example") == "7.2.0.192.zen.example."
    assert blocklist.query_name("mail.example.com", "dbl.example.") == \
        "mail.example.com.dbl.example."
    assert blocklist.query_name("2001:db8::1", "bl.example").endswith(
        ".8.b.d.0.1.0.0.2.bl.example.")


def test_abuse_address_accepted_and_refused() -> None:
    with MailStack() as stack:
        ok = asyncio.run(abuse.probe(CTX, AbuseCheck(
            f"abuse@{stack.domain}", stack.host, stack.smtp_port, sender="probe@outside.test")))
        # an address the server refuses at RCPT: a fail, with the server's words
        bad = asyncio.run(abuse.probe(CTX, AbuseCheck(
            stack.refused_address, stack.host, stack.smtp_port, sender="probe@outside.test")))
    (p,) = ok
    assert p.tags["outcome"] == "ok" and p.fields["smtp_code"] == 250
    (q,) = bad
    assert q.tags["outcome"] == "fail"
    assert q.fields["smtp_code"] == 554 and q.fields["error"].startswith("rcpt: protocol: 554")
