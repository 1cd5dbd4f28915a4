"""Measurement: the one currency between probes, the spool and InfluxDB."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from prober.lineproto import FieldValue, format_line, parse_line

__all__ = ["FieldValue", "Measurement", "now_ns", "one_line"]


def now_ns() -> int:
    return time.time_ns()


def one_line(text: str, limit: int = 500) -> str:
    """Error texts end up in string fields and log lines: keep them on one line and bounded."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue | None]
    time_ns: int = field(default_factory=now_ns)

    def with_fields(self, **updates: FieldValue | None) -> Measurement:
        merged = dict(self.fields)
        merged.update(updates)
        return Measurement(self.name, dict(self.tags), merged, self.time_ns)

    def present_fields(self) -> dict[str, FieldValue]:
        return {k: v for k, v in self.fields.items() if v is not None}

    def to_line(self) -> str:
        fields = {k: one_line(v, 2000) if isinstance(v, str) else v
                  for k, v in self.present_fields().items()}
        return format_line(self.name, self.tags, fields, self.time_ns)

    @classmethod
    def from_line(cls, line: str) -> Measurement:
        """The measurement a line of line protocol carries (LineProtocolError if malformed)."""
        name, tags, fields, time_ns = parse_line(line)
        return cls(name, tags, dict(fields), time_ns)
