# pyright: strict
"""A user's script over walship's public API, as an application would write it: it must pass
``mypy --strict`` and pyright's strict mode with no ``ignore`` and no ``cast``
(tests/config/test_typed_open.py runs both on it). It is type-checked, never run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import walship
from walship.options import ArchiveOptions, OpenOptions
from walship.plugins.metrics import MetricsPlugin
from walship.stats import ArchiveStats, LatencyStats, LogStats


class Rotations:
    """A plugin: a hook marked with ``walship.hookimpl``."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    @walship.hookimpl
    def segment_closed(self, segment: walship.ClosedSegment, reason: str) -> None:
        self.closed.append(f"{segment.name} {reason}")


def p99_bound(latency: LatencyStats) -> float | None:
    """The first bucket bound holding 99% of the durations."""
    for bound, count in latency["buckets"]:
        if count >= 0.99 * latency["count"]:
            return bound
    return None


def archive_line(archive: ArchiveStats | None) -> str:
    if archive is None:
        return "no archive"
    return f"{archive['pending']} pending, {archive['archived']} archived to {archive['url']}"


def main(directory: Path) -> int:
    archive: ArchiveOptions = {
        "url": (directory / "archive").as_uri(),
        "workers": 2,
        "retries": {"attempts": 3, "backoff": "100ms", "max_backoff": "2s"},
        "upload_process": False,
    }
    metrics = MetricsPlugin()
    rotations = Rotations()
    options: OpenOptions = {  # a dict of keyword arguments, checked key by key
        "durability": "interval",
        "sync_interval": "5ms",
        "rotation": {"max_segment_age": "1m30s"},
        "plugins": [metrics, rotations, "walship.plugins.logging"],
    }
    try:
        log = walship.open(directory / "wal", **options)
        log.close()
        log = walship.open(
            directory / "wal",
            durability=walship.Durability.ALWAYS,
            max_segment_bytes="1MiB",
            archive=archive,
            retention={"keep_local": "until_archived"},
            entry_point_plugins=False,
        )
    except walship.ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    with log:
        first: int = log.append(b"hello")
        seqs: list[int] = log.append_batch([b"a", bytearray(b"b"), memoryview(b"c")])
        durable: int = log.sync()
        closed: walship.ClosedSegment | None = log.rotate()
        frames = [(f.commit_seq, bytes(f.payload)) for f in log.read(from_seq=first)]
        stats: LogStats = log.stats()
        syncs: int = stats["syncs"]
        active: str | None = stats["active_segment"]
        print(first, seqs, durable, closed, frames, syncs, active, json.dumps(stats))
        print(p99_bound(stats["append_seconds"]), p99_bound(stats["fsync_seconds"]))
        print(archive_line(stats["archive"]))
        if log.archiver is not None and log.archiver.flush(timeout=30):
            print(archive_line(log.archiver.stats()))
        report: walship.RecoveryReport = log.recovery
        print(report.summary(), log.durable_seq, log.last_seq, log.first_seq)
    with walship.open_archive(archive["url"]) as reader:
        for frame in reader.read(from_seq=1):
            print(frame.commit_seq, frame.timestamp_micros)
    with walship.open(config={"store": {"backend": "memory"}}, durability="none") as mem:
        mem.append(b"in memory")
    with walship.open(store={"backend": "memory"}, durability=walship.Durability.NONE) as mem:
        mem.append(b"a store section")
    print(metrics.snapshot(), rotations.closed)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
