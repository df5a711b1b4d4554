"""The 64-byte segment header, segment file names, the listing of a store's segments, and the
creation of a new segment file (its header).

Header (big-endian)::

    0   u32  magic 0x41454442 ("AEDB")
    4   u16  format_version = 1
    6   u16  reserved = 0
    8   u64  instance_id
    16  u64  segment_seq (equals the number in the file name)
    24  u64  created_at_micros (wall clock)
    32  32B  prev_segment_hash: BLAKE3 of the whole previous segment file; zeros for the first
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from walship.errors import SegmentHeaderError

if TYPE_CHECKING:
    from walship.store import SegmentFile, SegmentStore

SEGMENT_MAGIC = 0x41454442
FORMAT_VERSION = 1
HEADER_SIZE = 64
ZERO_HASH = bytes(32)
_LAYOUT = struct.Struct(">IHHQQQ32s")
_NAME = re.compile(r"^segment_(\d{16,20})\.aedbwal$")
_U64_MAX = (1 << 64) - 1


def segment_name(segment_seq: int) -> str:
    """The file name of segment ``segment_seq``: ``segment_{seq:016}.aedbwal``."""
    return f"segment_{segment_seq:016}.aedbwal"


def parse_segment_name(name: str) -> int | None:
    """The sequence number in a segment file name, or ``None`` if ``name`` is not one.

    Only the exact form ``segment_<16+ digits>.aedbwal`` is accepted (no directories, no
    other suffixes), so a name from an untrusted listing cannot point outside its directory.
    """
    m = _NAME.match(name)
    if m is None:
        return None
    seq = int(m.group(1))
    if seq > _U64_MAX or segment_name(seq) != name:
        return None
    return seq


def segment_seqs(store: SegmentStore) -> list[int]:
    """The sequence numbers of the segment files in ``store``, ascending (every other name, a
    side file or the archive record, is left out).

    Raises:
        OSError: the store could not be listed.
    """
    return sorted(s for n in store.list_names() if (s := parse_segment_name(n)) is not None)


@dataclass(frozen=True)
class SegmentHeader:
    """A decoded, validated segment header."""

    instance_id: int
    segment_seq: int
    created_at_micros: int
    prev_segment_hash: bytes = ZERO_HASH

    def encode(self) -> bytes:
        """The 64 header bytes."""
        return _LAYOUT.pack(
            SEGMENT_MAGIC,
            FORMAT_VERSION,
            0,
            self.instance_id,
            self.segment_seq,
            self.created_at_micros,
            self.prev_segment_hash,
        )

    @classmethod
    def decode(
        cls, data: bytes | memoryview, name: str = "segment", expected_seq: int | None = None
    ) -> SegmentHeader:
        """Decode and validate the header at the start of ``data``.

        Args:
            name: the file name, used in error messages.
            expected_seq: the sequence from the file name; the header must carry the same.
        Raises:
            SegmentHeaderError: too short, bad magic, unknown version, non-zero reserved bytes,
                or a segment_seq that differs from ``expected_seq``.
        """
        if len(data) < HEADER_SIZE:
            raise SegmentHeaderError(
                f"{name}: header is {len(data)} bytes, a segment header is {HEADER_SIZE}"
            )
        magic, version, reserved, instance_id, seq, created, prev = _LAYOUT.unpack_from(data, 0)
        if magic != SEGMENT_MAGIC:
            raise SegmentHeaderError(
                f"{name}: bad magic 0x{magic:08x} at offset 0 (expected 0x{SEGMENT_MAGIC:08x})"
            )
        if version != FORMAT_VERSION:
            raise SegmentHeaderError(
                f"{name}: unsupported format_version {version} at offset 4 "
                f"(expected {FORMAT_VERSION})"
            )
        if reserved != 0:
            raise SegmentHeaderError(f"{name}: reserved field at offset 6 is {reserved}, not 0")
        if expected_seq is not None and seq != expected_seq:
            raise SegmentHeaderError(
                f"{name}: header segment_seq {seq} at offset 16 does not match the file name "
                f"({expected_seq})"
            )
        return cls(instance_id, seq, created, bytes(prev))


def read_header(store: SegmentStore, segment_seq: int) -> SegmentHeader:
    """The header of segment ``segment_seq`` in ``store`` (its first bytes only).

    Raises:
        SegmentHeaderError: as :meth:`SegmentHeader.decode`.
        OSError: the store failed (FileNotFoundError: no such segment).
    """
    name = segment_name(segment_seq)
    return SegmentHeader.decode(store.read(name, 0, HEADER_SIZE), name)


def create_segment(store: SegmentStore, header: SegmentHeader) -> SegmentFile:
    """Create the file of segment ``header.segment_seq`` in ``store`` holding only ``header``,
    durably (the store's ``create``: file and directory entry), open for appending.

    Raises:
        FileExistsError: the segment exists already.
        OSError: the store failed.
    """
    return store.create(segment_name(header.segment_seq), header.encode())
