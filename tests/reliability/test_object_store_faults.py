"""Object-store faults: moto's S3 server and Ceph radosgw (the tests taking ``server`` run on
both) behind a fault-injecting proxy, reached through s3fs.

The archiver ships closed segments while the proxy (``s3proxy.py``) makes the k-th request fail
(``500`` before or after the server acted, ``503 SlowDown``, a reset connection, an answer past
the read timeout, a body cut in half), slows every request down, or holds one upload while the
server is stopped and started again; a partial object or manifest is planted where a segment
will go. For every k of a whole archiving workload, and every way to fail:

* **No local segment is removed before its verified upload.** A plugin checks, when retention
  removes a segment, that the archive (read straight from the server, not through the proxy)
  holds exactly the bytes the segment had when it was closed, with its manifest.
* **Nothing is lost.** Every closed segment ends up archived, the archive verifies
  (``scan_store(ArchiveReadStore(...))``), and a restore returns every acknowledged frame.
* **Retries are visible.** A fault walship sees is a failed attempt, counted the same in
  ``log.stats()["archive"]``, in ``archive_failed`` hooks and in the metrics plugin; a fault
  absorbed below walship (s3fs retries resets, SlowDown and cut reads itself) shows as a
  repeated request.
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from s3server import (
    MotoServer,
    S3Bucket,
    S3Server,
    free_port,
    moto_endpoint,
    new_bucket,
    radosgw_server,
    wait_until,
)

import walship
from walship.archive import ArchiveReadStore, epoch, manifest_name
from walship.archive.restore import restore
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import parse_segment_name, segment_name
from walship.core.record import ArchiveRecord
from walship.core.rotation import ManualClock
from walship.core.scan import scan_store
from walship.plugins.metrics import MetricsPlugin
from walship.store import SegmentStore

from .archive_watch import Watch
from .s3proxy import FaultProxy, Plan
from .support import FIGURES, make_payload

pytestmark = pytest.mark.one_python  # (pyproject.toml: CI runs it on its main Python)

FRAMES = 6
"""Frames per segment of the workload."""


@dataclass
class Outcome:
    """What one run saw."""

    acked: dict[int, bytes]
    stats: dict[str, Any]
    metrics: dict[str, Any]
    watch: Watch
    proxy: FaultProxy
    local: list[int] = field(default_factory=list)


def workload(
    log: walship.Log, segments: int, start: int = 0, clock: ManualClock | None = None
) -> dict[int, bytes]:
    """``segments`` closed segments of ``FRAMES`` frames each; their acknowledged frames."""
    acked: dict[int, bytes] = {}
    for s in range(start, start + segments):
        payloads = [make_payload(f"s{s}.{i}") for i in range(FRAMES)]
        acked.update(zip(log.append_batch(payloads), payloads, strict=True))
        if clock is not None:
            clock.advance(1)
        log.rotate()
    return acked


def local_segments(store: SegmentStore) -> list[int]:
    return sorted(s for n in store.list_names() if (s := parse_segment_name(n)) is not None)


def archive_section(bucket: S3Bucket, proxy: FaultProxy, workers: int = 1) -> dict[str, Any]:
    return {
        "url": bucket.url,
        "storage_options": proxy.storage_options(credentials=bucket.storage_options),
        "workers": workers,
        "retries": {"attempts": 1000, "backoff": 0.01, "max_backoff": 0.1},
    }


def run(
    server: S3Server,
    plan: Plan,
    segments: int,
    *,
    workers: int = 1,
    keep_local: str = "until_archived",
    store: SegmentStore | None = None,
    slow_seconds: float = 0.05,
) -> Outcome:
    """One archiving workload through a proxy with ``plan``; flushed and closed. The fence is
    asked before every upload (its GET vouches for no time), so that a workload makes the
    same requests in the same order every time."""
    with mock.patch.object(epoch, "FENCE_RECHECK", 0):
        return _run(server, plan, segments, workers, keep_local, store, slow_seconds)


def _run(
    server: S3Server,
    plan: Plan,
    segments: int,
    workers: int,
    keep_local: str,
    store: SegmentStore | None,
    slow_seconds: float,
) -> Outcome:
    bucket = new_bucket(server)
    proxy = FaultProxy(port_of(server), plan, slow_seconds=slow_seconds, late_seconds=1.3).start()
    watch, metrics = Watch(bucket), MetricsPlugin()
    store = store if store is not None else MemoryStore()
    try:
        log = walship.open(
            store=store,
            entry_point_plugins=False,
            plugins=[watch, metrics],
            archive=archive_section(bucket, proxy, workers),
            retention={"keep_local": keep_local},
        )
        try:
            acked = workload(log, segments)
            assert log.archiver is not None and log.archiver.flush(timeout=120)
        finally:
            log.close()  # delivers every pending event
        stats = log.stats()
    finally:
        proxy.stop()
    out = Outcome(acked, stats, metrics.snapshot(), watch, proxy, local_segments(store))
    check(out, bucket, keep_local, segments)
    return out


def check(out: Outcome, bucket: S3Bucket, keep_local: str, segments: int) -> None:
    """The invariants of the module docstring."""
    watch, archive = out.watch, out.stats["archive"]
    assert not watch.violations, watch.violations
    assert not out.stats["plugin_errors"], out.stats["plugin_errors"]
    assert sorted(set(watch.archived)) == sorted(watch.closed) == list(range(1, segments + 1))
    assert archive["pending"] == 0 and archive["archived"] == segments
    # retries are visible, and counted the same everywhere
    assert archive["failed_attempts"] == len(watch.failed) == out.metrics["archive_failures"]
    assert out.metrics["segments_archived"] == segments
    if keep_local == "until_archived":
        assert out.local == [segments + 1]
        assert sorted(watch.removed) == list(range(1, segments + 1))
    # nothing lost: the archive verifies and restores every acknowledged frame
    view = ArchiveReadStore(bucket.url, bucket.storage_options)
    assert scan_store(view).ok
    assert restored(bucket) == out.acked


def restored(bucket: S3Bucket) -> dict[int, bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        restore(bucket.url, Path(d) / "r", storage_options=bucket.storage_options)
        with walship.open(Path(d) / "r", entry_point_plugins=False) as log:
            return {f.commit_seq: f.payload for f in log.read()}


def at(k: int, mode: str, window: int = 1) -> Plan:
    """Fail requests ``k .. k + window - 1`` with ``mode``."""
    return lambda n, method, path: mode if k <= n < k + window else None


OPEN_REQUESTS = 3
"""A new log lists its archive once at open (a new log must not number from 1 again where the
archive holds segments): s3fs lists the prefix, then its parent when the prefix is empty; then
its archiver checks once that no takeover fenced it (one GET of the next epoch's object: a
failure there is retried before every upload, no archive attempt)."""

FENCE_REQUESTS = 1
"""Every upload first checks the fence: one GET of the next epoch's object (a 404; in :func:`run`
each check asks, where a writer asks once a second)."""

PROBE_REQUESTS = 3
"""The first put to a bucket probes the conditional create: PUT, PUT (refused), DELETE."""


def port_of(server: S3Server) -> int:
    return int(server.endpoint.rsplit(":", 1)[1])


@pytest.fixture(scope="module", params=["moto", "radosgw"])
def server(request: pytest.FixtureRequest) -> S3Server:
    return moto_endpoint() if request.param == "moto" else radosgw_server()


class Baseline(dict[int, int]):
    """Requests of a fault-free workload of N segments (one worker: always the same number),
    counted on first use."""

    def __init__(self, server: S3Server) -> None:
        super().__init__()
        self.server = server

    def __missing__(self, segments: int) -> int:
        self[segments] = run(self.server, lambda *a: None, segments).proxy.count()
        return self[segments]


@pytest.fixture(scope="module")
def baseline(server: S3Server) -> Baseline:
    return Baseline(server)


def sweep(
    server: S3Server,
    baseline: Baseline,
    segments: int,
    modes: list[str],
    window: int,
    ks: list[int] | None = None,
) -> None:
    """Every k of the workload (or those of ``ks``), each mode; the fault must show."""
    for mode in modes:
        for k in ks or range(1, baseline[segments] + 1):
            out = run(server, at(k, mode, window), segments)
            faults = [r for r in out.proxy.faults() if r.effective]
            if not faults:  # a cut of an answer without a body: nothing happened, all held
                assert mode == "truncate"
                FIGURES["object_store.runs"] += 1
                continue
            assert faults[0].n == k
            if k <= OPEN_REQUESTS:
                # a failed listing at open is retried below walship or opens with a warning
                # (it lists again at the next open); it is no archive attempt (run() checked
                # that everything was archived, restored and verified all the same)
                FIGURES["object_store.runs"] += 1
                continue
            if faults[0].method == "DELETE" and "probe-" in faults[0].path:
                # the probe's clean-up is best effort: a leftover probe is a temporary
                # object, which every listing skips (check() restored and verified)
                FIGURES["object_store.runs"] += 1
                continue
            seen = out.stats["archive"]["failed_attempts"]
            repeated = out.proxy.count() > baseline[segments]  # a retry below walship
            what = f"{mode} at request {k} ({faults[0].method} {faults[0].path})"
            if mode in ("error", "lost"):
                assert seen >= 1, f"{what} left no failed attempt"
            else:
                assert seen >= 1 or repeated, f"{what} left no trace"
            FIGURES["object_store.runs"] += 1
            FIGURES["object_store.faults_injected"] += len(faults)
            FIGURES["object_store.failed_attempts_seen"] += seen


def test_kth_request_fails(server: S3Server, baseline: Baseline) -> None:
    """A 500 after the server acted (the answer lost) and a 500 before it acted, at every
    request of archiving one segment (the open's listing and fence check, the upload's fence
    check, the probe's three, put the object, put the manifest).
    The long run: every mode at every request of four segments."""
    assert baseline[1] == OPEN_REQUESTS + FENCE_REQUESTS + PROBE_REQUESTS + 2
    sweep(server, baseline, 1, ["lost", "error"], 1)


def test_kth_request_absorbed_or_retried(server: S3Server, baseline: Baseline) -> None:
    """SlowDown, a reset and a late answer, each at one request of archiving one segment; a
    cut body (only a GET's answer has one: the object's read-back after a retry finds it
    there, its first upload's answer lost)."""
    rng = random.Random(6)
    for mode in ("slowdown", "reset", "late"):
        sweep(server, baseline, 1, [mode], 1, [rng.randint(OPEN_REQUESTS + 1, baseline[1])])
    cut: list[int] = []
    lost: list[int] = []

    def plan(n: int, method: str, path: str) -> str | None:
        if method == "PUT" and path.split("?")[0].endswith(segment_name(1)) and not lost:
            lost.append(n)
            return "lost"
        if method == "GET" and path.split("?")[0].endswith(segment_name(1)) and not cut:
            cut.append(n)
            return "truncate"
        return None

    out = run(server, plan, 1)
    assert cut, "the object was never read back"
    assert [r.fault for r in out.proxy.faults() if r.effective] == ["lost", "truncate"]
    assert out.stats["archive"]["failed_attempts"] >= 1
    FIGURES["object_store.runs"] += 4


def test_an_outage_of_several_requests(server: S3Server) -> None:
    """Six requests in a row fail: walship retries the same segment with a growing backoff
    until the store answers again. (A run of resets is absorbed by s3fs, which retries a
    reset up to 25 times; the server stopped mid-upload is the longer outage.)"""
    out = run(server, at(OPEN_REQUESTS + FENCE_REQUESTS + PROBE_REQUESTS + 2, "error", 6), 2)
    assert out.stats["archive"]["failed_attempts"] == 6
    assert [a for _, a, _ in out.watch.failed] == [1, 2, 3, 4, 5, 6]
    FIGURES["object_store.runs"] += 1
    FIGURES["object_store.faults_injected"] += len(out.proxy.faults())


def test_slow_responses_and_random_faults_with_parallel_workers(
    server: S3Server, tmp_path: Path
) -> None:
    """Every request is slow, one in eight fails some way, four workers upload at once, on a
    real directory with ``last:2`` retention."""
    rng = random.Random(7)
    lock = threading.Lock()

    def plan(n: int, method: str, path: str) -> str | None:
        with lock:
            roll = rng.random()
        if roll < 0.125:
            return rng.choice(["error", "lost", "slowdown", "reset", "truncate"])
        return "slow"

    store = PosixStore(tmp_path / "wal")
    out = run(server, plan, 12, workers=4, keep_local="last:2", store=store, slow_seconds=0.02)
    assert out.local == [11, 12, 13]  # the two newest closed ones and the active one
    FIGURES["object_store.runs"] += 1
    FIGURES["object_store.faults_injected"] += sum(r.fault != "slow" for r in out.proxy.faults())


# --- the server stopped mid-upload --------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[MotoServer]:
    server = MotoServer(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def outage(server: MotoServer, tmp_path: Path, when: str, cycles: int = 1) -> None:
    """Hold an upload of a segment object (``hold``: before the server got it; ``hold_after``:
    after it stored it, before the answer), stop the server, let the upload go on to a dead
    endpoint; appends go on; start the server again. ``cycles`` times."""
    bucket = new_bucket(server)
    held = threading.Event()
    remaining = [cycles]

    def plan(n: int, method: str, path: str) -> str | None:
        if (
            method == "PUT"
            and path.split("?")[0].endswith(".aedbwal")
            and not held.is_set()
            and remaining[0] > 0
        ):
            held.set()
            remaining[0] -= 1
            return when
        return None

    proxy = FaultProxy(server.port, plan).start()
    watch, metrics = Watch(bucket), MetricsPlugin()
    path = tmp_path / "wal"
    acked: dict[int, bytes] = {}
    try:
        log = walship.open(
            path,
            entry_point_plugins=False,
            plugins=[watch, metrics],
            archive=archive_section(bucket, proxy, workers=2),
            retention={"keep_local": "until_archived"},
        )
        done = 0
        for _ in range(cycles):
            proxy._holding.clear()
            proxy._released.clear()
            acked.update(workload(log, 2, start=done))
            done += 2
            assert proxy.wait_holding()
            server.stop()  # the upload in flight goes to a dead endpoint
            proxy.release()
            failures = len(watch.failed)
            acked.update(workload(log, 2, start=done))  # appends never wait for the archive
            done += 2
            assert wait_until(lambda n=failures: len(watch.failed) > n, timeout=60)
            # while the server is away: a segment is gone only when durably recorded archived
            record = ArchiveRecord.load(PosixStore(path))
            local = set(local_segments(PosixStore(path)))
            for seq in range(1, done + 1):
                assert seq in local or record.archived(seq, bucket.url), seq
            server.start()
            held.clear()
        assert log.archiver is not None and log.archiver.flush(timeout=120)
        log.close()
        stats = log.stats()
    finally:
        proxy.stop()
    out = Outcome(acked, stats, metrics.snapshot(), watch, proxy, local_segments(PosixStore(path)))
    check(out, bucket, "until_archived", done)
    FIGURES["object_store.outages"] += cycles


def test_server_stopped_mid_upload_and_started_again(
    own_server: MotoServer, tmp_path: Path
) -> None:
    """The server stored the object and stopped before it answered (the long run also stops it
    before it got the object, and does it five times in a row)."""
    outage(own_server, tmp_path, "hold_after")


# --- planted partial objects --------------------------------------------------------------


def segment_bytes(segments: int) -> dict[int, bytes]:
    """The exact segments the planted-object workload will write (deterministic clock and
    instance_id)."""
    store = MemoryStore()
    clock = ManualClock()
    log = walship.open(store=store, instance_id=7, clock=clock, entry_point_plugins=False)
    workload(log, segments, clock=clock)
    log.close()
    return {s: store.read(segment_name(s)) for s in range(1, segments + 1)}


def three_attempt_log(
    bucket: S3Bucket, proxy: FaultProxy
) -> tuple[walship.Log, MemoryStore, Watch, MetricsPlugin]:
    """A log archiving through ``proxy`` with three attempts per segment and retention
    ``until_archived``, watched; its manual clock is ``log.clock``."""
    watch, metrics = Watch(bucket), MetricsPlugin()
    store = MemoryStore()
    section = archive_section(bucket, proxy)
    section["retries"] = {"attempts": 3, "backoff": 0.01}
    log = walship.open(
        store=store,
        instance_id=7,
        clock=ManualClock(),
        entry_point_plugins=False,
        plugins=[watch, metrics],
        archive=section,
        retention={"keep_local": "until_archived"},
    )
    return log, store, watch, metrics


@pytest.mark.parametrize("what", ["object", "manifest"])
def test_a_planted_partial_object(server: S3Server, what: str) -> None:
    """The first half of segment 2 (or of its manifest) sits in the bucket before the archiver
    gets there: segment 2 stalls with a named error and stays local, and so does everything
    after it (retention never leaves a gap); once the operator removes the planted object, the
    next flush archives everything."""
    segments = 3
    raw = segment_bytes(segments)
    bucket = new_bucket(server)
    if what == "object":
        bucket.put(segment_name(2), raw[2][: len(raw[2]) // 2])
    else:
        bucket.put(manifest_name(2), b'{"format": "walship-segment-manifest", "vers')
    proxy = FaultProxy(port_of(server)).start()
    try:
        log, store, watch, metrics = three_attempt_log(bucket, proxy)
        acked = workload(log, segments, clock=log.clock)
        assert {s: store.read(segment_name(s)) for s in (2, 3)} == {2: raw[2], 3: raw[3]}
        archiver = log.archiver
        assert archiver is not None
        assert not archiver.flush(timeout=60, retry_stalled=False)
        stalled = archiver.stalled()
        assert list(stalled) == [segment_name(2)]
        assert segment_name(2) in stalled[segment_name(2)]
        assert "\n" not in stalled[segment_name(2)]
        assert archiver.stats()["stalled_now"] == 1
        assert wait_until(lambda: local_segments(store) == [2, 3, 4])
        if what == "object":
            bucket.delete(segment_name(2))
        else:
            bucket.delete(manifest_name(2))
        assert archiver.flush(timeout=60)
        log.close()
        stats = log.stats()
    finally:
        proxy.stop()
    # a planted object is a conflict (different content under the name): stalled at once; a
    # manifest that does not parse is damage, retried as a fault that may pass
    assert stats["archive"]["failed_attempts"] == (1 if what == "object" else 3)
    out = Outcome(acked, stats, metrics.snapshot(), watch, proxy, local_segments(store))
    check(out, bucket, "until_archived", segments)
    FIGURES["object_store.planted"] += 1


def test_a_new_segment_costs_two_requests_and_no_read_back(server: S3Server) -> None:
    """On S3 a put of a new segment is one conditional PUT of the object (sent with its
    Content-MD5; the ETag answered is the MD5 the server computed of what it stored) and the
    manifest's conditional PUT: no lookup first, and the object is never read back when the
    ETag proves it whole. (Before the first put to a bucket, the probe's three requests.)"""
    from walship.archive import ArchiveStore

    raw = segment_bytes(1)[1]
    bucket = new_bucket(server)
    proxy = FaultProxy(port_of(server)).start()
    try:
        options = proxy.storage_options(credentials=bucket.storage_options)
        archive = ArchiveStore(bucket.url, options)
        result = archive.put(segment_name(1), raw)
        requests = proxy.requests[PROBE_REQUESTS:]
        assert all("probe-" in r.path for r in proxy.requests[:PROBE_REQUESTS])
        seen = [(r.method, r.path.split("?")[0].rsplit("/", 1)[-1]) for r in requests]
        object_put = requests[0].headers
    finally:
        proxy.stop()
    # S3 refuses a body that does not match it; the answer's ETag is compared with it too
    assert object_put["content-md5"] == base64.b64encode(hashlib.md5(raw).digest()).decode()
    assert object_put["if-none-match"] == "*"
    assert result.uploaded
    assert seen == [
        ("PUT", segment_name(1)),
        ("PUT", manifest_name(1)),
    ]
    assert bucket.get(segment_name(1)) == raw


def test_a_body_damaged_in_transit_never_counts() -> None:
    """(moto only: radosgw refuses the cut body, whose payload hash is signed.) The first
    upload of segment 2 reaches the server cut in half (with its integrity
    headers gone, so the server stores what it got): the ETag the server answers is not the
    local MD5, the read-back confirms the damage, the damaged object is removed and the retry
    uploads the segment whole; nothing is removed locally before that."""
    segments = 3
    raw = segment_bytes(segments)
    server = moto_endpoint()
    bucket = new_bucket(server)
    damaged: list[str] = []

    def damage(method: str, path: str, body: bytes) -> bytes | None:
        if method == "PUT" and path.split("?")[0].endswith(segment_name(2)) and not damaged:
            damaged.append(path)
            return body[: len(body) // 2]
        return None

    proxy = FaultProxy(port_of(server), damage=damage).start()
    try:
        log, store, watch, metrics = three_attempt_log(bucket, proxy)
        acked = workload(log, segments, clock=log.clock)
        archiver = log.archiver
        assert archiver is not None
        assert archiver.flush(timeout=60)
        log.close()
        stats = log.stats()
    finally:
        proxy.stop()
    assert damaged, "the proxy never saw the upload of segment 2"
    assert stats["archive"]["failed_attempts"] == 1
    assert bucket.get(segment_name(2)) == raw[2]
    out = Outcome(acked, stats, metrics.snapshot(), watch, proxy, local_segments(store))
    check(out, bucket, "until_archived", segments)


# --- the long run -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kth_request_long(server: S3Server, baseline: Baseline) -> None:
    """Every mode at every request of a four-segment workload, single and as a run of four."""
    sweep(server, baseline, 4, ["error", "lost", "slowdown", "reset", "truncate"], 1)
    sweep(server, baseline, 4, ["error", "lost", "reset"], 4)
    for k in range(1, baseline[4] + 1, 3):
        run(server, at(k, "late"), 4)
        FIGURES["object_store.runs"] += 1
        FIGURES["object_store.faults_injected"] += 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_random_faults_long(server: S3Server, tmp_path: Path) -> None:
    for seed in range(12):
        rng = random.Random(seed)
        lock = threading.Lock()

        def plan(
            n: int,
            method: str,
            path: str,
            rng: random.Random = rng,
            lock: threading.Lock = lock,
        ) -> str | None:
            with lock:
                if rng.random() < 0.15:
                    return rng.choice(["error", "lost", "slowdown", "reset", "truncate"])
            return "slow"

        store = PosixStore(tmp_path / f"wal{seed}")
        out = run(server, plan, 16, workers=4, store=store, slow_seconds=0.01)
        FIGURES["object_store.runs"] += 1
        FIGURES["object_store.faults_injected"] += sum(
            r.fault != "slow" for r in out.proxy.faults()
        )


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("when", ["hold", "hold_after"])
def test_server_stopped_mid_upload_long(own_server: MotoServer, tmp_path: Path, when: str) -> None:
    outage(own_server, tmp_path, when, cycles=5)


@pytest.mark.parametrize("fault", ["hang_upload", "hang", "refuse"])
def test_walship_archive_honours_its_timeout(tmp_path: Path, fault: str) -> None:
    """``walship archive --timeout T`` returns within T and a margin (process start, close)
    whether the server hangs on every upload or on every request, the open's LIST included
    (held far past T), or refuses every connection (retried with backoff); it names what it
    left and exits 1. The margin is generous: the point is that neither a request in flight
    nor a backoff wait runs on."""
    import json
    import os
    import subprocess
    import sys
    import time

    server = moto_endpoint()
    bucket = new_bucket(server)

    def plan(n: int, method: str, path: str) -> str | None:
        return "hold" if fault == "hang" or method == "PUT" else None

    proxy = FaultProxy(port_of(server), plan).start()
    wal = tmp_path / "wal"
    with walship.open(wal) as log:
        workload(log, 2)
    options = proxy.storage_options(read_timeout=60, retries=2)
    if fault == "refuse":
        options["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "walship.yaml"
    config.write_text(
        f"store: {{backend: posix, path: {wal}}}\n"
        f"archive:\n  url: {bucket.url}\n  storage_options: {json.dumps(options)}\n"
        "  retries: {attempts: 10, backoff: 1s, max_backoff: 5s}\n"
    )
    timeout = 8.0  # (the child starts and opens within it on a loaded machine: 3 s did not)
    walship_script = str(Path(sys.executable).with_name("walship"))
    try:
        started = time.monotonic()
        out = subprocess.run(
            [walship_script, "archive", "-c", str(config), "--timeout", str(timeout)],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
        elapsed = time.monotonic() - started
    finally:
        proxy.release()
        proxy.stop()
    assert elapsed < timeout + 7, (elapsed, out.stderr)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    opened = "did not open within the timeout" not in out.stderr
    assert opened or fault != "hang_upload"
    assert not opened or fault != "hang"  # (a refused open's LIST is retried: either way)
    if opened:
        assert "2 segments are not archived" in out.stderr
