"""Measurement: the one currency between probes, the spool and InfluxDB."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

FieldValue = float | int | str | bool


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
        # Escaping of line protocol is subtle (spaces, commas, equals, quotes, backslashes
        # differ between measurement, tag and field positions): influxdb-client's Point does it.
        point = Point(self.name)
        for key, value in sorted(self.tags.items()):
            if value != "":
                point.tag(key, value)
        for key, value in sorted(self.present_fields().items()):
            if isinstance(value, str):
                value = one_line(value, 2000)
            point.field(key, value)
        point.time(self.time_ns, WritePrecision.NS)
        line = point.to_line_protocol()
        if not line:
            raise ValueError(f"measurement {self.name!r} has no fields to write")
        return line
