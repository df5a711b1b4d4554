"""Every case of the suite, in the order of the issue's table.

A case is a function ``(Context) -> Result`` that alternates walship and its baseline for
``ctx.rounds`` rounds (see :func:`benchmarks.runner.alternate`), or raises
:class:`benchmarks.runner.Skip` with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.cases import appends, archive, memory, peers, recovery, seed, shipping, sqlite
from benchmarks.cases import asyncio_appends as aio
from benchmarks.runner import Context, Result, Target

Case = Callable[[Context], Result]

CASES: dict[str, Case] = {
    "append_batch_100B": appends.append_batch_100b,
    "append_batch_4KiB": appends.append_batch_4kib,
    "append_batch_64KiB": appends.append_batch_64kib,
    "append_sync_1thread": appends.append_sync_1thread,
    "append_sync_16threads": appends.append_sync_16threads,
    "sqlite_sync": sqlite.sqlite_sync,
    "sqlite_sync_16threads": sqlite.sqlite_sync_16threads,
    "sqlite_batch": sqlite.sqlite_batch,
    "recover_100B": recovery.recover_100b,
    "recover_64KiB": recovery.recover_64kib,
    "archive": archive.archive,
    "append_p99_while_archiving": archive.append_p99_while_archiving,
    "restore": archive.restore,
    "append_sync_shipping": shipping.append_sync_shipping,
    "append_p99_shipping": shipping.append_p99_shipping,
    "rss_1GiB": memory.rss_1gib,
    aio.NAME: aio.asyncio_appends,
    "read_back_100B": peers.read_back_100b,
    "read_back_64KiB": peers.read_back_64kib,
    "peers_sync_1thread": peers.peers_sync_1thread,
    "peers_sync_16threads": peers.peers_sync_16threads,
    "peers_batch_100B": peers.peers_batch_100b,
    seed.NAME: seed.seed_batch_100b,
}

# What each case promises before it runs (for a skipped or failed case's row).
HEADINGS: dict[str, tuple[str, str | None, Target]] = {
    "append_batch_100B": ("frames/s", "bare encode loop + os.write", Target(">=", 0.7)),
    "append_batch_4KiB": ("MB/s", "os.write of the same encoded bytes", Target(">=", 0.6)),
    "append_batch_64KiB": ("MB/s", "os.write of the same encoded bytes", Target(">=", 0.8)),
    "append_sync_1thread": ("appends/s", "os.write + os.fdatasync per record", Target(">=", 0.85)),
    "append_sync_16threads": ("appends/s", "walship append_sync_1thread", Target(">=", 6)),
    "sqlite_sync": ("appends/s", "sqlite3 WAL, synchronous=FULL", Target(">=", 1)),
    "sqlite_sync_16threads": (
        "appends/s",
        "sqlite3 WAL, synchronous=FULL, 16 threads",
        Target(">=", 5),
    ),
    "sqlite_batch": ("frames/s", "sqlite3 executemany, synchronous=NORMAL", Target(">=", 3)),
    "recover_100B": ("frames/s", "bare decode loop", Target(">=", 0.6)),
    "recover_64KiB": ("MB/s", "read + CRC-32C + BLAKE3", Target(">=", 0.7)),
    "archive": ("MB/s", "s3fs put_file, same concurrency", Target(">=", 0.9)),
    "append_p99_while_archiving": ("ms", "the same appends without archiving", Target("<=", 1.5)),
    "restore": ("MB/s", "parallel s3fs get_file", Target(">=", 1.0)),
    "append_sync_shipping": (
        "appends/s",
        "the same appends without an archive",
        Target(">=", 0.8),
    ),
    "append_p99_shipping": ("ms", "the same appends without an archive", Target("<=", 1.5)),
    "rss_1GiB": ("MiB", None, Target("<=", 100, on="value", unit="MiB")),
    aio.NAME: (aio.UNIT, aio.BASELINE, aio.TARGET),
    "read_back_100B": ("frames/s", "the fastest peer", Target(">=", 1.0)),
    "read_back_64KiB": ("MB/s", "the fastest peer", Target(">=", 1.0)),
    "peers_sync_1thread": ("appends/s", "the fastest peer", Target(">=", 1.3)),
    "peers_sync_16threads": ("appends/s", "the fastest peer", Target(">=", 1.2)),
    "peers_batch_100B": ("frames/s", "the fastest peer", Target(">=", 1.0)),
    seed.NAME: (seed.UNIT, seed.BASELINE, seed.TARGET),
}

__all__ = ["CASES", "HEADINGS", "Case"]
