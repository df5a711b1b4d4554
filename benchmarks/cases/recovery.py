"""Recovery: open + the full recovery scan (every header, frame CRC and the BLAKE3 chain) of a
log written by walship, against a bare decode loop or a read + CRC-32C + BLAKE3 of the files."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from blake3 import blake3
from crc32c import crc32c

import walship
from benchmarks.cases.appends import payloads
from benchmarks.runner import Context, Result, Target, alternate, median
from walship.core.header import HEADER_SIZE, parse_segment_name

_U32 = struct.Struct(">I")


def make_log(ctx: Context, payload_size: int, total_bytes: int) -> tuple[Path, int, int]:
    """A closed log of about ``total_bytes`` of frames of ``payload_size`` bytes, in four or
    more segments of at most 64 MiB. Returns its directory, frame count and size in bytes."""
    key = f"recover-{payload_size}-{total_bytes}"
    if key in ctx.shared:
        return ctx.shared[key]  # type: ignore[no-any-return]
    d = ctx.fresh_dir(f"recover-{payload_size}")
    frame = payload_size + 25
    per_batch = max(1, min(1000, (4 << 20) // frame))
    segment = max(64 * 1024, min(64 << 20, total_bytes // 4))
    batches = max(1, total_bytes // (frame * per_batch))
    items = payloads(payload_size, per_batch)
    ctx.say(f"writing a {total_bytes >> 20} MiB log of {payload_size} B frames for recovery")
    with walship.open(d, durability="none", max_segment_bytes=segment) as log:
        for _ in range(batches):
            log.append_batch(items)
        frames = log.last_seq
    size = sum(f.stat().st_size for f in segment_files(d))
    ctx.shared[key] = (d, frames, size)
    return d, frames, size


def segment_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if parse_segment_name(p.name) is not None)


def walship_recover(d: Path, frames: int) -> float:
    """Seconds for ``walship.open`` (recovery scan included) and ``close``."""
    start = time.perf_counter()
    log = walship.open(d)
    found = log.recovery.frames
    log.close()
    elapsed = time.perf_counter() - start
    if found != frames:
        raise AssertionError(f"recovery found {found} frames, expected {frames}")
    return elapsed


def bare_decode(d: Path, frames: int) -> float:
    """Seconds for the bare loop: read each file, then per frame its length and CRC-32C."""
    start = time.perf_counter()
    count = 0
    unpack = _U32.unpack_from
    for path in segment_files(d):
        with open(path, "rb", buffering=0) as f:
            data = f.read()
        mv = memoryview(data)
        off = HEADER_SIZE
        end = len(data)
        while off < end:
            (n,) = unpack(data, off)
            stop = off + 4 + n
            if crc32c(mv[off : stop - 4]) != unpack(data, stop - 4)[0]:
                raise AssertionError(f"{path}: CRC mismatch at {off}")
            off = stop
            count += 1
    elapsed = time.perf_counter() - start
    if count != frames:
        raise AssertionError(f"bare decode found {count} frames, expected {frames}")
    return elapsed


def read_crc_blake3(d: Path) -> float:
    """Seconds to read every file, CRC-32C it and BLAKE3 it."""
    start = time.perf_counter()
    for path in segment_files(d):
        with open(path, "rb", buffering=0) as f:
            data = f.read()
        crc32c(data)
        blake3(data).digest()
    return time.perf_counter() - start


def recover_100b(ctx: Context) -> Result:
    d, frames, _ = make_log(ctx, 100, ctx.profile.recover_bytes)
    a, b = alternate(
        ctx,
        lambda: frames / walship_recover(d, frames),
        lambda: frames / bare_decode(d, frames),
    )
    return Result(
        "recover_100B",
        "frames/s",
        "bare decode loop: read, then length + CRC-32C per frame",
        Target(">=", 0.6),
        median(a),
        median(b),
        a,
        b,
        note=f"open + full recovery scan of a {ctx.profile.recover_bytes >> 20} MiB log, "
        "100 B frames",
    )


def recover_64kib(ctx: Context) -> Result:
    d, frames, size = make_log(ctx, 65536, ctx.profile.recover_bytes)
    mb = size / 1e6
    a, b = alternate(
        ctx,
        lambda: mb / walship_recover(d, frames),
        lambda: mb / read_crc_blake3(d),
    )
    return Result(
        "recover_64KiB",
        "MB/s",
        "read + CRC-32C + BLAKE3 of the same files",
        Target(">=", 0.7),
        median(a),
        median(b),
        a,
        b,
        note=f"open + full recovery scan of a {ctx.profile.recover_bytes >> 20} MiB log, "
        "64 KiB frames",
    )


__all__ = ["make_log", "recover_64kib", "recover_100b"]
