"""The machinery every case shares: profiles, side-by-side rounds, medians, targets, results.

A case measures walship and its baseline in the *same* run, alternating them round by round (and
swapping which goes first every round), because the machines this runs on are shared and noisy and
this virtual machine hands freed memory back to its host within seconds, so large writes run
several times slower after a pause: only a ratio taken side by side means anything.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Skip(Exception):
    """A case cannot run here (a missing optional part); the message says why, in one line."""


@dataclass(frozen=True)
class Profile:
    """How much work each case does. ``full`` is the real run; ``quick`` fits in under a
    minute; ``smoke`` only proves every case runs (seconds; its numbers mean nothing)."""

    name: str
    rounds: int
    batch_frames: int
    batches_100b: int
    batches_4kib: int
    batches_64kib: int
    sync_appends: int
    sync_appends_per_thread: int
    sync_threads: int
    recover_bytes: int
    archive_segments: int
    archive_segment_bytes: int
    archive_workers: int
    p99_appends: int
    rss_bytes: int


FULL = Profile(
    name="full",
    rounds=9,
    batch_frames=1000,
    batches_100b=200,
    batches_4kib=48,
    batches_64kib=4,
    sync_appends=3000,
    sync_appends_per_thread=400,
    sync_threads=16,
    recover_bytes=256 * 1024 * 1024,
    archive_segments=64,
    archive_segment_bytes=4 * 1024 * 1024,
    archive_workers=4,
    p99_appends=3000,
    rss_bytes=1024 * 1024 * 1024,
)
QUICK = Profile(
    name="quick",
    rounds=3,
    batch_frames=1000,
    batches_100b=30,
    batches_4kib=8,
    batches_64kib=1,
    sync_appends=800,
    sync_appends_per_thread=100,
    sync_threads=16,
    recover_bytes=24 * 1024 * 1024,
    archive_segments=16,
    archive_segment_bytes=1024 * 1024,
    archive_workers=4,
    p99_appends=600,
    rss_bytes=128 * 1024 * 1024,
)
SMOKE = Profile(
    name="smoke",
    rounds=1,
    batch_frames=50,
    batches_100b=2,
    batches_4kib=2,
    batches_64kib=1,
    sync_appends=20,
    sync_appends_per_thread=4,
    sync_threads=16,
    recover_bytes=256 * 1024,
    archive_segments=3,
    archive_segment_bytes=64 * 1024,
    archive_workers=2,
    p99_appends=20,
    rss_bytes=4 * 1024 * 1024,
)
PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}


@dataclass(frozen=True)
class Target:
    """``ratio >= 0.7``, ``ratio <= 1.5`` or, with ``on="value"``, ``value <= 100`` (MiB)."""

    op: str
    threshold: float
    on: str = "ratio"
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=") or self.on not in ("ratio", "value"):
            raise ValueError(f"bad target {self.op} {self.threshold} on {self.on}")

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.op} {self.threshold:g}{unit}"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        """Whether the target is met; ``None`` when the number is missing (skipped)."""
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        return x >= self.threshold if self.op == ">=" else x <= self.threshold

    def margin(self, value: float | None, ratio: float | None) -> float | None:
        """How far past the target, as a factor: >= 1 when met (for the chart)."""
        x = ratio if self.on == "ratio" else value
        if x is None or x <= 0:
            return None
        return x / self.threshold if self.op == ">=" else self.threshold / x


@dataclass
class Result:
    """One case's outcome. ``value``/``baseline_value`` are medians over the rounds."""

    name: str
    unit: str
    baseline_name: str | None
    target: Target
    value: float | None = None
    baseline_value: float | None = None
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    note: str = ""
    """Why a number is missing (skipped), or what to know when reading it."""
    error: str = ""
    seconds: float = 0.0
    peers: dict[str, float] = field(default_factory=dict)
    """For a case against the peer stores: each installed peer's median (same unit)."""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline_value in (None, 0):
            return None
        assert self.baseline_value is not None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        return self.target.met(self.value, self.ratio)

    def as_json(self) -> dict[str, Any]:
        """Exactly the fields of the suite's JSON document."""
        return {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "baseline_name": self.baseline_name,
            "baseline_value": _round(self.baseline_value),
            "ratio": _round(self.ratio),
            "target": str(self.target),
        }


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    return float(f"{x:.4g}")


@dataclass
class Context:
    """What a case gets: the profile, a scratch directory on the filesystem under test, a log
    of progress lines (stderr), and a place to share expensive fixtures between cases."""

    profile: Profile
    scratch: Path
    verbose: bool = True
    shared: dict[str, Any] = field(default_factory=dict)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return self.profile.rounds

    def say(self, message: str) -> None:
        if self.verbose:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    def fresh_dir(self, prefix: str) -> Path:
        """A new empty directory under the scratch directory."""
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.scratch))

    def on_exit(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def close(self) -> None:
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as e:  # a failed cleanup must not hide the results
                self.say(f"cleanup failed: {type(e).__name__}: {e}")


Side = Callable[[], float]


def alternate(
    ctx: Context, walship_side: Side, baseline_side: Side
) -> tuple[list[float], list[float]]:
    """Run both sides ``ctx.rounds`` times, alternating, swapping who goes first each round.

    Returns the samples of each side, in round order.
    """
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(ctx.rounds):
        if i % 2 == 0:
            ours.append(walship_side())
            theirs.append(baseline_side())
        else:
            theirs.append(baseline_side())
            ours.append(walship_side())
    return ours, theirs


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def drop_file(path: str | os.PathLike[str]) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
