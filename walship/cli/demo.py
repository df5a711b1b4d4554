"""``walship demo``: the main job on embedded defaults."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import click

import walship
from walship.backends.base import SegmentStore
from walship.core.recovery import scan_store
from walship.plugins.logging import LoggingPlugin
from walship.plugins.metrics import MetricsPlugin


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the demo log (default: a new temporary directory).",
)
@click.option("--frames", default=5000, show_default=True, help="How many frames to write.")
@click.option(
    "--segment-bytes", default=64 * 1024, show_default=True, help="Rotate segments at this size."
)
@click.option("--quiet", is_flag=True, help="Do not print the logging plugin's event lines.")
def demo(directory: Path | None, frames: int, segment_bytes: int, quiet: bool) -> None:
    """Write frames into small segments, rotate, reopen, verify, and print a summary.

    The built-in plugins are on: ``logging`` prints one line per event (to stderr) and
    ``metrics`` counts them; its summary ends the output.
    """
    metrics = MetricsPlugin()
    plugins = [metrics, LoggingPlugin(logger=_EVENTS_LOGGER)]
    if not quiet:
        _log_events_to_stderr()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="walship-demo-"))
    elif directory.exists() and any(directory.iterdir()):
        raise click.UsageError(f"{directory} is not empty; choose a new directory")
    started = time.perf_counter()
    with walship.open(directory, max_segment_bytes=segment_bytes, plugins=plugins) as log:
        batch = [f"demo record {i:06d} ".encode() * 4 for i in range(frames)]
        half = frames // 2
        for payload in batch[:half]:  # durable one by one
            log.append(payload, payload_type=1)
        log.append_batch(batch[half:], payload_type=2)  # and in one group
        log.rotate()
        written = log.last_seq
    wrote = time.perf_counter() - started
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
    click.echo("metrics (plugin walship.plugins.metrics, both opens):")
    for line in metrics.render().splitlines():
        click.echo(f"  {line}")
    if not scan.ok or read_back != written:
        for p in scan.problems:
            click.echo(f"  {p}", err=True)
        sys.exit(1)


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
