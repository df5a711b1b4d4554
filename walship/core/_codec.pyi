"""The native codec (walship/core/_codec.c): the loops of walship.core.frame."""

from collections.abc import Sequence
from typing import Any

from walship.core.frame import FrameAt

HW_CRC: int
"""1 when CRC-32C runs on SSE4.2's crc32 instruction, 0 on the slice-by-8 table."""

def crc32c(data: Any, value: int = 0, /) -> int: ...
def crc32c_sw(data: Any, value: int = 0, /) -> int: ...
def encode_batch_at(
    buf: bytearray,
    offset: int,
    first_seq: int,
    timestamp_micros: int,
    payload_type: int,
    items: Sequence[bytes | bytearray | memoryview],
    pieces: list[bytes | bytearray | memoryview] | None = None,
    /,
) -> int: ...
def measure(items: object, /) -> int | None: ...
def summarize(
    data: Any, offset: int, prev_seq: int | None, /
) -> tuple[int, int, int, int, int, int, int]: ...
def decode_range(
    data: Any,
    offset: int,
    max_frames: int,
    frame_cls: type[Any],
    lo: int,
    hi: int,
    trusted_end: int,
    base: memoryview | None,
    /,
) -> tuple[list[Any], int, int]: ...
def scan(data: Any, offset: int, max_frames: int, /) -> tuple[list[FrameAt], int]: ...
def decode(
    data: Any, offset: int, max_frames: int, frame_cls: type[Any], /
) -> tuple[list[Any], int]: ...
