"""What a command that writes says when its log's close could not drain the archive."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import click

import walship

NOT_DRAINED = 1
"""Exit status of a command whose log closed with segments still pending upload."""


@contextlib.contextmanager
def named_here() -> Iterator[None]:
    """Around a command's log, from its open to its close: the close's own warning of what it
    left pending (logger ``walship.drain``) is muted, :func:`exit_if_not_drained` names it
    instead (once, with each segment's last error)."""
    drain_logger = logging.getLogger("walship.drain")
    was = drain_logger.disabled
    drain_logger.disabled = True
    try:
        yield
    finally:
        drain_logger.disabled = was


def exit_if_not_drained(log: walship.Log) -> None:
    """After ``log`` closed: when its close waited (``archive.drain_on_close`` above 0) and
    segments were still pending upload, name them (each with its last error) on stderr and exit
    :data:`NOT_DRAINED`. Nothing is lost: they stay local and upload at the next open."""
    left = log.pending_at_close
    archiver = log.archiver
    if not left or archiver is None or archiver.drain_on_close <= 0:
        return
    errors = archiver.last_errors()
    stalled = [name for name in left if name in archiver.stalled()]
    gave_up = f"; {len(stalled)} gave up after their retries" if stalled else ""
    click.echo(
        f"walship: {len(left)} segment(s) not archived to {archiver.url} when the log closed "
        f"(it waited up to {archiver.drain_on_close:g}s, archive.drain_on_close{gave_up}): kept "
        "locally, they upload at the next open (or with walship archive -c CONFIG)",
        err=True,
    )
    for name in left:
        click.echo(f"  {name}: {errors.get(name, 'still in progress')}", err=True)
    sys.exit(NOT_DRAINED)
