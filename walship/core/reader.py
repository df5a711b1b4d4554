"""The read path: the frames of a log's local segments, decoded in batches from their bytes.

:func:`segment_batches` reads one segment: a closed one through one mapped (or read) view of
the whole file, the active one in chunks read up to the size the writer reached (never mapped:
a log that fails cuts its unsynced bytes, and a cut under a mapping would kill a reader with
SIGBUS). Each batch is one call of :func:`walship.core.frame.decode_range`: frames outside the
wanted commit_seq range are walked over without building anything, and the bytes the open's
scan verified already (``trusted_end``) are not CRC-checked a second time.
:class:`walship.log.Log` builds ``read`` and ``read_batches`` on it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from walship.core.frame import (
    CRC,
    LENGTH_SIZE,
    MAX_COMMIT_SEQ,
    StopReason,
    classify,
    decode_range,
)
from walship.core.header import HEADER_SIZE
from walship.store import SegmentStore

ACTIVE_READ_CHUNK = 4 * 1024 * 1024
"""The active segment is read this many bytes at a time (a frame larger than that in one read)."""

Batches = Generator[list[Any], None, bool]
"""Yields lists of frames (never empty); returns whether the range ended in this segment."""


def segment_batches(
    store: SegmentStore,
    name: str,
    *,
    lo: int = 0,
    hi: int = MAX_COMMIT_SEQ,
    max_frames: int = 4096,
    views: bool = False,
    trusted_end: int = 0,
    limit: int | None = None,
    failed: Callable[[], BaseException | None] = lambda: None,
) -> Batches:
    """Yield the frames of segment ``name`` with ``lo <= commit_seq <= hi`` in lists of at most
    ``max_frames``; return ``True`` when a frame above ``hi`` was reached (the caller reads no
    further segment).

    ``limit``: the segment is the active one and holds ``limit`` bytes (read in chunks of
    :data:`ACTIVE_READ_CHUNK`); ``None``: a closed segment, mapped whole. ``trusted_end``:
    the file's bytes before it were verified by the open's scan. ``failed`` says whether the
    log failed (and may have cut the active segment under this read). ``views``: payloads are
    memoryviews of the segment's bytes (:class:`~walship.core.frame.FrameView`).

    Raises:
        FileNotFoundError: the segment is gone (retention removed it).
        TruncatedFrameError / CorruptFrameError: damage (never on a healthy log).
        BaseException: what ``failed`` returns, when the active segment was cut under the read.
    """
    if limit is None:
        data = store.map(name)
        try:
            done, _ = yield from _batches(
                data, HEADER_SIZE, 0, lo, hi, max_frames, views, trusted_end
            )
            return done
        finally:
            if not views:  # a view of a payload keeps the mapping: it goes with the last one
                data.release()
    return (yield from _active(store, name, limit, lo, hi, max_frames, views, trusted_end, failed))


def _batches(
    data: memoryview,
    offset: int,
    base: int,
    lo: int,
    hi: int,
    max_frames: int,
    views: bool,
    trusted_end: int,
    whole: bool = True,
) -> Generator[list[Any], None, tuple[bool, int]]:
    """Decode ``data`` (at ``base`` in its file) from ``offset`` to where its frames end; return
    (whether ``hi`` was passed, where decoding stopped). With ``whole``, anything but a clean
    end there raises; else the caller looks at what stopped it."""
    off = offset
    trusted = trusted_end - base
    while True:
        got = decode_range(data, off, max_frames, lo, hi, trusted, views)
        if got.frames:
            yield got.frames
        if got.done:
            return True, got.offset
        if got.offset == off and not got.frames:
            break
        off = got.offset
    if whole:
        stop = classify(data, off)
        if stop.reason is not StopReason.END:
            raise stop.error(base)
    return False, off


def _active(
    store: SegmentStore,
    name: str,
    limit: int,
    lo: int,
    hi: int,
    max_frames: int,
    views: bool,
    trusted_end: int,
    failed: Callable[[], BaseException | None],
) -> Batches:
    """The active segment's frames up to ``limit`` bytes, read chunk by chunk."""
    pos = HEADER_SIZE
    want = ACTIVE_READ_CHUNK
    while pos < limit:
        n = min(want, limit - pos)
        chunk = store.read(name, pos, n)
        if len(chunk) < n and (error := failed()) is not None:
            raise error  # cut under us: the rest is gone
        data = memoryview(chunk)
        done, off = yield from _batches(
            data, 0, pos, lo, hi, max_frames, views, trusted_end, whole=False
        )
        if done:
            return True
        stop = classify(data, off)
        if stop.reason is StopReason.END:
            pos += len(chunk)
            want = ACTIVE_READ_CHUNK
            continue
        if stop.reason is not StopReason.TRUNCATED or len(chunk) < n:
            raise stop.error(pos)
        need = LENGTH_SIZE  # a frame goes on past this chunk: read it whole next
        if len(chunk) - off >= LENGTH_SIZE:
            need += CRC.unpack_from(chunk, off)[0]
        pos, want = pos + off, max(ACTIVE_READ_CHUNK, need)
    return False


__all__ = ["ACTIVE_READ_CHUNK", "segment_batches"]
