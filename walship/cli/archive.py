"""``walship archive`` (upload what is pending) and ``walship restore`` (from an archive)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import walship
from walship.cli.errors import CliError
from walship.cli.target import config_option, keyring_from, storage_options_from, target_options
from walship.errors import ArchiveIntegrityError, ArchiveKeyError

if TYPE_CHECKING:
    from walship.archive.restore import RestoreProgress, RestoreResult
    from walship.log import ArchiveService


@click.command("archive")
@config_option(
    "The log's YAML config (with an archive: section).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop waiting after this many seconds (default: until every attempt is used).",
)
def archive(config: Path, timeout: float | None) -> None:
    """Upload every closed segment that is not archived yet, verified, with a progress bar.

    A catch-up run: the backlog it finds is no lag warning. With ``--timeout`` it returns
    within that time (and a moment to close): uploads still in flight then stay pending, queued
    again by the next run or open. Exits 1 when some segment could not be archived (each is
    named with its last error, or "still in progress"), and 3 when some segment conflicts with
    the archive (different content under its name, never overwritten: no retry can help).
    """
    from tqdm import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    log = open_within(config, deadline)
    try:
        archiver = log.archiver
        if archiver is None:
            raise CliError(f"{config}: no archive: section, nothing to archive to")
        archiver.requeue()
        start = archiver.stats()
        # several destinations: one step per segment and destination
        each = start["destinations"] or [start]
        total = sum(d["archived"] + d["pending"] for d in each)
        with tqdm(
            total=total, unit="segment", desc="archive", file=sys.stderr, disable=None
        ) as bar:
            while True:
                st = archiver.stats()
                bar.update(st["archived"] - bar.n)
                if st["pending"] == st["stalled_now"]:
                    break
                left_s = None if deadline is None else deadline - time.monotonic()
                if left_s is not None and left_s <= 0:
                    break
                archiver.wait_for_progress(0.2 if left_s is None else min(0.2, left_s))
        if deadline is not None:
            # in-flight uploads get what is left of the time, not the close's usual 30 s
            archiver.close(timeout=max(0.0, deadline - time.monotonic()))
        report_archive(archiver)
    finally:
        log.close(drain=0)  # the run waited on its own terms and named what is left


def open_within(config: Path, deadline: float | None) -> walship.Log:
    """``walship.open(config=config)``, given up (exit 1) when ``deadline`` passes first: the
    open looks at the archive (one LIST, to check that the log continues it), and a server
    that hangs would hold it past any ``--timeout``. The open left behind runs on in a daemon
    thread until the process exits (as a kill would end it: an open changes nothing it cannot
    recover from)."""
    if deadline is None:
        return walship.open(config=config)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["log"] = walship.open(config=config)
        except BaseException as e:  # handed to the caller's thread below
            box["error"] = e

    opener = threading.Thread(target=run, name="walship-archive-open", daemon=True)
    opener.start()
    opener.join(max(0.0, deadline - time.monotonic()))
    if opener.is_alive():
        click.echo(
            f"walship: {config}: the log did not open within the timeout (the archive did not "
            "answer in time); nothing archived",
            err=True,
        )
        sys.exit(1)
    if "error" in box:
        raise box["error"]
    log: walship.Log = box["log"]
    return log


CONFLICT_EXIT = 3
"""Exit status of ``walship archive`` when a segment conflicts with the archive."""


def report_archive(archiver: ArchiveService) -> None:
    """Print what ``walship archive`` did; exit 1 (3: a conflict) when something is left."""
    st = archiver.stats()
    click.echo(
        f"archived {st['archived']} segments ({st['bytes']} bytes; "
        f"{st['already_archived']} were there already) to {archiver.url}"
    )
    for d in st["destinations"] or ():
        click.echo(
            f"  {d['url']}: {d['archived']} archived ({d['bytes']} bytes), {d['pending']} pending"
        )
    if st["removed"]:
        click.echo(f"removed {st['removed']} local segments (retention)")
    left = archiver.pending()
    if not left:
        return
    errors = archiver.last_errors()
    conflicts = archiver.conflicts()
    click.echo(f"{len(left)} segments are not archived:", err=True)
    for name in left:
        what = errors.get(name, "still in progress")
        click.echo(f"  {name}: {'conflict: ' if name in conflicts else ''}{what}", err=True)
    if conflicts:
        click.echo(
            f"walship: {len(conflicts)} segments conflict with the archive (different content "
            f"under their names, never overwritten; exit {CONFLICT_EXIT})",
            err=True,
        )
        sys.exit(CONFLICT_EXIT)
    sys.exit(1)


@click.command("restore")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to-seq", type=click.IntRange(min=0), default=None, help="Stop at this commit_seq.")
@click.option(
    "--to-time",
    default=None,
    metavar="ISO8601",
    help="Stop at the last frame stamped at or before this time (no offset: UTC).",
)
@click.option(
    "--jobs", type=click.IntRange(1, 256), default=4, show_default=True, help="Parallel downloads."
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Restore what the archive holds even with pieces missing: from its first segment "
    "there, up to the first missing one; what is left out is named.",
)
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing (exit 0) when DIRECTORY already holds a log (a segment file, "
    "walship.lock or walship.archive.json).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="When the archive holds no segment, create an empty log in DIRECTORY (exit 0).",
)
@click.option(
    "--from-checkpoint",
    "from_checkpoint",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[latest|SEQ]",
    help="Restore a checkpoint's snapshot (into DIRECTORY/walship.snapshot) and only the "
    "segments after it (default: latest; with --to-seq/--to-time the newest at or before it).",
)
@target_options
def restore(
    url: str,
    directory: Path,
    to_seq: int | None,
    to_time: str | None,
    jobs: int,
    allow_partial: bool,
    if_missing: bool,
    allow_empty: bool,
    from_checkpoint: str | None,
    config: str | None,
    storage_option: tuple[str, ...],
) -> None:
    """Restore the log archived at URL into DIRECTORY (new or empty), whole or up to a point.

    Every segment is checked against its manifest (size, BLAKE3, header, frames) and the
    chain, and the commit_seq must rise from segment to segment. The restore is strict: when
    the archive does not start at the log's first segment, or a segment up to the target is
    missing (or is there without its manifest), or anything is altered, every such piece is
    named and the restore exits 1 without leaving a directory behind. --allow-partial restores
    on purpose what there is (from the archive's first segment there, up to the first missing
    one), names what it left out and exits 0; damage is refused all the same.

    For a container's start-up, run it unconditionally before the service:
    --if-missing does nothing when DIRECTORY already holds a log, and --allow-empty creates an
    empty log when the archive holds none yet (a first deployment). A staging directory that a
    killed restore into DIRECTORY left beside it is removed first (when no live restore owns
    it). Objects in the archive that are not walship's (a README.txt, notes/...) are ignored
    with one warning.

    --from-checkpoint [latest|SEQ] restores a checkpoint's snapshot into
    DIRECTORY/walship.snapshot (its BLAKE3 checked) and only the segments holding frames after
    it; the restored log's first_seq is just after the checkpoint. A pruned archive (walship
    prune) is always restored from a checkpoint: without the option, from its oldest one.
    """
    from walship.archive.restore import restore as run_restore

    if to_seq is not None and to_time is not None:
        raise click.UsageError("give at most one of --to-seq and --to-time")
    checkpoint = _checkpoint_argument(from_checkpoint)
    progress = _ProgressBar()
    try:
        result = run_restore(
            url,
            directory,
            to_seq=to_seq,
            to_time=to_time,
            jobs=jobs,
            progress=progress,
            storage_options=storage_options_from(config, storage_option, url),
            encryption=keyring_from(config, url),
            allow_partial=allow_partial,
            if_missing=if_missing,
            allow_empty=allow_empty,
            from_checkpoint=checkpoint,
        )
    except (ArchiveIntegrityError, ArchiveKeyError) as e:
        click.echo(f"walship: restore failed: {e}", err=True)
        sys.exit(1)
    finally:
        progress.close()
    if result.outcome != "restored":  # --if-missing or --allow-empty: one line
        click.echo(result.summary())
        return
    _report(result, to_seq if to_seq is not None else to_time)


def _checkpoint_argument(from_checkpoint: str | None) -> str | int | None:
    """``--from-checkpoint``: ``latest``, a commit_seq, or ``None``.

    Raises:
        click.BadParameter: neither ``latest`` nor digits (exit 2).
    """
    if from_checkpoint is None or from_checkpoint == "latest":
        return from_checkpoint
    if not from_checkpoint.isdigit():
        raise click.BadParameter(
            f"{from_checkpoint!r}: expected latest or a commit_seq",
            param_hint="--from-checkpoint",
        )
    return int(from_checkpoint)


class _ProgressBar:
    """The restore's progress on stderr (tqdm; off when stderr is no terminal), made at the
    first report, when the total is known."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, p: RestoreProgress) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=p.total_bytes,
                unit="B",
                unit_scale=True,
                desc="restore",
                file=sys.stderr,
                disable=None,
            )
        self._bar.update(p.done_bytes - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _report(result: RestoreResult, target: int | str | None) -> None:
    """What a restore restored, for the operator: a few lines on stdout, what a partial
    restore left out on stderr."""
    click.echo(f"restored {result.summary()}")
    for line in result.left_out:
        click.echo(f"walship: partial restore (--allow-partial): left out {line}", err=True)
    click.echo(f"from     {result.url}")
    click.echo(f"into     {result.directory} (continues in {result.active_segment})")
    if target is not None:
        if result.cut_segment is None and result.last_commit_seq == result.archive_last_commit_seq:
            click.echo(
                f"target   {target} is at or beyond the archive's last commit_seq "
                f"{result.archive_last_commit_seq}: restored everything"
            )
        else:
            click.echo(f"target   {target}: ends at commit_seq {result.last_commit_seq}")
