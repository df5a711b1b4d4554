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
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO, NamedTuple

from crc32c import crc32c

from walship.errors import (
    CorruptFrameError,
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


class Frame(NamedTuple):
    """One decoded record."""

    commit_seq: int
    timestamp_micros: int
    payload_type: int
    payload: bytes


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


def as_payloads(payloads: Sequence[object]) -> Sequence[Payload]:
    """Every payload through :func:`as_payload` (the sequence itself when all are bytes)."""
    out: list[Payload] | None = None
    for i, p in enumerate(payloads):
        if type(p) is bytes:
            continue
        if out is None:
            out = list(payloads)  # type: ignore[arg-type]
        out[i] = as_payload(p)
    return payloads if out is None else out  # type: ignore[return-value]


def encode_into(
    buf: bytearray,
    commit_seq: int,
    timestamp_micros: int,
    payload_type: int,
    payload: bytes | bytearray | memoryview,
) -> None:
    """Append one encoded frame to ``buf``.

    Raises:
        FrameTooLargeError / ValueError: the fields cannot be encoded; ``buf`` is unchanged.
    """
    payload = as_payload(payload)
    n = len(payload)
    check_payload(n, payload_type)
    if not (0 <= commit_seq <= _U64_MAX and 0 <= timestamp_micros <= _U64_MAX):
        raise ValueError("commit_seq and timestamp_micros must fit in an unsigned 64-bit integer")
    head = HEAD.pack(MIN_FRAME_LENGTH + n, commit_seq, timestamp_micros, payload_type)
    buf += head
    buf += payload
    buf += CRC.pack(crc32c(payload, crc32c(head)))


def _check_batch(
    items: Sequence[bytes | bytearray | memoryview],
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
) -> None:
    """Every check of :func:`encode_batch`, at C speed (no per-payload Python call)."""
    if items:
        check_payload(max(map(len, items)), payload_type)
    else:
        check_payload(0, payload_type)
    if not (first_seq >= 0 and first_seq + len(items) - 1 <= _U64_MAX):
        raise ValueError("commit_seq would leave the unsigned 64-bit range")
    if not 0 <= timestamp_micros <= _U64_MAX:
        raise ValueError("timestamp_micros must fit in an unsigned 64-bit integer")


def encode_batch(
    buf: bytearray,
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    payloads: Iterable[bytes | bytearray | memoryview],
) -> int:
    """Append frames ``first_seq, first_seq+1, ...`` (one per payload) to ``buf``.

    The write path's encoder for small frames: one pass into a reused buffer, no per-frame
    objects beyond the packed header and CRC. Every payload is checked before the first byte is
    appended, so on error ``buf`` is unchanged.

    Returns:
        The number of frames encoded.
    Raises:
        FrameTooLargeError / ValueError: a payload or the type cannot be encoded.
    """
    items = as_payloads(payloads if isinstance(payloads, (list, tuple)) else list(payloads))
    _check_batch(items, first_seq, timestamp_micros, payload_type)
    pack = HEAD.pack
    crc_pack = CRC.pack
    seq = first_seq
    for p in items:
        frame = pack(MIN_FRAME_LENGTH + len(p), seq, timestamp_micros, payload_type) + p
        buf += frame
        buf += crc_pack(crc32c(frame))  # one CRC call (see Log._write_batch)
        seq += 1
    return len(items)


def encode_batch_at(
    buf: bytearray,
    offset: int,
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    payloads: Iterable[bytes | bytearray | memoryview],
) -> int:
    """Encode frames ``first_seq, ...`` into ``buf`` at ``offset`` (overwriting, never resizing:
    a large buffer keeps its memory from batch to batch) and return the offset after them.

    The encoder for large batches of small or middling frames: the header is packed in place,
    the payload copied once, and one CRC-32C call covers header and payload.

    Raises:
        FrameTooLargeError / ValueError: as :func:`encode_batch`, or ``buf`` is too short;
            nothing is written then.
    """
    items = as_payloads(payloads if isinstance(payloads, (list, tuple)) else list(payloads))
    _check_batch(items, first_seq, timestamp_micros, payload_type)
    need = sum(map(len, items)) + FRAME_OVERHEAD * len(items)
    if offset + need > len(buf):
        raise ValueError(f"buffer of {len(buf)} bytes is too short for {need} at {offset}")
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


def encode_pieces(
    out: list[bytes | bytearray | memoryview],
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    payloads: Iterable[bytes | bytearray | memoryview],
) -> int:
    """Append the frames of ``payloads`` to ``out`` as pieces: the packed header, the payload
    object itself (not copied) and the packed CRC, for a gathering write of large payloads.

    Returns the number of frames; raises as :func:`encode_batch`, leaving ``out`` unchanged.
    """
    items = as_payloads(payloads if isinstance(payloads, (list, tuple)) else list(payloads))
    _check_batch(items, first_seq, timestamp_micros, payload_type)
    pack = HEAD.pack
    crc_pack = CRC.pack
    add = out.append
    seq = first_seq
    for p in items:
        head = pack(MIN_FRAME_LENGTH + len(p), seq, timestamp_micros, payload_type)
        add(head)
        add(p)
        add(crc_pack(crc32c(p, crc32c(head))))
        seq += 1
    return len(items)


def encode(
    commit_seq: int, timestamp_micros: int, payload_type: int, payload: bytes | bytearray = b""
) -> bytes:
    """One frame as bytes (a convenience for tests and tools)."""
    buf = bytearray()
    encode_into(buf, commit_seq, timestamp_micros, payload_type, payload)
    return bytes(buf)


def _check_length(frame_length: int, offset: int) -> None:
    if frame_length < MIN_FRAME_LENGTH or frame_length > MAX_FRAME_LENGTH:
        raise CorruptFrameError(
            f"frame length {frame_length} at offset {offset} is outside "
            f"{MIN_FRAME_LENGTH}..{MAX_FRAME_LENGTH}",
            offset,
        )


def decode_at(data: bytes | memoryview, offset: int, base_offset: int = 0) -> tuple[Frame, int]:
    """Decode the frame starting at ``offset`` of ``data``; return it and the next offset.

    ``base_offset`` is added to offsets in error messages (the data's position in its file).

    Raises:
        TruncatedFrameError: the data ends inside the frame (or inside its length field).
        CorruptFrameError: the length is out of range or the CRC does not match.
    """
    end = len(data)
    where = base_offset + offset
    if end - offset < LENGTH_SIZE:
        raise TruncatedFrameError(
            f"{end - offset} bytes at offset {where} are too few for a frame length", where
        )
    (frame_length,) = CRC.unpack_from(data, offset)
    _check_length(frame_length, where)
    stop = offset + LENGTH_SIZE + frame_length
    if stop > end:
        raise TruncatedFrameError(
            f"frame at offset {where} needs {frame_length + LENGTH_SIZE} bytes, "
            f"{end - offset} remain",
            where,
        )
    body_end = stop - CRC_SIZE
    mv = data if isinstance(data, memoryview) else memoryview(data)
    (stored,) = CRC.unpack_from(data, body_end)
    if crc32c(mv[offset:body_end]) != stored:
        raise CorruptFrameError(f"CRC mismatch in frame at offset {where}", where)
    _, seq, ts, ptype = HEAD.unpack_from(data, offset)
    return Frame(seq, ts, ptype, bytes(mv[offset + HEAD_SIZE : body_end])), stop


def decode_all(data: bytes | memoryview, base_offset: int = 0) -> Iterator[Frame]:
    """Yield every frame in ``data``; stop cleanly at its end (a frame boundary).

    A tight loop over one (mapped) view: one unpack and one CRC-32C call per frame; a frame
    that is not whole and valid is handed to :func:`decode_at` for its exact error.

    Raises:
        TruncatedFrameError / CorruptFrameError: at the first damaged frame, with its offset.
    """
    mv = data if isinstance(data, memoryview) else memoryview(data)
    end = len(mv)
    offset = 0
    unpack_head = HEAD.unpack_from
    unpack_crc = CRC.unpack_from
    new_frame = Frame
    while offset + HEAD_SIZE <= end:
        flen, seq, ts, ptype = unpack_head(mv, offset)
        stop = offset + LENGTH_SIZE + flen
        body_end = stop - CRC_SIZE
        if (
            flen < MIN_FRAME_LENGTH
            or flen > MAX_FRAME_LENGTH
            or stop > end
            or crc32c(mv[offset:body_end]) != unpack_crc(mv, body_end)[0]
        ):
            break
        yield new_frame(seq, ts, ptype, bytes(mv[offset + HEAD_SIZE : body_end]))
        offset = stop
    while offset < end:  # the slow path only ever raises here
        frame, offset = decode_at(mv, offset, base_offset)
        yield frame


class FrameReader:
    """Reads frames one by one from a binary stream (a file, a socket, a download).

    ``next_frame()`` returns ``None`` at a clean end (end of stream at a frame boundary). The
    length is validated before the rest of the frame is read, so memory stays within one frame.
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
        where = self.offset
        prefix = self._read_exact(LENGTH_SIZE)
        if not prefix:
            return None
        if len(prefix) < LENGTH_SIZE:
            raise TruncatedFrameError(
                f"{len(prefix)} bytes at offset {where} are too few for a frame length", where
            )
        (frame_length,) = CRC.unpack(prefix)
        _check_length(frame_length, where)
        rest = self._read_exact(frame_length)
        if len(rest) < frame_length:
            raise TruncatedFrameError(
                f"frame at offset {where} needs {frame_length + LENGTH_SIZE} bytes, "
                f"{len(rest) + LENGTH_SIZE} remain",
                where,
            )
        frame, _ = decode_at(prefix + rest, 0, where)
        self.offset = where + LENGTH_SIZE + frame_length
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame
