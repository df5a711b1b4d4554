"""``walship repair DIR -c CONFIG``: put damaged or missing segments back from the archive."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import walship
from walship.errors import LogCorruptError

DAMAGE_LEFT = 1
"""Exit status when damage the archive does not hold is left (without ``--salvage``)."""


@click.command("repair")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-c",
    "--config",
    "config",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's YAML config (with the archive: section to repair from).",
)
@click.option(
    "--salvage",
    is_flag=True,
    help="Then keep the valid prefix of what the archive does not hold (never an archived "
    "segment).",
)
def repair(directory: Path, config: Path, salvage: bool) -> None:
    """Re-fetch every damaged or missing local segment the archive holds, check it against its
    manifest and the chain, put it back durably (the damaged copy kept as <segment>.damaged),
    rebuild a lost archive record, and open the log once to show that it opens.

    Exits 1 when damage the archive does not hold is left (rerun with --salvage to keep the
    valid prefix), 2 on a usage, archive or I/O error.
    """
    try:
        log = walship.open(directory, config=config, repair=True, salvage=salvage)
    except LogCorruptError as e:
        click.echo(f"walship: {e}", err=True)
        if not salvage:
            click.echo("walship: rerun with --salvage to keep the valid prefix", err=True)
        sys.exit(DAMAGE_LEFT)
    with log:
        report = log.recovery
        if report.record_rebuilt:
            click.echo("rebuilt the archive record from the archive")
        for name in report.restored:
            click.echo(f"put back {name} from the archive")
        for r in report.repairs:
            click.echo(
                f"cut {r.cut_bytes} bytes from {r.segment} at {r.offset}, kept in {r.side_file}"
            )
        for name in report.salvaged:
            click.echo(f"moved aside {name} (salvage)")
        if not (report.record_rebuilt or report.restored or report.repairs or report.salvaged):
            click.echo("nothing to repair")
        click.echo(f"the log opens: {report.summary()}")
