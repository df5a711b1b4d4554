"""``walship status -c CONFIG [--json]``: what is local, what waits for upload and why, read-only
(see :mod:`walship.archive.status`)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from walship.cli.errors import CliError
from walship.cli.target import config_option

if TYPE_CHECKING:
    from walship.archive.follower_status import FollowerStatus
    from walship.archive.status import DestinationStatus


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.1f}{unit}"
    return f"{seconds:.1f}s"


def _when(micros: int | None) -> str:
    if micros is None:
        return "?"
    stamp = datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@click.command("status")
@click.argument(
    "directory",
    required=False,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@config_option(
    "The log's YAML config (its store and archive).",
    required=False,
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def status(directory: Path | None, config: Path | None, as_json: bool) -> None:
    """Show the log of CONFIG: local segments and bytes, the uploads still pending (how many,
    their bytes, the oldest and its age), the last archived segment and commit_seq, the lag of
    the archive (frames, bytes, seconds), the checkpoint, stalled segments with their last
    error, and leftover side files (torn tails, damaged copies, restore staging directories).
    With several destinations (``archives:``) the archive lines come once per destination,
    each headed by its URL.

    A follower's replica (``walship follow URL DIR``) also shows the follower's last round:
    its lag behind the archive in frames and seconds. DIRECTORY instead of -c CONFIG shows a
    directory without a config (a replica): its archive side is then not known.

    Read-only: it takes no lock and writes nothing, so it works while the log is open in
    another process (it shows what that process recorded so far).
    """
    from walship.archive.status import gather_status

    if (directory is None) == (config is None):
        raise click.UsageError("give -c CONFIG or a DIRECTORY (one of them)")
    if config is not None:
        path, urls = _config_target(config)
    else:
        path, urls = str(directory), []
    st = gather_status(path, urls)
    if as_json:
        click.echo(json.dumps(st.as_dict(), indent=2))
        return
    click.echo(
        f"log         {st.directory}: {st.local_segments} segments, {_size(st.local_bytes)}"
        + (f" (active {st.active_segment})" if st.active_segment else "")
    )
    if st.last_commit_seq is not None:
        click.echo(
            f"last frame  commit_seq {st.last_commit_seq} at {_when(st.last_timestamp_micros)}"
        )
    click.echo(f"checkpoint  {st.checkpoint if st.checkpoint is not None else 'none'}")
    if st.url is None:
        click.echo(
            "archive     none (no archive: section)"
            if config is not None
            else "archive     not known without -c CONFIG"
        )
    for side in st.destinations:
        _archive_lines(side)
    if st.follower is not None:
        _follower_line(st.follower)
    for left in st.leftovers:
        click.echo(
            f"leftover    {left.name} ({left.kind}, {_size(left.size)}, {_age(left.age_seconds)} "
            "old)"
        )


def _config_target(config: Path) -> tuple[str, list[str]]:
    """The directory and the archive URLs of ``config``'s log."""
    from walship.config import load_config

    cfg = load_config(config)
    if cfg.store.backend != "posix":
        raise CliError(
            f"{config}: status reads a posix store's directory (store.backend is "
            f"{cfg.store.backend!r})"
        )
    path = cfg.store_options().get("path")
    if not isinstance(path, str):
        raise CliError(f"{config}: store.path is not set")
    return path, [a.url for a in cfg.destinations]


def _follower_line(f: FollowerStatus) -> None:
    ago = max(0.0, (time.time_ns() // 1000 - f.updated_at_micros) / 1e6)
    click.echo(
        f"follower    of {f.url}: replica at commit_seq {f.replica_seq}, archive at "
        f"{f.archive_seq}; lag {f.lag_frames} frames, {f.lag_seconds:.1f}s (round "
        f"{f.rounds}, {_age(ago)} ago, pid {f.pid})"
        + (f"; waiting for {f.waiting_for}" if f.waiting_for else "")
    )


def _archive_lines(st: DestinationStatus) -> None:
    click.echo(f"archive     {st.url}" + (f" (epoch {st.epoch})" if st.epoch else ""))
    if st.fenced is not None:
        click.echo(f"fenced      {st.fenced}")
    if st.last_archived_segment is not None:
        click.echo(
            f"archived    up to {st.last_archived_segment} (commit_seq "
            f"{st.last_archived_commit_seq})"
        )
    else:
        click.echo("archived    nothing recorded yet")
    oldest = st.oldest_pending
    if oldest is None:
        click.echo("pending     none")
    else:
        click.echo(
            f"pending     {len(st.pending)} segments, {_size(st.pending_bytes)}; oldest "
            f"{oldest.name}, closed {_age(oldest.age_seconds)} ago"
        )
    click.echo(
        f"lag         {st.lag_frames} frames, {_size(st.lag_bytes or 0)}, "
        f"{st.lag_seconds or 0.0:.1f}s"
    )
    for p in st.pending:
        if p.error is not None:
            what = "conflict" if p.conflict else p.state
            click.echo(f"{p.state:<11} {p.name}: {what} after {p.attempts} attempt(s): {p.error}")
