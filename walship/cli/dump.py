"""``walship dump TARGET``: every frame as one JSON object per line."""

from __future__ import annotations

import base64
import json
import sys

import click

from walship.cli.errors import CliError
from walship.cli.target import open_target, segment_names, storage_options_from, target_options
from walship.core.frame import LENGTH_SIZE, Frame, decode_all
from walship.core.header import HEADER_SIZE, SegmentHeader, parse_segment_name
from walship.errors import FrameError, SegmentHeaderError
from walship.store import SegmentStore

DAMAGED = 1


def frame_line(segment_seq: int, frame: Frame) -> str:
    """One frame as the JSON line ``walship dump`` prints (``walship tail`` prints the same):
    segment_seq, commit_seq, timestamp_micros, payload_type, payload_b64."""
    record = {
        "segment_seq": segment_seq,
        "commit_seq": frame.commit_seq,
        "timestamp_micros": frame.timestamp_micros,
        "payload_type": frame.payload_type,
        "payload_b64": base64.b64encode(frame.payload).decode("ascii"),
    }
    return json.dumps(record)


def _first_commit_seq(store: SegmentStore, name: str) -> int | None:
    """The commit_seq of the first frame of ``name`` (reads only that frame), or ``None``."""
    head = store.read(name, HEADER_SIZE, LENGTH_SIZE)
    if len(head) < LENGTH_SIZE:
        return None
    length = int.from_bytes(head, "big")
    try:
        frame = next(decode_all(store.read(name, HEADER_SIZE, LENGTH_SIZE + length)), None)
    except FrameError:
        return None
    return None if frame is None else frame.commit_seq


def _start_index(store: SegmentStore, names: list[str], from_seq: int | None) -> int:
    """Skip the segments that end before ``from_seq``: those whose successor starts at or
    before it."""
    start = 0
    if from_seq is None:
        return start
    for i in range(len(names) - 1):
        first_next = _first_commit_seq(store, names[i + 1])
        if first_next is None or first_next > from_seq:
            break
        start = i + 1
    return start


@click.command("dump")
@click.argument("target")
@click.option("--from-seq", type=click.IntRange(min=0), default=None, help="First commit_seq.")
@click.option("--to-seq", type=click.IntRange(min=0), default=None, help="Last commit_seq.")
@target_options
def dump_command(
    target: str,
    from_seq: int | None,
    to_seq: int | None,
    config: str | None,
    storage_option: tuple[str, ...],
) -> None:
    """Print the frames of TARGET (a log directory or an archive URL) as JSON lines:
    segment_seq, commit_seq, timestamp_micros, payload_type, payload_b64.

    Stops with exit status 1 at the first damaged header or frame (the frames before it are
    printed); `walship verify` says more.
    """
    if from_seq is not None and to_seq is not None and from_seq > to_seq:
        raise CliError(f"--from-seq {from_seq} is after --to-seq {to_seq}")
    options = storage_options_from(config, storage_option, target) if "://" in target else {}
    store = open_target(target, options, config)
    names = segment_names(store, target)
    for name in names[_start_index(store, names, from_seq) :]:
        seq = parse_segment_name(name)
        data = store.read(name)
        try:
            SegmentHeader.decode(data, name, seq)
            for f in decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
                if from_seq is not None and f.commit_seq < from_seq:
                    continue
                if to_seq is not None and f.commit_seq > to_seq:
                    return
                assert seq is not None
                click.echo(frame_line(seq, f))
        except (FrameError, SegmentHeaderError) as e:
            detail = str(e).removeprefix(f"{name}: ")
            click.echo(f"walship: error: {name}: {detail}; stopped here", err=True)
            sys.exit(DAMAGED)
