"""``walship promote DIR -c CONFIG``: a follower's replica becomes the writer of the archive
(:mod:`walship.archive.promote`), fencing the old writer."""

from __future__ import annotations

from pathlib import Path

import click

from walship.cli.errors import CliError
from walship.cli.target import config_option


@click.command("promote")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@config_option("The new writer's YAML config (its archive: section is the URL to take over).")
def promote_command(directory: Path, config: Path) -> None:
    """Make DIR (a replica kept by `walship follow`, stopped first) the writer of the archive
    in CONFIG: take the archive's last sealed segments and live-shipped parts, claim the next
    epoch (a conditional create: the old writer, if it is alive, is fenced at its next upload),
    and end DIR with a new active segment that continues the archive's chain. DIR replaces
    CONFIG's store.path. Then open the log with CONFIG (and DIR) as usual: it is the writer.

    Exit status 1 when another takeover claimed the epoch first or DIR does not continue the
    archive (nothing is taken over).
    """
    import walship
    from walship.errors import ArchiveError

    if not directory.is_dir():
        raise CliError(f"{directory}: no such directory (the follower's replica)")
    try:
        log = walship.open(directory, config=config, takeover=True)
    except ArchiveError as e:
        click.echo(f"walship promote: {e}", err=True)
        raise SystemExit(1) from None
    try:
        archiver = log.archiver
        if archiver is None:
            raise CliError(f"{config}: no archive: section, nothing to take over")
        stats = archiver.stats()
        click.echo(
            f"walship promote: {directory} is the writer of {stats['url']} (epoch "
            f"{stats['epoch']}); its next frame is commit_seq {log.last_seq + 1}"
        )
    finally:
        log.close()
