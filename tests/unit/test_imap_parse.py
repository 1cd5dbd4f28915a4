"""parse_fetch over aioimaplib's FETCH response lines (literals arrive as bytearray)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from prober.probes.imap_session import Fetched, _internaldate_ns, parse_fetch

HEADERS_1 = b"Subject: one\r\nX-Prober-Canary: v=a; r=b; s=1; id=0123456789abcdef\r\n\r\n"
HEADERS_2 = b"Subject: two\r\n\r\n"


def utc_ns(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 10**9


def test_single_message() -> None:
    lines = [
        b'1 FETCH (UID 7 INTERNALDATE "24-Nov-2026 21:28:08 +0000" FLAGS (\\Seen) '
        b"BODY[HEADER.FIELDS (SUBJECT)] {20}",
        bytearray(b"Subject: x\r\n\r\n"),
        b")",
        b"Fetch completed.",
    ]
    assert parse_fetch(lines) == [Fetched(
        uid=7,
        internaldate_ns=utc_ns(2026, 11, 24, 21, 28, 8),
        flags=("\\Seen",),
        headers=b"Subject: x\r\n\r\n",
    )]


def test_headers_come_back_as_bytes_not_bytearray() -> None:
    lines = [b"1 FETCH (UID 7 BODY[HEADER] {15}", bytearray(b"Subject: x\r\n\r\n"), b")"]
    (f,) = parse_fetch(lines)
    assert type(f.headers) is bytes


def test_several_messages_keep_their_own_headers_and_dates() -> None:
    lines = [
        b'3 FETCH (UID 11 FLAGS () INTERNALDATE "24-Nov-2026 21:28:08 +0000" '
        b"BODY[HEADER.FIELDS (SUBJECT X-PROBER-CANARY)] {68}",
        bytearray(HEADERS_1),
        b")",
        b'4 FETCH (UID 12 FLAGS (\\Seen \\Flagged $Junk) INTERNALDATE '
        b'"25-Nov-2026 01:02:03 +0100" BODY[HEADER.FIELDS (SUBJECT X-PROBER-CANARY)] {16}',
        bytearray(HEADERS_2),
        b")",
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    a, b = parse_fetch(lines)
    assert (a.uid, a.headers, a.flags) == (11, HEADERS_1, ())
    assert (b.uid, b.headers, b.flags) == (12, HEADERS_2, ("\\Seen", "\\Flagged", "$Junk"))
    assert a.internaldate_ns == utc_ns(2026, 11, 24, 21, 28, 8)
    assert b.internaldate_ns == utc_ns(2026, 11, 25, 0, 2, 3)


def test_uid_after_the_literal() -> None:
    lines = [
        b'1 FETCH (INTERNALDATE "24-Nov-2026 21:28:08 +0000" '
        b"BODY[HEADER.FIELDS (SUBJECT)] {16}",
        bytearray(HEADERS_2),
        b" UID 9)",
        b'2 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {68}',
        bytearray(HEADERS_1),
        b" UID 10 INTERNALDATE \"24-Nov-2026 21:28:09 +0000\")",
        b"Fetch completed.",
    ]
    a, b = parse_fetch(lines)
    assert (a.uid, a.headers, a.internaldate_ns) == (
        9, HEADERS_2, utc_ns(2026, 11, 24, 21, 28, 8))
    assert (b.uid, b.headers, b.flags, b.internaldate_ns) == (
        10, HEADERS_1, ("\\Seen",), utc_ns(2026, 11, 24, 21, 28, 9))


def test_missing_internaldate_is_none() -> None:
    lines = [b"1 FETCH (UID 5 FLAGS (\\Recent) BODY[HEADER] {16}", bytearray(HEADERS_2), b")"]
    (f,) = parse_fetch(lines)
    assert f.internaldate_ns is None
    assert f.flags == ("\\Recent",)


def test_unparseable_internaldate_is_none() -> None:
    lines = [b'1 FETCH (UID 5 INTERNALDATE "yesterday" BODY[HEADER] {16}',
             bytearray(HEADERS_2), b")"]
    assert parse_fetch(lines)[0].internaldate_ns is None


def test_day_with_leading_space() -> None:
    lines = [b'1 FETCH (UID 3 INTERNALDATE " 4-Nov-2026 09:05:07 -0500" BODY[HEADER] {16}',
             bytearray(HEADERS_2), b")"]
    (f,) = parse_fetch(lines)
    assert f.internaldate_ns == utc_ns(2026, 11, 4, 14, 5, 7)


def test_message_without_uid_is_skipped() -> None:
    lines = [
        b"1 FETCH (FLAGS (\\Seen))",  # an unsolicited flag update
        b'2 FETCH (UID 8 INTERNALDATE "24-Nov-2026 21:28:08 +0000" BODY[HEADER] {16}',
        bytearray(HEADERS_2),
        b")",
    ]
    assert [f.uid for f in parse_fetch(lines)] == [8]


def test_message_without_literal_has_empty_headers() -> None:
    (f,) = parse_fetch([b"1 FETCH (UID 4 FLAGS ())", b"Fetch completed."])
    assert (f.uid, f.headers, f.flags, f.internaldate_ns) == (4, b"", (), None)


def test_lines_before_first_fetch_and_empty_input_are_ignored() -> None:
    assert parse_fetch([]) == []
    assert parse_fetch([bytearray(b"Subject: x\r\n\r\n"), b"Fetch completed."]) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("24-Nov-2026 21:28:08 +0000", datetime(2026, 11, 24, 21, 28, 8, tzinfo=UTC)),
    (" 4-Nov-2026 21:28:08 +0000", datetime(2026, 11, 4, 21, 28, 8, tzinfo=UTC)),
    ("04-Nov-2026 21:28:08 +0000", datetime(2026, 11, 4, 21, 28, 8, tzinfo=UTC)),
    ("01-Jan-2027 00:30:00 +0800",
     datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=8)))),
    ("29-Feb-2028 23:59:59 -0930",
     datetime(2028, 2, 29, 23, 59, 59, tzinfo=timezone(-timedelta(hours=9, minutes=30)))),
])
def test_internaldate_ns_matches_datetime(text: str, expected: datetime) -> None:
    got = _internaldate_ns(text)
    assert got == int(expected.timestamp()) * 1_000_000_000
    assert datetime.fromtimestamp(got / 1e9, UTC) == expected.astimezone(UTC)


@pytest.mark.parametrize("text", ["", "24-Nov-2026 21:28:08", "31-Feb-2026 00:00:00 +0000",
                                  "2026-11-24T21:28:08Z"])
def test_internaldate_ns_rejects_bad_text(text: str) -> None:
    assert _internaldate_ns(text) is None
