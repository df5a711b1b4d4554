"""Epochs: at most one writer's segments are accepted in an archive URL.

An archive's writer is the holder of its highest **epoch object**
``walship-epoch-<epoch, 20 digits>.json`` (:class:`EpochObject`); an archive without one is
epoch 0 (every writer before the first takeover). A takeover (``walship promote``,
``walship.open(..., takeover=True)``, :mod:`walship.archive.promote`) creates the next epoch
object with a conditional create (``If-None-Match: *``): two promotions racing for one epoch,
one wins, the other gets :class:`~walship.errors.ArchiveFencedError`. Each writer keeps its
own epoch in its directory (:class:`LocalEpoch`, ``walship.epoch.json``; absent: 0).

A writer of epoch N is fenced once ``walship-epoch-<N+1>`` exists (:class:`Fence`): one GET
of that exact name (never a LIST, never a stale listing), made when the archiver starts,
whenever a conditional create of a segment conflicts, and before a sealed upload or a
live-shipped part when the last GET began :data:`FENCE_RECHECK` seconds ago or more (at most
one a second, however many segments and parts go up in it). A fenced writer fails closed: it
uploads nothing more, its appends are refused (:class:`FenceGate`), and its local segments
stay where they are.

Every segment and part manifest a writer uploads carries its epoch (``epoch``; absent: 0). A
takeover of epoch N ends by archiving a segment of epoch N sealed (the one it took from the
live-shipped parts, or an empty one), so the archive itself says where epoch N's own objects
start (:class:`EpochStarts`). An upload of an older writer that lands after that, at or past
that segment (it checked the fence just before the claim), is a **fenced writer's leftover**:
restore, read, verify and followers ignore it with one warning (verify lists it, as a note),
and the new writer replaces it when its own create conflicts with it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from walship.archive.names import (
    COMPRESSIONS,
    MAX_MANIFEST_BYTES,
    epoch_name,
    manifest_name,
    object_name,
)
from walship.errors import ArchiveFencedError, ArchiveIntegrityError
from walship.store import SegmentStore

if TYPE_CHECKING:  # (walship status reads the local epoch without loading fsspec)
    from walship.archive.listing import ArchiveListing
    from walship.archive.objects import ArchiveStore

logger = logging.getLogger("walship.archiver")
FENCE_RECHECK = 1.0
"""Seconds for which one fence GET that found no newer epoch vouches for the uploads after it.
An upload made in them after a takeover is a fenced writer's leftover, which readers ignore
and the new writer replaces (module docstring), as one made between a GET and its PUT always
was; a GET per upload would double the requests of 4 MiB segments and of 100 ms parts."""
EPOCH_FORMAT = "walship-epoch"
EPOCH_VERSION = 1
LOCAL_EPOCH_FILE = "walship.epoch.json"
"""The writer's own epoch, in its log directory (:class:`LocalEpoch`)."""
_FIELDS = ("epoch", "created_at_micros", "pid", "after_segment_seq")


@dataclass(frozen=True)
class EpochObject:
    """What an epoch object says: who took the archive over, when, and how far the archive's
    sealed segments went when it did (the old writer may have added a few more before it saw
    this object: they are the new writer's too, taken at the takeover)."""

    epoch: int
    created_at_micros: int
    host: str
    pid: int
    instance_id: int | None
    after_segment_seq: int
    """The last sealed segment the new writer held when it created this object (0: none)."""
    after_commit_seq: int | None
    """The last frame the new writer held then (``None``: none)."""

    @property
    def holder(self) -> str:
        return f"{self.host} pid {self.pid}"

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.created_at_micros / 1e6, timezone.utc)
        return (
            f"epoch {self.epoch}, taken by {self.holder} at {when.isoformat(timespec='seconds')}"
            f" after segment {self.after_segment_seq} (commit_seq {self.after_commit_seq})"
        )

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"format": EPOCH_FORMAT, "version": EPOCH_VERSION}
        doc.update(
            epoch=self.epoch,
            created_at_micros=self.created_at_micros,
            host=self.host,
            pid=self.pid,
            instance_id=self.instance_id,
            after_segment_seq=self.after_segment_seq,
            after_commit_seq=self.after_commit_seq,
        )
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, epoch: int, where: str) -> EpochObject:
        """Parse and validate epoch object ``epoch`` (``where`` names it in messages).

        Raises:
            ArchiveIntegrityError: not JSON, another format or version, a bad field, or the
                object of another epoch.
        """

        def bad(what: str) -> ArchiveIntegrityError:
            return ArchiveIntegrityError(f"epoch object {where} is invalid: {what}", where)

        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != EPOCH_FORMAT:
            raise bad(f"not a {EPOCH_FORMAT} document")
        if doc.get("version") != EPOCH_VERSION:
            raise bad(f"unsupported version {doc.get('version')!r}")
        for key in _FIELDS:
            if type(doc.get(key)) is not int or doc[key] < 0:
                raise bad(f"{key} is {doc.get(key)!r}, expected a non-negative integer")
        for key in ("instance_id", "after_commit_seq"):
            if doc.get(key) is not None and type(doc[key]) is not int:
                raise bad(f"{key} is {doc[key]!r}, expected an integer or null")
        if not isinstance(doc.get("host"), str):
            raise bad("host is not a string")
        if doc["epoch"] != epoch:
            raise bad(f"it says epoch {doc['epoch']}, its name {epoch}")
        return cls(
            doc["epoch"],
            doc["created_at_micros"],
            doc["host"],
            doc["pid"],
            doc.get("instance_id"),
            doc["after_segment_seq"],
            doc.get("after_commit_seq"),
        )


def current_epoch(listing: ArchiveListing) -> int:
    """The archive's epoch in ``listing`` (its highest epoch object; 0: none)."""
    return max(listing.epochs, default=0)


def read_epoch(archive: ArchiveStore, epoch: int) -> EpochObject | None:
    """Epoch object ``epoch`` (one GET), or ``None`` when it does not exist.

    Raises:
        ArchiveIntegrityError: it exists but is invalid.
        OSError: the store failed.
    """
    name = epoch_name(epoch)
    data = archive.read_object(name, MAX_MANIFEST_BYTES)
    if data is None:
        return None
    return EpochObject.from_json(data, epoch, archive.object_url(name))


def claim_epoch(
    archive: ArchiveStore,
    epoch: int,
    instance_id: int | None,
    after_segment_seq: int,
    after_commit_seq: int | None,
) -> EpochObject:
    """Create epoch object ``epoch`` conditionally: the archive is this process's from now on.

    Raises:
        ArchiveFencedError: it exists already (another takeover won it).
        ArchiveUnsupportedError: the server does not honour the conditional create.
        OSError: the store failed.
    """
    claim = EpochObject(
        epoch,
        time.time_ns() // 1000,
        socket.gethostname(),
        os.getpid(),
        instance_id,
        after_segment_seq,
        after_commit_seq,
    )
    try:
        archive.create_object(epoch_name(epoch), claim.to_json())
    except FileExistsError:
        other = read_epoch(archive, epoch)
        holder = other.holder if other is not None else "another process"
        raise ArchiveFencedError(
            f"{archive.url}: epoch {epoch} was taken by {holder} first; this takeover is "
            "refused (nothing was written)",
            archive.url,
            epoch,
            holder,
        ) from None
    return claim


@dataclass(frozen=True)
class LocalEpoch:
    """A writer's own epoch at archive ``url``, kept in its directory (``walship.epoch.json``)
    by a takeover; ``takeover_seq``: the last sealed segment it took from the archive (an
    object past it that is not this writer's is a fenced writer's)."""

    url: str
    epoch: int = 0
    takeover_seq: int = 0
    fenced: str | None = None
    """Why this writer is fenced, once its archiver found out (``walship status`` shows it)."""

    @classmethod
    def load(cls, store: SegmentStore, url: str) -> LocalEpoch:
        """The epoch recorded in ``store`` for ``url`` (0: none, or for another URL).

        Raises:
            ArchiveIntegrityError: the file is damaged.
        """
        try:
            data = store.read(LOCAL_EPOCH_FILE)
        except FileNotFoundError:
            return cls(url)
        try:
            doc = json.loads(data)
            fenced = doc.get("fenced")
            found = cls(
                str(doc["url"]),
                int(doc["epoch"]),
                int(doc["takeover_seq"]),
                None if fenced is None else str(fenced),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ArchiveIntegrityError(
                f"{LOCAL_EPOCH_FILE} is damaged ({e}); it says which epoch of the archive this "
                "log writes: restore it or take the archive over again (walship promote)",
                LOCAL_EPOCH_FILE,
            ) from None
        return found if found.url == url else cls(url)

    def save(self, store: SegmentStore) -> None:
        """Write it durably (atomically replaced)."""
        doc = {
            "url": self.url,
            "epoch": self.epoch,
            "takeover_seq": self.takeover_seq,
            "fenced": self.fenced,
        }
        store.write_atomic(LOCAL_EPOCH_FILE, json.dumps(doc, sort_keys=True).encode() + b"\n")


class Fence:
    """Whether this writer (of epoch ``local.epoch``) still writes the archive (module
    docstring). Thread-safe; once fenced, fenced for good. It sets ``archive.writer_epoch``
    to the writer's epoch (the segment manifests it puts carry it).

    Args:
        note: what the log keeps locally that this writer did not archive (one phrase, added
            to the error), asked for once, when the fence is found.
        store: the log's store: once fenced, the reason is saved in its ``walship.epoch.json``
            (best effort) for ``walship status``.
        recheck: seconds one GET that found no newer epoch vouches for (``None``:
            :data:`FENCE_RECHECK` as it is then; 0: a GET at every check).
        clock: the monotonic clock the recheck is timed by (tests step it).
    """

    def __init__(
        self,
        archive: ArchiveStore,
        local: LocalEpoch,
        note: Callable[[], str] = lambda: "",
        store: SegmentStore | None = None,
        *,
        recheck: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.archive = archive
        self.local = local
        self._note = note
        self._store = store
        self._recheck = FENCE_RECHECK if recheck is None else recheck
        self._clock = clock
        self._vouched_until: float | None = None
        self._lock = threading.Lock()
        archive.writer_epoch = local.epoch  # what its puts write into segment manifests
        self.newer: EpochObject | None = None
        self.message: str | None = None
        """The fencing error's message once fenced (``None``: not fenced)."""

    @property
    def fenced(self) -> bool:
        return self.message is not None

    def error(self) -> ArchiveFencedError:
        """The fencing error (only once :attr:`fenced`)."""
        assert self.message is not None and self.newer is not None
        return ArchiveFencedError(
            self.message, self.archive.url, self.newer.epoch, self.newer.holder
        )

    def check(self, *, fresh: bool = False) -> None:
        """Raise when the next epoch's object exists (and from then on): one GET of it, unless
        a GET that found none began less than ``recheck`` seconds ago (``fresh``: always
        one). On any thread.

        Raises:
            ArchiveFencedError: this writer is fenced.
            ArchiveIntegrityError: the next epoch's object is invalid (it exists: fenced all
                the same, but it is named).
            OSError: the store failed.
        """
        if self.message is not None:
            raise self.error()
        started = self._clock()
        vouched = self._vouched_until
        if not fresh and vouched is not None and started < vouched:
            return
        newer = read_epoch(self.archive, self.local.epoch + 1)
        if newer is None:
            if vouched is None or started + self._recheck > vouched:
                self._vouched_until = started + self._recheck
            return
        with self._lock:
            if self.message is None:
                note = self._note()
                self.newer = newer
                self.message = (
                    f"{self.archive.url} was taken over by another writer ({newer.describe()}); "
                    f"this writer (epoch {self.local.epoch}) is fenced: it uploads nothing more "
                    "and refuses appends" + (f"; {note}" if note else "")
                )
                logger.error("walship archive: %s", self.message)
                self._save_fenced()
        raise self.error()

    def _save_fenced(self) -> None:
        if self._store is None:
            return
        try:
            replace(self.local, fenced=self.message).save(self._store)
        except OSError as e:  # the error is raised and logged all the same
            logger.warning("walship archive: could not record the fence locally: %s", e)

    def owns(self, segment_seq: int) -> bool:
        """Whether segment ``segment_seq`` is past this writer's takeover (only its own
        objects may be there: another's is a fenced writer's, uploaded before it saw the
        takeover)."""
        return self.local.epoch > 0 and segment_seq > self.local.takeover_seq


class FenceGate:
    """The append gate of a log with an archive: appends are refused once the writer is
    fenced, and wait for the archive's backpressure (when ``archive.max_pending`` is set) as
    :class:`~walship.archive.backpressure.Backpressure` says."""

    def __init__(self, fence: Fence, backpressure: Any | None) -> None:
        self.fence = fence
        self.backpressure = backpressure

    @property
    def blocked(self) -> bool:
        bp = self.backpressure
        return self.fence.fenced or (bp is not None and bool(bp.blocked))

    def wait(self, since: float | None = None) -> None:
        """Raise the fencing error once fenced; else wait as the backpressure says (its
        timeout counted from ``since``: :meth:`walship.archive.backpressure.Backpressure.wait`).

        Raises:
            ArchiveFencedError: the writer is fenced (nothing written).
            ArchiveBackpressureError: as :meth:`walship.archive.backpressure.Backpressure.wait`.
        """
        if self.fence.fenced:
            raise self.fence.error()
        if self.backpressure is not None:
            self.backpressure.wait(since)


@dataclass(frozen=True)
class EpochStarts:
    """Where each epoch's own objects start in an archive (module docstring): epoch -> the
    lowest segment_seq of a segment manifest of that epoch. Epoch 0 (before any takeover, and
    every manifest without the field) starts nowhere: nothing is ever fenced by it."""

    lowest: dict[int, int]

    @classmethod
    def of(cls, stamps: Iterable[tuple[int, int]]) -> EpochStarts:
        """From ``(segment_seq, epoch)`` of every valid segment manifest."""
        lowest: dict[int, int] = {}
        for seq, epoch in stamps:
            if epoch > 0:
                lowest[epoch] = min(lowest.get(epoch, seq), seq)
        return cls(lowest)

    def fencing(self, segment_seq: int, epoch: int) -> tuple[int, int] | None:
        """The newer epoch whose own objects start at or before ``segment_seq``, and where
        (an object of ``epoch`` there is a fenced writer's leftover), or ``None``."""
        newer = [(start, e) for e, start in self.lowest.items() if e > epoch]
        if not newer:
            return None
        start, e = min(newer)
        return (e, start) if start <= segment_seq else None

    def leftover(self, name: str, segment_seq: int, epoch: int) -> str | None:
        """Why object ``name`` (of segment ``segment_seq``, uploaded by a writer of
        ``epoch``) is a fenced writer's leftover, or ``None`` when it is not one."""
        found = self.fencing(segment_seq, epoch)
        if found is None:
            return None
        newer, start = found
        return (
            f"{name}: uploaded by a fenced writer (epoch {epoch}) after epoch {newer} took the "
            f"archive over at segment {start}; ignored (the new writer replaces it)"
        )


__all__ = [
    "EPOCH_FORMAT",
    "LOCAL_EPOCH_FILE",
    "EpochObject",
    "EpochStarts",
    "Fence",
    "FenceGate",
    "LocalEpoch",
    "claim_epoch",
    "current_epoch",
    "read_epoch",
    "remove_segment_objects",
]


def remove_segment_objects(archive: ArchiveStore, segment_seq: int) -> None:
    """Remove segment ``segment_seq``'s manifest and objects (a fenced writer's, past the
    takeover), the manifest first (a reader never finds a manifest without its object).

    Raises:
        OSError: the store failed.
    """
    for name in [manifest_name(segment_seq)] + [object_name(segment_seq, c) for c in COMPRESSIONS]:
        archive.remove_object(name)
