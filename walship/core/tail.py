"""Torn tail or bit rot: is anything valid left after a damaged frame?

A crash can only leave damage at the end of the last segment: the bytes of the write in flight
(cut short, zero-filled, or garbage), with nothing valid after them. A damaged frame that is
followed by a valid frame continuing the sequence is something else: bit rot or tampering,
which must never be cut away as if it were torn (the frames after it were acknowledged).

:func:`find_continuation` decides it. It looks for a frame that starts after the damaged one,
has a valid CRC-32C, and carries a commit_seq that continues the sequence: above the last good
commit_seq ``prev`` and at most ``prev + 1 + k``, where ``k`` is how many whole frames fit
between the damaged frame's start and it (commit_seqs are consecutive, a frame is at least 25
bytes). It first tries the damaged frame's declared end (when its length is in range), then every
offset.

The scan is linear: a regular expression (running in C) finds the offsets where a length in
range is followed by the bytes every candidate commit_seq shares, and only those offsets are
decoded and CRC-checked, within a budget of CRC work proportional to the bytes after the damage
(crafted bytes where every few bytes look like the head of a long frame would otherwise cost a
CRC of megabytes each): past it the answer is "undecided", which is damage, never a torn tail.
Zero bytes never match (a length is at least 21), so a zero-filled tail costs one pass, and the
never-written space a preallocating store reserved is not even read (see
:func:`walship.core.scan.scan_store`).
"""

from __future__ import annotations

import re
import struct

from walship.core.frame import (
    CRC_SIZE,
    LENGTH_SIZE,
    MAX_FRAME_LENGTH,
    MIN_FRAME_LENGTH,
    crc_ok,
    frame_end,
)

MIN_FRAME_BYTES = LENGTH_SIZE + MIN_FRAME_LENGTH
"""The smallest frame on disk (an empty payload), length field included: 25 bytes."""
_SEQ = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U64_MAX = (1 << 64) - 1
CHECK_BUDGET_FACTOR = 4
"""The CRC-32C work spent on candidates after one damaged frame is at most this many times the
bytes after it, plus two of the largest frames (what honest data needs: a few candidates)."""

# A big-endian u32 in MIN_FRAME_LENGTH..MAX_FRAME_LENGTH (21..0x04000000).
assert MIN_FRAME_LENGTH == 0x15 and MAX_FRAME_LENGTH == 0x04000000
_LENGTH_IN_RANGE = (
    rb"(?:\x00\x00\x00[\x15-\xff]|\x00\x00[\x01-\xff][\x00-\xff]|\x00[\x01-\xff][\x00-\xff]{2}"
    rb"|[\x01-\x03][\x00-\xff]{3}|\x04\x00\x00\x00)"
)


class _Budget:
    """The bytes of CRC-32C the candidates of one damaged tail may still cost."""

    def __init__(self, tail: int) -> None:
        self.left = CHECK_BUDGET_FACTOR * tail + 2 * MAX_FRAME_LENGTH


def _frame_at(data: memoryview, off: int, lo: int, start: int, budget: _Budget) -> int | None:
    """The commit_seq of a valid frame at ``off`` that continues the sequence, else ``None``.

    Raises:
        _BudgetSpent: checking its CRC would exceed ``budget``.
    """
    stop = frame_end(data, off)
    if stop is None:
        return None
    (seq,) = _SEQ.unpack_from(data, off + LENGTH_SIZE)
    if not lo <= seq <= lo + (off - start) // MIN_FRAME_BYTES:
        return None
    budget.left -= stop - CRC_SIZE - off  # the bytes the CRC covers
    if budget.left < 0:
        raise _BudgetSpent(off)
    return int(seq) if crc_ok(data, off, stop) else None


class _BudgetSpent(Exception):
    def __init__(self, offset: int) -> None:
        self.offset = offset


def _shared_prefix(lo: int, hi: int) -> bytes:
    """The leading bytes every big-endian u64 in ``lo..hi`` has in common."""
    a, b = lo.to_bytes(8, "big"), hi.to_bytes(8, "big")
    n = 0
    while n < 8 and a[n] == b[n]:
        n += 1
    return a[:n]


def find_continuation(
    data: memoryview, start: int, prev: int | None
) -> tuple[int, int | None] | None:
    """Find a valid frame after the damaged frame at ``start`` that continues the sequence.

    Args:
        data: the whole segment (header included), as far as it was ever written.
        start: the offset of the damaged frame (just after the last valid one).
        prev: the last valid commit_seq before ``start`` (``None``: none in the log so far).
    Returns:
        ``(offset, commit_seq)`` of the first such frame; ``(offset, None)`` when the bytes
        after ``start`` hold so many frame-like candidates that checking them would exceed the
        budget (:data:`CHECK_BUDGET_FACTOR`; only crafted data does that), ``offset`` being the
        candidate where it stopped: undecided, which the caller must not take for a torn tail;
        or ``None`` when nothing valid continues the sequence after ``start`` (a torn tail).
    """
    end = len(data)
    lo = 0 if prev is None else prev + 1
    if lo > _U64_MAX or end - start <= MIN_FRAME_BYTES:
        return None
    budget = _Budget(end - start)
    try:
        if end - start >= LENGTH_SIZE:
            (flen,) = _U32.unpack_from(data, start)
            if MIN_FRAME_LENGTH <= flen <= MAX_FRAME_LENGTH:  # the declared end first
                declared = start + LENGTH_SIZE + flen
                seq = _frame_at(data, declared, lo, start, budget)
                if seq is not None:
                    return declared, seq
        hi = min(_U64_MAX, lo + (end - start) // MIN_FRAME_BYTES)
        pattern = re.compile(
            b"(?=" + _LENGTH_IN_RANGE + re.escape(_shared_prefix(lo, hi)) + b")", re.DOTALL
        )
        for m in pattern.finditer(data, start + 1):
            off = m.start()
            seq = _frame_at(data, off, lo, start, budget)
            if seq is not None:
                return off, seq
    except _BudgetSpent as spent:
        return spent.offset, None
    return None
