"""Latency histograms cheap enough for the append path: a duration in nanoseconds
(``time.perf_counter_ns``) is counted into its power-of-two bucket (slot b holds the durations
in ``(2**(b-1), 2**b]`` ns: the bit length of ``ns - 1``), two list operations and an add, no
lock, no callback; buckets are summed into Prometheus-style
cumulative ``le`` buckets only when someone reads them (:meth:`LatencyHistogram.snapshot`).

The writer is whoever holds the log's I/O turn (one thread at a time); readers take a
snapshot from any thread: the bucket counts are copied in one step, so a snapshot may miss the
observation being recorded, never shows a bucket going back.
"""

from __future__ import annotations

from typing import TypedDict

_SLOTS = 65  # bit lengths 0..64 of ns - 1: every duration of 0 to 2**64 ns
BOUND_BITS = tuple(range(10, 37, 2))
"""The exposed buckets: ``le`` = 2**k ns for these k, from 1.024 µs to 68.7 s by factors of 4."""
BOUNDS_SECONDS = tuple((1 << k) / 1e9 for k in BOUND_BITS)
"""The upper bounds of the exposed buckets, in seconds."""


class LatencyStats(TypedDict):
    """A histogram of durations, as :meth:`walship.log.Log.stats` gives it (JSON-able)."""

    count: int
    """How many durations were recorded (the ``+Inf`` bucket)."""
    sum: float
    """Their total, in seconds."""
    buckets: list[tuple[float, int]]
    """``(upper bound in seconds, how many durations were <= it)``, ascending, cumulative:
    the bounds of :data:`BOUNDS_SECONDS` (``+Inf`` is ``count``)."""


class LatencyHistogram:
    """Counts of durations by bit length, and their sum (see the module docstring)."""

    __slots__ = ("counts", "total_ns")

    def __init__(self) -> None:
        self.counts = [0] * _SLOTS
        self.total_ns = 0

    def record(self, ns: int) -> None:
        """Count one duration of ``ns`` nanoseconds (>= 0). The I/O turn's holder only."""
        self.counts[(ns - 1).bit_length()] += 1
        self.total_ns += ns

    def snapshot(self) -> LatencyStats:
        """The histogram now, any thread. A duration in slot b is at most 2**b ns, so it is in
        every exposed bucket whose bound 2**k has k >= b."""
        counts = self.counts.copy()
        total = self.total_ns
        buckets: list[tuple[float, int]] = []
        seen = 0
        low = 0
        for bits, bound in zip(BOUND_BITS, BOUNDS_SECONDS, strict=True):
            seen += sum(counts[low : bits + 1])
            low = bits + 1
            buckets.append((bound, seen))
        return {"count": sum(counts), "sum": total / 1e9, "buckets": buckets}


__all__ = ["BOUNDS_SECONDS", "BOUND_BITS", "LatencyHistogram", "LatencyStats"]
