"""`prober spool status | export | flush`: look into the local spool and move it along.

`status` and `export` only read: they open the file through `prober.spoolfile.SpoolReader`
(no DDL, no ballast, no pruning), so they work on a read-only copy and change no byte of
it. `flush` is the one that writes (it deletes what InfluxDB acknowledged).

Exit status: 0 done, 1 the spool cannot be read or flushed, 3 a configuration error (as
every prober command).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict
from datetime import UTC, datetime

import click

from prober.agent.influx import InfluxWriter
from prober.agent.spool import Spool, SpoolError
from prober.commands.options import EXIT_CONFIG, config_option, load_or_exit
from prober.config import Config, ConfigError
from prober.config.judge import JudgeConfig, load_judge
from prober.spoolfile import SpoolReader, SpoolReadError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

def parse_when(text: str, now_ns: int | None = None) -> int:
    """A point in time as UNIX ns: a duration back from now ("90m", "7d") or an ISO 8601
    date/time (UTC when no offset is given)."""
    now = datetime.now(UTC).timestamp() * 1e9 if now_ns is None else float(now_ns)
    m = _DURATION.match(text.strip())
    if m:
        return int(now - float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (30m, 12h, 7d) nor an ISO "
                                 "8601 date/time (2026-11-01 or 2026-11-01T00:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _load(path: str) -> Config:
    return load_or_exit(path)


def _load_judge(path: str) -> JudgeConfig:
    """The reading commands need only [spool] and [influx]: no probe secrets, no [vantage]."""
    try:
        return load_judge(path)
    except ConfigError as exc:
        click.echo(f"prober spool: config error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _read(config: Config | JudgeConfig) -> SpoolReader:
    try:
        return SpoolReader(config.spool.path)
    except SpoolReadError as exc:
        raise click.ClickException(str(exc)) from None


def _open(config: Config) -> Spool:
    try:
        return Spool(config.spool.path, config.spool)
    except SpoolError as exc:
        raise click.ClickException(str(exc)) from None


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@click.group(help="Inspect and export the local spool of measurements.")
def spool() -> None:
    pass


@spool.command(help="Depth, age, size and counters of the spool.")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: str, as_json: bool) -> None:
    config = _load_judge(config_path)
    try:
        with _read(config) as sp:
            st = sp.stats()
    except SpoolReadError as exc:
        raise click.ClickException(str(exc)) from None
    s = config.spool
    if config.influx is None:
        mode = (f"store only (no [influx]): kept up to {s.max_age_s / 86400:g} days and "
                f"{_mib(s.max_bytes)}")
    else:
        mode = f"delivering to {config.influx.target} ({config.influx.api} API)"
    if as_json:
        data = asdict(st)
        data["mode"] = "store" if config.influx is None else "deliver"
        click.echo(json.dumps(data, indent=2))
        return
    age = "-" if st.oldest_age_s is None else f"{st.oldest_age_s:.1f} s"
    lines = [
        f"spool:            {st.path}",
        f"mode:             {mode}",
        f"points:           {st.depth}",
        f"oldest waiting:   {age}",
        f"time range:       {_iso(st.oldest_time_ns) or '-'} .. {_iso(st.newest_time_ns) or '-'}",
        f"size:             {_mib(st.used_bytes)} used, {_mib(st.file_bytes)} on disk "
        f"(cap {_mib(s.max_bytes)})",
        f"free space:       {_mib(st.free_bytes)} (floor {_mib(s.min_free_bytes)}), ballast "
        f"{'present' if st.ballast_present else 'absent'}",
        f"dead letters:     {st.dead}",
        f"refused (total):  {st.refused_total}",
        f"pruned (total):   {st.pruned_total}",
    ]
    for name, count in st.by_measurement.items():
        lines.append(f"  {name}: {count}")
    click.echo("\n".join(lines))


@spool.command(help="Print spooled points as line protocol (ns timestamps), oldest first.")
@config_option
@click.option("--measurement", "-m", default=None, help="Only this measurement.")
@click.option("--since", default=None, help="From this time: 7d, 12h, or ISO 8601 (UTC).")
@click.option("--until", default=None, help="Before this time: same forms as --since.")
@click.option("--dead", is_flag=True, help="The dead-letter table instead, with reasons as "
              "comment lines.")
def export(config_path: str, measurement: str | None, since: str | None, until: str | None,
           dead: bool) -> None:
    config = _load_judge(config_path)
    start = parse_when(since) if since else None
    end = parse_when(until) if until else None
    out = sys.stdout
    try:
        with _read(config) as sp:
            if dead:
                for row in sp.dead_rows():
                    if measurement and row.measurement != measurement:
                        continue
                    out.write(f"# HTTP {row.status}: {row.reason}\n{row.line}\n")
                return
            for line in sp.read_lines(measurement, start, end):
                out.write(line + "\n")
    except SpoolReadError as exc:
        raise click.ClickException(str(exc)) from None


@spool.command(help="Send everything spooled to InfluxDB now, once; exit 1 if some is left.")
@config_option
def flush(config_path: str) -> None:
    config = _load(config_path)
    if config.influx is None:
        raise click.ClickException(f"{config.file}: no [influx] section: nothing to send to")
    with _open(config) as sp:
        writer = InfluxWriter(config.influx, sp)
        try:
            result = writer.drain_once()
        finally:
            writer.close()
    msg = (f"{result.delivered} points delivered to {config.influx.target} in "
           f"{result.batches} batches; {result.dead} moved to the dead-letter table; "
           f"{result.remaining} left")
    if not result.ok:
        raise click.ClickException(f"{msg}: {result.error}")
    click.echo(msg)


if __name__ == "__main__":
    spool()
