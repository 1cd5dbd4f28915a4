from __future__ import annotations

import pytest

from prober.measurement import Measurement
from prober.sla.lineproto import LineProtocolError, parse_line


def test_round_trip_of_measurement_lines_with_escapes() -> None:
    m = Measurement("mail_roundtrip", {"vantage": "eu 1", "route": "a,b=c", "sender": "x\\y"},
                    {"outcome": "lost", "error": 'say "no", then \\ and = , done',
                     "delivery_s": 1.5, "hops": 3, "ok": True}, 1_790_000_000_123_456_789)
    p = parse_line(m.to_line())
    assert p.name == "mail_roundtrip"
    assert p.tags == {"vantage": "eu 1", "route": "a,b=c", "sender": "x\\y"}
    assert p.fields == {"outcome": "lost", "error": 'say "no", then \\ and = , done',
                        "delivery_s": 1.5, "hops": 3, "ok": True}
    assert p.time_ns == 1_790_000_000_123_456_789


def test_measurement_name_with_space_and_no_tags() -> None:
    p = parse_line('my\\ meas f=1i,g="a b" 5\n')
    assert (p.name, p.tags, p.fields, p.time_ns) == ("my meas", {}, {"f": 1, "g": "a b"}, 5)


@pytest.mark.parametrize("line", ["", "m", "m,t=1", "m f=", "m f=1", 'm f="open 1'])
def test_bad_lines_are_refused_with_the_line_quoted(line: str) -> None:
    with pytest.raises(LineProtocolError, match="bad line protocol"):
        parse_line(line)
