"""``walship demo``: the main job on embedded defaults."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

import walship
from walship.core.scan import scan_store
from walship.plugins.logging import LoggingPlugin
from walship.plugins.metrics import MetricsPlugin
from walship.store import SegmentStore


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the demo log; it is kept (default: a new temporary directory, "
    "removed at the end unless --keep).",
)
@click.option("--frames", default=5000, show_default=True, help="How many frames to write.")
@click.option(
    "--segment-bytes", default=64 * 1024, show_default=True, help="Rotate segments at this size."
)
@click.option("--quiet", is_flag=True, help="Do not print the logging plugin's event lines.")
@click.option(
    "--archive/--no-archive",
    "archive",
    default=True,
    show_default=True,
    help="Archive closed segments to a file:// archive next to the log, then restore from it.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temporary log, archive and restored directories (a --dir is always kept).",
)
def demo(
    directory: Path | None,
    frames: int,
    segment_bytes: int,
    quiet: bool,
    archive: bool,
    keep: bool,
) -> None:
    """Write frames into small segments, rotate, reopen, verify, archive to a file:// archive
    next to the log (with a checkpoint and its snapshot half way), restore from it (whole, and
    from the checkpoint: the snapshot and only the frames after it), and print a summary.

    The built-in plugins are on: ``logging`` prints one line per event (to stderr) and
    ``metrics`` counts them; its summary ends the output. Without ``--dir``, the directories
    are temporary and removed at the end (unless ``--keep``, or the demo failed: then they are
    kept for a look).
    """
    metrics = MetricsPlugin()
    plugins = [metrics, LoggingPlugin(logger=_EVENTS_LOGGER)]
    if not quiet:
        _log_events_to_stderr()
    temporary = directory is None
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="walship-demo-"))
    elif directory.exists() and any(directory.iterdir()):
        raise click.UsageError(f"{directory} is not empty; choose a new directory")
    directory = directory.resolve()
    archive_dir = directory.with_name(directory.name + ".archive")
    restored_dir = directory.with_name(directory.name + ".restored")
    checkpoint_dir = directory.with_name(directory.name + ".from-checkpoint")
    if archive:
        for d in (archive_dir, restored_dir, checkpoint_dir):
            if d.exists() and any(d.iterdir()):
                raise click.UsageError(f"{d} is not empty; choose a new --dir")
    archive_url = archive_dir.as_uri()
    options: dict[str, Any] = {"archive": {"url": archive_url}} if archive else {}
    started = time.perf_counter()
    with walship.open(
        directory, max_segment_bytes=segment_bytes, plugins=plugins, **options
    ) as log:
        batch = [f"demo record {i:06d} ".encode() * 4 for i in range(frames)]
        half = frames // 2
        for payload in batch[:half]:  # durable one by one
            log.append(payload, payload_type=1)
        if log.archiver is not None:  # the application's state up to here, in the archive
            log.checkpoint(half, snapshot=demo_snapshot(half))
        log.append_batch(batch[half:], payload_type=2)  # and in one group
        log.rotate()  # seal the last frames (a no-op if the batch's size rotation already did)
        written = log.last_seq
        wrote = time.perf_counter() - started
        archived_ok = log.archiver.flush(timeout=120) if log.archiver is not None else True
    with walship.open(directory, plugins=plugins) as log:
        report = log.recovery
        read_back = sum(1 for _ in log.read())
    scan = scan_store(walship_store(directory))
    click.echo(f"log directory    {directory}")
    click.echo(f"frames written   {written} in {wrote:.2f}s ({half} durable appends, 1 batch)")
    click.echo(f"segments         {report.segments} (rotating at {segment_bytes} bytes)")
    click.echo(f"reopened         {report.summary()}")
    click.echo(f"read back        {read_back} frames")
    click.echo(f"verify           {'ok: headers, frames and chain' if scan.ok else 'DAMAGED'}")
    restored_ok = True
    if archive and scan.ok:
        restored_ok = _archive_and_restore(directory, archive_url, restored_dir, archived_ok)
        restored_ok = _restore_from_checkpoint(directory, archive_url, checkpoint_dir, half) and (
            restored_ok
        )
    click.echo("metrics (plugin walship.plugins.metrics, both opens):")
    for line in metrics.render().splitlines():
        click.echo(f"  {line}")
    if not scan.ok or read_back != written or not restored_ok:
        for p in scan.problems:
            click.echo(f"  {p}", err=True)
        sys.exit(1)
    if temporary and not keep:
        for d in (directory, archive_dir, restored_dir, checkpoint_dir):
            shutil.rmtree(d, ignore_errors=True)
        click.echo(f"removed          {directory} and its archive (--keep keeps them)")


def _archive_and_restore(
    directory: Path, archive_url: str, restored_dir: Path, archived_ok: bool
) -> bool:
    """Verify the archive, restore the demo log from it into ``restored_dir``, compare every
    frame with the original, and print two lines. True when all of it holds."""
    from walship.archive import ArchiveStore
    from walship.archive.check import verify_archive
    from walship.archive.restore import restore

    archived = verify_archive(ArchiveStore(archive_url))  # what `walship verify URL` checks
    click.echo(
        f"archive          {len(archived.segments)} closed segments to {archive_url} "
        f"({'verified: sizes, BLAKE3 and chain' if archived.ok and archived_ok else 'DAMAGED'})"
    )
    started = time.perf_counter()
    result = restore(archive_url, restored_dir, jobs=4)
    took = time.perf_counter() - started
    with walship.open(directory) as original, walship.open(restored_dir) as restored:
        archived_frames = [
            f for f in original.read() if f.commit_seq <= (result.last_commit_seq or 0)
        ]
        same = archived_frames == list(restored.read())
    click.echo(
        f"restore          {result.summary()} into {restored_dir} in {took:.2f}s; "
        f"{'frames match byte for byte' if same else 'FRAMES DIFFER'}"
    )
    for p in archived.problems:
        click.echo(f"  {p}", err=True)
    return archived.ok and archived_ok and same


def demo_snapshot(seq: int) -> bytes:
    """The demo application's snapshot of its state after ``seq`` records."""
    return f"demo state: {seq} records applied\n".encode()


def _restore_from_checkpoint(
    directory: Path, archive_url: str, checkpoint_dir: Path, seq: int
) -> bool:
    """Restore the demo log from its checkpoint (the snapshot and only the frames after it)
    into ``checkpoint_dir``, compare both with the original, print two lines. True when both
    match."""
    from walship.archive.restore import restore

    result = restore(archive_url, checkpoint_dir, from_checkpoint="latest")
    snapshot = Path(result.snapshot or "").read_bytes()
    with walship.open(directory) as original, walship.open(checkpoint_dir) as restored:
        last = result.last_commit_seq or 0
        after = [f for f in original.read(seq + 1) if f.commit_seq <= last]
        same = after == list(restored.read()) and restored.first_seq == seq + 1
    ok = snapshot == demo_snapshot(seq) and same
    click.echo(f"checkpoint       {seq}, with a snapshot of {len(snapshot)} bytes in the archive")
    click.echo(
        f"from checkpoint  {result.summary()} into {checkpoint_dir}; first_seq {seq + 1}; "
        f"{'snapshot and frames match byte for byte' if ok else 'SNAPSHOT OR FRAMES DIFFER'}"
    )
    return ok


_EVENTS_LOGGER = "walship.demo.events"


def _log_events_to_stderr() -> None:
    logger = logging.getLogger(_EVENTS_LOGGER)
    for old in list(logger.handlers):  # from an earlier run in this process, on an old stderr
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def walship_store(directory: Path) -> SegmentStore:
    from walship.backends.posix import PosixStore

    return PosixStore(directory)
