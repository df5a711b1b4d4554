"""The fence's GET (:class:`walship.archive.epoch.Fence`): one GET of the next epoch's object
vouches for ``recheck`` seconds (a stepped clock here), so that a writer does not double its
requests; a fresh check (start, a conflict) always asks; once fenced, fenced for good."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from walship.archive import ArchiveStore
from walship.archive.epoch import FENCE_RECHECK, Fence, LocalEpoch, claim_epoch
from walship.errors import ArchiveFencedError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore(ArchiveStore):
    """An archive over file:// that counts its small reads (the fence's GETs)."""

    gets = 0

    def read_object(self, name: str, limit: int) -> bytes | None:
        self.gets += 1
        return super().read_object(name, limit)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[CountingStore]:
    yield CountingStore(f"file://{tmp_path}/archive")


def test_one_get_vouches_for_the_recheck_window(archive: CountingStore) -> None:
    clock = Clock()
    fence = Fence(archive, LocalEpoch(archive.url), recheck=1.0, clock=clock)
    fence.check()
    assert archive.gets == 1
    clock.now += 0.5
    fence.check()
    assert archive.gets == 1  # vouched for by the GET half a second ago
    clock.now += 0.5
    fence.check()
    assert archive.gets == 2  # a second after the last GET began: asked again
    fence.check(fresh=True)
    assert archive.gets == 3  # fresh: always asked
    assert FENCE_RECHECK == 1.0


def test_a_takeover_is_found_by_the_next_get(archive: CountingStore) -> None:
    clock = Clock()
    fence = Fence(archive, LocalEpoch(archive.url), recheck=1.0, clock=clock)
    fence.check()
    claim_epoch(archive, 1, None, 0, None)  # another writer takes over
    clock.now += 0.9
    fence.check()  # inside the window: not asked (an upload now is a fenced one's leftover)
    assert not fence.fenced
    with pytest.raises(ArchiveFencedError, match="taken over"):
        fence.check(fresh=True)  # a conflict asks at once
    gets = archive.gets
    clock.now += 10
    with pytest.raises(ArchiveFencedError):
        fence.check()  # fenced for good, without asking again
    assert archive.gets == gets

    # another writer of epoch 0 asks at its first check: nothing vouches for it yet
    late = Fence(archive, LocalEpoch(archive.url), recheck=1.0, clock=clock)
    with pytest.raises(ArchiveFencedError):
        late.check()
    assert archive.gets == gets + 1


def test_recheck_zero_asks_every_time(archive: CountingStore) -> None:
    clock = Clock()
    fence = Fence(archive, LocalEpoch(archive.url), recheck=0, clock=clock)
    for _ in range(3):
        fence.check()
    assert archive.gets == 3
