"""A stepped clock: the wall clock jumps back and forward (NTP, a resumed VM) while the
monotonic clock runs on. Frame timestamps (and segment headers) never go back within a log,
across restarts too; rotation by age follows the monotonic clock, whatever the wall clock does.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import walship
from reliability.support import FIGURES, read_frames, segment_names
from walship.backends.memory import MemoryStore
from walship.core.header import HEADER_SIZE, SegmentHeader
from walship.log import Log

HOUR = 3_600_000_000  # microseconds
START = 1_700_000_000_000_000


@dataclass
class SteppedClock:
    """A wall clock and a monotonic clock moved separately."""

    wall: int = START
    mono: float = 1000.0

    def now_micros(self) -> int:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def run(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.wall += round(seconds * 1_000_000)
        self.mono += seconds


def _open(store: MemoryStore | Path, clock: SteppedClock, **kw: object) -> Log:
    where = {"store": store} if isinstance(store, MemoryStore) else {"path": store}
    return walship.open(entry_point_plugins=False, clock=clock, **where, **kw)  # type: ignore[arg-type]


def _headers(store: MemoryStore) -> list[int]:
    return [
        SegmentHeader.decode(store.read(n, 0, HEADER_SIZE), n).created_at_micros
        for n in segment_names(store)
    ]


def _non_decreasing(values: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))


def test_stamps_never_go_back_when_the_wall_clock_does() -> None:
    store = MemoryStore()
    clock = SteppedClock()
    log = _open(store, clock)
    log.append(b"a")
    clock.run(1)
    log.append(b"b")
    last = clock.wall
    clock.wall -= HOUR  # stepped back an hour
    log.append_batch([b"c", b"d"])
    log.rotate()  # the new segment's header too
    log.append(b"e")
    clock.run(2)  # still an hour behind
    log.append(b"f")
    log.close()
    stamps = [f.timestamp_micros for f in read_frames(store)]
    assert _non_decreasing(stamps), stamps
    assert stamps[2:5] == [last, last, last]  # held at the newest stamp until the clock is past it
    assert _non_decreasing(_headers(store))


def test_stamps_never_go_back_across_a_restart(tmp_path: Path) -> None:
    clock = SteppedClock()
    with _open(tmp_path, clock) as log:
        log.append(b"before")
    newest = clock.wall
    clock.wall -= 24 * HOUR  # the machine comes back with its clock a day behind
    with _open(tmp_path, clock) as log:
        log.append(b"after")
        log.rotate()
        log.append(b"next segment")
    with _open(tmp_path, SteppedClock(wall=START - 48 * HOUR)) as log:
        frames = list(log.read())
    stamps = [f.timestamp_micros for f in frames]
    assert stamps == [newest, newest, newest], stamps


def test_rotation_by_age_follows_the_monotonic_clock() -> None:
    store = MemoryStore()
    clock = SteppedClock()
    log = _open(store, clock, max_segment_age=10.0)
    log.append(b"first")
    clock.wall -= HOUR  # back: the segment must not look younger
    clock.mono += 5
    log.append(b"5 s")
    assert log.stats().get("rotations_age", 0) == 0
    clock.wall += 48 * HOUR  # forward two days: the segment must not look older
    clock.mono += 4
    log.append(b"9 s")
    assert log.stats().get("rotations_age", 0) == 0
    clock.mono += 1.5
    log.append(b"10.5 s")  # now it is 10 s old by the monotonic clock: rotated after it
    assert log.stats()["rotations_age"] == 1
    clock.mono += 9
    clock.wall -= 72 * HOUR
    log.append(b"9 s into the second segment")
    assert log.stats()["rotations_age"] == 1
    log.close()
    assert len(segment_names(store)) == 2


def test_random_steps_keep_stamps_ordered() -> None:
    """Many random steps of the wall clock (back and forward) among appends, batches and
    rotations, with restarts: stamps stay ordered across every segment."""
    rng = random.Random(7)
    store = MemoryStore()
    clock = SteppedClock()
    for _ in range(5):
        log = _open(store, clock, max_segment_bytes=2048)
        for _ in range(200):
            r = rng.random()
            if r < 0.2:
                clock.wall += rng.randint(-2 * HOUR, 2 * HOUR)
            clock.run(rng.uniform(0, 0.01))
            if r < 0.7:
                log.append(b"x" * rng.randint(0, 100))
            elif r < 0.95:
                log.append_batch([b"y" * rng.randint(0, 50) for _ in range(rng.randint(1, 5))])
            else:
                log.rotate()
        log.close()
        clock.wall += rng.randint(-24 * HOUR, HOUR)
    stamps = [f.timestamp_micros for f in read_frames(store)]
    assert len(stamps) > 500 and _non_decreasing(stamps)
    assert _non_decreasing(_headers(store))
    FIGURES["clock.frames_checked"] += len(stamps)
