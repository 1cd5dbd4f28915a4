from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from prober.lineproto import LineProtocolError, format_line, measurement_name, parse_line
from prober.measurement import Measurement


def test_round_trip_of_measurement_lines_with_escapes() -> None:
    m = Measurement("mail_roundtrip", {"vantage": "eu 1", "route": "a,b=c", "sender": "x\\y"},
                    {"outcome": "lost", "error": 'say "no", then \\ and = , done',
                     "delivery_s": 1.5, "hops": 3, "ok": True}, 1_790_000_000_123_456_789)
    p = Measurement.from_line(m.to_line())
    assert p.name == "mail_roundtrip"
    assert p.tags == {"vantage": "eu 1", "route": "a,b=c", "sender": "x\\y"}
    assert p.fields == {"outcome": "lost", "error": 'say "no", then \\ and = , done',
                        "delivery_s": 1.5, "hops": 3, "ok": True}
    assert p.time_ns == 1_790_000_000_123_456_789


def test_measurement_name_with_space_and_no_tags() -> None:
    assert parse_line('my\\ meas f=1i,g="a b" 5\n') == ("my meas", {}, {"f": 1, "g": "a b"}, 5)


def test_a_backslash_before_an_ordinary_character_is_itself() -> None:
    # InfluxDB keeps `\\` and `\x` in keys and tags as written; so must we
    _name, tags, _, _ = parse_line(r"m,t=a\\b,u=c\d f=1 1")
    assert tags == {"t": "a\\\\b", "u": "c\\d"}


@pytest.mark.parametrize("line", ["", "m", "m,t=1", "m f=", "m f=1", 'm f="open 1'])
def test_bad_lines_are_refused_with_the_line_quoted(line: str) -> None:
    with pytest.raises(LineProtocolError, match="bad line protocol"):
        parse_line(line)


def test_none_nan_inf_and_empty_tags_are_left_out() -> None:
    line = format_line("m", {"a": "", "b": "x"}, {"f": None, "g": math.nan, "h": math.inf,
                                                 "i": 2.0}, 7)
    assert line == "m,b=x i=2 7"
    with pytest.raises(ValueError, match="no fields"):
        format_line("m", {}, {"f": None}, 7)


_ALPHABET = "ab ,=\"\\\n\tzé"


def _text(rng: random.Random, empty: bool = True) -> str:
    n = rng.randint(0 if empty else 1, 8)
    return "".join(rng.choice(_ALPHABET) for _ in range(n))


def test_byte_for_byte_what_influxdb_client_wrote() -> None:
    """Spools written by earlier agents (through influxdb-client's Point) read the same, and
    what we write now is what InfluxDB received before."""
    rng = random.Random(20261130)
    for _ in range(3000):
        name = "m" + _text(rng)
        tags = {"k" + _text(rng): _text(rng) for _ in range(rng.randint(0, 3))}
        fields: dict[str, float | int | str | bool] = {}
        for i in range(rng.randint(1, 4)):
            kind = rng.randrange(4)
            key = f"f{i}" + _text(rng)
            if kind == 0:
                fields[key] = rng.choice([0.0, 1.5, -2.25, 1e300, 3.0, 1 / 3, 12345678.9])
            elif kind == 1:
                fields[key] = rng.randint(-(2**40), 2**40)
            elif kind == 2:
                fields[key] = rng.random() < 0.5
            else:
                fields[key] = _text(rng)
        t = rng.randint(0, 2**62)
        point = Point(name)
        for k, v in tags.items():
            point.tag(k, v)
        for k, v in fields.items():
            point.field(k, v)
        point.time(t, WritePrecision.NS)
        assert format_line(name, tags, fields, t) == point.to_line_protocol()


def _clean(text: str) -> str:
    return text.replace("\n", "").replace("\t", "").rstrip("\\")


def test_ours_parses_what_we_write() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        # a trailing backslash in a key or tag is ambiguous in line protocol itself (it would
        # escape the separator after it); our names never end in one
        tags = {_clean("k" + _text(rng, False)): _clean("v" + _text(rng)) for _ in range(2)}
        fields = {"s": _text(rng), "x": rng.random(), "n": rng.randint(-9, 9)}
        line = format_line("m", tags, fields, 5)
        name, got_tags, got_fields, t = parse_line(line)
        assert (name, got_tags, got_fields, t) == ("m", tags, fields, 5), line


def test_the_currency_does_not_import_a_client_library() -> None:
    code = ("import sys, prober.measurement, prober.lineproto, prober.schema, prober.contract;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('influxdb_client', 'httpx', 'httpcore', 'aiosmtplib', 'aioimaplib', 'click')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_measurement_name_unescapes() -> None:
    assert measurement_name("cpu,host=a v=1") == "cpu"
    assert measurement_name(r"a\ b\,c v=1") == "a b,c"
    assert measurement_name("plain") == "plain"
