"""Several destinations (``archives:``): one :class:`~walship.archive.archiver.Archiver` per
destination behind one :class:`Destinations`, which the log holds as its archiver.

Each destination has its own settings (URL, credentials, workers, retries, compression,
encryption, prune, live shipping, backpressure), its own workers and its own entries in the
archive record (:mod:`walship.core.record` keys archived state by URL), so one destination
down never holds the others back: they go on filling. What joins them:

* **retention** is applied once, over all: a local segment goes only when the record says it
  is archived and verified at **every** destination (one :class:`Retention` shared by the
  archivers, so a removal never races a recording);
* **backpressure**: each destination with ``max_pending`` has its own gate, counting the bytes
  it still misses; appends wait while any gate is shut;
* **drain and close** wait for every destination, within one deadline;
* **checkpoints** (``log.checkpoint(seq, snapshot)``) go to every destination, one after the
  other; the call raises when any of them failed, naming it (the others hold the snapshot);
* **the record**, when lost, is rebuilt from the first destination that answers (in the
  configured order), and ``repair`` puts segments back from it (the others requeue what they
  miss and find it identical, or upload it);
* **status, stats, metrics and hooks** name each destination by its URL (without a password).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, cast

from walship.archive.archiver import Archiver
from walship.archive.attempts import AttemptLog
from walship.archive.backpressure import NO_BACKPRESSURE
from walship.archive.retention import Retention
from walship.archive.settings import ArchiveSettings, RetentionPolicy, destination_url
from walship.archive.wiring import build_archiver, build_retention
from walship.archiving import AppendGate
from walship.core.segment import ClosedSegment
from walship.errors import ArchiveError
from walship.plugins.hookspecs import hookimpl
from walship.stats import ArchiveStats
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.archive.repair import ArchiveRepair
    from walship.archiving import CheckpointPosition
    from walship.log import Log

__all__ = ["AllGates", "Destinations", "DestinationsWiring"]

logger = logging.getLogger("walship.archiver")

_SUMMED = (
    "queued",
    "archived",
    "uploaded",
    "already_archived",
    "bytes",
    "failed_attempts",
    "stalled",
    "lag_warnings",
    "checkpoints",
    "prune_errors",
    "pruned_objects",
    "backpressure_waits",
    "backpressure_refusals",
    "backpressure_episodes",
)
"""Counters of :class:`~walship.stats.ArchiveStats` that add up over the destinations."""


class AllGates:
    """The append gate over the destinations' gates (``archive.max_pending`` of each): shut
    while any one is. Any thread."""

    def __init__(self, gates: Sequence[AppendGate]) -> None:
        self.gates = list(gates)

    @property
    def blocked(self) -> bool:
        """Whether some destination's gate is shut now (read without a lock)."""
        return any(g.blocked for g in self.gates)

    def wait(self, since: float | None = None) -> None:
        """Wait on each shut gate in turn, each up to its own ``backpressure_timeout`` counted
        from one start (``since``, else now): several shut destinations make an append wait
        as long as the longest of their timeouts, not their sum.

        Raises:
            ArchiveBackpressureError: a gate stayed shut that long (naming its URL).
        """
        since = time.monotonic() if since is None else since
        for g in self.gates:
            if g.blocked:
                g.wait(since)


class Destinations:
    """The archivers of several destinations as one archiver (what :attr:`Log.archiver
    <walship.log.Log.archiver>` is with ``archives:``). Thread-safe as each archiver is.

    A segment is *pending* while some destination misses it; per-destination state is in
    :attr:`destinations` (each an :class:`Archiver`, with its ``url``) and in
    ``stats()["destinations"]``. Registered as the plugin ``walship.archiver``: it hands each
    closed segment to every destination.
    """

    def __init__(self, archivers: list[Archiver], retention: Retention | None) -> None:
        self.destinations = archivers
        """One archiver per destination, in the configured order."""
        self.retention = retention
        """Applied over all destinations (a segment goes once every one holds it)."""
        self.urls = [a.url for a in archivers]
        self.url = ", ".join(self.urls)
        """The destinations' URLs, comma-separated (for messages)."""
        gates = [a.backpressure for a in archivers if a.backpressure is not None]
        self.backpressure = AllGates(gates) if gates else None
        self.append_gate = AllGates([a.append_gate for a in archivers])
        """The log's append gate: refused once some destination fenced this writer, else
        waiting while some destination's backpressure is shut."""

    def destination(self, url: str) -> Archiver:
        """The archiver of the destination whose URL (without a password) is ``url``.

        Raises:
            KeyError: no destination has that URL (the message lists them).
        """
        for a in self.destinations:
            if a.url == url.rstrip("/"):
                return a
        raise KeyError(f"no destination {url!r} (the destinations are {self.url})")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start every destination (each queues what it misses); then apply retention once."""
        for a in self.destinations:
            a.start()

    @hookimpl
    def segment_closed(self, segment: ClosedSegment) -> None:
        """Queue the closed segment at every destination (never blocks)."""
        for a in self.destinations:
            a.segment_closed(segment)

    def close(self, timeout: float = 30.0) -> None:
        """Close every destination (:meth:`Archiver.close`) within one ``timeout``; an
        interrupt still closes the others (without waiting) before it goes on."""
        deadline = time.monotonic() + timeout
        error: BaseException | None = None
        for a in self.destinations:
            try:
                a.close(max(0.0, deadline - time.monotonic()) if error is None else 0.0)
            except BaseException as e:  # the others are closed all the same
                error = error or e
        if error is not None:
            raise error

    def requeue(self, retry_stalled: bool = True) -> int:
        """:meth:`Archiver.requeue` at every destination; the segments queued, summed."""
        return sum(a.requeue(retry_stalled) for a in self.destinations)

    # --- waiting --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None, retry_stalled: bool = True) -> bool:
        """:meth:`Archiver.flush` at every destination within one ``timeout``. True when no
        destination has anything pending."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for a in self.destinations:  # every destination's retries start now, not in turn
            a.requeue(retry_stalled)
        done = True
        for a in self.destinations:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = a.flush(left, retry_stalled=False) and done
        return done

    @property
    def drain_on_close(self) -> float:
        """The longest ``drain_on_close`` of the destinations."""
        return max(a.drain_on_close for a in self.destinations)

    def drain(self, timeout: float) -> list[str]:
        """:meth:`Archiver.drain` at every destination within one ``timeout``; the segments
        some destination still misses, oldest first."""
        for a in self.destinations:
            a.requeue(retry_stalled=False)
        if timeout > 0:
            self.flush(None if math.isinf(timeout) else timeout, retry_stalled=False)
        return self.pending()

    def wait_for_progress(self, timeout: float) -> None:
        """Block until a segment finishes at some destination or ``timeout`` passes (polls
        the destinations in short turns)."""
        deadline = time.monotonic() + timeout
        turn = max(0.01, timeout / (4 * len(self.destinations)))
        before = self._finished()
        while time.monotonic() < deadline:
            for a in self.destinations:
                a.wait_for_progress(min(turn, max(0.0, deadline - time.monotonic())))
                if self._finished() != before:
                    return

    def _finished(self) -> int:
        return sum(a.counters["archived"] + a.counters["stalled"] for a in self.destinations)

    # --- introspection --------------------------------------------------------------------

    def pending(self) -> list[str]:
        """Segments some destination still misses (queued, running or stalled there)."""
        names = {n for a in self.destinations for n in a.pending()}
        return sorted(names)

    def _by_segment(self, per: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        for url, errors in per.items():
            for name, error in errors.items():
                out.setdefault(name, []).append(f"{url}: {error}")
        return {name: "; ".join(out[name]) for name in sorted(out)}

    def stalled(self) -> dict[str, str]:
        """Segments stalled at some destination, each with ``URL: error`` of each."""
        return self._by_segment({a.url: a.stalled() for a in self.destinations})

    def last_errors(self) -> dict[str, str]:
        """Pending segments that failed at some destination, with ``URL: error`` of each."""
        return self._by_segment({a.url: a.last_errors() for a in self.destinations})

    def conflicts(self) -> list[str]:
        """Segments that conflict with some destination."""
        return sorted({n for a in self.destinations for n in a.conflicts()})

    def _stalled_everywhere(self) -> int:
        """Pending segments that no destination is still working on (each one missing it
        gave up on it): with ``pending``, "nothing in progress" is ``pending == stalled_now``."""
        busy: set[str] = set()
        missing: set[str] = set()
        for a in self.destinations:
            pending, stalled = a.pending(), a.stalled()
            missing.update(pending)
            busy.update(n for n in pending if n not in stalled)
        return len(missing - busy)

    def stats(self) -> ArchiveStats:
        """The destinations' stats added up (counters summed; ``pending`` and
        ``pending_bytes`` over the segments some destination misses, ``stalled_now`` over those
        no destination is still trying; ``url`` all URLs), with each destination's own under
        ``destinations`` (in the configured order)."""
        each = [a.stats() for a in self.destinations]
        sizes: dict[int, int] = {}
        for a in self.destinations:
            sizes.update(a.pending_sizes())
        archived = sum(s["archived"] for s in each)
        total_seconds = sum(s["seconds_mean"] * s["archived"] for s in each)
        limits = [s["max_pending_bytes"] for s in each if s["max_pending_bytes"] is not None]
        plain = cast(list[dict[str, int]], each)  # the summed keys are all ints
        out: dict[str, object] = {key: sum(s[key] for s in plain) for key in _SUMMED}
        out.update(
            url=self.url,
            max_pending=max(s["max_pending"] for s in each),
            pending=len(self.pending()),
            stalled_now=self._stalled_everywhere(),
            lagging=any(s["lagging"] for s in each),
            seconds_mean=total_seconds / archived if archived else 0.0,
            seconds_max=max(s["seconds_max"] for s in each),
            removed=self.retention.removed if self.retention is not None else 0,
            pending_bytes=sum(sizes.values()),
            shipping=each[0]["shipping"],
            backpressure=any(s["backpressure"] for s in each),
            max_pending_bytes=min(limits) if limits else NO_BACKPRESSURE["max_pending_bytes"],
            destinations=each,
        )
        return cast(ArchiveStats, out)

    # --- checkpoints ----------------------------------------------------------------------

    def store_checkpoint(self, snapshot: object, position: CheckpointPosition) -> object:
        """Store ``snapshot`` as the checkpoint at ``position`` at every destination, one after
        the other (:meth:`Archiver.store_checkpoint`: retried there); the first destination's
        manifest.

        Raises:
            TypeError: ``snapshot`` is not bytes, a path or a binary file object.
            ArchiveError: some destination failed (named, with its error; the others hold
                the snapshot, and a later checkpoint stores one there again).
        """
        from walship.archive.checkpoints import read_snapshot

        data = read_snapshot(snapshot)  # read once: a file object cannot be read again
        manifests: list[object] = []
        failed: list[str] = []
        for a in self.destinations:
            try:
                manifests.append(a.store_checkpoint(data, position))
            except (OSError, ArchiveError) as e:
                failed.append(f"{a.url}: {a.archive.redact(str(e))}")
        if failed:
            held = len(self.destinations) - len(failed)
            raise ArchiveError(
                f"not stored at {len(failed)} of {len(self.destinations)} destinations "
                f"({'; '.join(failed)}); {held} hold it"
            )
        return manifests[0]

    def __iter__(self) -> Iterator[Archiver]:
        return iter(self.destinations)


class DestinationsWiring:
    """The archive of a log with several destinations, as :class:`walship.log.Log` takes it
    (its ``archiving``): built by :func:`walship.archive.wiring.build_archiving`, used by one
    log, on its opening thread."""

    def __init__(self, destinations: list[ArchiveSettings], policy: RetentionPolicy) -> None:
        assert len(destinations) > 1, "one destination is an ArchiveWiring"
        self.destinations = destinations
        self.policy = policy
        self._record: object = None

    def prepare_open(self, store: SegmentStore, repair: bool) -> ArchiveRepair:
        """As :meth:`ArchiveWiring.prepare_open
        <walship.archive.wiring.ArchiveWiring.prepare_open>`, from the first destination;
        when the record must be rebuilt (or ``repair`` fetches) and it fails there with an
        :class:`~walship.errors.ArchiveError` (it cannot be listed, a copy is damaged), from the
        next one (a warning names the one skipped).

        Raises:
            ArchiveError: every destination failed (the first one's error).
            LogCorruptError, OSError: as :func:`walship.archive.repair.prepare_archived_open`.
        """
        from walship.archive.repair import prepare_archived_open
        from walship.archive.staging import clean_at_open

        clean_at_open(store)
        first: ArchiveError | None = None
        for settings in self.destinations:
            try:
                prepared = prepare_archived_open(store, settings, repair=repair)
            except ArchiveError as e:
                first = first or e
                logger.warning(
                    "walship: %s failed at open (%s); trying the next destination",
                    destination_url(settings.url),
                    e,
                )
                continue
            self._record = prepared.record
            return prepared
        assert first is not None
        raise first

    def start(self, log: Log) -> Destinations:
        """Once ``log`` is open: one archiver per destination (one errors file and, unless it
        keeps all, one retention over every URL), registered together as the plugin
        ``walship.archiver``, started."""
        from walship.core.record import ArchiveRecord

        record = self._record
        assert isinstance(record, ArchiveRecord), "prepare_open first"
        attempts = AttemptLog(log.store)
        archivers = [build_archiver(log, s, record, attempts) for s in self.destinations]
        retention = build_retention(log, self.policy, record, [a.url for a in archivers])
        for a in archivers:
            a.retention = retention
        composite = Destinations(archivers, retention)
        log.plugins.register(composite, name="walship.archiver")
        composite.start()
        return composite
