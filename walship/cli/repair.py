"""``walship repair DIR -c CONFIG``: put damaged or missing segments back from the archive."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import walship
from walship.cli.draining import exit_if_not_drained, named_here
from walship.cli.target import config_option
from walship.errors import LogCorruptError

DAMAGE_LEFT = 1
"""Exit status when damage the archive does not hold is left (without ``--salvage``)."""


@click.command("repair")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@config_option(
    "The log's YAML config (with the archive: section to repair from); required unless "
    "only --clean-side-files is asked.",
    required=False,
)
@click.option(
    "--salvage",
    is_flag=True,
    help="Then keep the valid prefix of what the archive does not hold (never an archived "
    "segment).",
)
@click.option(
    "--clean-side-files",
    is_flag=True,
    help="Remove the side files recovery and repair kept (<segment>.torn-<offset>, "
    "<segment>.damaged, walship.archive.json.damaged), holding the writer's lock.",
)
@click.option(
    "--older-than",
    default=None,
    metavar="DURATION",
    help="With --clean-side-files: only those older than this (30d, 12h, 90m, 3600).",
)
def repair(
    directory: Path,
    config: Path | None,
    salvage: bool,
    clean_side_files: bool,
    older_than: str | None,
) -> None:
    """Re-fetch every damaged or missing local segment the archive holds, check it against its
    manifest and the chain, put it back durably (the damaged copy kept as <segment>.damaged),
    rebuild a lost archive record, and open the log once to show that it opens.

    --clean-side-files removes the side files walship keeps and never removes on its own (a
    .damaged segment of a salvage may hold the only copy of frames: look before you clean);
    without -c it does only that.

    Exits 1 when damage the archive does not hold is left (rerun with --salvage to keep the
    valid prefix), 2 on a usage, archive or I/O error.
    """
    age = _older_than(older_than) if older_than is not None else None
    if config is None:
        if not clean_side_files:
            raise click.UsageError("give -c CONFIG (the archive to repair from)")
        _clean(directory, age)
        return
    try:
        log = walship.open(directory, config=config, repair=True, salvage=salvage)
    except LogCorruptError as e:
        click.echo(f"walship: {e}", err=True)
        if not salvage:
            click.echo("walship: rerun with --salvage to keep the valid prefix", err=True)
        sys.exit(DAMAGE_LEFT)
    with named_here(), log:
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
    if clean_side_files:
        _clean(directory, age)
    exit_if_not_drained(log)


def _older_than(text: str) -> float:
    from walship.values import parse_duration

    try:
        t = text.strip()
        seconds = float(t[:-1]) * 86400 if t.endswith("d") else parse_duration(t)
        if not seconds >= 0:
            raise ValueError(text)
        return seconds
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected a duration like 30d, 12h, 90m or 3600 (seconds)",
            param_hint="--older-than",
        ) from None


def _clean(directory: Path, older_than: float | None) -> None:
    """Remove the side files of the log in ``directory``, holding its lock."""
    from walship.backends.posix import PosixStore
    from walship.core.sidefiles import remove_side_files, side_files

    if not directory.is_dir():
        raise click.UsageError(f"{directory}: no such directory")
    store = PosixStore(directory)
    store.lock()  # a writer holding the log: StoreLockedError, one line
    try:
        before = side_files(store.list_names())
        removed = remove_side_files(store, older_than)
    finally:
        store.close()
    for name in removed:
        click.echo(f"removed side file {name}")
    kept = len(before) - len(removed)
    if kept:
        click.echo(f"kept {kept} side file(s) newer than --older-than")
    if not before:
        click.echo("no side files")
