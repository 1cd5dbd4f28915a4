"""Options every prober command shares."""

from __future__ import annotations

import sys

import click

from prober.commands.run import CONFIG_ENVVAR, DEFAULT_CONFIG, EXIT_CONFIG
from prober.config import Config, ConfigError, load

__all__ = ["EXIT_CONFIG", "config_option", "load_or_exit"]

# prober.commands.run.daemon_argv reads -c/--config the same way without click
config_option = click.option(
    "-c", "--config", "config_path", envvar=CONFIG_ENVVAR, default=DEFAULT_CONFIG,
    # a plain string: load() says what is wrong with the path (a directory, a FIFO), with
    # the exit code of every other configuration error
    show_default=True, type=str, metavar="FILE",
    help="probes.toml to read (or $PROBER_CONFIG)")


def load_or_exit(path: str, prefix: str = "") -> Config:
    """Load the config, or print the error (file and key named) and exit EXIT_CONFIG."""
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(f"{prefix}config error: {exc}", err=not prefix)
        sys.exit(EXIT_CONFIG)
