"""``walship tail DIR``: the frames of a log directory as JSON lines (the ``walship dump``
schema), following new frames while another process writes (``-f``)."""

from __future__ import annotations

import sys

import click

from walship.cli.dump import frame_line
from walship.cli.target import open_target
from walship.core.readonly import POLL_INTERVAL, ReadOnlyLog
from walship.errors import FramesUnavailableError


@click.command("tail")
@click.argument("directory", metavar="DIR")
@click.option(
    "--from-seq",
    type=click.IntRange(min=0),
    default=None,
    help="First commit_seq (default: the first local frame; with -f and no --from-seq: the "
    "frames written from now on).",
)
@click.option("-f", "--follow", is_flag=True, help="Wait for new frames; print each as it comes.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="With -f: stop after this many seconds without a new frame (default: never).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.001),
    default=POLL_INTERVAL,
    show_default=True,
    help="With -f: seconds between two looks at the files.",
)
def tail_command(
    directory: str,
    from_seq: int | None,
    follow: bool,
    timeout: float | None,
    interval: float,
) -> None:
    """Print the frames of the log in DIR as JSON lines (segment_seq, commit_seq,
    timestamp_micros, payload_type, payload_b64, as `walship dump`), reading without the
    writer's lock: safe while another process writes, rotates and removes segments. With -f,
    follow new frames until interrupted (or --timeout). Never prints a torn frame; exit
    status 1 when frames asked for were removed by retention (read them from the archive).
    """
    if timeout is not None and not follow:
        raise click.UsageError("--timeout needs -f")
    log = ReadOnlyLog(open_target(directory), poll_interval=interval)
    if from_seq is None and follow:
        last = log.last_seq
        from_seq = 0 if last is None else last + 1
    try:
        for segment_seq, frame in log.read_located(from_seq, follow=follow, timeout=timeout):
            click.echo(frame_line(segment_seq, frame))
    except FramesUnavailableError as e:
        click.echo(f"walship: error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
