"""Authentication-Results verdicts of a canary, and SMTP enhanced status codes."""

from __future__ import annotations

import pytest

from prober.probes.authresults import MAX_FIELD_CHARS, topmost_field, verdicts
from prober.probes.smtp import enhanced_code


def test_topmost_field_wins_and_folding_is_undone() -> None:
    block = (b"Received: from a\r\n by b; Mon, 30 Nov 2026 08:00:00 +0000\r\n"
             b"Authentication-Results: mx.example.test;\r\n spf=pass smtp.mailfrom=a@b;\r\n"
             b"\tdkim=fail header.d=x; dkim=pass header.d=y;\r\n dmarc=none\r\n"
             b"Authentication-Results: upstream.example; spf=fail; dmarc=fail\r\n")
    assert verdicts(block) == {"authserv_id": "mx.example.test", "spf_result": "pass",
                               "dkim_result": "pass", "dmarc_result": "none"}


def test_first_dkim_result_when_none_passed() -> None:
    got = verdicts(b"Authentication-Results: mx; dkim=temperror; dkim=fail\r\n")
    assert got == {"authserv_id": "mx", "dkim_result": "temperror"}


def test_no_field_no_verdicts() -> None:
    assert verdicts(b"Subject: hello\r\n\r\n") == {}


def test_a_field_without_results_gives_only_its_author() -> None:
    assert verdicts(b"authentication-results: mx.example.test; none\n") == {
        "authserv_id": "mx.example.test"}


@pytest.mark.parametrize("value", [b"garbage ;;; = =", b"", b"mx; spf",
                                   b"mx; spf=pass (" + b"(" * 3000])
def test_unparseable_field_is_named_not_guessed(value: bytes) -> None:
    got = verdicts(b"Authentication-Results: " + value + b"\r\n")
    assert set(got) == {"authres_error"}
    assert got["authres_error"]


def test_the_parser_sees_a_bounded_field() -> None:
    huge = b"Authentication-Results: mx; spf=pass" + b"\r\n x" * 100_000 + b"\r\n"
    text = topmost_field(huge)
    assert text is not None and len(text) <= MAX_FIELD_CHARS + 100


@pytest.mark.parametrize(("code", "text", "expected"), [
    (250, "2.0.0 Ok: queued as 4F2C1", "2.0.0"),
    (550, "5.7.1 <x@y>: Relay access denied", "5.7.1"),
    (535, "5.7.8 Error: authentication failed", "5.7.8"),
    (451, "4.3.0 Error: queue file write error", "4.3.0"),
    (250, "Ok: queued as 4F2C1", None),          # no enhanced code sent
    (550, "2.0.0 mismatched class", None),        # class disagrees with the reply code
    (250, "2.0.0.1 too many parts", None),
    (250, "12.0.0 not a class", None),
])
def test_enhanced_code(code: int, text: str, expected: str | None) -> None:
    assert enhanced_code(code, text) == expected
