"""The maintenance thread (walship/core/maintenance.py): the interval flusher and the age rotation
of an idle log, and how the thread ends (stopped, on the log's failure, on a bug)."""

from __future__ import annotations

import logging
import threading

import pytest
from s3server import wait_until

import walship
from walship.backends.memory import MemoryStore
from walship.core.maintenance import Maintenance
from walship.errors import LogFailedError


def _ended(maintenance: Maintenance) -> bool:
    thread: threading.Thread = maintenance._thread
    return thread.ident is not None and not thread.is_alive()


def test_the_flusher_syncs_an_interval_log() -> None:
    with walship.open(store=MemoryStore(), durability="interval", sync_interval=0.01) as log:
        seq = log.append(b"x")
        assert wait_until(lambda: log.durable_seq >= seq)  # no sync() called: the flusher did it
        assert log.stats()["rotations_age"] == 0  # (not a rotation's sync)


def test_an_idle_segment_rotates_by_age() -> None:
    with walship.open(store=MemoryStore(), max_segment_age=0.05) as log:
        log.append(b"x")
        assert wait_until(lambda: log.stats()["rotations_age"] >= 1)  # no append: the thread did it


def test_stop_joins_the_thread_and_is_idempotent() -> None:
    log = walship.open(store=MemoryStore())
    maintenance = log._maintenance
    assert maintenance is not None and maintenance._thread.is_alive()
    assert maintenance._thread.name == "walship-maintenance" and maintenance._thread.daemon
    maintenance.stop()
    maintenance.stop()
    assert _ended(maintenance)
    log.close()


def test_a_bug_in_a_round_is_logged_and_ends_the_thread(caplog: pytest.LogCaptureFixture) -> None:
    with walship.open(store=MemoryStore(), durability="interval", sync_interval=0.01) as log:
        calls: list[int] = []

        def broken_sync() -> None:
            calls.append(1)
            raise RuntimeError("a bug")

        log.append(b"x")  # (written, not yet synced: the round syncs it)
        log._maintenance.stop()  # type: ignore[union-attr]
        maintenance = Maintenance(log._state, 0.01, broken_sync, lambda: None)
        with caplog.at_level(logging.ERROR, logger="walship"):
            maintenance.start()
            assert wait_until(lambda: _ended(maintenance))
        assert calls == [1]  # one round, then the thread ended
        assert "walship maintenance thread failed" in caplog.text
        assert log.failed is None  # a bug in the thread is no failure of the log


def test_a_failed_log_ends_the_thread_quietly(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    log = walship.open(store=store, durability="interval", sync_interval=0.01)
    log.append(b"x")
    log._maintenance.stop()  # type: ignore[union-attr]

    def failing_sync() -> None:
        raise LogFailedError("the log failed")

    maintenance = Maintenance(log._state, 0.01, failing_sync, lambda: None)
    with caplog.at_level(logging.ERROR, logger="walship"):
        maintenance.start()
        assert wait_until(lambda: _ended(maintenance))
    assert "maintenance thread failed" not in caplog.text
    log.close()
