"""The built-in ``metrics`` plugin: counters and latency summaries of a log's events.

Config: ``plugins: [walship.plugins.metrics]``. From Python::

    from walship.plugins.metrics import MetricsPlugin
    metrics = MetricsPlugin()
    with walship.open("./wal", plugins=[metrics]) as log:
        ...
    metrics.snapshot()   # a dict, see below
    print(metrics.render())

or, when the config registered it, ``MetricsPlugin.of(log)``.

``snapshot()`` gives::

    counters:  segments_opened, segments_closed, segments_closed_by_reason {forced, size, age},
               bytes_closed, frames_closed, recoveries, recovery_repairs, segments_archived,
               bytes_archived, archive_failures, archive_lag_warnings, segments_removed
    gauges:    archive_lag_pending (the pending count of the last lag warning),
               last_closed_segment
    summaries: archive_seconds (upload time of each archived segment), segment_seconds (how long
               each closed segment was open: from its creation to its close event), segment_bytes
               (size of each closed segment), recovery_seconds

A summary holds count, sum, min, max and mean over every value, and p50/p90/p99 over the last
``window`` values; :meth:`MetricsPlugin.histograms` gives each one's cumulative bucket counts
too (what :mod:`walship.plugins.prometheus` exports). Hooks run on the event thread; reading
from another thread is safe.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from walship.plugins.hookspecs import hookimpl
from walship.plugins.manager import find_plugin


class Summary:
    """count/sum/min/max/mean of every observation, percentiles over a recent window, and a
    count per bucket of ``bounds`` (ascending upper bounds) over every observation. Not
    thread-safe: the plugin holds its lock around it."""

    def __init__(self, window: int = 1024, bounds: Sequence[float] = ()) -> None:
        self.count = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None
        self._recent: deque[float] = deque(maxlen=window)
        self.bounds = tuple(bounds)
        self._in_bucket = [0] * (len(self.bounds) + 1)  # the last one: above every bound

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)
        self._recent.append(value)
        self._in_bucket[bisect.bisect_left(self.bounds, value)] += 1  # value <= bound

    def buckets(self) -> list[tuple[float, int]]:
        """(upper bound, how many observations were <= it), ascending, ending with
        ``(inf, count)``: a Prometheus histogram's ``le`` buckets."""
        out, seen = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self._in_bucket, strict=True):
            seen += n
            out.append((bound, seen))
        return out

    def _quantile(self, ordered: list[float], q: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def as_dict(self) -> dict[str, float | int | None]:
        ordered = sorted(self._recent)
        return {
            "count": self.count,
            "sum": self.total,
            "min": self.min,
            "max": self.max,
            "mean": self.total / self.count if self.count else None,
            "p50": self._quantile(ordered, 0.50),
            "p90": self._quantile(ordered, 0.90),
            "p99": self._quantile(ordered, 0.99),
        }


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.0f}us"
    if value < 1:
        return f"{value * 1e3:.1f}ms"
    return f"{value:.2f}s"


def _bytes(value: float) -> str:
    return f"{value:.0f}B"


_COUNTERS = (
    "segments_opened",
    "segments_closed",
    "bytes_closed",
    "frames_closed",
    "recoveries",
    "recovery_repairs",
    "segments_archived",
    "bytes_archived",
    "archive_failures",
    "archive_lag_warnings",
    "segments_removed",
)
_SUMMARIES = ("archive_seconds", "segment_seconds", "segment_bytes", "recovery_seconds")
_REASONS = ("forced", "size", "age")
_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_SIZES = tuple(float(4**k) for k in range(6, 16))  # 4 KiB .. 1 GiB
BUCKETS = {name: _SIZES if name == "segment_bytes" else _SECONDS for name in _SUMMARIES}
"""The histogram bounds of each summary (seconds, or bytes for segment_bytes)."""


class MetricsPlugin:
    """Counts a log's events and summarises their latencies (see the module docstring).

    Args:
        window: how many recent values each summary keeps for its percentiles.
    """

    def __init__(self, window: int = 1024) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._mutex = threading.Lock()
        self._counters: Counter[str] = Counter({name: 0 for name in _COUNTERS})
        self._by_reason: Counter[str] = Counter({reason: 0 for reason in _REASONS})
        self._summaries = {name: Summary(window, BUCKETS[name]) for name in _SUMMARIES}
        self._archive_lag_pending = 0
        self._last_closed: str | None = None

    @classmethod
    def of(cls, log: Any) -> MetricsPlugin | None:
        """The ``MetricsPlugin`` registered on ``log`` (e.g. by its config), or ``None``."""
        return find_plugin(log.plugins, cls)

    def snapshot(self) -> dict[str, Any]:
        """Every counter, gauge and summary now, as plain data (JSON-serialisable)."""
        with self._mutex:
            out: dict[str, Any] = dict(self._counters)
            out["segments_closed_by_reason"] = dict(self._by_reason)
            out["archive_lag_pending"] = self._archive_lag_pending
            out["last_closed_segment"] = self._last_closed
            for name, summary in self._summaries.items():
                out[name] = summary.as_dict()
        return out

    def histograms(self) -> dict[str, tuple[list[tuple[float, int]], float]]:
        """Each summary's cumulative buckets (see :meth:`Summary.buckets`) and sum, now."""
        with self._mutex:
            return {name: (s.buckets(), s.total) for name, s in self._summaries.items()}

    def render(self) -> str:
        """The snapshot as aligned text lines, for a terminal."""
        snap = self.snapshot()
        reasons = snap["segments_closed_by_reason"]
        lines = [
            f"segments opened    {snap['segments_opened']}",
            f"segments closed    {snap['segments_closed']} ("
            + ", ".join(f"{r} {reasons[r]}" for r in _REASONS)
            + ")",
            f"bytes closed       {snap['bytes_closed']}",
            f"frames closed      {snap['frames_closed']}",
            f"recoveries         {snap['recoveries']} ({snap['recovery_repairs']} repairs)",
            f"archived           {snap['segments_archived']} segments, "
            f"{snap['bytes_archived']} bytes, {snap['archive_failures']} failed attempts",
            f"removed locally    {snap['segments_removed']}",
        ]
        for name in _SUMMARIES:
            s = snap[name]
            if not s["count"]:
                continue
            fmt = _bytes if name == "segment_bytes" else _seconds
            lines.append(
                f"{name:<18} n={s['count']} mean={fmt(s['mean'])} p50={fmt(s['p50'])} "
                f"p99={fmt(s['p99'])} max={fmt(s['max'])}"
            )
        return "\n".join(lines)

    # --- hooks ------------------------------------------------------------------------

    @hookimpl
    def log_recovered(self, report: Any) -> None:
        with self._mutex:
            self._counters["recoveries"] += 1
            self._counters["recovery_repairs"] += len(report.repairs)
            self._summaries["recovery_seconds"].observe(report.elapsed_seconds)

    @hookimpl
    def segment_opened(self) -> None:
        with self._mutex:
            self._counters["segments_opened"] += 1

    @hookimpl
    def segment_closed(self, log: Any, segment: Any, reason: str) -> None:
        open_for = max(0.0, (log.clock.now_micros() - segment.created_at_micros) / 1_000_000)
        with self._mutex:
            self._counters["segments_closed"] += 1
            self._by_reason[reason] += 1
            self._counters["bytes_closed"] += segment.size
            self._counters["frames_closed"] += segment.frame_count
            self._last_closed = segment.name
            self._summaries["segment_seconds"].observe(open_for)
            self._summaries["segment_bytes"].observe(segment.size)

    @hookimpl
    def segment_archived(self, size: int, seconds: float) -> None:
        with self._mutex:
            self._counters["segments_archived"] += 1
            self._counters["bytes_archived"] += size
            self._summaries["archive_seconds"].observe(seconds)

    @hookimpl
    def archive_failed(self) -> None:
        with self._mutex:
            self._counters["archive_failures"] += 1

    @hookimpl
    def archive_lagging(self, pending: int) -> None:
        with self._mutex:
            self._counters["archive_lag_warnings"] += 1
            self._archive_lag_pending = pending

    @hookimpl
    def segment_removed(self) -> None:
        with self._mutex:
            self._counters["segments_removed"] += 1
