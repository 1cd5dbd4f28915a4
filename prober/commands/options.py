"""Options every prober command shares."""

from __future__ import annotations

import click

DEFAULT_CONFIG = "/etc/prober/probes.toml"

config_option = click.option(
    "-c", "--config", "config_path", envvar="PROBER_CONFIG", default=DEFAULT_CONFIG,
    show_default=True, type=click.Path(dir_okay=False),
    help="probes.toml to read (or $PROBER_CONFIG)")
