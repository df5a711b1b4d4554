"""The ``prometheus`` plugin: a log's metrics for Prometheus (``pip install
'walship[prometheus]'``).

Served on a port of its own::

    from walship.plugins.prometheus import PrometheusPlugin
    log = walship.open("./wal", plugins=[PrometheusPlugin(port=9464)])   # GET :9464/metrics

or registered in the application's registry (``registry=my_registry``; the default is
``prometheus_client.REGISTRY``, which ``start_http_server`` and most frameworks serve). From
the config: ``plugins: [{name: walship.plugins.prometheus, options: {port: 9464}}]``.

Nothing is added to the append path: the collector reads ``log.stats()`` (the log's own
counters and latency histograms, kept in plain ints by the log whether anyone listens or not,
see :mod:`walship.core.latency`) and the counts of
:class:`~walship.plugins.metrics.MetricsPlugin`, which this class extends, when it is scraped.
It exports:

* from ``log.stats()``, of the log the plugin follows: ``walship_appends_total`` (frames),
  ``walship_commits_total`` (group commits: one write each), ``walship_fsyncs_total``,
  ``walship_bytes_written_total`` (frames with their headers), ``walship_last_seq`` and
  ``walship_durable_seq``, ``walship_segments`` (local), ``walship_failed`` (1 once the log
  failed), ``walship_plugin_errors_total{plugin}``; histograms ``walship_append_seconds``
  (each group commit: its encoding, write and, under ``always``, sync; not the wait for its
  turn) and ``walship_fsync_seconds`` (each sync of the active segment: a synced batch, with
  its write, or a flush; see :class:`walship.stats.LogStats`), buckets from 1 µs to 69 s by
  factors of 4 (powers of two nanoseconds); with an archive,
  ``walship_archive_pending_segments``, ``walship_archive_stalled_segments``,
  ``walship_archive_uploads_total``, ``walship_archive_uploaded_bytes_total``,
  ``walship_archive_failures_total`` (failed attempts) and ``walship_archive_lag_seconds``
  (how long the oldest segment waiting for upload has been closed; 0 when none waits),
  ``walship_archive_pending_bytes``; with ``archive.max_pending`` also
  ``walship_archive_backpressure`` (1 while appends wait) and
  ``walship_archive_backpressure_refusals_total``; and per destination, labelled ``url``
  (one series with ``archive:``, one per entry of ``archives:``; the families above are
  their sums, pending the segments some destination misses, stalled those no destination
  still tries):
  ``walship_archive_destination_uploads_total``,
  ``walship_archive_destination_failures_total``,
  ``walship_archive_destination_pending_segments``,
  ``walship_archive_destination_stalled_segments`` and
  ``walship_archive_destination_pending_bytes``;
* from the hooks, over every log the plugin heard: ``walship_segments_closed_total{reason}``,
  ``walship_segments_removed_total``, ``walship_recoveries_total`` and histograms
  ``walship_archive_upload_seconds``, ``walship_segment_open_seconds``,
  ``walship_segment_size_bytes``, ``walship_recovery_seconds``;
* from the ``follower_lag`` hook of a follower the plugin is given to
  (``Follower(..., plugins=[plugin])``), after each of its rounds:
  ``walship_follower_lag_frames{url}``, ``walship_follower_lag_seconds{url}`` and
  ``walship_follower_replica_seq{url}`` (-1 before its first frame).

The plugin follows the log it last heard open (``log_recovered``, on the event thread; or
:meth:`PrometheusPlugin.follow`). If it follows a new log (a reopen in the same process), the
old log's counters are carried over, so every ``_total`` only grows. One plugin per log: two
in one registry are refused (``ValueError``: duplicated timeseries).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.utils import floatToGoString
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        f"walship.plugins.prometheus needs prometheus_client ({e}): "
        "pip install 'walship[prometheus]'"
    ) from e

from walship.errors import WalshipError
from walship.plugins.hookspecs import hookimpl
from walship.plugins.metrics import MetricsPlugin

_LOG_COUNTERS = {  # stats() key -> (metric, help)
    "frames": ("walship_appends", "Frames appended (every frame of a batch counts)."),
    "batches": ("walship_commits", "Group commits: one write of one or more frames each."),
    "syncs": ("walship_fsyncs", "fsyncs (fdatasync) of the active segment."),
    "bytes": ("walship_bytes_written", "Bytes of frames written (payloads and frame headers)."),
}
_ARCHIVE_COUNTERS = {  # stats()["archive"] key -> (metric, help)
    "uploaded": ("walship_archive_uploads", "Segments uploaded and verified."),
    "bytes": ("walship_archive_uploaded_bytes", "Bytes of segments uploaded."),
    "failed_attempts": ("walship_archive_failures", "Failed upload attempts (each retried)."),
}
_LATENCIES = {  # stats() key -> (metric, help)
    "append_seconds": (
        "walship_append_seconds",
        "Time of each group commit: encoding, write and (durability always) sync.",
    ),
    "fsync_seconds": (
        "walship_fsync_seconds",
        "Time of each sync of the active segment (a synced batch with its write, or a flush).",
    ),
}
_HISTOGRAMS = {  # MetricsPlugin summary -> (metric, help)
    "archive_seconds": ("walship_archive_upload_seconds", "Upload time per archived segment."),
    "segment_seconds": ("walship_segment_open_seconds", "How long each closed segment was open."),
    "segment_bytes": ("walship_segment_size_bytes", "Size of each closed segment."),
    "recovery_seconds": ("walship_recovery_seconds", "Recovery time of each open."),
}


_DESTINATION_METRICS = {  # stats()["archive"] key -> (metric, help, counter?)
    "uploaded": ("walship_archive_destination_uploads", "Segments uploaded to it.", True),
    "failed_attempts": (
        "walship_archive_destination_failures",
        "Failed upload attempts to it (each retried).",
        True,
    ),
    "pending": (
        "walship_archive_destination_pending_segments",
        "Closed segments it does not hold yet.",
        False,
    ),
    "stalled_now": (
        "walship_archive_destination_stalled_segments",
        "Segments whose retries to it gave up.",
        False,
    ),
    "pending_bytes": (
        "walship_archive_destination_pending_bytes",
        "Bytes of closed segments it does not hold yet.",
        False,
    ),
}


def _destinations(archive: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-destination stats: one with ``archive:``, one per entry of ``archives:``."""
    each: list[dict[str, Any]] = archive.get("destinations") or ([archive] if archive else [])
    return each


def _destination_metrics(archive: dict[str, Any], carried: Counter[str]) -> Iterator[Metric]:
    """Per destination (label ``url``, without a password): one series each with
    ``archive:``, one per entry of ``archives:`` (whose sums the unlabelled families show);
    a counter adds what the logs followed before counted for the same url."""
    each = _destinations(archive)
    for key, (name, doc, is_counter) in _DESTINATION_METRICS.items():
        family = (
            CounterMetricFamily(name, doc, labels=["url"])
            if is_counter
            else GaugeMetricFamily(name, doc, labels=["url"])
        )
        for d in each:
            before = carried[f"destination.{d['url']}.{key}"] if is_counter else 0
            family.add_metric([d["url"]], before + d[key])
        yield family


def _backpressure_metrics(archive: dict[str, Any], carried: Counter[str]) -> Iterator[Metric]:
    """The bytes waiting for upload and, with ``archive.max_pending``, whether appends wait."""
    pending_bytes = GaugeMetricFamily(
        "walship_archive_pending_bytes", "Bytes of closed segments waiting for upload."
    )
    blocked = GaugeMetricFamily(
        "walship_archive_backpressure",
        "1 while appends wait for the archive (archive.max_pending), else 0.",
    )
    refusals = CounterMetricFamily(
        "walship_archive_backpressure_refusals",
        "Appends refused after waiting archive.backpressure_timeout.",
    )
    if archive:
        pending_bytes.add_metric([], archive.get("pending_bytes", 0))
    if "backpressure" in archive:
        blocked.add_metric([], 1 if archive["backpressure"] else 0)
        refusals.add_metric(
            [], carried["archive.backpressure_refusals"] + archive["backpressure_refusals"]
        )
    yield pending_bytes
    yield blocked
    yield refusals


class PrometheusPlugin(MetricsPlugin):
    """A :class:`~walship.plugins.metrics.MetricsPlugin` that follows its log (and the close
    time of each segment waiting for upload), with a :class:`Collector` in a Prometheus
    registry and, on request, an HTTP server for it (see the module docstring).

    Args:
        registry: where to register (default ``prometheus_client.REGISTRY``).
        port: also serve ``registry`` over HTTP on this port (``0``: any free one, see
            :attr:`port`); ``None``: no server (the application serves its registry).
        addr: the address the server listens on.
        window: as :class:`~walship.plugins.metrics.MetricsPlugin`.
    Raises:
        ValueError: the registry holds these metrics already (another plugin).
        OSError: the port cannot be bound (nothing stays registered).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        port: int | None = None,
        addr: str = "0.0.0.0",
        window: int = 1024,
    ) -> None:
        super().__init__(window)
        self.registry = REGISTRY if registry is None else registry
        self._log: weakref.ref[Any] | None = None
        self._retired: Counter[str] = Counter()  # counters of logs followed before this one
        self._closed_at: dict[str, int] = {}  # segment name -> clock micros it was closed at
        self._followers: dict[str, tuple[int, float, int | None, int | None]] = {}
        """Each follower's last ``follower_lag`` by archive URL: frames, seconds, replica and
        archive commit_seq."""
        self._follow_lock = threading.Lock()
        self._server: Any = None
        self.port: int | None = None
        """The port served on (the one bound when ``port=0``), or ``None``."""
        self.collector = Collector(self)
        """What the registry scrapes."""
        self.registry.register(self.collector)
        if port is not None:
            try:
                self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
            except BaseException:
                self.registry.unregister(self.collector)
                raise
            self.port = int(self._server.server_port)

    def close(self) -> None:
        """Stop the HTTP server (if any) and unregister from the registry. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(KeyError):  # not registered (any more)
            self.registry.unregister(self.collector)

    def follow(self, log: Any) -> None:
        """Export ``log``'s stats from now on (done for you when it opens, on the event
        thread); the counters of the log followed until now carry over."""
        with self._follow_lock:
            old = self._log() if self._log is not None else None
            if old is log:
                return
            if old is not None:
                stats = _stats_of(old)
                for key in _LOG_COUNTERS:
                    self._retired[key] += stats.get(key, 0)
                archive = stats.get("archive") or {}
                for key in (*_ARCHIVE_COUNTERS, "backpressure_refusals"):
                    self._retired[f"archive.{key}"] += archive.get(key, 0)
                for d in _destinations(archive):
                    for key, (_, _, is_counter) in _DESTINATION_METRICS.items():
                        if is_counter:
                            self._retired[f"destination.{d['url']}.{key}"] += d[key]
                for name, n in (stats.get("plugin_errors") or {}).items():
                    self._retired[f"plugin.{name}"] += n
                for key in _LATENCIES:
                    _retire_latency(self._retired, key, stats.get(key))
            self._log = weakref.ref(log)

    def followed(self) -> tuple[Any, Counter[str]]:
        """The log followed now (``None`` before the first open, or once it is gone) and,
        read together with it, the counters carried over from the logs followed before it
        (``log.stats()`` keys; ``archive.KEY`` for its archive's, ``destination.URL.KEY`` for
        one destination's, ``plugin.NAME`` for plugin errors, ``KEY.count``, ``KEY.sum`` and
        ``KEY.I`` (bucket I) for a latency histogram)."""
        with self._follow_lock:
            return (self._log() if self._log is not None else None), Counter(self._retired)

    # --- hooks (on the event thread) --------------------------------------------------
    # pluggy passes each implementation the hook arguments it names, by keyword: two of these
    # name more than their parent's (hence the ignored override checks)

    @hookimpl
    def log_recovered(self, log: Any, report: Any) -> None:  # type: ignore[override]
        self.follow(log)
        super().log_recovered(report)

    @hookimpl
    def segment_closed(self, log: Any, segment: Any, reason: str) -> None:
        super().segment_closed(log, segment, reason)
        if log.archiver is not None:
            with self._follow_lock:
                # (a scrape may have seen it pending first: the earlier sighting stays)
                self._closed_at.setdefault(segment.name, log.clock.now_micros())

    @hookimpl
    def segment_archived(  # type: ignore[override]
        self, name: str, size: int, seconds: float
    ) -> None:
        super().segment_archived(size, seconds)
        with self._follow_lock:
            self._closed_at.pop(name, None)

    @hookimpl
    def follower_lag(
        self,
        url: str,
        frames: int,
        seconds: float,
        replica_seq: int | None,
        archive_seq: int | None,
    ) -> None:
        """A follower (``walship follow``, on its own thread) finished a round: its lag is
        exported as the ``walship_follower_*{url}`` gauges."""
        with self._follow_lock:
            self._followers[url] = (frames, seconds, replica_seq, archive_seq)

    def followers(self) -> dict[str, tuple[int, float, int | None, int | None]]:
        """The last lag each follower reported, by archive URL (a copy)."""
        with self._follow_lock:
            return dict(self._followers)

    def archive_lag(self, log: Any) -> float:
        """Seconds since the oldest pending segment closed; a segment pending since before the
        plugin heard it close (queued at open) counts from the first scrape that saw it."""
        try:
            waiting: list[str] = log.archiver.pending()
            now: int = log.clock.now_micros()
        except (AttributeError, WalshipError):
            return 0.0
        with self._follow_lock:
            for name in set(self._closed_at) - set(waiting):  # archived while not followed
                del self._closed_at[name]
            oldest = min((self._closed_at.setdefault(n, now) for n in waiting), default=now)
        return max(0.0, (now - oldest) / 1_000_000)


class Collector:
    """The metric families of a :class:`PrometheusPlugin` and the log it follows, read when
    the registry is scraped (on the scraping thread)."""

    def __init__(self, plugin: PrometheusPlugin) -> None:
        self.plugin = plugin

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples: the registry checks names with it."""
        return self.collect(samples=False)

    def collect(self, samples: bool = True) -> Iterator[Metric]:
        """Every metric family, read now (see the module docstring)."""
        log, carried = self.plugin.followed()
        stats = _stats_of(log) if samples and log is not None else {}
        yield from self._log_metrics(stats, carried)
        yield from self._archive_metrics(log, stats, carried)
        yield from self._hook_metrics(samples)
        yield from self._follower_metrics(samples)

    def _log_metrics(self, stats: dict[str, Any], carried: Counter[str]) -> Iterator[Metric]:
        for key, (name, doc) in _LOG_COUNTERS.items():
            counter = CounterMetricFamily(name, doc)
            if stats:
                counter.add_metric([], carried[key] + stats.get(key, 0))
            yield counter
        for key, doc in (
            ("last_seq", "The commit_seq of the last frame written."),
            ("durable_seq", "Every frame up to this commit_seq is durable."),
            ("segments", "Local segments, the active one included."),
        ):
            gauge = GaugeMetricFamily(f"walship_{key}", doc)
            if stats:
                gauge.add_metric([], stats[key])
            yield gauge
        failed = GaugeMetricFamily("walship_failed", "1 once the log failed (reopen it).")
        errors = CounterMetricFamily(
            "walship_plugin_errors", "Hook calls that raised, per plugin.", labels=["plugin"]
        )
        if stats:
            failed.add_metric([], 1 if stats["failed"] else 0)
            per_plugin = Counter(stats["plugin_errors"])
            for key, n in carried.items():
                if key.startswith("plugin."):
                    per_plugin[key.removeprefix("plugin.")] += n
            for plugin, n in sorted(per_plugin.items()):
                errors.add_metric([plugin], n)
        yield failed
        yield errors
        for key, (name, doc) in _LATENCIES.items():
            latency = stats.get(key)
            if latency is None:
                yield HistogramMetricFamily(name, doc)
                continue
            buckets = [
                (_le(bound), carried[f"{key}.{i}"] + n)
                for i, (bound, n) in enumerate(latency["buckets"])
            ]
            buckets.append(("+Inf", carried[f"{key}.count"] + latency["count"]))
            yield HistogramMetricFamily(
                name, doc, buckets=buckets, sum_value=carried[f"{key}.sum"] + latency["sum"]
            )

    def _archive_metrics(
        self, log: Any, stats: dict[str, Any], carried: Counter[str]
    ) -> Iterator[Metric]:
        archive: dict[str, Any] = stats.get("archive") or {}
        for key, (name, doc) in _ARCHIVE_COUNTERS.items():
            counter = CounterMetricFamily(name, doc)
            if archive:
                counter.add_metric([], carried[f"archive.{key}"] + archive[key])
            yield counter
        pending = GaugeMetricFamily(
            "walship_archive_pending_segments", "Closed segments waiting for upload."
        )
        stalled = GaugeMetricFamily(
            "walship_archive_stalled_segments", "Pending segments whose retries gave up."
        )
        lag = GaugeMetricFamily(
            "walship_archive_lag_seconds",
            "How long the oldest segment waiting for upload has been closed (0: none waits).",
        )
        if archive:
            pending.add_metric([], archive["pending"])
            stalled.add_metric([], archive["stalled_now"])
            lag.add_metric([], self.plugin.archive_lag(log))
        yield pending
        yield stalled
        yield lag
        yield from _backpressure_metrics(archive, carried)
        yield from _destination_metrics(archive, carried)

    def _follower_metrics(self, samples: bool) -> Iterator[Metric]:
        families = [
            GaugeMetricFamily(
                "walship_follower_lag_frames",
                "Frames the follower's replica misses of its archive, after its last round.",
                labels=["url"],
            ),
            GaugeMetricFamily(
                "walship_follower_lag_seconds",
                "Timestamp of the archive's last frame minus the replica's, after its last round.",
                labels=["url"],
            ),
            GaugeMetricFamily(
                "walship_follower_replica_seq",
                "The commit_seq of the replica's last frame (-1: none yet).",
                labels=["url"],
            ),
        ]
        for url, (frames, seconds, replica_seq, _) in (
            sorted(self.plugin.followers().items()) if samples else []
        ):
            for family, v in zip(families, (frames, seconds, replica_seq), strict=True):
                family.add_metric([url], -1 if v is None else v)
        yield from families

    def _hook_metrics(self, samples: bool) -> Iterator[Metric]:
        snap = self.plugin.snapshot() if samples else None
        closed = CounterMetricFamily(
            "walship_segments_closed", "Segments rotated out, by reason.", labels=["reason"]
        )
        removed = CounterMetricFamily(
            "walship_segments_removed", "Local segments removed by retention."
        )
        recoveries = CounterMetricFamily("walship_recoveries", "Opens (each one recovers).")
        if snap is not None:
            for reason, n in sorted(snap["segments_closed_by_reason"].items()):
                closed.add_metric([reason], n)
            removed.add_metric([], snap["segments_removed"])
            recoveries.add_metric([], snap["recoveries"])
        yield closed
        yield removed
        yield recoveries
        histograms = self.plugin.histograms() if samples else {}
        for key, (name, doc) in _HISTOGRAMS.items():
            if key not in histograms:
                yield HistogramMetricFamily(name, doc)
                continue
            buckets, total = histograms[key]
            yield HistogramMetricFamily(
                name,
                doc,
                buckets=[(_le(bound), n) for bound, n in buckets],
                sum_value=total,
            )


def _retire_latency(retired: Counter[str], key: str, latency: Any) -> None:
    """Add a latency histogram of ``stats()`` (``None``: none) to the carried-over counts."""
    if not latency:
        return
    retired[f"{key}.count"] += latency["count"]
    retired[f"{key}.sum"] += latency["sum"]  # seconds: a float in the Counter
    for i, (_, n) in enumerate(latency["buckets"]):
        retired[f"{key}.{i}"] += n


def _le(bound: float) -> str:
    """A bucket's ``le`` label, written as prometheus_client writes its own."""
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


def _stats_of(log: Any) -> dict[str, Any]:
    try:
        stats: dict[str, Any] = log.stats()
    except WalshipError:  # a forked child's copy of the log: nothing to read
        return {}
    return stats
