"""`prober score`: placeholder, replaced by the judge room's command."""

import click


@click.command(help="Judge each SLA clause from the evidence.")
def score() -> None:
    raise click.ClickException("not built yet")
