"""Process crashes of an asyncio writer: the crash harness of test_process_crash.py, its writer
awaiting ``append`` and ``append_batch`` from many tasks on one loop (one thread appending
beside them), SIGKILLed at random moments (start-up, recovery, writing). Every acknowledged
frame is there after each kill, the frames are ``1..M`` without a gap, the chain verifies, and
the commit_seq continues."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_process_crash as crash

AIO_WRITER = Path(__file__).with_name("aio_crash_writer.py")


@pytest.fixture
def aio_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crash, "WRITER", AIO_WRITER)


@pytest.mark.usefixtures("aio_writer")
def test_process_crashes_of_an_async_writer(tmp_path: Path) -> None:
    crash.crash_loop(tmp_path / "wal", kills=12, seed=20261216)


@pytest.mark.usefixtures("aio_writer")
@pytest.mark.parametrize("durability", ["interval", "none"])
def test_process_crashes_of_an_async_writer_without_a_sync_per_append(
    tmp_path: Path, durability: str
) -> None:
    crash.crash_loop(tmp_path / "wal", kills=5, seed=len(durability), durability=durability)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.usefixtures("aio_writer")
def test_process_crashes_of_an_async_writer_long(tmp_path: Path) -> None:
    for log_no in range(6):
        durability = ("always", "interval", "none")[log_no % 3]
        crash.crash_loop(tmp_path / f"wal{log_no}", kills=40, seed=log_no, durability=durability)
