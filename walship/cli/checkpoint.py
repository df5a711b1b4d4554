"""``walship checkpoint``: set a log's checkpoint, optionally storing a snapshot with it."""

from __future__ import annotations

from pathlib import Path

import click

import walship
from walship.cli.errors import CliError
from walship.cli.target import config_option


@click.command("checkpoint")
@config_option(
    "The log's YAML config (an archive: section is needed with --snapshot).",
)
@click.argument("seq", type=click.IntRange(min=0))
@click.option(
    "--snapshot",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The application's snapshot of its state up to SEQ, stored in the archive.",
)
def checkpoint(config: Path, seq: int, snapshot: Path | None) -> None:
    """Set the checkpoint of the log to SEQ (retention then removes local segments wholly at
    or below it, once archived), and with --snapshot store FILE in the archive as the
    checkpoint's snapshot: an immutable object with a manifest (commit_seq, size, BLAKE3, time,
    where the log goes on after it), durable there before this command returns.
    `walship restore URL DIR --from-checkpoint` restores it and only the frames after it.

    The log is opened (and closed again), so it must not be open in another process: a live
    service calls Log.checkpoint(seq, snapshot=...) itself.
    """
    with walship.open(config=config) as log:
        if snapshot is not None and log.archiver is None:
            raise CliError(f"{config}: --snapshot needs an archive: section to store it in")
        stored = log.checkpoint(seq, snapshot=snapshot)
        if stored is None:
            click.echo(f"checkpoint {seq} set in {log.store.location} (no snapshot)")
            return
        url = log.archiver.url if log.archiver is not None else ""
        size, digest = getattr(stored, "size", 0), getattr(stored, "blake3", b"")
        click.echo(
            f"checkpoint {seq}: snapshot of {size} bytes (BLAKE3 {digest.hex()[:16]}...) "
            f"stored in {url}/{getattr(stored, 'object', '')}"
        )
