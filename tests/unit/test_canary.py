"""Canary messages: build, recognise, Received-hop timeline, send/receive delay split."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser

import pytest

from prober.probes.canary import (
    HEADER,
    CanaryId,
    Hop,
    build_message,
    new_canary_id,
    received_hops,
    recognise,
    split_delay,
)
from tests.canary_helpers import TEST_KEY

SENT_AT = datetime(2026, 11, 24, 21, 28, 0, tzinfo=UTC)
CID = CanaryId("probe-1", "corp-to-ext", 1732483680, "0123456789abcdef")


def header_block(msg_bytes: bytes) -> bytes:
    return msg_bytes.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def without_canary_header(block: bytes) -> bytes:
    parsed = BytesHeaderParser().parsebytes(block)
    del parsed[HEADER]
    assert parsed[HEADER] is None
    return parsed.as_bytes()


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000


# --- ids and messages -------------------------------------------------------------------


def test_new_canary_id_is_random_hex() -> None:
    a = new_canary_id("probe-1", "r1", 7, key=TEST_KEY, recipient="b@x.example")
    b = new_canary_id("probe-1", "r1", 7, key=TEST_KEY, recipient="b@x.example")
    assert (a.vantage, a.route, a.seq) == ("probe-1", "r1", 7)
    assert re.fullmatch(r"[0-9a-f]{16}", a.id)
    assert a.id != b.id
    assert a.mac is not None and re.fullmatch(r"[0-9a-f]{20}", a.mac)
    assert a.stamp is not None and abs(a.stamp - time.time()) < 5


def test_token_and_subject_format() -> None:
    assert CID.token == "v=probe-1; r=corp-to-ext; s=1732483680; id=0123456789abcdef"
    assert CID.subject == "[prober] canary probe-1/corp-to-ext #1732483680 0123456789abcdef"


def test_build_message_headers_and_body() -> None:
    msg = build_message(CID, "probe@corp.example", "probe@ext.example.org", SENT_AT,
                        {"X-Extra": "yes"})
    assert msg["From"] == "probe@corp.example"
    assert msg["To"] == "probe@ext.example.org"
    assert msg["Subject"] == CID.subject
    assert msg[HEADER] == CID.token
    assert msg["Message-ID"] == "<prober.0123456789abcdef.1732483680@corp.example>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Extra"] == "yes"
    assert msg["Date"] == "Tue, 24 Nov 2026 21:28:00 +0000"
    assert CID.token in msg.get_content()
    raw = msg.as_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP line endings


# --- recognise --------------------------------------------------------------------------


def test_recognise_by_header() -> None:
    raw = build_message(CID, "a@corp.example", "b@ext.example.org", SENT_AT).as_bytes()
    assert recognise(header_block(raw)) == CID
    assert recognise(raw) == CID  # whole message works as well
    assert recognise(header_block(raw).decode()) == CID  # str input


def test_recognise_by_subject_when_header_stripped() -> None:
    raw = build_message(CID, "a@corp.example", "b@ext.example.org", SENT_AT).as_bytes()
    stripped = without_canary_header(header_block(raw))
    assert HEADER.encode() not in stripped
    assert recognise(stripped) == CID


def test_recognise_subject_with_gateway_prefix() -> None:
    block = f"Subject: [SPAM?] Re: {CID.subject}\r\n\r\n"
    assert recognise(block) == CID


def test_recognise_folded_header() -> None:
    block = (b"Subject: hello\r\n"
             b"X-Prober-Canary: v=probe-1; r=corp-to-ext;\r\n"
             b"\ts=1732483680;\r\n id=0123456789abcdef\r\n\r\n")
    assert recognise(block) == CID


def test_recognise_folded_subject() -> None:
    block = (b"Subject: [prober] canary probe-1/corp-to-ext\r\n"
             b" #1732483680 0123456789abcdef\r\n\r\n")
    assert recognise(block) == CID


def test_header_wins_over_subject() -> None:
    other = CanaryId("probe-2", "x", 1, "fedcba9876543210")
    block = f"Subject: {other.subject}\r\n{HEADER}: {CID.token}\r\n\r\n"
    assert recognise(block) == CID


def test_malformed_header_falls_back_to_subject() -> None:
    block = f"Subject: {CID.subject}\r\n{HEADER}: garbage\r\n\r\n"
    assert recognise(block) == CID


@pytest.mark.parametrize("block", [
    b"Subject: Lunch?\r\nFrom: a@b.c\r\n\r\n",
    b"Subject: [prober] canary probe-1/r #12 notahexid0000000\r\n\r\n",
    b"Subject: [prober] canary probe-1/r #12 0123456789abcde\r\n\r\n",  # 15 hex digits
    f"{HEADER}: v=a; r=b; s=x; id=0123456789abcdef\r\n\r\n".encode(),
    b"",
])
def test_non_canary_is_none(block: bytes) -> None:
    assert recognise(block) is None


@pytest.mark.parametrize("length", [20, 40, 64])
def test_long_names_recognised_by_subject_when_header_stripped(length: int) -> None:
    # Vantage and route names may be up to 64 characters (config/mail.py _NAME). The
    # Subject must still carry a recognisable token when a gateway strips X- headers.
    cid = CanaryId("v" * length, "r" * length, 1732483680, "0123456789abcdef")
    raw = build_message(cid, "a@corp.example", "b@ext.example.org", SENT_AT).as_bytes()
    assert recognise(header_block(raw)) == cid
    assert recognise(without_canary_header(header_block(raw))) == cid


# --- Received hops ----------------------------------------------------------------------

RECEIVED = (
    # newest first, as MTAs prepend
    b"Received: from mx1.provider.net (mx1.provider.net [192.0.2.10])\r\n"
    b"\tby mx.ext.example.org (Postfix) with ESMTPS id 4Abc\r\n"
    b"\tfor <probe@ext.example.org>; Tue, 24 Nov 2026 21:28:09 +0000 (UTC)\r\n"
    b"Received: from submit.provider.net (submit.provider.net [192.0.2.5])\r\n"
    b"\tby MX1.Provider.NET (Postfix) with ESMTP id 3Xyz;\r\n"
    b"\tTue, 24 Nov 2026 22:28:05 +0100\r\n"
    b"Received: from [198.51.100.7] (probe-host [198.51.100.7])\r\n"
    b"\tby submit.provider.net (Postfix) with ESMTPSA id 2Def;\r\n"
    b"\tTue, 24 Nov 2026 21:28:01 +0000\r\n"
    b"Subject: x\r\n\r\n"
)


def test_received_hops_oldest_first_with_dates_and_hosts() -> None:
    hops = received_hops(RECEIVED)
    assert [h.by for h in hops] == ["submit.provider.net", "mx1.provider.net",
                                    "mx.ext.example.org"]
    assert [h.received_from for h in hops] == ["[198.51.100.7]", "submit.provider.net",
                                               "mx1.provider.net"]
    assert [h.at for h in hops] == [
        datetime(2026, 11, 24, 21, 28, 1, tzinfo=UTC),
        datetime(2026, 11, 24, 21, 28, 5, tzinfo=UTC),
        datetime(2026, 11, 24, 21, 28, 9, tzinfo=UTC),
    ]
    assert all(h.at is not None and h.at.utcoffset() is not None for h in hops)


def test_received_hops_str_input_and_none() -> None:
    assert received_hops(RECEIVED.decode()) == received_hops(RECEIVED)
    assert received_hops(b"Subject: x\r\n\r\n") == []


def test_received_hop_without_date_or_by() -> None:
    block = (b"Received: (qmail 1234 invoked by uid 89)\r\n"
             b"Received: from a.example by b.example; not a date\r\n\r\n")
    hops = received_hops(block)
    assert hops[0] == Hop(by="b.example", received_from="a.example", at=None)
    # "invoked by uid 89": the word after "by" is read as the host; no stamp at all
    assert hops[1].at is None and hops[1].received_from is None


@pytest.fixture
def shanghai_tz() -> Iterator[None]:
    """A non-UTC local zone, so naive datetimes show up as wrong timestamps."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_received_minus_zero_zone_is_utc(shanghai_tz: None) -> None:
    # RFC 5322 3.3: "-0000" is UTC with the sender's zone unknown; qmail stamps its
    # Received headers that way. A naive datetime would be read as local time.
    block = (b"Received: from a.example by mx.ext.example.org; "
             b"24 Nov 2026 21:28:09 -0000\r\n\r\n")
    (hop,) = received_hops(block)
    assert hop.at is not None
    assert hop.at.timestamp() == datetime(2026, 11, 24, 21, 28, 9, tzinfo=UTC).timestamp()
    split = split_delay([hop], ns(datetime(2026, 11, 24, 21, 28, 4, tzinfo=UTC)), None,
                        "outbound", ("corp.example",))
    assert split.send_delay_s == 5.0
    assert split.clock_skew is False


# --- delay split ------------------------------------------------------------------------

PROVIDER = ("provider.net",)
ACCEPTED = ns(datetime(2026, 11, 24, 21, 28, 1, tzinfo=UTC))


def hop(by: str | None, second: int | None) -> Hop:
    at = None if second is None else datetime(2026, 11, 24, 21, 28, tzinfo=UTC) + timedelta(
        seconds=second)
    return Hop(by, None, at)


def test_outbound_send_delay_to_first_hop_outside_provider() -> None:
    hops = received_hops(RECEIVED)
    split = split_delay(hops, ACCEPTED, None, "outbound", PROVIDER)
    assert split.send_delay_s == 8.0  # 21:28:09 at mx.ext.example.org - 21:28:01 accepted
    assert split.receive_delay_s is None
    assert split.clock_skew is False


def test_outbound_subdomain_is_inside_but_lookalike_is_not() -> None:
    hops = [hop("a.provider.net", 2), hop("evilprovider.net", 4), hop("mx.dest.org", 6)]
    split = split_delay(hops, ACCEPTED, None, "outbound", PROVIDER)
    assert split.send_delay_s == 3.0  # evilprovider.net is outside provider.net


def test_outbound_without_outside_hop_has_no_send_delay() -> None:
    hops = [hop("submit.provider.net", 2), hop("mx.provider.net", 3)]
    assert split_delay(hops, ACCEPTED, None, "outbound", PROVIDER).send_delay_s is None


def test_inbound_receive_delay_from_first_provider_hop_to_internaldate() -> None:
    hops = [hop("mx.sender.org", 2), hop("mx1.provider.net", 5), hop("store.provider.net", 7)]
    internal = ns(datetime(2026, 11, 24, 21, 28, 12, tzinfo=UTC))
    split = split_delay(hops, ACCEPTED, internal, "inbound", PROVIDER)
    assert split.receive_delay_s == 7.0  # 21:28:12 - 21:28:05
    assert split.send_delay_s is None
    assert split.clock_skew is False


def test_inbound_without_internaldate_has_no_receive_delay() -> None:
    hops = [hop("mx1.provider.net", 5)]
    assert split_delay(hops, ACCEPTED, None, "inbound", PROVIDER).receive_delay_s is None


def test_internal_splits_neither() -> None:
    hops = [hop("submit.provider.net", 2), hop("mx.other.org", 3)]
    internal = ns(datetime(2026, 11, 24, 21, 28, 9, tzinfo=UTC))
    split = split_delay(hops, ACCEPTED, internal, "internal", PROVIDER)
    assert (split.send_delay_s, split.receive_delay_s, split.clock_skew) == (None, None, False)


def test_negative_send_delay_kept_and_flagged() -> None:
    # the destination's clock is 3 s behind ours
    hops = [hop("mx.dest.org", -2)]
    split = split_delay(hops, ACCEPTED, None, "outbound", PROVIDER)
    assert split.send_delay_s == -3.0
    assert split.clock_skew is True


def test_negative_receive_delay_kept_and_flagged() -> None:
    hops = [hop("mx1.provider.net", 10)]
    internal = ns(datetime(2026, 11, 24, 21, 28, 8, tzinfo=UTC))
    split = split_delay(hops, ACCEPTED, internal, "inbound", PROVIDER)
    assert split.receive_delay_s == -2.0
    assert split.clock_skew is True


def test_backwards_step_between_hops_flags_skew_even_with_positive_delay() -> None:
    hops = [hop("submit.provider.net", 6), hop("mx.provider.net", 4), hop("mx.dest.org", 9)]
    split = split_delay(hops, ACCEPTED, None, "outbound", PROVIDER)
    assert split.send_delay_s == 8.0
    assert split.clock_skew is True


def test_internaldate_before_last_hop_flags_skew() -> None:
    hops = [hop("mx1.provider.net", 5)]
    internal = ns(datetime(2026, 11, 24, 21, 28, 4, tzinfo=UTC))
    split = split_delay(hops, ACCEPTED, internal, "internal", PROVIDER)
    assert split.clock_skew is True


def test_hops_without_dates_are_ignored() -> None:
    hops = [hop("mx.dest.org", None), hop("mx2.dest.org", 5)]
    split = split_delay(hops, ACCEPTED, None, "outbound", PROVIDER)
    assert split.send_delay_s == 4.0
    assert split.clock_skew is False


HOSTILE_64K = {
    "token v=v=": b"X-Prober-Canary: " + b"v=" * 32768,
    "subject of words": b"Subject: " + b"a " * 32768,
    "subject of markers": b"Subject: " + b"[prober] canary " * 4096,
    "received by by": b"Received: " + b"by " * 21845,
    "received folded": b"Received: " + b"a\r\n " * 16384,
}


@pytest.mark.parametrize("name", list(HOSTILE_64K))
def test_a_64k_header_costs_milliseconds_not_seconds(name: str) -> None:
    """A 64 KB header blocked the event loop for 44 s (a quadratic pattern)."""
    block = HOSTILE_64K[name] + b"\r\n\r\n"
    start = time.process_time()
    for _ in range(5):
        assert recognise(block) is None
        received_hops(block)
    assert time.process_time() - start < 0.5


def test_a_canary_behind_64k_of_received_is_still_recognised() -> None:
    cid = CanaryId("v1", "r1", 7, "0123456789abcdef")
    for name in ("received by by", "received folded"):
        block = HOSTILE_64K[name] + f"\r\n{HEADER}: {cid.token}\r\n\r\n".encode()
        assert recognise(block) == cid
