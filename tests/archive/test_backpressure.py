"""Backpressure: ``archive.max_pending`` and ``archive.backpressure_timeout``. With the archive
behind, appends wait and then fail with ArchiveBackpressureError (nothing written, the log not
failed); once uploads catch up the next append works; the hook and the stats say so."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from reliability.s3proxy import FaultProxy
from s3server import FlakyFileSystem, moto_endpoint, new_bucket, wait_until

import walship
from walship import ArchiveBackpressureError, hookimpl
from walship.backends.memory import MemoryStore
from walship.errors import ArchiveError


class Pressure:
    """Records ``archive_backpressure``."""

    def __init__(self) -> None:
        self.events: list[tuple[bool, int, int, str | None]] = []

    @hookimpl
    def archive_backpressure(
        self, blocked: bool, pending_bytes: int, max_pending: int, oldest_pending: str | None
    ) -> None:
        self.events.append((blocked, pending_bytes, max_pending, oldest_pending))


def fill(log: walship.Log, segments: int) -> None:
    for s in range(segments):
        log.append_batch([b"pressure %d %d " % (s, i) + b"p" * 200 for i in range(5)])
        log.rotate()


def archive(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": url,
        "upload_process": False,
        "workers": 1,
        "retries": {"attempts": 1000, "backoff": "10ms", "max_backoff": "20ms"},
        "max_pending": "2KiB",
        "backpressure_timeout": "300ms",
        **extra,
    }


def test_appends_fail_clearly_while_the_archive_is_down_and_go_on_after() -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    pressure = Pressure()
    mem = MemoryStore()
    log = walship.open(store=mem, archive=archive(f"{flaky.protocol[0]}://b/w"), plugins=[pressure])
    fill(log, 2)  # two segments of ~1.3 KiB each wait: over 2 KiB
    archiver = log.archiver
    assert archiver is not None and archiver.backpressure is not None
    assert wait_until(lambda: log.stats()["archive"]["backpressure"])
    last = log.last_seq
    with pytest.raises(ArchiveBackpressureError, match="max_pending") as e:
        log.append(b"refused")
    assert isinstance(e.value, ArchiveError) and e.value.max_pending == 2048
    assert e.value.pending_bytes > 2048 and "nothing was written" in str(e.value)
    assert log.failed is None and log.last_seq == last  # not failed, nothing written
    stats = log.stats()["archive"]
    assert stats["backpressure_refusals"] == 1 and stats["backpressure_waits"] == 1
    assert stats["pending_bytes"] > 2048
    flaky.failures_left = 0  # the archive is back: the uploads catch up
    assert wait_until(lambda: not log.stats()["archive"]["backpressure"])
    assert log.append(b"accepted") == last + 1
    log.close()
    assert wait_until(lambda: [b for b, *_ in pressure.events] == [True, False])
    assert pressure.events[0][2] == 2048 and pressure.events[0][3] is not None
    assert pressure.events[1][1] <= 2048  # lifted once back at the limit


def test_a_waiting_append_goes_on_as_soon_as_the_archive_catches_up() -> None:
    gate = threading.Event()
    flaky = FlakyFileSystem.make(gate=gate)
    log = walship.open(
        store=MemoryStore(),
        archive=archive(f"{flaky.protocol[0]}://b/w", backpressure_timeout="60s"),
    )
    fill(log, 2)
    archiver = log.archiver
    assert archiver is not None
    bp = archiver.backpressure
    assert bp is not None and wait_until(lambda: bp.blocked)
    result: list[int] = []
    appender = threading.Thread(target=lambda: result.append(log.append(b"waits")))
    appender.start()
    assert wait_until(lambda: bp.waits == 1)  # it waits, without the I/O turn: others go on
    assert result == []
    gate.set()
    appender.join(30)
    assert result == [11]
    log.close()


def test_a_keyboard_interrupt_while_an_append_waits_writes_nothing() -> None:
    """A real SIGINT to the main thread waiting at the gate: the interrupt goes on, nothing was
    written, the log is not failed, and the next append works once the archive catches up."""
    gate = threading.Event()
    flaky = FlakyFileSystem.make(gate=gate)
    log = walship.open(
        store=MemoryStore(),
        archive=archive(f"{flaky.protocol[0]}://b/w", backpressure_timeout="60s"),
    )
    fill(log, 2)
    archiver = log.archiver
    assert archiver is not None
    bp = archiver.backpressure
    assert bp is not None and wait_until(lambda: bp.blocked)
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread().ident == main

    def interrupt() -> None:
        assert wait_until(lambda: bp.waits == 1)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # (whatever the runner set)
    try:
        with pytest.raises(KeyboardInterrupt):
            log.append(b"interrupted")
    finally:
        signal.signal(signal.SIGINT, old)
    assert log.failed is None and log.last_seq == 10
    gate.set()
    assert log.append(b"after") == 11
    payloads = [f.payload for f in log.read()]
    assert payloads[-1] == b"after" and b"interrupted" not in payloads
    log.close()


def test_stalled_segments_are_retried_by_a_waiting_append() -> None:
    """Attempts used up: nothing would retry them before the next open; a waiting append asks
    for a retry, so the log goes on once the store is back."""
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    log = walship.open(
        store=MemoryStore(),
        archive=archive(
            f"{flaky.protocol[0]}://b/w",
            retries={"attempts": 1},
            backpressure_timeout="20s",
        ),
    )
    fill(log, 2)
    archiver = log.archiver
    assert archiver is not None
    assert wait_until(lambda: len(archiver.stalled()) == 2)
    flaky.failures_left = 0
    assert log.append(b"after the stall") == 11  # waited for the retried uploads
    assert wait_until(lambda: archiver.pending() == [])  # both were retried
    log.close()


def test_prometheus_says_so_and_counts_on_across_a_reopen() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from walship.plugins.prometheus import PrometheusPlugin

    registry = prometheus_client.CollectorRegistry()
    sample = registry.get_sample_value
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    plugin = PrometheusPlugin(registry=registry, port=None)
    mem = MemoryStore()
    config = archive(f"{flaky.protocol[0]}://b/w")
    log = walship.open(store=mem, archive=config, plugins=[plugin])
    try:
        fill(log, 2)
        assert wait_until(lambda: sample("walship_archive_backpressure") == 1)
        with pytest.raises(ArchiveBackpressureError):
            log.append(b"refused")
        assert sample("walship_archive_backpressure_refusals_total") == 1
        pending = sample("walship_archive_pending_bytes")
        assert pending is not None and pending > 2048
    finally:
        log.close(drain=0)
    log = walship.open(store=mem, archive=config, plugins=[plugin])  # the same segments wait
    try:
        assert wait_until(lambda: plugin.followed()[0] is log)
        assert wait_until(lambda: sample("walship_archive_backpressure") == 1)
        with pytest.raises(ArchiveBackpressureError):
            log.append(b"refused again")
        assert log.stats()["archive"]["backpressure_refusals"] == 1  # this log's own count
        assert sample("walship_archive_backpressure_refusals_total") == 2  # a counter goes on
    finally:
        log.close(drain=0)
        plugin.close()


def test_without_max_pending_there_is_no_gate() -> None:
    with walship.open(store=MemoryStore(), archive={"url": "memory://bp-off"}) as log:
        assert log.archiver is not None and log.archiver.backpressure is None
        assert log.stats()["archive"]["backpressure"] is False  # every key always there (LogStats)


def test_bad_settings_are_named() -> None:
    for key, value in (("max_pending", "lots"), ("backpressure_timeout", "-1")):
        with pytest.raises(walship.ConfigError, match=f"archive.{key}"):
            walship.open(store=MemoryStore(), archive={"url": "memory://bp-bad", key: value})


def test_backpressure_against_moto_refusing_uploads(tmp_path: Path) -> None:
    """A real S3 endpoint behind the fault proxy, which answers 500 to every PUT while
    ``refusing`` is set: appends are refused, then accepted once it lets them through."""
    server = moto_endpoint()
    bucket = new_bucket(server)
    refusing = threading.Event()
    refusing.set()

    def plan(n: int, method: str, path: str) -> str | None:
        return "error" if method == "PUT" and refusing.is_set() else None

    proxy = FaultProxy(server.port, plan).start()
    try:
        section = archive(
            bucket.url,
            storage_options=proxy.storage_options(credentials=bucket.storage_options),
        )
        log = walship.open(tmp_path / "wal", archive=section)
        fill(log, 2)
        assert wait_until(lambda: log.stats()["archive"]["backpressure"])
        with pytest.raises(ArchiveBackpressureError):
            log.append(b"refused")
        refusing.clear()
        assert wait_until(lambda: not log.stats()["archive"]["backpressure"])
        assert log.append(b"accepted") == 11
        log.close()
        assert log.pending_at_close == []
    finally:
        proxy.stop()


def test_awaited_appends_wait_in_the_executor_then_fail_and_go_on_after() -> None:
    """The asyncio API under backpressure: ``await log.append`` (and ``submit``'s future) waits
    off the loop (a ticker keeps running meanwhile), then fails with ArchiveBackpressureError,
    nothing written; once the archive catches up the next one is written."""
    import asyncio

    flaky = FlakyFileSystem.make(fail_puts=10**6)
    log = walship.open(store=MemoryStore(), archive=archive(f"{flaky.protocol[0]}://b/w"))
    fill(log, 2)
    archiver = log.archiver
    assert archiver is not None and archiver.backpressure is not None
    assert wait_until(lambda: log.stats()["archive"]["backpressure"])
    last = log.last_seq

    async def scenario() -> None:
        alog = walship.AsyncLog(log)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        with pytest.raises(ArchiveBackpressureError, match="max_pending"):
            await alog.append(b"refused")
        assert ticks >= 5  # the loop ran while the append waited (300 ms)
        with pytest.raises(ArchiveBackpressureError):
            await alog.append_batch([b"refused", b"too"])
        with pytest.raises(ArchiveBackpressureError):
            await alog.submit(b"refused as well")
        assert log.last_seq == last and log.failed is None
        flaky.failures_left = 0
        while log.stats()["archive"]["backpressure"]:
            await asyncio.sleep(0.01)
        assert await alog.append(b"accepted") == last + 1
        tick.cancel()

    asyncio.run(scenario())
    assert log.stats()["archive"]["backpressure_refusals"] == 3
    log.close()
