"""Live shipping (``archive.ship_interval``): the durable frames of the active segment that the
archive does not hold yet go to it every interval as an immutable part and its manifest
(:mod:`walship.archive.parts`), so that a machine lost for good costs about an interval of
acknowledged frames, not a segment's worth.

:class:`Shipper` runs one round per interval on its own thread (``walship-shipper``), at a fixed
rate (a round that overruns is followed by the next at once), the first one interval after the
start (the LIST and the server's probe are done at the start, :meth:`Shipper.prepare`). A round
asks the log where its active segment's durable bytes end (:meth:`walship.log.Log.
durable_position`, a lock taken for an instant), reads the bytes past what it shipped through
the log's store (never the append path: appends never wait for it), checks every frame, and
creates the part and then its manifest conditionally, each verified like a segment
(:meth:`~walship.archive.objects.ArchiveStore.create_part_object`), after one GET that
checks the writer is not fenced (:class:`~walship.archive.epoch.Fence`). With
``archive.encryption`` the part's object is sealed like a segment's (under the current key;
its manifest carries the seal, its BLAKE3 stays over the raw bytes). A segment closed since the
last round gets its last bytes shipped the same way unless the archiver has archived it already;
a close wakes the shipper (:meth:`Shipper.wake`, from the archiver's ``segment_closed``), so
those bytes do not wait for the interval. Once a segment is archived sealed and verified (the
archive record says so), its parts are removed. A failed round is logged and counted and the
next round starts again from the last part that was created (a longer part, under its own name):
nothing is lost, nothing is overwritten.

Requests: a round with new frames costs two PUTs (part and manifest) and the fence's GET
(``conditional_create: checked`` adds a GET before and after each create), a round without
new frames none; removing a sealed segment's parts costs two DELETEs per part; the start LISTs
the archive once (to resume after a restart and remove what an earlier run left). There is no
other LIST.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from blake3 import blake3 as Blake3

from walship.archive.epoch import Fence
from walship.archive.names import part_manifest_name, part_name
from walship.archive.objects import ArchiveStore
from walship.archive.parts import PartManifest, describe_part, part_chain
from walship.core.header import HEADER_SIZE, segment_name
from walship.core.record import ArchiveRecord
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveFencedError,
    ArchiveIntegrityError,
)
from walship.store import SegmentStore

logger = logging.getLogger("walship.shipper")

Position = Callable[[], "tuple[int, int] | None"]
"""The active segment's seq and the end of its durable bytes (``None``: no active segment)."""


class Shipper:
    """Ships the durable bytes of the active segment as parts; see the module docstring.

    Args:
        store: the log's segment store (bytes are read from it).
        archive: the archive the parts go to (the archiver's).
        record: the log's archive record (which segments are archived sealed).
        position: :meth:`walship.log.Log.durable_position`.
        interval: seconds between the starts of two rounds.
        fence: the archiver's (:mod:`walship.archive.epoch`): checked before every part; a
            fenced writer ships nothing more.
    """

    def __init__(
        self,
        store: SegmentStore,
        archive: ArchiveStore,
        record: ArchiveRecord,
        position: Position,
        interval: float,
        fence: Fence | None = None,
    ) -> None:
        self.store = store
        self.archive = archive
        self.record = record
        self.interval = interval
        self.fence = fence
        self._position = position
        self._round = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._resumed = False
        self._seq: int | None = None
        self._off = 0
        self._start_seq: int | None = None
        self._resume_at: dict[int, int] = {}
        self._known: dict[int, set[tuple[int, int]]] = {}
        """Parts created (or tried) per segment, removed once the segment is archived."""
        self.error: str | None = None
        """Why shipping stopped for good (a conflict with the archive), or ``None``."""
        self.last_error: str | None = None
        """The error of the last round on the shipping thread, while rounds fail."""
        self.counters: Counter[str] = Counter()
        self.shipped_seq = 0
        """The last commit_seq a created part holds (0: none yet)."""
        self.round_seconds_max = 0.0
        """The longest round that shipped something (reading, checking, both creates)."""
        self._thread = threading.Thread(target=self._run, name="walship-shipper", daemon=True)

    def start(self) -> None:
        """Start the shipping thread: it gets ready at once (:meth:`prepare`), and its first
        round comes one interval later. The segment active now is where shipping starts: one
        that closes before the first round still gets its last bytes shipped. On the thread
        that opens the log."""
        pos = self._position()
        self._start_seq = pos[0] if pos is not None else None
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop: no new round starts; a round under way gets ``timeout`` seconds. Idempotent;
        on the thread that closes the log."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        """The shipping thread: get ready (the LIST, the server's probe), then a round every
        interval at a fixed rate (a round that overruns is followed by the next at once), so
        that a frame made durable at time t is in a part by t + interval + one round."""
        self._attempt(self.prepare)
        due = time.monotonic() + self.interval
        while True:
            self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            self._wake.clear()
            self._attempt(self.ship_now)
            due = max(due + self.interval, time.monotonic())

    def wake(self) -> None:
        """Start a round now (a segment just closed: its last bytes should not wait for the
        interval, the sealed upload may take longer). Never blocks; any thread."""
        self._wake.set()

    def _attempt(self, step: Callable[[], object]) -> None:
        """Run ``step``; a failure is counted, and logged once until it changes (a round
        fails every interval while the store does: one warning, not one a second)."""
        try:
            step()
        except Exception as e:
            self.counters["failed_rounds"] += 1
            error = f"{type(e).__name__}: {e}" if not isinstance(e, ArchiveError) else str(e)
            error = self.archive.redact(error)
            if error != self.last_error:
                logger.warning(
                    "walship live shipping to %s failed: %s (retried every round)",
                    self.archive.url,
                    error,
                )
            self.last_error = error
        else:
            if self.last_error is not None:
                logger.warning("walship live shipping to %s works again", self.archive.url)
            self.last_error = None

    def prepare(self) -> None:
        """What the first round would do before shipping, done at once: one LIST (resume
        after a restart, know the parts an earlier run left) and the server's probe of the
        conditional create, so that neither delays the first part.

        Raises:
            ArchiveError / OSError: as :meth:`ship_now` (the first round tries again).
        """
        with self._round:
            pos = self._position()
            if pos is not None and not self._resumed and self.error is None:
                self._resume(*pos)
            self.archive.prepare_create()

    def ship_now(self) -> int:
        """One round, on the calling thread (serialised with the shipping thread's): ship
        what is durable and not shipped, remove the parts of archived segments. Returns the
        bytes shipped.

        Raises:
            ArchiveFencedError: another writer took the archive over (nothing is shipped).
            ArchiveError / OSError: the round failed (the next one starts from the last part
                created).
        """
        with self._round:
            if self.fence is not None and self.fence.fenced:
                raise self.fence.error()
            if self.error is not None:
                return 0
            started = time.monotonic()
            pos = self._position()
            if pos is None:
                return 0
            active, end = pos
            if not self._resumed:
                self._resume(active, end)
            if self._seq is None:
                self._seq = min(active, self._start_seq or active)
                self._off = self._resume_at.get(self._seq, 0)
            shipped = 0
            while self._seq < active:  # closed since the last round
                shipped += self._ship_closed(self._seq)
                self._seq += 1
                self._off = self._resume_at.get(self._seq, 0)
            if end > max(self._off, HEADER_SIZE):
                shipped += self._ship(active, self._off, end)
            self._remove_archived()
            self.counters["rounds"] += 1
            if shipped:
                self.round_seconds_max = max(self.round_seconds_max, time.monotonic() - started)
            return shipped

    def _archived(self, seq: int) -> bool:
        return seq <= self.record.removed_through or self.record.archived(seq, self.archive.url)

    def _ship_closed(self, seq: int) -> int:
        """The rest of closed segment ``seq`` (its file is whole, trimmed), unless archived."""
        if self._archived(seq):
            return 0
        try:
            size = self.store.size(segment_name(seq))
        except FileNotFoundError:
            return 0  # archived and removed meanwhile
        return self._ship(seq, self._off, size) if size > self._off else 0

    def _ship(self, seq: int, start: int, end: int) -> int:
        """Create part ``start..end`` of segment ``seq`` and its manifest; advance."""
        data = self.store.read(segment_name(seq), start, end - start)
        if len(data) != end - start:
            raise ArchiveIntegrityError(
                f"{segment_name(seq)} holds {start + len(data)} bytes, not the {end} durable ones",
                segment_name(seq),
            )
        m = describe_part(seq, start, data)
        if self.fence is not None:
            try:
                self.fence.check()
            except ArchiveFencedError as e:
                self.error = str(e)  # for good: a fenced writer ships nothing more
                raise
        self._known.setdefault(seq, set()).add((start, end))
        epoch = self.fence.local.epoch if self.fence is not None else 0
        m = replace(m, seal=self.archive.create_sealed_part(m.object, data), epoch=epoch)
        self.archive.create_part_object(m.manifest_object, m.to_json())
        self._off = end
        self.counters["parts"] += 1
        self.counters["bytes"] += len(data)
        if m.last_commit_seq is not None:
            self.shipped_seq = m.last_commit_seq
        return len(data)

    def _remove_archived(self) -> None:
        for seq in sorted(self._known):
            if not self._archived(seq):
                continue
            for start, end in sorted(self._known[seq], reverse=True):
                self.archive.remove_object(part_manifest_name(seq, start, end))
                self.archive.remove_object(part_name(seq, start, end))
                self.counters["removed"] += 1
            del self._known[seq]

    def _resume(self, active: int, durable: int) -> None:
        """The first round: one LIST; every part found is known (to be removed once its
        segment is archived), and the parts of the active segment that match its local durable
        bytes (up to ``durable``) are where shipping resumes.

        Raises:
            ArchiveConflictError: a part of the active segment holds other bytes than the
                local ones, or more than is durable here (shipping stops for good).
            OSError: the store failed (the next round tries again).
        """
        listing = self.archive.list()
        for seq, ranges in list(listing.parts.items()) + list(listing.part_manifests.items()):
            self._known.setdefault(seq, set()).update(ranges)
        chain, _rest = part_chain(set(listing.part_manifests.get(active, {})))
        name = segment_name(active)
        for start, end in chain:
            raw = self.archive.read_object(part_manifest_name(active, start, end), 1 << 16)
            if raw is None:
                break
            try:
                theirs = PartManifest.from_json(raw, active, start, end)
            except ArchiveIntegrityError:
                break
            local = self.store.read(name, start, end - start) if end <= durable else b""
            if Blake3(local).digest() != theirs.blake3 and self._fenced_parts(active, start):
                break
            if Blake3(local).digest() != theirs.blake3:
                self.error = (
                    f"{self.archive.object_url(theirs.object)} holds other bytes than the local "
                    f"{name}: live shipping stopped (another writer of this archive?)"
                )
                logger.error("walship live shipping: %s", self.error)
                raise ArchiveConflictError(self.error)
            self._resume_at[active] = end
        self._resumed = True

    def _fenced_parts(self, active: int, start: int) -> bool:
        """Past this writer's takeover, parts of its active segment from ``start`` on that
        hold other bytes are a fenced writer's: remove them (True); else False."""
        if self.fence is None or not self.fence.owns(active):
            return False
        self.fence.check(fresh=True)  # it removes objects
        for s, e in sorted(self._known.get(active, set())):
            if s >= start:
                self.archive.remove_object(part_manifest_name(active, s, e))
                self.archive.remove_object(part_name(active, s, e))
                self._known[active].discard((s, e))
        logger.warning(
            "walship live shipping: parts of %s from offset %d on were a fenced writer's "
            "(past this writer's takeover): removed",
            segment_name(active),
            start,
        )
        return True

    def stats(self) -> dict[str, Any]:
        """Counters: rounds, parts, bytes, removed, failed_rounds; interval, shipped_seq,
        round_seconds_max, error, last_error."""
        out: dict[str, Any] = {
            k: self.counters[k] for k in ("rounds", "parts", "bytes", "removed", "failed_rounds")
        }
        out.update(
            interval=self.interval,
            shipped_seq=self.shipped_seq,
            round_seconds_max=self.round_seconds_max,
            error=self.error,
            last_error=self.last_error,
        )
        return out
