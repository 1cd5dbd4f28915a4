"""InfluxDB line protocol, written and read: the spool's storage format and the wire format.

One module for both directions, on plain values, so the spool, the writer, `prober check
--json` and the judge reading a spool all agree byte for byte, and so `Measurement` needs
no client library (influxdb-client's `Point` costs ~30 MB and ~0.6 s of CPU to import).

Escaping follows InfluxDB's parser (and what influxdb-client's `Point` wrote before, so a
spool written by an older agent reads the same): in the measurement name a backslash
escapes a comma or a space; in tag keys, tag values and field keys it escapes a comma, an
equals sign or a space; a backslash before anything else is itself. Inside a string field
a backslash escapes a double quote or a backslash. A newline, carriage return or tab in a
name, key or tag cannot be carried by a line-oriented format: it is written as the two
characters `\\n` (`\\r`, `\\t`), as influxdb-client does, and read back that way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = float | int | str | bool

_NAME = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t",
                      "\r": r"\r"})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})
_NAME_ESCAPES = frozenset(", ")
_KEY_ESCAPES = frozenset(", =")


class LineProtocolError(ValueError):
    """A line that is not valid line protocol; the message quotes it."""


def format_line(name: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None],
                time_ns: int) -> str:
    """One line, tags and fields sorted by key (InfluxDB's preferred order). Empty tag values
    and None, NaN and infinite field values are left out: line protocol cannot carry them."""
    if not name or name.startswith("#"):
        raise ValueError(f"measurement name {name!r} cannot be written (empty, or a comment)")
    parts = [name.translate(_NAME)]
    for key, value in sorted(tags.items()):
        if key and value:
            escaped = value.translate(_KEY)
            if escaped.endswith("\\"):
                escaped += " "  # else the backslash would escape the next separator
            parts.append(f",{key.translate(_KEY)}={escaped}")
    rendered = [f"{key.translate(_KEY)}={text}" for key, value in sorted(fields.items())
                if (text := _field(value)) is not None]
    if not rendered:
        raise ValueError(f"measurement {name!r} has no fields to write")
    return "".join(parts) + " " + ",".join(rendered) + f" {int(time_ns)}"


def _field(value: FieldValue | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return '"' + value.translate(_STRING) + '"'
    raise TypeError(f"field value {value!r} of type {type(value).__name__} is not supported")


def measurement_name(line: str) -> str:
    """The measurement of a line without parsing the rest (the spool indexes by it)."""
    name, _, _ = _token(line, 0, {",", " "}, _NAME_ESCAPES)
    return name


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    """(name, tags, fields, time_ns) of one line; LineProtocolError quotes a bad line."""
    text = line.rstrip("\r\n")
    try:
        return _parse(text)
    except (IndexError, ValueError) as exc:
        raise LineProtocolError(f"bad line protocol ({exc}): {text[:200]!r}") from None


def _parse(text: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    name, pos, stop = _token(text, 0, {",", " "}, _NAME_ESCAPES)
    if not name:
        raise ValueError("no measurement name")
    tags: dict[str, str] = {}
    while stop == ",":
        key, pos, stop = _token(text, pos, {"="}, _KEY_ESCAPES)
        if stop != "=":
            raise ValueError(f"tag {key!r} has no value")
        value, pos, stop = _token(text, pos, {",", " "}, _KEY_ESCAPES)
        tags[key] = value
    if stop != " ":
        raise ValueError("no fields")
    fields: dict[str, FieldValue] = {}
    while True:
        key, pos, stop = _token(text, pos, {"="}, _KEY_ESCAPES)
        if stop != "=" or not key:
            raise ValueError(f"field {key!r} has no value")
        fields[key], pos = _field_value(text, pos)
        if pos >= len(text) or text[pos] == " ":
            break
        if text[pos] != ",":
            raise ValueError(f"unexpected {text[pos]!r} after field {key!r}")
        pos += 1
    rest = text[pos:].strip()
    if not rest:
        raise ValueError("no timestamp (the spool always writes one)")
    return name, tags, fields, int(rest)


def _token(text: str, pos: int, stops: set[str], escapes: frozenset[str]
           ) -> tuple[str, int, str]:
    """Read up to an unescaped stop character; return (token, position after it, the stop)."""
    out: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\" and pos + 1 < n and text[pos + 1] in escapes:
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
