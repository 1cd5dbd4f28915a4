"""The `prober` executable.

`prober run` (the daemon) starts without importing click: the daemon keeps what it
imports resident for as long as it runs (see prober.commands.run). Every other command
line, `prober run --help` and a mistyped `run` included, goes to the click CLI in
prober.cli.
"""

from __future__ import annotations

import sys

from prober.commands.run import daemon_argv, run_daemon, setup_logging


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    daemon = daemon_argv(args)
    if daemon is not None:
        setup_logging(daemon.verbose)
        sys.exit(run_daemon(daemon.config_path, daemon.ticks))
    from prober.cli import main as cli

    cli(args)


if __name__ == "__main__":
    main()
