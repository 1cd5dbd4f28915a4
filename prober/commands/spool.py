"""`prober spool ...`: placeholder, replaced by the deliver room's commands."""

import click


@click.group(help="Inspect and export the local spool of measurements.")
def spool() -> None:
    pass
