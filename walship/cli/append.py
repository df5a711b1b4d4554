"""``walship append``: stdin records become frames."""

from __future__ import annotations

import codecs
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

import click

import walship
from walship.cli.draining import exit_if_not_drained, named_here
from walship.cli.errors import CliError
from walship.errors import WalshipError

_CHUNK = 1 << 16


def read_chunks(stream: BinaryIO, sep: bytes) -> Iterator[list[bytes]]:
    """Split ``stream`` at ``sep``: for every read, the records it completed.

    Reads return what is available (``read1``), so records from a slow producer go out as
    they arrive. A final record without a trailing separator counts; the empty record after a
    trailing separator does not.
    """
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    rest = b""
    while chunk := read(_CHUNK):
        parts = (rest + chunk).split(sep)
        rest = parts.pop()
        if parts:
            yield parts
    if rest:
        yield [rest]


def parse_sep(sep: str) -> bytes:
    """``--sep`` with backslash escapes (``\\0``, ``\\t``, ``\\x1e``, ``\\n``) as bytes."""
    try:
        value = codecs.escape_decode(sep.encode("utf-8"))[0]
    except ValueError as e:
        raise CliError(f"--sep {sep!r}: {e}") from None
    if not isinstance(value, bytes) or not value:
        raise CliError(f"--sep {sep!r}: expected a non-empty separator")
    return value


@click.command("append")
@click.option(
    "-c",
    "--config",
    default="walship.yaml",
    show_default=True,
    help="The log's YAML config (`walship init` writes one).",
)
@click.option(
    "--sep",
    default=None,
    help="Record separator instead of a newline; escapes like \\0, \\t, \\x1e work.",
)
@click.option(
    "--type",
    "payload_type",
    type=click.IntRange(0, 255),
    default=0,
    show_default=True,
    help="The payload_type of every frame.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Append up to N records at once (one write, one fsync) when they are available.",
)
@click.option("--metrics", is_flag=True, help="Print the log's metrics to stderr at the end.")
def append_command(
    config: str, sep: str | None, payload_type: int, batch: int, metrics: bool
) -> None:
    """Append each line of stdin (or each record split at --sep) as a frame, then print the
    last durable commit_seq.

    Lines may end in CRLF (a file from Windows): without --sep, the CR before a newline is not
    part of the record. Every record is durable once its append returns, as the config's
    durability says (and at the end in any case: the log is closed, which syncs it).

    With an archive, the close waits up to archive.drain_on_close for the uploads; exit status
    1 names the segments still pending then (kept locally, they upload at the next open).
    """
    separator = b"\n" if sep is None else parse_sep(sep)
    from walship.plugins.metrics import MetricsPlugin

    metrics_plugin = MetricsPlugin() if metrics else None
    plugins = [metrics_plugin] if metrics_plugin is not None else []
    with named_here(), walship.open(config=config, plugins=plugins) as log:
        try:
            for records in read_chunks(sys.stdin.buffer, separator):
                if sep is None:
                    records = [r[:-1] if r.endswith(b"\r") else r for r in records]
                for i in range(0, len(records), batch):
                    group = records[i : i + batch]
                    if len(group) == 1:
                        log.append(group[0], payload_type)
                    else:
                        log.append_batch(group, payload_type)
        except WalshipError as e:
            raise CliError(f"{e}; durable up to commit_seq {log.durable_seq}") from e
    click.echo(str(log.durable_seq))
    if metrics_plugin is not None:
        click.echo(metrics_plugin.render(), err=True)
    exit_if_not_drained(log)
