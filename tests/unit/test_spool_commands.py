"""Time arguments of `prober spool export`."""

from __future__ import annotations

import pytest

from prober.commands.spool import parse_when


def test_parse_when() -> None:
    now = 10_000 * 1_000_000_000
    assert parse_when("90s", now) == now - 90 * 1_000_000_000
    assert parse_when("2h", now) == now - 7200 * 1_000_000_000
    assert parse_when("1.5d", now) == now - 129600 * 1_000_000_000
    assert parse_when("1970-01-01T00:00:10Z") == 10 * 1_000_000_000
    assert parse_when("1970-01-01T01:00:00+01:00") == 0
    assert parse_when("1970-01-02") == 86400 * 1_000_000_000


@pytest.mark.parametrize("text", ["yesterday", "5 parsecs", ""])
def test_parse_when_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(Exception, match="neither a duration"):
        parse_when(text)
