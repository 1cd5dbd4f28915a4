"""`prober score`: judge each SLA clause of a month from the stored evidence.

Exit status: 0 every measured clause passed, 1 some clause is breached, 2 not enough data
(a clause unknown, or the month not over yet), 3 error (config, database, arguments).
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click

from prober.commands.options import config_option
from prober.config.judge import ConfigError, JudgeConfig, load_judge
from prober.schema import Direction
from prober.sla.query import Evidence, InfluxEvidence, QueryError, influx_target
from prober.sla.report import FORMATS, render
from prober.sla.score import score as score_month
from prober.spoolfile import SpoolReadError

EXIT_ERROR = 3


class _Command(click.Command):
    """Argument errors exit 3 ("error"); click's own 2 would read as "not enough data"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _UsageError(exc.message, exc.ctx) from None


class _UsageError(click.UsageError):
    exit_code = EXIT_ERROR


def _fail(message: str) -> None:
    click.echo(f"prober score: {message}", err=True)
    sys.exit(EXIT_ERROR)


def contracted_mailboxes(config: JudgeConfig) -> set[str] | None:
    """The provider's mailboxes, as the addresses the probes tag their points with.

    `[sla] mailboxes` when given: a `[[mailbox]]` name stands for its address, anything
    else is taken as tagged in the data. Else the provider's side of the contracted routes
    in `[[route]]` (the sender of outbound, the recipient of inbound, both of internal).
    Else None: every mailbox seen counts (and the report lists them).
    """
    names = config.sla.mailboxes
    if names is not None:
        return {config.mailboxes.get(n, n) for n in names}
    routes = [r for r in config.routes
              if config.sla.routes is None or r.name in config.sla.routes]
    if not routes:
        return None
    out = set()
    for r in routes:
        if r.direction in (Direction.OUTBOUND, Direction.INTERNAL):
            out.add(r.sender)
        if r.direction in (Direction.INBOUND, Direction.INTERNAL):
            out.add(r.recipient)
    return out


def open_evidence(config: JudgeConfig, source: str, start_ns: int, end_ns: int,
                  focus: tuple[int, int] | None = None) -> Evidence:
    if source == "influx":
        if config.influx is None:
            raise QueryError("--source influx, but probes.toml has no [influx] section")
        # [influx] timeout_s bounds every query, so a hung server is an error in seconds
        return InfluxEvidence(influx_target(config.influx), timeout_s=config.influx.timeout_s)
    from prober.sla.local import spool_evidence

    if not Path(config.spool.path).exists():
        raise QueryError(f"no spool database at {config.spool.path}")
    try:
        return spool_evidence(config.spool.path, start_ns, end_ns, focus)
    except SpoolReadError as exc:
        raise QueryError(str(exc)) from None
    except sqlite3.DatabaseError as exc:  # corrupt pages: one line, not a traceback
        raise QueryError(f"cannot read the spool {config.spool.path}: {exc}") from None


@click.command(cls=_Command, help="Judge each SLA clause of a month from the evidence.")
@config_option
@click.option("--month", required=True, metavar="YYYY-MM", help="the calendar month to judge")
@click.option("--year", type=int, default=None, metavar="YYYY",
              help="judge the fault-free days of this whole year (default: the month's year "
                   "to date, shown but not counted in the exit status while it runs)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write the report here instead of standard output")
@click.option("--source", type=click.Choice(("influx", "spool")), default=None,
              help="where the points are (default: InfluxDB when [influx] is configured, "
                   "else the local spool)")
def score(config_path: str, month: str, year: int | None, fmt: str, output: str | None,
          source: str | None) -> None:
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        _fail(f"--month must be YYYY-MM, got {month!r}")
        return
    if year is not None and not 1970 <= year <= 9999:
        _fail(f"--year must be a year such as 2026, got {year}")
    try:
        config = load_judge(config_path)
        contracted = contracted_mailboxes(config)
    except ConfigError as exc:
        _fail(f"config error: {exc}")
        return
    src = source or ("influx" if config.influx is not None else "spool")
    now_ns = time.time_ns()
    y, mo = int(m.group(1)), int(m.group(2))
    evidence: Any = None
    try:
        # the spool is read once for the whole span the score looks at (the year to date)
        start_ns = min(_start_ns(config, y, 1), _start_ns(config, year or y, 1))
        month_start = _start_ns(config, y, mo)
        month_end = _start_ns(config, y + (mo == 12), mo % 12 + 1)
        evidence = open_evidence(config, src, start_ns, now_ns + 1, (month_start, month_end))
        card = score_month(evidence, config.sla, y, mo, now_ns=now_ns, contracted=contracted,
                           judge_year=year)
    except QueryError as exc:
        _fail(str(exc))
        return
    except sqlite3.DatabaseError as exc:  # a spool corrupt past what opening it reads
        _fail(f"cannot read the spool {config.spool.path}: {exc}")
        return
    finally:
        if evidence is not None and hasattr(evidence, "close"):
            evidence.close()
    text = render(card, fmt)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror}")
    else:
        click.echo(text, nl=False)
    sys.exit(card.exit_code)


def _start_ns(config: JudgeConfig, year: int, month: int) -> int:
    from prober.sla.score import month_period

    return month_period(year, month, config.sla.tz).start_ns
