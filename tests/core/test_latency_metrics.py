"""Append and fsync latency: the log's histograms (``walship.core.latency``, in
``log.stats()``) and the Prometheus plugin's ``walship_append_seconds`` and
``walship_fsync_seconds``: exact buckets, one observation per group commit and per sync, the
sync's own time, carried over a reopen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import walship
from walship.backends.memory import MemorySegmentFile, MemoryStore
from walship.core.latency import BOUND_BITS, BOUNDS_SECONDS, LatencyHistogram

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from walship.plugins.prometheus import PrometheusPlugin  # noqa: E402

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def buckets(samples: Samples, metric: str) -> list[tuple[float, float]]:
    """``(le, cumulative count)`` of a histogram, ascending (``+Inf`` last)."""
    out = [
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == f"{metric}_bucket"
    ]
    return sorted(out)


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield CollectorRegistry()


def _wait(log: walship.Log) -> None:
    assert log._events.wait_idle(timeout=30), "events were not delivered"


# --- the histogram ---------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=1 << 40), max_size=60))
def test_buckets_count_exactly_the_durations_at_or_below_their_bound(values: list[int]) -> None:
    h = LatencyHistogram()
    for ns in values:
        h.record(ns)
    snap = h.snapshot()
    assert snap["count"] == len(values)
    assert snap["sum"] == pytest.approx(sum(values) / 1e9)
    assert [b for b, _ in snap["buckets"]] == list(BOUNDS_SECONDS)
    for (_, n), bits in zip(snap["buckets"], BOUND_BITS, strict=True):
        assert n == sum(1 for v in values if v <= 1 << bits)


def test_edges_land_in_the_bucket_of_their_bound() -> None:
    h = LatencyHistogram()
    for ns in (0, 1, 1024, 1025, 4096, 1 << 36, (1 << 36) + 1, 1 << 63):
        h.record(ns)
    counts = dict(h.snapshot()["buckets"])
    assert counts[1024 / 1e9] == 3  # 0, 1, 1024: le is inclusive
    assert counts[4096 / 1e9] == 5
    assert counts[(1 << 36) / 1e9] == 6  # the largest bound; the last two only in +Inf
    assert h.snapshot()["count"] == 8


# --- what the log measures ------------------------------------------------------------------


def test_one_observation_per_group_commit_and_per_sync(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    plugin = PrometheusPlugin(registry=registry)
    try:
        with walship.open(tmp_path / "always", plugins=[plugin]) as log:
            for i in range(20):
                log.append(b"%d" % i)
            log.append_batch([b"a", b"b", b"c"])
            _wait(log)
            stats = log.stats()
            s = scrape(registry)
        assert stats["batches"] == 21
        assert s[("walship_append_seconds_count", ())] == 21
        assert s[("walship_fsync_seconds_count", ())] == stats["syncs"] == 21
        for metric in ("walship_append_seconds", "walship_fsync_seconds"):
            got = buckets(s, metric)
            assert [le for le, _ in got] == [*BOUNDS_SECONDS, float("inf")]
            counts = [n for _, n in got]
            assert counts == sorted(counts) and counts[-1] == 21
            assert s[(f"{metric}_sum", ())] > 0
    finally:
        plugin.close()


def test_interval_syncs_are_timed_apart_from_the_writes(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    plugin = PrometheusPlugin(registry=registry)
    try:
        with walship.open(
            tmp_path / "wal", durability="interval", sync_interval=3600, plugins=[plugin]
        ) as log:
            _wait(log)  # the plugin follows the log from log_recovered, on the event thread
            for i in range(5):
                log.append(b"%d" % i)
            s = scrape(registry)
            assert s[("walship_append_seconds_count", ())] == 5
            assert s[("walship_fsync_seconds_count", ())] == 0
            log.sync()
            s = scrape(registry)
            assert s[("walship_fsync_seconds_count", ())] == 1
            assert s[("walship_append_seconds_count", ())] == 5
    finally:
        plugin.close()


def test_the_fsync_histogram_holds_the_syncs_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync that takes at least 20 ms lands above the 16.8 ms bucket (a lower bound: sleep
    never returns early), and the commit that waited for it too."""
    slow = 0.02
    real_sync = MemorySegmentFile.sync

    def slow_sync(self: MemorySegmentFile) -> None:
        time.sleep(slow)
        real_sync(self)

    with walship.open(store=MemoryStore(), entry_point_plugins=False) as log:
        monkeypatch.setattr(MemorySegmentFile, "sync", slow_sync)
        log.append(b"slow")
        monkeypatch.setattr(MemorySegmentFile, "sync", real_sync)
        stats = log.stats()
    for key in ("fsync_seconds", "append_seconds"):
        latency = stats[key]  # type: ignore[literal-required]
        assert latency["count"] == 1
        assert latency["sum"] >= slow
        below = [n for bound, n in latency["buckets"] if bound < slow]
        assert below == [0] * len(below), (key, latency)


def test_latency_carries_over_a_reopen(tmp_path: Path, registry: CollectorRegistry) -> None:
    plugin = PrometheusPlugin(registry=registry)
    try:
        with walship.open(tmp_path / "wal", plugins=[plugin]) as log:
            log.append_batch([b"a", b"b"])
            log.append(b"c")
            _wait(log)
            first = scrape(registry)
        with walship.open(tmp_path / "wal", plugins=[plugin]) as log:
            log.append(b"d")
            _wait(log)
            s = scrape(registry)
        assert first[("walship_append_seconds_count", ())] == 2
        assert s[("walship_append_seconds_count", ())] == 3
        assert s[("walship_fsync_seconds_count", ())] == 3
        assert buckets(s, "walship_fsync_seconds")[-1] == (float("inf"), 3)
        old, new = buckets(first, "walship_append_seconds"), buckets(s, "walship_append_seconds")
        assert all(n_new >= n_old for (_, n_old), (_, n_new) in zip(old, new, strict=True))
        assert s[("walship_append_seconds_sum", ())] >= first[("walship_append_seconds_sum", ())]
    finally:
        plugin.close()


def test_before_any_log_the_histograms_are_there_without_samples(
    registry: CollectorRegistry,
) -> None:
    plugin = PrometheusPlugin(registry=registry)
    try:
        text = generate_latest(registry).decode()
        assert "# TYPE walship_append_seconds histogram" in text
        assert "# TYPE walship_fsync_seconds histogram" in text
        assert "walship_append_seconds_count" not in text
    finally:
        plugin.close()
