"""Read InfluxDB line protocol back into (name, tags, fields, time): for scoring from the spool.

Escapes follow what `Measurement.to_line()` (influxdb-client's Point) writes and InfluxDB
reads: in names, tag keys and values and field keys a backslash escapes a comma, an equals
sign, a space or a backslash; inside a string field it escapes a double quote or a backslash.
"""

from __future__ import annotations

from dataclasses import dataclass

from prober.measurement import FieldValue

_KEY_ESCAPES = {",", "=", " ", "\\"}


class LineProtocolError(ValueError):
    """A line that is not valid line protocol; the message quotes it."""


@dataclass(frozen=True)
class Point:
    name: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


def parse_line(line: str) -> Point:
    text = line.rstrip("\r\n")
    try:
        return _parse(text)
    except (IndexError, ValueError) as exc:
        raise LineProtocolError(f"bad line protocol ({exc}): {text[:200]!r}") from None


def _parse(text: str) -> Point:
    pos = 0
    name, pos, stop = _token(text, pos, {",", " "})
    if not name:
        raise ValueError("no measurement name")
    tags: dict[str, str] = {}
    while stop == ",":
        key, pos, stop = _token(text, pos, {"="})
        if stop != "=":
            raise ValueError(f"tag {key!r} has no value")
        value, pos, stop = _token(text, pos, {",", " "})
        tags[key] = value
    if stop != " ":
        raise ValueError("no fields")
    fields: dict[str, FieldValue] = {}
    while True:
        key, pos, stop = _token(text, pos, {"="})
        if stop != "=" or not key:
            raise ValueError(f"field {key!r} has no value")
        value, pos = _field_value(text, pos)
        fields[key] = value
        if pos >= len(text) or text[pos] == " ":
            break
        if text[pos] != ",":
            raise ValueError(f"unexpected {text[pos]!r} after field {key!r}")
        pos += 1
    rest = text[pos:].strip()
    if not rest:
        raise ValueError("no timestamp (the spool always writes one)")
    return Point(name, tags, fields, int(rest))


def _token(text: str, pos: int, stops: set[str]) -> tuple[str, int, str]:
    """Read up to an unescaped stop character; return (token, position after it, the stop)."""
    out: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\" and pos + 1 < n and text[pos + 1] in _KEY_ESCAPES:
            out.append(text[pos + 1])
            pos += 2
            continue
        if ch in stops:
            return "".join(out), pos + 1, ch
        out.append(ch)
        pos += 1
    return "".join(out), pos, ""


def _field_value(text: str, pos: int) -> tuple[FieldValue, int]:
    if text[pos] == '"':
        out: list[str] = []
        pos += 1
        while True:
            ch = text[pos]
            if ch == "\\" and text[pos + 1] in ('"', "\\"):
                out.append(text[pos + 1])
                pos += 2
            elif ch == '"':
                return "".join(out), pos + 1
            else:
                out.append(ch)
                pos += 1
    end = pos
    while end < len(text) and text[end] not in (",", " "):
        end += 1
    raw = text[pos:end]
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True, end
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False, end
    if raw.endswith(("i", "u")):
        return int(raw[:-1]), end
    return float(raw), end
