"""When to rotate the active segment: the reasons, in priority order, and the clock."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class RotationReason(str, Enum):
    """Why a segment was closed. Checked in this priority order: forced, size, age."""

    FORCED = "forced"
    SIZE = "size"
    AGE = "age"


class Clock(Protocol):
    """Where the engine gets time. Inject a fixed one to write byte-identical segments."""

    def now_micros(self) -> int:
        """Wall-clock time in microseconds since the Unix epoch (headers, frame timestamps)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (segment age)."""
        ...


class SystemClock:
    """The real clocks: ``time.time_ns`` and ``time.monotonic``."""

    def now_micros(self) -> int:
        return time.time_ns() // 1000

    def monotonic(self) -> float:
        return time.monotonic()


class Stamper:
    """Non-decreasing wall-clock stamps for one log (frame timestamps, segment headers).

    The wall clock can step back (NTP, a resumed VM); a stamp never does: it is the clock's time,
    or the last stamp handed out (or the floor set at open, the newest timestamp on disk) when
    that is later. Not thread-safe: the log calls it from the one thread doing its I/O.
    """

    __slots__ = ("clock", "floor")

    def __init__(self, clock: Clock, floor: int = 0) -> None:
        self.clock = clock
        self.floor = floor

    def __call__(self) -> int:
        now = self.clock.now_micros()
        if now < self.floor:
            return self.floor
        self.floor = now
        return now

    def raise_floor(self, micros: int | None) -> None:
        """Never stamp below ``micros`` from now on (``None``: nothing known)."""
        if micros is not None and micros > self.floor:
            self.floor = micros


@dataclass
class ManualClock:
    """A clock that moves only when told (tests, reproducible files)."""

    micros: int = 1_700_000_000_000_000
    mono: float = 0.0

    def now_micros(self) -> int:
        return self.micros

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward (the wall clock by ``seconds`` rounded to a microsecond)."""
        self.micros += round(seconds * 1_000_000)
        self.mono += seconds


@dataclass(frozen=True)
class RotationPolicy:
    """Rotate when the segment (header included) reaches ``max_segment_bytes`` bytes, or when it
    is ``max_segment_age`` seconds old and holds at least one frame (an idle, empty segment is
    not rotated: that would only make empty files)."""

    max_segment_bytes: int = 64 * 1024 * 1024
    max_segment_age: float = 60.0

    def __post_init__(self) -> None:
        if self.max_segment_bytes < 1:
            raise ValueError(f"max_segment_bytes must be positive, got {self.max_segment_bytes}")
        if self.max_segment_age <= 0:
            raise ValueError(f"max_segment_age must be positive, got {self.max_segment_age}")

    def reason(
        self, forced: bool, size: int, age: float, frame_count: int
    ) -> RotationReason | None:
        """The reason to rotate now, or ``None``: forced > size > age."""
        if forced:
            return RotationReason.FORCED
        if size >= self.max_segment_bytes:
            return RotationReason.SIZE
        if frame_count and age >= self.max_segment_age:
            return RotationReason.AGE
        return None
