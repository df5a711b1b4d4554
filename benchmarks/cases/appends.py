"""Appending: batches (durability ``none``) against a bare encode loop or a plain ``os.write``;
durable single appends against ``os.write`` + ``os.fdatasync``; 16 threads against one."""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable

from crc32c import crc32c

import walship
from benchmarks.runner import Context, Result, Target, alternate, drop_file, median, remove_tree

HEAD = struct.Struct(">IQQB")
CRC = struct.Struct(">I")
ONE_SEGMENT = 1 << 40
"""Segment size for the batch cases: one round stays in one segment, because a rotation syncs
(the log syncs at rotation even under durability ``none``) and the baseline never syncs."""


def payloads(size: int, count: int) -> list[bytes]:
    """``count`` references to one random payload of ``size`` bytes (the same list feeds both
    sides, so neither pays for building payloads inside the timing)."""
    p = os.urandom(size)
    return [p] * count


def encode_frames(items: list[bytes], first_seq: int = 1, ts: int = 1_700_000_000_000_000) -> bytes:
    """The frames of ``items`` as the seed encodes them (the ``os.write`` baseline's bytes)."""
    buf = bytearray()
    seq = first_seq
    for p in items:
        head = HEAD.pack(21 + len(p), seq, ts, 0)
        buf += head
        buf += p
        buf += CRC.pack(crc32c(p, crc32c(head)))
        seq += 1
    return bytes(buf)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- walship sides ----------------------------------------------------------------------


def walship_batches(ctx: Context, items: list[bytes], batches: int) -> tuple[float, int]:
    """Seconds to ``append_batch`` ``items`` ``batches`` times (durability none), and the bytes."""
    d = ctx.fresh_dir("wal-batch")
    try:
        log = walship.open(d, durability="none", max_segment_bytes=ONE_SEGMENT)
        try:
            start = time.perf_counter()
            for _ in range(batches):
                log.append_batch(items)
            elapsed = time.perf_counter() - start
            written = int(log.stats()["bytes"])
        finally:
            log.close()
        return elapsed, written
    finally:
        remove_tree(d)


def walship_sync_appends(
    ctx: Context, payload: bytes, count: int, threads: int, shares: list[float] | None = None
) -> float:
    """Durable appends per second: ``threads`` threads each appending ``count`` records (and,
    into ``shares``, how many appends shared each fdatasync)."""
    d = ctx.fresh_dir("wal-sync")
    try:
        with walship.open(d, durability="always") as log:
            log.append(payload)  # the segment exists and is warm, as in a running service
            before = log.stats()
            rate = run_threads(lambda: log.append(payload), count, threads)
            after = log.stats()
            if shares is not None and after["syncs"] > before["syncs"]:
                frames = after["frames"] - before["frames"]
                shares.append(frames / (after["syncs"] - before["syncs"]))
            return rate
    finally:
        remove_tree(d)


def run_threads(op: Callable[[], object], count: int, threads: int) -> float:
    """Operations per second of ``threads`` threads each calling ``op`` ``count`` times, timed
    from a common start to the last thread's end."""
    if threads == 1:
        start = time.perf_counter()
        for _ in range(count):
            op()
        return count / (time.perf_counter() - start)
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            for _ in range(count):
                op()
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return count * threads / elapsed


# --- baselines --------------------------------------------------------------------------


def bare_batches(ctx: Context, items: list[bytes], batches: int) -> float:
    """The bare loop: struct header + CRC-32C into a reused bytearray, one ``os.write`` per
    batch, into a file opened with O_APPEND."""
    path = ctx.scratch / "bare-batch.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        pack = HEAD.pack
        crc_pack = CRC.pack
        buf = bytearray()
        seq = 1
        ts = time.time_ns() // 1000
        start = time.perf_counter()
        for _ in range(batches):
            buf.clear()
            for p in items:
                head = pack(21 + len(p), seq, ts, 0)
                buf += head
                buf += p
                buf += crc_pack(crc32c(p, crc32c(head)))
                seq += 1
            write_all(fd, buf)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        drop_file(path)


def plain_writes(ctx: Context, encoded: bytes, batches: int) -> float:
    """``os.write`` of already encoded frames, one call per batch (O_APPEND)."""
    path = ctx.scratch / "plain-write.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(batches):
            write_all(fd, encoded)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        drop_file(path)


def write_fdatasync(ctx: Context, record: bytes, count: int) -> float:
    """Records per second of ``os.write`` + ``os.fdatasync`` per record (O_APPEND file)."""
    path = ctx.scratch / "write-fdatasync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        os.fsync(fd)
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, record)
            os.fdatasync(fd)
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)
        drop_file(path)


# --- cases ------------------------------------------------------------------------------


def append_batch_100b(ctx: Context) -> Result:
    p = ctx.profile
    items = payloads(100, p.batch_frames)
    frames = p.batch_frames * p.batches_100b

    def ours() -> float:
        return frames / walship_batches(ctx, items, p.batches_100b)[0]

    def theirs() -> float:
        return frames / bare_batches(ctx, items, p.batches_100b)

    a, b = alternate(ctx, ours, theirs)
    return Result(
        "append_batch_100B",
        "frames/s",
        "bare loop: struct + CRC-32C into a bytearray, one os.write per batch",
        Target(">=", 0.7),
        median(a),
        median(b),
        a,
        b,
        note=f"{p.batch_frames} frames of 100 B per append_batch, durability none",
    )


def distinct_payloads(size: int, count: int) -> list[bytes]:
    """``count`` different random payloads of ``size`` bytes (no cache-hot single payload)."""
    return [os.urandom(size) for _ in range(count)]


def _append_batch_bytes(
    ctx: Context, name: str, size: int, batches: int, target: float, distinct: bool = False
) -> Result:
    p = ctx.profile
    items = (distinct_payloads if distinct else payloads)(size, p.batch_frames)
    encoded = encode_frames(items)
    mb = len(encoded) * batches / 1e6

    def ours() -> float:
        elapsed, written = walship_batches(ctx, items, batches)
        if written != len(encoded) * batches:
            raise AssertionError(
                f"walship wrote {written} bytes, expected {len(encoded) * batches}"
            )
        return mb / elapsed

    def theirs() -> float:
        return mb / plain_writes(ctx, encoded, batches)

    a, b = alternate(ctx, ours, theirs)
    return Result(
        name,
        "MB/s",
        "os.write of the same encoded bytes, one call per batch",
        Target(">=", target),
        median(a),
        median(b),
        a,
        b,
        note=f"{p.batch_frames} frames of {size // 1024} KiB per append_batch, durability none"
        + (f", {p.batch_frames} distinct payloads" if distinct else ""),
    )


def append_batch_4kib(ctx: Context) -> Result:
    return _append_batch_bytes(ctx, "append_batch_4KiB", 4096, ctx.profile.batches_4kib, 0.6)


def append_batch_64kib(ctx: Context) -> Result:
    return _append_batch_bytes(
        ctx, "append_batch_64KiB", 65536, ctx.profile.batches_64kib, 0.8, distinct=True
    )


def append_sync_1thread(ctx: Context) -> Result:
    p = ctx.profile
    payload = os.urandom(100)
    record = encode_frames([payload])
    a, b = alternate(
        ctx,
        lambda: walship_sync_appends(ctx, payload, p.sync_appends, 1),
        lambda: write_fdatasync(ctx, record, p.sync_appends),
    )
    return Result(
        "append_sync_1thread",
        "appends/s",
        "os.write + os.fdatasync per record",
        Target(">=", 0.85),
        median(a),
        median(b),
        a,
        b,
        note="one 100 B append per call, durability always",
    )


def append_sync_16threads(ctx: Context) -> Result:
    p = ctx.profile
    payload = os.urandom(100)
    shares: list[float] = []
    a, b = alternate(
        ctx,
        lambda: walship_sync_appends(
            ctx, payload, p.sync_appends_per_thread, p.sync_threads, shares
        ),
        lambda: walship_sync_appends(ctx, payload, p.sync_appends, 1),
    )
    share = median(shares)
    shared = f"; {share:.1f} appends shared each fdatasync (median)" if share else ""
    return Result(
        "append_sync_16threads",
        "appends/s",
        "walship append_sync_1thread",
        Target(">=", 6),
        median(a),
        median(b),
        a,
        b,
        note=f"{p.sync_threads} threads, each 100 B appends, durability always (group commit)"
        + shared,
    )


__all__ = [
    "append_batch_4kib",
    "append_batch_64kib",
    "append_batch_100b",
    "append_sync_1thread",
    "append_sync_16threads",
    "run_threads",
    "walship_batches",
    "walship_sync_appends",
]
