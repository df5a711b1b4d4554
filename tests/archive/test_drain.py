"""Draining on close: ``archive.drain_on_close`` and ``log.close(drain=...)`` wait for the
pending uploads, name what is left (a warning, ``stats()``, ``pending_at_close``), and
``walship append`` exits 1 naming it; a KeyboardInterrupt in the wait loses nothing."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from s3server import FlakyFileSystem, S3Bucket, wait_until

import walship
from walship.archive import ArchiveStore
from walship.archive.plan import ArchivePlan
from walship.backends.memory import MemoryStore
from walship.cli import build_cli
from walship.core.header import segment_name

QUICK = {"attempts": 1000, "backoff": 0.02, "max_backoff": 0.05}


def write_segments(log: walship.Log, count: int) -> None:
    for s in range(count):
        log.append_batch([b"drain %d %d" % (s, i) for i in range(5)])
        log.rotate()


def flaky_archive(flaky: Any, **extra: Any) -> dict[str, Any]:
    return {"url": f"{flaky.protocol[0]}://b/w", "retries": QUICK, "workers": 1, **extra}


def test_close_waits_for_every_queued_upload_not_only_the_one_in_flight() -> None:
    """One worker, three segments, the first upload hangs until close is waiting: without the
    drain only the in-flight one would finish (the archiver stops starting new ones)."""
    gate = threading.Event()
    flaky = FlakyFileSystem.make(gate=gate)
    mem = MemoryStore()
    log = walship.open(store=mem, archive=flaky_archive(flaky))
    write_segments(log, 3)
    assert wait_until(lambda: flaky.puts >= 1)

    def release() -> None:  # once close is in its drain wait (the log is closed by then)
        assert wait_until(lambda: log.closed)
        gate.set()

    threading.Thread(target=release, daemon=True).start()
    log.close(drain=60)
    assert log.pending_at_close == []
    assert log.stats()["archive_pending_at_close"] == []
    archiver = log.archiver
    assert archiver is not None
    assert all(archiver.record.archived(s, archiver.url) for s in (1, 2, 3))


def test_close_names_what_it_could_not_drain_and_the_next_open_uploads_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    mem = MemoryStore()
    log = walship.open(store=mem, archive=flaky_archive(flaky, drain_on_close="200ms"))
    write_segments(log, 2)
    with caplog.at_level(logging.WARNING, logger="walship"):
        log.close()
    left = [segment_name(1), segment_name(2)]
    assert log.pending_at_close == left
    assert log.stats()["archive_pending_at_close"] == left
    [line] = [r.getMessage() for r in caplog.records if "still pending" in r.getMessage()]
    assert "2 segment(s)" in line and segment_name(1) in line and "next open" in line
    flaky.failures_left = 0
    with walship.open(store=mem, archive=flaky_archive(flaky)) as again:
        assert again.archiver is not None and again.archiver.flush(timeout=20)
        assert again.archiver.pending() == []


def test_drain_zero_does_not_wait_nor_warn(caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    log = walship.open(store=MemoryStore(), archive=flaky_archive(flaky))
    write_segments(log, 1)  # (its segment_closed event may still be on its way: pending)
    with caplog.at_level(logging.WARNING, logger="walship"):
        log.close(drain=0)
    assert log.pending_at_close == [segment_name(1)]
    assert not [r for r in caplog.records if "still pending" in r.getMessage()]


def test_a_close_before_the_archiver_heard_of_a_segment_names_it_pending() -> None:
    """A plugin called before the archiver holds the event thread in ``segment_closed``: the
    archiver has not been told of segment 1 when close drains, and it is pending all the same
    (a close racing that hand-over once reported ``[]``, and the next open uploaded it)."""
    held, release = threading.Event(), threading.Event()

    class Holder:
        @walship.hookimpl
        def segment_closed(self) -> None:
            held.set()
            release.wait(30)

    flaky = FlakyFileSystem.make(fail_puts=10**6)
    log = walship.open(store=MemoryStore(), archive=flaky_archive(flaky))
    log.plugins.register(Holder())  # registered last: called first
    write_segments(log, 1)
    assert held.wait(30)
    assert log.archiver is not None and log.archiver.pending() == []
    threading.Timer(0.5, release.set).start()  # the close's event thread stop waits for it
    log.close(drain=0)
    assert log.pending_at_close == [segment_name(1)]


def test_a_with_block_left_by_an_exception_does_not_wait() -> None:
    """drain_on_close is an hour here: a close that waited would run into the test timeout."""
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    mem = MemoryStore()
    log = walship.open(store=mem, archive=flaky_archive(flaky, drain_on_close="1h"))
    with pytest.raises(RuntimeError, match="the application failed"), log:
        write_segments(log, 1)
        raise RuntimeError("the application failed")
    assert log.closed and log.pending_at_close == [segment_name(1)]


def test_a_bad_drain_is_refused_and_the_log_stays_open() -> None:
    log = walship.open(store=MemoryStore(), archive={"url": "memory://drain-bad"})
    with pytest.raises(ValueError, match="drain must be"):
        log.close(drain=-1)
    assert not log.closed
    log.close()
    assert log.pending_at_close == []


def test_without_an_archive_close_has_nothing_to_drain() -> None:
    with walship.open(store=MemoryStore()) as log:
        log.append(b"x")
    assert log.pending_at_close is None and log.stats()["archive_pending_at_close"] is None


def test_a_keyboard_interrupt_in_the_drain_wait_loses_nothing(tmp_path: Path) -> None:
    """A real SIGINT to the main thread while close waits: close raises KeyboardInterrupt, yet it
    completed (closed, the lock released: the log reopens here), and the next open uploads
    every pending segment."""
    gate = threading.Event()
    flaky = FlakyFileSystem.make(gate=gate)
    path = tmp_path / "wal"
    log = walship.open(path, archive=flaky_archive(flaky))
    write_segments(log, 3)
    assert wait_until(lambda: flaky.puts >= 1)
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread().ident == main

    def interrupt() -> None:
        assert wait_until(lambda: log.closed)  # in the drain wait
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # (whatever the runner set)
    try:
        with pytest.raises(KeyboardInterrupt):
            log.close(drain=60)
    finally:
        signal.signal(signal.SIGINT, old)
    assert log.closed
    log.close()  # idempotent
    gate.set()
    with walship.open(path, archive=flaky_archive(flaky)) as again:  # the lock was released
        assert again.archiver is not None and again.archiver.flush(timeout=20)
        archiver = again.archiver
        assert all(archiver.record.archived(s, archiver.url) for s in (1, 2, 3))


def test_close_drains_to_a_real_s3_server(tmp_path: Path, s3_target: S3Bucket) -> None:
    """moto and radosgw: close (the default drain) returns with every closed segment in the
    archive, verified, as the archive's own plan shows."""
    archive = {
        "url": s3_target.url,
        "storage_options": s3_target.storage_options,
        "retries": {"attempts": 50, "backoff": 0.05, "max_backoff": 0.25},
    }
    log = walship.open(tmp_path / "wal", archive=archive)
    write_segments(log, 4)
    log.close()
    assert log.pending_at_close == []
    plan = ArchivePlan.load(ArchiveStore(s3_target.url, s3_target.storage_options))
    assert [s for s in plan.seqs if s <= 4] == [1, 2, 3, 4]


def _config(tmp_path: Path, archive: dict[str, Any]) -> Path:
    config = tmp_path / "walship.yaml"
    doc = {
        "store": {"path": str(tmp_path / "wal")},
        "rotation": {"max_segment_bytes": "1KiB"},
        "archive": archive,
    }
    config.write_text(yaml.safe_dump(doc))
    return config


def test_walship_append_exits_1_naming_what_it_could_not_drain(tmp_path: Path) -> None:
    blocker = tmp_path / "archive"
    blocker.write_text("a file where the archive's directory should be: every upload fails")
    archive = {
        "url": (blocker / "wal").as_uri(),
        "upload_process": False,
        "drain_on_close": "200ms",
        "retries": QUICK,
    }
    config = _config(tmp_path, archive)
    records = "".join(f"record {i} " + "x" * 100 + "\n" for i in range(30))
    result = CliRunner().invoke(build_cli(), ["append", "-c", str(config)], input=records)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0] == "30"  # what is durable is still said
    assert f"  {segment_name(1)}: " in result.stderr  # each named, with its last error
    assert "Not a directory" in result.stderr
    assert "kept locally" in result.stderr and "next open" in result.stderr
    blocker.unlink()
    result = CliRunner().invoke(build_cli(), ["append", "-c", str(config)], input="one more\n")
    assert result.exit_code == 0, result.output  # the next open uploaded them
    assert result.stdout.strip() == "31"


def test_walship_append_names_what_it_left_once_in_a_real_process(tmp_path: Path) -> None:
    """Run as a user runs it (Python's last-resort handler prints the log's warnings): the
    close's own warning is not printed besides the command's lines, and a segment whose
    retries gave up is said so (not that the close waited the whole drain_on_close)."""
    blocker = tmp_path / "archive"
    blocker.write_text("a file where the archive's directory should be: every upload fails")
    archive = {
        "url": (blocker / "wal").as_uri(),
        "upload_process": False,
        "drain_on_close": "1h",  # the retries give up long before: nothing waits for it
        "retries": {"attempts": 2, "backoff": 0.01, "max_backoff": 0.02},
    }
    config = _config(tmp_path, archive)
    records = "".join(f"record {i} " + "x" * 100 + "\n" for i in range(30))
    done = subprocess.run(
        [sys.executable, "-m", "walship", "append", "-c", str(config)],
        input=records,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "not archived" in done.stderr and "gave up after their retries" in done.stderr
    assert "still pending upload" not in done.stderr, done.stderr  # named once
    assert f"  {segment_name(1)}: " in done.stderr


def test_walship_append_exits_0_when_it_drained(tmp_path: Path) -> None:
    archive = {"url": (tmp_path / "archive").as_uri(), "upload_process": False}
    config = _config(tmp_path, archive)
    records = "".join(f"record {i} " + "x" * 100 + "\n" for i in range(30))
    result = CliRunner().invoke(build_cli(), ["append", "-c", str(config)], input=records)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "archive"))  # uploaded before the command returned
