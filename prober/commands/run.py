"""`prober run`, the daemon, without click.

The daemon stays resident for months, so what it imports stays in its memory for as long:
click and what it pulls in (inspect's users, uuid, platform, gettext, difflib) cost ~1 MB
of the daemon's resident set for a command line parsed once. `prober.main` starts the
daemon through `daemon_argv` and `run_daemon` and hands every other command line to the
click CLI (`prober.cli`), whose `run` command calls the same `run_daemon`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

# Every command exits with this when the configuration is invalid (Nagios' UNKNOWN for
# `prober check`), so a wrapper can tell a bad file from a failed probe.
EXIT_CONFIG = 3
EXIT_STATE_FILES = 1  # `prober run`: the spool or the canary ledger cannot be used
DEFAULT_CONFIG = "/etc/prober/probes.toml"
CONFIG_ENVVAR = "PROBER_CONFIG"


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aioimaplib logs every line it sends at debug, LOGIN included: keep it quiet.
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
    # httpx logs every request at INFO (each InfluxDB write, each page resource): -v shows
    # state changes (InfluxDB unreachable / back), -vv every request
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


@dataclass(frozen=True)
class DaemonArgs:
    verbose: int
    config_path: str
    ticks: int | None


def daemon_argv(argv: list[str], environ: dict[str, str] | os._Environ[str] = os.environ
                ) -> DaemonArgs | None:
    """`[-v...] run [-c FILE] [--ticks N]` in the spellings click accepts for them; None
    for anything else (help, a typo, an invalid value, another command): click then
    parses it and says what is wrong, exactly as before."""
    verbose = 0
    rest = list(argv)
    while rest and rest[0] != "run":
        flag = rest.pop(0)
        if flag == "--verbose":
            verbose += 1
        elif flag.startswith("-") and len(flag) > 1 and set(flag[1:]) == {"v"}:
            verbose += len(flag) - 1
        else:
            return None
    if not rest:
        return None
    rest.pop(0)
    config_path: str | None = None
    ticks: int | None = None
    while rest:
        opt = rest.pop(0)
        name, eq, value = opt.partition("=")
        if name in ("-c", "--config", "--ticks") and not eq:
            if not rest:
                return None
            value = rest.pop(0)
        elif name == "--config" or name == "--ticks":
            pass  # --config=FILE, --ticks=N
        elif opt.startswith("-c") and len(opt) > 2:
            name, value = "-c", opt[2:]  # -cFILE
        else:
            return None
        if name == "--ticks":
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                return None
            ticks = int(value)
        else:
            config_path = value
    if config_path is None:
        config_path = environ.get(CONFIG_ENVVAR) or DEFAULT_CONFIG
    return DaemonArgs(verbose, config_path, ticks)


def run_daemon(config_path: str, ticks: int | None) -> int:
    """Load the config and run the agent until it stops; the process's exit code."""
    import asyncio

    from prober.agent.daemon import Agent
    from prober.agent.ledger import LedgerError
    from prober.agent.spool import SpoolError
    from prober.config import ConfigError, load

    try:
        cfg = load(config_path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def main_loop() -> int:
        return await Agent(config_path, cfg, max_ticks=ticks).run()

    try:
        return asyncio.run(main_loop())
    except (SpoolError, LedgerError) as exc:
        print(f"prober run: {exc}", file=sys.stderr)
        return EXIT_STATE_FILES
    except ConfigError as exc:  # e.g. the canary key cannot be read or made
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
