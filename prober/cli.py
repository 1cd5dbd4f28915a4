"""The `prober` command: run, check, score, config, spool."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING

import click

from prober import __version__
from prober.commands.lazy import LazyGroup
from prober.commands.options import config_option, load_or_exit
from prober.commands.run import run_daemon, setup_logging
from prober.config import Config, ConfigError

if TYPE_CHECKING:
    from prober.agent.ledger import Ledger
    from prober.measurement import Measurement

# `prober check` answers within this: below the 60 s that Nagios (service_check_timeout),
# Icinga 2 (check_timeout) and Checkmk give an active check by default
CHECK_TIMEOUT_S = 50.0


# score and spool are imported only when they run (httpx, the judge, the writer)
@click.group(cls=LazyGroup, lazy={"score": "prober.commands.score:score",
                                  "spool": "prober.commands.spool:spool"})
@click.version_option(__version__, prog_name="prober")
@click.option("-v", "--verbose", count=True, help="more log output (-vv: debug)")
def main(verbose: int) -> None:
    """Synthetic mail prober: canaries, mailbox access and webmail loads, scored on an SLA."""
    setup_logging(verbose)


@main.group()
def config() -> None:
    """Validate and show the configuration."""


@config.command("check")
@config_option
def config_check(config_path: str) -> None:
    """Validate probes.toml and print it resolved, secrets masked. Exit 3 when invalid."""
    cfg = load_or_exit(config_path)
    from prober.config.show import render

    click.echo(render(cfg))


@main.command()
@config_option
@click.option("--route", "routes", multiple=True, help="only this route (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of the table")
@click.option("--no-write", is_flag=True, help="do not write the measurements anywhere")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=5, max=3600),
              default=CHECK_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="answer within this many seconds: keep it below the monitoring system's "
                   "own timeout (Nagios, Icinga 2, Checkmk: 60 s by default)")
def check(config_path: str, routes: tuple[str, ...], as_json: bool, no_write: bool,
          timeout_s: float) -> None:
    """One-shot check with Nagios exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    The first line is the summary with perfdata; the table follows.
    """
    import asyncio
    import time

    from prober.commands import check as checking
    from prober.commands.check_leftovers import open_leftovers

    cfg = load_or_exit(config_path, prefix="PROBER UNKNOWN - ")
    unknown = [r for r in routes if r not in {x.name for x in cfg.routes}]
    if unknown:
        click.echo(f"PROBER UNKNOWN - no route named {', '.join(unknown)} in {config_path} "
                   f"(known: {', '.join(r.name for r in cfg.routes) or 'none'})")
        sys.exit(3)
    started = time.monotonic()
    # time kept back for what follows the probes: writing the points (InfluxDB's own
    # timeout when it is configured) and printing
    reserve = 1.0 + (min(cfg.influx.timeout_s, 10.0) + 1.0 if cfg.influx and not no_write
                     else 0.0)
    deadline = started + max(timeout_s - reserve, timeout_s / 2)
    ledger = None if no_write else _ledger(cfg)
    leftovers = None if no_write else open_leftovers(cfg)
    try:
        # canaries are awaited until `deadline - 2`; the rest (a server slow to answer a
        # login) is cut at the deadline itself: UNKNOWN, never the monitor's own timeout
        result = asyncio.run(asyncio.wait_for(
            checking.run_check(cfg, list(routes) or None, ledger.next_seq if ledger else None,
                               leftovers, deadline - 2.0),
            deadline - time.monotonic()))
    except TimeoutError:
        click.echo(f"PROBER UNKNOWN - the check did not finish within --timeout "
                   f"{timeout_s:g} s: a server answered too slowly (raise --timeout, and the "
                   "monitoring system's own timeout with it)")
        sys.exit(3)
    except ConfigError as exc:  # e.g. the canary key cannot be read or made
        click.echo(f"PROBER UNKNOWN - config error: {exc}")
        sys.exit(3)
    except Exception as exc:  # an internal error is UNKNOWN, never a traceback to Nagios
        logging.getLogger("prober").debug("check failed", exc_info=True)
        click.echo(f"PROBER UNKNOWN - internal error: {type(exc).__name__}: {exc}")
        sys.exit(3)
    finally:
        for state in (ledger, leftovers):
            if state is not None:
                state.close()
    if not no_write:
        result.delivery_note = _deliver(cfg, result.measurements)
    if as_json:
        click.echo(json.dumps(checking.as_json(result), indent=2))
    else:
        click.echo(result.first_line())
        click.echo(checking.render_table(result))
        for note in result.notes:
            click.echo(f"earlier check: {note}")
        if result.delivery_note:
            click.echo(f"measurements: {result.delivery_note}")
    sys.exit(result.state)


@main.command()
@config_option
@click.option("--ticks", type=click.IntRange(min=1), default=None,
              help="stop after this many ticks (tests, benchmarks); default: run until stopped")
def run(config_path: str, ticks: int | None) -> None:
    """Run the daemon: canaries, access checks and page loads every tick.

    SIGTERM stops it cleanly (submissions in progress finish, everything else stays on disk);
    SIGHUP reloads probes.toml.
    """
    # `prober run` as the executable starts it goes through prober.main, without click:
    # this is the same daemon for `python -m prober.cli run` and click's test runner
    sys.exit(run_daemon(config_path, ticks))


def _ledger(cfg: Config) -> Ledger | None:
    """The agent's ledger, for its canary counter: `seq` means the same in check and run."""
    from prober.agent.ledger import Ledger, LedgerError

    try:
        return Ledger(cfg.spool.path)
    except LedgerError as exc:
        logging.getLogger("prober").warning("canaries numbered 0: %s", exc)
        return None


def _deliver(cfg: Config, measurements: list[Measurement]) -> str:
    from prober.commands.deliver import deliver

    try:
        return deliver(cfg, measurements)
    except Exception as exc:  # the check's verdict stands even if the spool is unhappy
        return f"not written: {exc}"


if __name__ == "__main__":
    main()
