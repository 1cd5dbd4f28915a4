"""Our line protocol against InfluxDB 1.6.7's own parser: what it stores from our lines is
what `parse_line` reads from them (the spool scorer and InfluxDB must see the same points)."""

from __future__ import annotations

import random

import httpx
import pytest

from prober.lineproto import format_line, parse_line
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration

# A backslash in a tag is not safe in line protocol at all: InfluxDB's scanner pairs `\\`
# before an escaped separator, then keeps both characters. Names with one are refused by
# the config; string fields escape it properly and get it here.
_TAG_ALPHABET = 'ab ,="zé'
_STRING_ALPHABET = 'ab ,="\\zé'


def _text(rng: random.Random, alphabet: str = _TAG_ALPHABET) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))


def test_influxdb_stores_what_we_parse(influxdb1: InfluxDB1, influx_db: str) -> None:
    rng = random.Random(11)
    lines = []
    for i in range(200):
        tags = {"route": "r" + _text(rng), "vantage": "v" + _text(rng)}
        fields = {"s": _text(rng, _STRING_ALPHABET), "x": rng.random() * 1000,
                  "n": rng.randint(-2**40, 2**40),
                  "b": rng.random() < 0.5, "seq": i}
        lines.append(format_line("lp_check", tags, fields, 1_795_000_000_000_000_000 + i))
    r = httpx.post(f"{influxdb1.url}/write", params={"db": influx_db, "precision": "ns"},
                   content="\n".join(lines).encode())
    assert r.status_code == 204, r.text
    rows = {row["seq"]: row for row in
            influxdb1.rows('SELECT * FROM "lp_check" GROUP BY *', db=influx_db)}
    assert len(rows) == 200
    for line in lines:
        _name, tags, fields, time_ns = parse_line(line)
        row = rows[fields["seq"]]
        assert row["time"] == time_ns
        for key, value in tags.items():
            assert row[key] == value, line
        for key, value in fields.items():
            assert (float(row[key]) == value) if isinstance(value, float) else \
                (row[key] == value), (key, line)
