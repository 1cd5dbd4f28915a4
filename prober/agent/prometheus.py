"""The daemon's live view for Prometheus: the latest figures of every series, as text.

Opt-in (`[prometheus] listen`). The spool stays the durable path: a point is shown here
only after the spool took it, and what Prometheus does not scrape is not lost, since
InfluxDB (or `prober score --source spool`) has every point. This is a window on the
newest point per series, for alerting, not a second store.

Naming follows Prometheus's conventions: `prober_` + measurement + field, base units
(`_s` fields become `_seconds`, `_days` become `_seconds` too), counters end in `_total`,
tags become labels. A point's outcome is not a label (the series would split by outcome
and the old one linger): `mail_access` and `webmail_load` give `..._success` 1/0, the
canary's outcome is a state set (`prober_mail_roundtrip_outcome{outcome="..."}` 1 for the
newest settled canary, 0 for the others). Canaries still in flight (pending,
send_uncertain) are not shown: the newest settled canary of the route is. Each series has
`..._timestamp_seconds`, when its point was measured, so staleness is visible.

A probe the prober itself failed to make (error_class "prober": no descriptor left, a bug)
says nothing about the provider: its series shows `..._not_measured` 1 (0 on every other
point), has no `..._success` sample (an alert on `success == 0` does not fire; one on its
absence does), and a canary's outcome state set is 0 throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prober.measurement import Measurement
from prober.schema import (
    FIELD_ERROR_CLASS,
    FIELD_OUTCOME,
    FIELD_PEER_IP,
    FIELD_SEQ,
    HEARTBEAT,
    MAIL_ACCESS,
    MAIL_ROUNDTRIP,
    TAG_OUTCOME,
    WEBMAIL_LOAD,
    AccessOutcome,
    ErrorClass,
    RoundtripOutcome,
    WebmailOutcome,
)

log = logging.getLogger("prober.prometheus")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Fields that are ids or echo the configuration, not measurements of the provider.
_SKIPPED = {FIELD_SEQ, "link_down_kbps", "link_up_kbps"}
# Heartbeat fields that count since the agent started.
_COUNTERS = {"missed_ticks", "spool_refused", "spool_invalid"}
_RENAMED = {"bytes": "received_bytes", "bytes_up": "sent_bytes"}
_SUCCESS = {MAIL_ACCESS: AccessOutcome.OK, WEBMAIL_LOAD: WebmailOutcome.OK}
_IN_FLIGHT = {RoundtripOutcome.PENDING, RoundtripOutcome.SEND_UNCERTAIN}
# Measurements whose points can be the prober's own failure (`..._not_measured`)
_MEASURED = {MAIL_ACCESS, WEBMAIL_LOAD, MAIL_ROUNDTRIP}
_LABEL = re.compile(r"[^a-zA-Z0-9_]")
MAX_REQUEST_BYTES = 8192

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], tuple[str, float]]  # (metric, extra labels) -> (type, value)


@dataclass
class _Series:
    time_ns: int
    seen: float  # our clock when observed, for dropping stale series
    samples: Samples


def prefix(measurement: str) -> str:
    # the heartbeat is the prober's own state: prober_spool_depth, not prober_prober_...
    return "prober_" if measurement == HEARTBEAT else f"prober_{measurement}_"


def metric_name(measurement: str, field: str) -> tuple[str, float]:
    """The metric for a numeric field, and the factor to its base unit."""
    field = _RENAMED.get(field, field)
    if field.endswith("_s"):
        return f"{prefix(measurement)}{field[:-2]}_seconds", 1.0
    if field.endswith("_days"):
        return f"{prefix(measurement)}{field[:-5]}_seconds", 86400.0
    if field in _COUNTERS:
        return f"{prefix(measurement)}{field}_total", 1.0
    return f"{prefix(measurement)}{field}", 1.0


class Exposition:
    """Holds the newest point per series; `render()` is the text a scrape gets."""

    def __init__(self, stale_after_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._series: dict[tuple[str, Labels], _Series] = {}

    def observe(self, points: Iterable[Measurement]) -> None:
        for point in points:
            self._observe(point)

    def _observe(self, point: Measurement) -> None:
        fields = point.fields
        outcome = fields.get(FIELD_OUTCOME)
        if point.name == MAIL_ROUNDTRIP and (outcome is None or outcome in _IN_FLIGHT):
            return
        labels = {k: v for k, v in point.tags.items() if k != TAG_OUTCOME}
        if point.name == MAIL_ACCESS and isinstance(fields.get(FIELD_PEER_IP), str):
            labels["address"] = str(fields[FIELD_PEER_IP])  # one series per address probed
        key = (point.name, tuple(sorted((_LABEL.sub("_", k), v) for k, v in labels.items())))
        old = self._series.get(key)
        if old is not None and old.time_ns > point.time_ns:
            return  # a correction of an older point (e.g. lost -> late): the newer one stays
        first = prefix(point.name)
        samples: Samples = {(f"{first}timestamp_seconds", ()): ("gauge", point.time_ns / 1e9)}
        for name, value in fields.items():
            if name in _SKIPPED or value is None or isinstance(value, str):
                continue
            metric, factor = metric_name(point.name, name)
            number = float(value)
            if math.isfinite(number):
                kind = "counter" if metric.endswith("_total") else "gauge"
                samples[(metric, ())] = (kind, number * factor)
        # the prober's own failure: no verdict on the provider either way
        ours = fields.get(FIELD_ERROR_CLASS) == ErrorClass.PROBER
        if point.name in _MEASURED:
            samples[(f"{first}not_measured", ())] = ("gauge", 1.0 if ours else 0.0)
        if point.name in _SUCCESS and not ours:
            ok = point.tags.get(TAG_OUTCOME) == _SUCCESS[point.name]
            samples[(f"{first}success", ())] = ("gauge", 1.0 if ok else 0.0)
        if point.name == MAIL_ROUNDTRIP:  # a state set: the state is a label of one family
            for state in RoundtripOutcome:
                if state not in _IN_FLIGHT:
                    samples[(f"{first}outcome", (("outcome", state.value),))] = (
                        "gauge", 1.0 if outcome == state and not ours else 0.0)
        self._series[key] = _Series(point.time_ns, self.clock(), samples)

    def render(self) -> str:
        now = self.clock()
        for key in [k for k, s in self._series.items() if now - s.seen > self.stale_after_s]:
            del self._series[key]
        families: dict[str, tuple[str, str, list[str]]] = {}
        for (measurement, labels), series in sorted(self._series.items()):
            for (name, extra), (kind, value) in series.samples.items():
                line = f"{name}{_labels(labels + extra)} {_value(value)}"
                families.setdefault(name, (kind, measurement, []))[2].append(line)
        out = []
        for name in sorted(families):
            kind, measurement, lines = families[name]
            out.append(f"# HELP {name} newest {measurement} point per series (the README's "
                       f"measurement schema)")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)
        return "\n".join(out) + "\n" if out else ""

    async def serve(self, host: str, port: int) -> asyncio.Server:
        """GET /metrics over HTTP/1.x; one request per connection, bounded and timed."""
        return await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_BYTES)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
                status, body = "405 Method Not Allowed", b"only GET /metrics\n"
            elif parts[1].split(b"?", 1)[0] != b"/metrics":
                status, body = "404 Not Found", b"see /metrics\n"
            else:
                status, body = "200 OK", self.render().encode()
            head_only = parts[:1] == [b"HEAD"]
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (b"" if head_only else body))
            await asyncio.wait_for(writer.drain(), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    return repr(value) if not value.is_integer() else str(int(value))



async def open_exposition(exposition: Exposition, host: str, port: int) -> asyncio.Server | None:
    """Serve the exposition; None (logged) when the address cannot be bound: the probes and
    the spool go on, since the exposition is a window, not the record."""
    try:
        server = await exposition.serve(host, port)
    except OSError as exc:
        log.error("prometheus: cannot listen on %s port %d: %s; going on without it",
                  host, port, exc.strerror or exc)
        return None
    log.info("prometheus: serving /metrics on %s port %d", host, port)
    return server
