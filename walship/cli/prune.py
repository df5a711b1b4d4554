"""``walship prune``: remove from an archive what no kept checkpoint needs."""

from __future__ import annotations

import click

from walship.cli.target import storage_options_from, storage_target_options


@click.command("prune")
@click.argument("url")
@click.option(
    "--older-than",
    default=None,
    metavar="DURATION",
    help="Keep every checkpoint newer than this (e.g. 30d, 12h), and the newest one before it.",
)
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Keep the N newest checkpoints.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would go and the bytes freed.")
@storage_target_options
def prune(
    url: str,
    older_than: str | None,
    keep_checkpoints: int | None,
    dry_run: bool,
    config: str | None,
    storage_option: tuple[str, ...],
) -> None:
    """Remove the archived segments and checkpoints (with their snapshots) at URL that no kept
    checkpoint needs: everything before the oldest checkpoint kept, never a segment holding a
    frame after it, never the archive's newest segment. A prune marker is written first, so
    that verify and restore know the archive starts later on purpose (and still refuse any
    other gap). A pruned archive restores from a checkpoint. An encrypted archive needs no key:
    a prune works from the manifests alone, which are not encrypted.
    """
    from walship.archive.prune import prune as run_prune

    pp = run_prune(
        url,
        older_than=older_than,
        keep_checkpoints=keep_checkpoints,
        dry_run=dry_run,
        storage_options=storage_options_from(config, storage_option, url),
    )
    lines = pp.lines()
    verb = "would remove" if dry_run else "removed"
    for line in lines[:-1]:
        click.echo(f"{verb} {line}")
    click.echo(f"{'dry run: would free' if dry_run else 'freed'} {lines[-1]}")
