"""The frame codec: the seed's frame, byte for byte.

A frame (all integers big-endian)::

    u32 frame_length   = 8 + 8 + 1 + len(payload) + 4  (everything after itself, CRC included)
    u64 commit_seq
    u64 timestamp_micros
    u8  payload_type
    ... payload
    u32 CRC-32C (Castagnoli) of every byte before it, frame_length included

``MIN_FRAME_LENGTH <= frame_length <= MAX_FRAME_LENGTH``. Readers check the length before they
allocate or read anything, so a hostile length never costs more than the 64 MiB limit.

The loops of :func:`encode_batch_at`, :class:`FrameScan` and :func:`decode_all` run in the
native codec (``walship/core/_codec.c``) when it is built and not turned off
(:data:`NATIVE`); the Python loops here are the reference it is tested against, with the same
results, offsets and exceptions. The checks that raise are always these Python ones.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import Any, BinaryIO, NamedTuple

from crc32c import crc32c

from walship.errors import (
    CorruptFrameError,
    FrameError,
    FrameTooLargeError,
    PayloadError,
    TruncatedFrameError,
)

HEAD = struct.Struct(">IQQB")
"""frame_length, commit_seq, timestamp_micros, payload_type."""
CRC = struct.Struct(">I")
HEAD_SIZE = HEAD.size  # 21
CRC_SIZE = CRC.size  # 4
FRAME_OVERHEAD = HEAD_SIZE + CRC_SIZE  # 25 bytes around every payload
LENGTH_SIZE = 4
MIN_FRAME_LENGTH = FRAME_OVERHEAD - LENGTH_SIZE  # 21: an empty payload
MAX_FRAME_LENGTH = 64 * 1024 * 1024
MAX_PAYLOAD = MAX_FRAME_LENGTH - MIN_FRAME_LENGTH
MAX_COMMIT_SEQ = 2**64 - 1
"""The highest commit_seq the format can hold (an unsigned 64-bit field)."""
_U64_MAX = (1 << 64) - 1


def _load_codec() -> ModuleType | None:
    if os.environ.get("WALSHIP_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        import walship.core._codec as native  # a private module of this package
    except ImportError:  # not built (no compiler where it was installed): the pure path
        return None
    return native


codec: ModuleType | None = _load_codec()
"""The native codec (``walship/core/_codec.c``) the functions below hand their loops to, or
``None``: not built, or ``WALSHIP_PURE_PYTHON=1`` (any value but empty and ``0``) at import.
The pure-Python loops are the reference; setting this to ``None`` selects them (tests)."""
NATIVE = codec is not None
"""Whether the native codec was active at import (:data:`codec`)."""
SCAN_CHUNK = 4096
"""The most frames one call into the native scanner returns: bounds the memory of its list."""


class Frame(NamedTuple):
    """One decoded record."""

    commit_seq: int
    timestamp_micros: int
    payload_type: int
    payload: bytes


class FrameView(NamedTuple):
    """One decoded record whose payload is a read-only view of the bytes it was decoded from
    (no copy): what the read path returns when asked for views. The view keeps that buffer
    (a mapped segment, a chunk read from the active one) alive while it lives; see
    :meth:`walship.log.Log.read_batches` for when its bytes stay valid."""

    commit_seq: int
    timestamp_micros: int
    payload_type: int
    payload: memoryview


def check_payload(payload_len: int, payload_type: int) -> None:
    """Raise before anything is written if a frame with these fields cannot exist.

    Raises:
        FrameTooLargeError: the frame would be longer than 64 MiB.
        ValueError: payload_type is not in 0..255.
    """
    if payload_len > MAX_PAYLOAD:
        raise FrameTooLargeError(
            f"payload of {payload_len} bytes exceeds the frame limit of {MAX_PAYLOAD} bytes"
        )
    if type(payload_type) is not int or not 0 <= payload_type <= 255:
        raise PayloadError(f"payload_type must be an integer in 0..255, got {payload_type!r}")


Payload = bytes | bytearray | memoryview


def as_payload(payload: object) -> Payload:
    """``payload`` as a byte-addressed buffer whose ``len`` is its size in bytes.

    ``bytes`` and ``bytearray`` pass as they are; any other buffer (a memoryview, ``array``,
    ``mmap``) must be C-contiguous and is viewed as unsigned bytes, so that a buffer of wider
    items is never mistaken for fewer bytes than it holds.

    Raises:
        PayloadError: not a bytes-like object (e.g. a ``str``), or not contiguous.
    """
    if type(payload) is bytes or type(payload) is bytearray:
        return payload
    try:
        view = payload if isinstance(payload, memoryview) else memoryview(payload)  # type: ignore[arg-type]
    except TypeError:
        raise PayloadError(
            f"a payload must be bytes-like (bytes, bytearray, memoryview), "
            f"not {type(payload).__name__}"
        ) from None
    if not view.c_contiguous:
        raise PayloadError("a payload buffer must be C-contiguous")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


_BYTES_ONLY = frozenset((bytes,))


def as_payloads(payloads: Sequence[object]) -> Sequence[Payload]:
    """Every payload through :func:`as_payload` (the sequence itself when all are bytes)."""
    if set(map(type, payloads)) <= _BYTES_ONLY:  # at C speed: no Python call per payload
        return payloads  # type: ignore[return-value]
    out: list[Payload] | None = None
    for i, p in enumerate(payloads):
        if type(p) is bytes:
            continue
        if out is None:
            out = list(payloads)  # type: ignore[arg-type]
        out[i] = as_payload(p)
    return payloads if out is None else out  # type: ignore[return-value]


def measure_payloads(
    payloads: Sequence[object], payload_type: int
) -> tuple[Sequence[Payload], int]:
    """Check the payloads of one append and measure them: every payload through
    :func:`as_payload` (the sequence itself when all are ``bytes``), then :func:`check_payload`
    of the largest; return them and their total length. Runs on the caller's thread; with the
    native codec an all-``bytes`` list or tuple is measured in one C pass (anything else takes
    the Python path, which gives the same result and raises the same errors).

    Raises:
        PayloadError: a payload is not bytes-like or not contiguous (the first such), or the
            type is not in 0..255.
        FrameTooLargeError: a payload is longer than :data:`MAX_PAYLOAD` (named by the longest).
    """
    native = codec
    nbytes: int | None = None if native is None else native.measure(payloads)
    items: Sequence[Payload]
    if nbytes is None:
        items = as_payloads(payloads)
        nbytes = sum(map(len, items))
    else:
        items = payloads  # type: ignore[assignment]  # all bytes (measure said so)
    # (no payload can be too large unless they are together: the longest only then)
    check_payload(max(map(len, items)) if nbytes > MAX_PAYLOAD else 0, payload_type)
    return items, nbytes


def _check_ranges(first_seq: int, count: int, timestamp_micros: int) -> None:
    if not (first_seq >= 0 and first_seq + count - 1 <= _U64_MAX):
        raise ValueError("commit_seq would leave the unsigned 64-bit range")
    if not 0 <= timestamp_micros <= _U64_MAX:
        raise ValueError("timestamp_micros must fit in an unsigned 64-bit integer")


def encode_batch_at(
    buf: bytearray,
    offset: int,
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    payloads: Iterable[bytes | bytearray | memoryview],
    pieces: list[bytes | bytearray | memoryview] | None = None,
) -> int:
    """Encode frames ``first_seq, first_seq+1, ...`` (one per payload, all stamped
    ``timestamp_micros`` and typed ``payload_type``) into ``buf`` at ``offset``, overwriting,
    never resizing (a large buffer keeps its memory from batch to batch); return the offset
    after them.

    The encoder: every frame walship writes goes through it (or through
    :func:`encode_checked_at`, its loop, for payloads checked already). The header is packed in
    place, the payload copied once, and one CRC-32C call covers header and payload. Every
    payload is checked before the first byte is written. Pure: safe on any thread for a
    ``buf`` of its own.

    Gathering (``pieces`` a list): the payloads are not copied. Only the heads and CRCs go
    into ``buf`` (:data:`FRAME_OVERHEAD` bytes a frame: the first head, then each CRC beside
    the next frame's head, then the last CRC), and ``pieces`` is extended with the buffers of
    the frames in file order, views of ``buf`` around the payload objects themselves (2n+1 of
    them, for one gathering write). The views keep ``buf`` exported until they are released
    or collected; ``pieces`` is unchanged when this raises.

    Raises:
        FrameTooLargeError: a payload is longer than :data:`MAX_PAYLOAD`.
        PayloadError: a payload is not bytes-like, or the type is not in 0..255.
        ValueError: a commit_seq or the timestamp leaves the unsigned 64-bit range, or ``buf``
            is too short. Nothing is written then.
    """
    items = as_payloads(payloads if isinstance(payloads, (list, tuple)) else list(payloads))
    check_payload(max(map(len, items)) if items else 0, payload_type)
    return encode_checked_at(buf, offset, first_seq, timestamp_micros, payload_type, items, pieces)


def encode_checked_at(
    buf: bytearray,
    offset: int,
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    items: Sequence[Payload],
    pieces: list[bytes | bytearray | memoryview] | None = None,
) -> int:
    """:func:`encode_batch_at` of ``items`` checked already (:func:`measure_payloads`, or
    :func:`as_payloads` and :func:`check_payload` of the longest): the same frames, without
    another pass over the payloads to check them. The checks of the ranges and of the buffer's
    length still run (the native loop also keeps itself safe against any item).

    Raises:
        PayloadError: the type is not in 0..255.
        ValueError: as :func:`encode_batch_at`. Nothing is written then.
    """
    check_payload(0, payload_type)
    _check_ranges(first_seq, len(items), timestamp_micros)
    native = codec
    if (  # anything unusual takes the reference path, to fail exactly as it does
        native is not None
        and type(buf) is bytearray
        and type(offset) is int
        and offset >= 0
        and type(first_seq) is int
        and type(timestamp_micros) is int
    ):
        off_after: int = native.encode_batch_at(
            buf, offset, first_seq, timestamp_micros, payload_type, items, pieces
        )
        return off_after
    copied = sum(map(len, items)) if pieces is None else 0
    need = copied + FRAME_OVERHEAD * len(items)
    if offset + need > len(buf):
        raise ValueError(f"buffer of {len(buf)} bytes is too short for {need} at {offset}")
    if pieces is not None:
        return _encode_heads(buf, offset, first_seq, timestamp_micros, payload_type, items, pieces)
    pack_into = HEAD.pack_into
    crc_pack_into = CRC.pack_into
    seq = first_seq
    off = offset
    with memoryview(buf) as view:
        for p in items:
            n = len(p)
            pack_into(buf, off, MIN_FRAME_LENGTH + n, seq, timestamp_micros, payload_type)
            body = off + HEAD_SIZE
            end = body + n
            buf[body:end] = p
            crc_pack_into(buf, end, crc32c(view[off:end]))
            off = end + CRC_SIZE
            seq += 1
    return off


def _encode_heads(
    buf: bytearray,
    offset: int,
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    items: Sequence[bytes | bytearray | memoryview],
    pieces: list[bytes | bytearray | memoryview],
) -> int:
    """The gathering loop of :func:`encode_batch_at` (checked already): heads and CRCs into
    ``buf``, views of them and the payloads onto ``pieces`` (nothing for no payload)."""
    if not items:
        return offset
    pack_into = HEAD.pack_into
    crc_pack_into = CRC.pack_into
    view = memoryview(buf)
    out: list[bytes | bytearray | memoryview] = []
    add = out.append
    seq = first_seq
    off = offset
    start = offset  # where the piece before the next payload begins
    for p in items:
        pack_into(buf, off, MIN_FRAME_LENGTH + len(p), seq, timestamp_micros, payload_type)
        body = off + HEAD_SIZE
        add(view[start:body])
        add(p)
        crc_pack_into(buf, body, crc32c(p, crc32c(view[off:body])))
        start = body
        off = body + CRC_SIZE
        seq += 1
    add(view[start:off])
    pieces += out
    return off


def encode(
    commit_seq: int,
    timestamp_micros: int,
    payload_type: int,
    payload: bytes | bytearray | memoryview = b"",
) -> bytes:
    """One frame as bytes (for tests and tools): :func:`encode_batch_at` of one payload.

    Raises: as :func:`encode_batch_at`.
    """
    item = as_payload(payload)
    buf = bytearray(FRAME_OVERHEAD + min(len(item), MAX_PAYLOAD + 1))
    encode_batch_at(buf, 0, commit_seq, timestamp_micros, payload_type, (item,))
    return bytes(buf)


# --- the scanner: every reader of frames (decode_all, FrameReader, verify, recovery) ----------


class StopReason(Enum):
    """Why a :class:`FrameScan` stopped where it did."""

    END = "end"
    """The data ends at a frame boundary: a clean end."""
    TRUNCATED = "truncated"
    """The data ends inside a frame, or inside its length field."""
    BAD_LENGTH = "bad_length"
    """The length field is outside ``MIN_FRAME_LENGTH..MAX_FRAME_LENGTH``."""
    BAD_CRC = "bad_crc"
    """The stored CRC-32C does not match the frame's bytes."""
    ZEROS = "zeros"
    """Only zero bytes follow (a zero length, and zeros to the end): space written or
    preallocated but never filled with a frame."""


@dataclass(frozen=True)
class ScanStop:
    """Where a :class:`FrameScan` stopped, and why: ``offset`` is just after the last valid
    frame (where the damage starts), ``remain`` the bytes from there to the end of the data,
    ``frame_length`` the length field found there (``None``: fewer than 4 bytes)."""

    reason: StopReason
    offset: int
    remain: int = 0
    frame_length: int | None = None

    @property
    def detail(self) -> str:
        """What is wrong, without the offset (as ``walship verify`` reports it)."""
        flen = self.frame_length
        if self.reason is StopReason.TRUNCATED:
            if flen is None:
                return f"{self.remain} bytes are too few for a frame length"
            return f"frame needs {flen + LENGTH_SIZE} bytes, {self.remain} remain"
        if self.reason is StopReason.BAD_CRC:
            return "CRC-32C mismatch"
        if self.reason is StopReason.END:
            return "end of data"
        return f"frame length {flen} is outside {MIN_FRAME_LENGTH}..{MAX_FRAME_LENGTH}"

    def error(self, base_offset: int = 0) -> FrameError:
        """The exception a reader raises for this stop (``base_offset``: the data's position in
        its file, added to the offset): :class:`TruncatedFrameError` for a truncation, else
        :class:`CorruptFrameError` (``END`` is not an error: asking is a bug)."""
        where = base_offset + self.offset
        flen = self.frame_length
        if self.reason is StopReason.TRUNCATED:
            if flen is None:
                message = f"{self.remain} bytes at offset {where} are too few for a frame length"
            else:
                message = (
                    f"frame at offset {where} needs {flen + LENGTH_SIZE} bytes, "
                    f"{self.remain} remain"
                )
            return TruncatedFrameError(message, where)
        if self.reason is StopReason.BAD_CRC:
            return CorruptFrameError(f"CRC mismatch in frame at offset {where}", where)
        assert self.reason is not StopReason.END, "a clean end is not an error"
        return CorruptFrameError(
            f"frame length {flen} at offset {where} is outside "
            f"{MIN_FRAME_LENGTH}..{MAX_FRAME_LENGTH}",
            where,
        )


FrameAt = tuple[int, int, int, int, int]
"""A valid frame as :class:`FrameScan` yields it: its offset, the offset just after it,
commit_seq, timestamp_micros, payload_type. The payload is ``data[offset + HEAD_SIZE :
end - CRC_SIZE]``."""

_ZEROS = bytes(1 << 20)


def is_zero(data: memoryview) -> bool:
    """Whether every byte of ``data`` is zero (compared a megabyte at a time, no large copy)."""
    step = len(_ZEROS)
    for i in range(0, len(data), step):
        chunk = bytes(data[i : i + step])
        if chunk != _ZEROS[: len(chunk)]:
            return False
    return True


def frame_end(data: memoryview, offset: int) -> int | None:
    """The offset just after the frame at ``offset`` when its length is in range and ``data``
    holds it whole, else ``None``. Reads only the length field (nothing is allocated)."""
    if len(data) - offset < LENGTH_SIZE:
        return None
    (flen,) = CRC.unpack_from(data, offset)
    stop: int = offset + LENGTH_SIZE + flen
    if flen < MIN_FRAME_LENGTH or flen > MAX_FRAME_LENGTH or stop > len(data):
        return None
    return stop


def crc_ok(data: memoryview, offset: int, end: int) -> bool:
    """Whether the frame ``data[offset:end]`` (bounds from :func:`frame_end`) has a valid
    CRC-32C."""
    body = end - CRC_SIZE
    return bool(crc32c(data[offset:body]) == CRC.unpack_from(data, body)[0])


def classify(data: memoryview, offset: int) -> ScanStop:
    """Why the frame at ``offset`` is not a valid frame (or ``END`` at the end of ``data``).

    The order is the one every reader reports: too few bytes for a length (truncated), a length
    out of range (zeros when only zero bytes follow), a frame longer than the data (truncated),
    a CRC mismatch. A frame that is valid is classified ``END`` only at the end of the data:
    the caller never asks about one elsewhere.
    """
    remain = len(data) - offset
    if remain <= 0:
        return ScanStop(StopReason.END, offset)
    if remain < LENGTH_SIZE:
        return ScanStop(StopReason.TRUNCATED, offset, remain)
    (flen,) = CRC.unpack_from(data, offset)
    if flen < MIN_FRAME_LENGTH or flen > MAX_FRAME_LENGTH:
        zeros = flen == 0 and is_zero(data[offset:])
        return ScanStop(StopReason.ZEROS if zeros else StopReason.BAD_LENGTH, offset, remain, flen)
    if LENGTH_SIZE + flen > remain:
        return ScanStop(StopReason.TRUNCATED, offset, remain, flen)
    return ScanStop(StopReason.BAD_CRC, offset, remain, flen)


class FrameScan:
    """The one frame scanner: iterating yields every valid frame of ``data`` from ``offset`` as
    a :data:`FrameAt`, in order; when the data ends or a frame is damaged the iteration ends and
    :attr:`stop` says where and why (:class:`ScanStop`). A consumer that breaks off early leaves
    :attr:`stop` ``None``.

    Reads only what it checks: the length is validated before the frame is touched, so a
    hostile length costs nothing. The loop is the hot path of reading and of recovery: one
    unpack of the head, one of the stored CRC and one CRC-32C call over a slice of the (mapped)
    data per frame; :func:`frame_end` and :func:`crc_ok` written inline. With the native codec
    the loop runs in C, up to :data:`SCAN_CHUNK` frames per call (without the interpreter lock
    over large data), and :func:`classify` still names the stop. Not thread-safe (one
    iteration at a time); ``data`` must not change while it runs.
    """

    __slots__ = ("data", "offset", "stop")

    def __init__(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        self.data = data if isinstance(data, memoryview) else memoryview(data)
        self.offset = offset
        """Where the scan starts."""
        self.stop: ScanStop | None = None
        """Set when the iteration ends by itself."""

    def __iter__(self) -> Iterator[FrameAt]:
        data = self.data
        off = self.offset
        native = codec
        if native is not None and off >= 0:
            while True:  # the native loop, a chunk per call, until a call finds none
                frames, off = native.scan(data, off, SCAN_CHUNK)
                if not frames:
                    break
                yield from frames
            self.stop = classify(data, off)
            return
        end = len(data)
        fast_end = end - HEAD_SIZE  # at or below it a whole head can be unpacked
        unpack_head = HEAD.unpack_from
        unpack_crc = CRC.unpack_from
        min_len, max_len = MIN_FRAME_LENGTH, MAX_FRAME_LENGTH
        while off <= fast_end:
            flen, seq, ts, ptype = unpack_head(data, off)
            stop = off + LENGTH_SIZE + flen
            body = stop - CRC_SIZE
            if (
                flen < min_len
                or flen > max_len
                or stop > end
                or crc32c(data[off:body]) != unpack_crc(data, body)[0]
            ):
                break
            yield off, stop, seq, ts, ptype
            off = stop
        self.stop = classify(data, off)


class Summary(NamedTuple):
    """What :func:`summarize` found: ``frames`` valid frames from the offset, the first's and
    the last's commit_seq and timestamp (0 when ``frames`` is 0), ``end`` (just after the last
    of them), and whether the walk stopped at ``end`` because that frame's commit_seq did not
    rise (``regressed``; else ``classify(data, end)`` says why it stopped)."""

    frames: int
    first_seq: int
    first_ts: int
    last_seq: int
    last_ts: int
    end: int
    regressed: bool


def summarize(data: memoryview, offset: int, prev_seq: int | None) -> Summary:
    """Walk the valid frames of ``data`` from ``offset`` (:class:`FrameScan`'s checks) while
    their commit_seq rises (the first above ``prev_seq`` unless it is ``None``), building no
    object per frame: the open's scan of a segment (``frames`` of them). Native when the codec
    is; the loop below is the reference. ``data`` must not change while it runs."""
    native = codec
    if native is not None and offset >= 0:
        c, fs, ft, ls, lt, end, regressed = native.summarize(data, offset, prev_seq)
        return Summary(c, fs, ft, ls, lt, end, bool(regressed))
    scan = FrameScan(data, offset)
    prev = -1 if prev_seq is None else prev_seq
    count = first_seq = first_ts = last_ts = 0
    end = offset
    for off, stop, seq, ts, _ in scan:
        if seq <= prev:
            return Summary(count, first_seq, first_ts, prev if count else 0, last_ts, off, True)
        if not count:
            first_seq, first_ts = seq, ts
        prev, last_ts, end = seq, ts, stop
        count += 1
    return Summary(count, first_seq, first_ts, prev if count else 0, last_ts, end, False)


class Decoded(NamedTuple):
    """One call of :func:`decode_range`: the frames (:class:`Frame`, or :class:`FrameView`
    with ``views``), where the walk stopped, and whether it reached ``hi`` (``done``: nothing
    after it is wanted)."""

    frames: list[Frame] | list[FrameView]
    offset: int
    done: bool


DECODE_CHUNK_BYTES = 256 * 1024
"""The most payload bytes one :func:`decode_range` call copies (beyond its first frame): a
bounded chunk keeps the copies in the cache."""


def decode_range(
    data: memoryview,
    offset: int,
    max_frames: int,
    lo: int = 0,
    hi: int = _U64_MAX,
    trusted_end: int = 0,
    views: bool = False,
) -> Decoded:
    """Decode the valid frames of ``data`` from ``offset`` with ``lo <= commit_seq <= hi``:
    at most ``max_frames`` of them, and (payloads copied) no more than
    :data:`DECODE_CHUNK_BYTES` of payload past the first; frames below ``lo`` are walked over
    without building anything. The walk ends at damage (``offset`` is then where it is:
    :func:`classify` names it), at the end of ``data``, or at ``hi`` (``done``: after the
    frame at ``hi``, or before one above it; the frame after it is never looked at). An empty
    result with ``offset`` unchanged means nothing more can be decoded.

    Frames that end at or before ``trusted_end`` were verified by an earlier scan of the same
    bytes: their CRC-32C is not computed again (their lengths are still checked, so a hostile
    length never reads outside ``data``). ``views``: payloads are read-only memoryviews of
    ``data`` (no copy; they keep its buffer, e.g. a mapped segment, alive), else ``bytes``.
    Native when the codec is; the loop below is the reference.
    """
    native = codec
    if native is not None:
        cls = FrameView if views else Frame
        frames, off, done = native.decode_range(
            data, offset, max_frames, cls, lo, hi, trusted_end, data if views else None
        )
        return Decoded(frames, off, bool(done))
    out: list[Any] = []
    add = out.append
    end = len(data)
    limit = end if views else min(end, offset + DECODE_CHUNK_BYTES)
    unpack_head = HEAD.unpack_from
    unpack_crc = CRC.unpack_from
    off = offset
    while len(out) < max_frames and off < limit and end - off >= HEAD_SIZE:
        flen, seq, ts, ptype = unpack_head(data, off)
        stop = off + LENGTH_SIZE + flen
        body = stop - CRC_SIZE
        if flen < MIN_FRAME_LENGTH or flen > MAX_FRAME_LENGTH or stop > end:
            break
        if stop > trusted_end and crc32c(data[off:body]) != unpack_crc(data, body)[0]:
            break
        if seq > hi:
            return Decoded(out, off, True)
        if seq >= lo:
            payload = data[off + HEAD_SIZE : body]
            add(
                FrameView(seq, ts, ptype, payload)
                if views
                else Frame(seq, ts, ptype, bytes(payload))
            )
        off = stop
        if seq >= hi:  # nothing after it is wanted: the next frame is never looked at
            return Decoded(out, off, True)
    return Decoded(out, off, False)


def decode_all(data: bytes | bytearray | memoryview, base_offset: int = 0) -> Iterator[Frame]:
    """Yield every frame in ``data``; stop cleanly at its end (a frame boundary).

    ``base_offset`` is added to offsets in error messages (the data's position in its file).

    Raises:
        TruncatedFrameError / CorruptFrameError: at the first damaged frame, with its offset
            (after every frame before it was yielded).
    """
    native = codec
    if native is not None:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        off = 0
        while True:  # a chunk per call (at most SCAN_CHUNK frames, about 256 KiB)
            frames, off = native.decode(mv, off, SCAN_CHUNK, Frame)
            if not frames:
                break
            yield from frames
        end = classify(mv, off)
        if end.reason is not StopReason.END:
            raise end.error(base_offset)
        return
    scan = FrameScan(data)
    mv = scan.data
    new_frame = Frame
    for off, stop, seq, ts, ptype in scan:
        yield new_frame(seq, ts, ptype, bytes(mv[off + HEAD_SIZE : stop - CRC_SIZE]))
    assert scan.stop is not None
    if scan.stop.reason is not StopReason.END:
        raise scan.stop.error(base_offset)


class FrameReader:
    """Reads frames one by one from a binary stream (a file, a socket, a download).

    ``next_frame()`` returns ``None`` at a clean end (end of stream at a frame boundary). The
    length is validated before the rest of the frame is read, so memory stays within one frame;
    each frame is checked by :class:`FrameScan` (the same errors as :func:`decode_all`).
    """

    def __init__(self, stream: BinaryIO, base_offset: int = 0) -> None:
        self._stream = stream
        self.offset = base_offset
        """Offset of the next frame in the stream."""

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        remaining = n
        while remaining:
            chunk = self._stream.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def next_frame(self) -> Frame | None:
        """The next frame, or ``None`` at a clean end.

        Raises:
            TruncatedFrameError: the stream ends inside a frame.
            CorruptFrameError: bad length or CRC.
        """
        data = self._read_exact(LENGTH_SIZE)
        if not data:
            return None
        if len(data) == LENGTH_SIZE:
            (flen,) = CRC.unpack(data)
            if MIN_FRAME_LENGTH <= flen <= MAX_FRAME_LENGTH:  # never read for a hostile length
                data += self._read_exact(flen)
        frame = next(decode_all(data, self.offset))  # the one frame, or its error
        self.offset += len(data)
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame
