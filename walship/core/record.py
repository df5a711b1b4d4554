"""The durable local record of what is archived: ``walship.archive.json`` in the log's store.

It lives next to the segments and is replaced atomically (the store's ``write_atomic``: temporary
file, fsync, rename, directory fsync), so a crash leaves the old or the new record, never a mix.
It holds:

* for each local segment that was archived and verified: its seq, size, BLAKE3 and the archive
  URL it went to, one entry per URL (a segment counts as archived only for the URLs it has an
  entry for: with several destinations, ``archives:``, retention needs an entry for each);
* the entry of the last segment retention removed, kept as the **anchor**: the expected
  ``prev_segment_hash`` of the first local segment, so that open and verify still check the chain
  after the oldest segments are gone;
* the checkpoint set with ``Log.checkpoint`` (retention never removes a segment holding a frame
  above it), so that it survives a restart;
* the checkpoint a restore started from (``restored_from_checkpoint``, only then): the log's
  ``first_seq`` is above it;
* the highest commit_seq of any segment recorded, so that a log whose local segments were all
  removed (or hold no frame) continues its numbering after the archive
  (:meth:`ArchiveRecord.chain_base`), never reusing a commit_seq.

This module is light (no fsspec): the Log reads the record on every open to find its anchor.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from walship.core.header import (
    HEADER_SIZE,
    SegmentHeader,
    segment_name,
    segment_seqs,
)
from walship.errors import (
    ArchiveConflictError,
    ArchiveIntegrityError,
    ArchiveRecordError,
)
from walship.store import SegmentStore


class ArchivedPredecessor(Protocol):
    """What :func:`check_continues` needs to know of an archived segment (an archive's
    ``SegmentManifest`` is one): core names no archive type."""

    @property
    def blake3(self) -> bytes: ...

    @property
    def last_commit_seq(self) -> int | None: ...


RECORD_NAME = "walship.archive.json"
RECORD_FORMAT = "walship-archive-record"
RECORD_VERSION = 1
_MAX_RECORD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ArchivedSegment:
    """One segment known to be archived (and verified) at ``url``."""

    segment_seq: int
    size: int
    blake3: bytes
    url: str
    last_commit_seq: int | None = None
    """The segment's last commit_seq (``None``: it holds no frame)."""
    instance_id: int | None = None
    """The instance_id in its header (``None``: not known)."""


@dataclass(frozen=True)
class ChainBase:
    """The newest segment sealed outside the store (archived), as the archive record knows it.

    Retention removes archived segments locally, so the store alone may not know where the log
    stands. With a base, recovery never hands out a commit_seq at or below
    ``last_commit_seq``, and when no local segment newer than the base is left (all were
    removed, or the only newer one was a torn creation) the log continues in segment
    ``segment_seq + 1`` chained to ``blake3``, never appending to a sealed segment.
    """

    segment_seq: int
    blake3: bytes
    last_commit_seq: int | None
    """The highest commit_seq in this segment or any before it (0: none); ``None``: unknown
    (a record written before walship kept it)."""
    instance_id: int | None = None
    """The log's instance_id (``None``: unknown)."""


def first_local_seq(store: SegmentStore) -> int | None:
    """The lowest segment_seq among the store's segment files (``None`` when there is none)."""
    seqs = segment_seqs(store)
    return seqs[0] if seqs else None


class ArchiveRecord:
    """The record of one store. Thread-safe; every change is durable when its method returns.

    Raises (every method that writes): ``OSError`` when the store fails.
    """

    def __init__(
        self,
        store: SegmentStore,
        segments: Mapping[Any, ArchivedSegment] | None = None,
        checkpoint: int | None = None,
        removed_through: int = 0,
        last_commit_seq: int | None = None,
        restored_from: int | None = None,
    ) -> None:
        self.store = store
        self._restored_from = restored_from
        self._segments: dict[int, dict[str, ArchivedSegment]] = {}
        for e in (segments or {}).values():
            self._segments.setdefault(e.segment_seq, {})[e.url] = e
        self._checkpoint = checkpoint
        self._removed_through = removed_through
        self._last_commit_seq = last_commit_seq
        self._lock = threading.Lock()

    @classmethod
    def load(cls, store: SegmentStore) -> ArchiveRecord:
        """Read the store's record (an empty one when the file does not exist).

        Raises:
            ArchiveRecordError: the file exists but is not a valid record (named, with what is
                wrong). An open with the log's ``archive:`` section rebuilds it from the archive
                (:mod:`walship.archive.repair`; the bad file is kept aside); without the archive it
                cannot be rebuilt safely (the numbering would not know the archive's frames).
        """
        try:
            data = store.read(RECORD_NAME, 0, _MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return cls(store)
        where = f"{store.location}/{RECORD_NAME}"

        def bad(what: str) -> ArchiveRecordError:
            return ArchiveRecordError(
                f"{where} is not a valid archive record: {what}; open the log with its archive "
                "configured (walship.open(config=...) or walship repair DIR -c CONFIG) to rebuild "
                "it from the archive (the bad file is kept aside); never just delete it"
            )

        if len(data) > _MAX_RECORD_BYTES:
            raise bad(f"larger than {_MAX_RECORD_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
            raise bad(f"not a {RECORD_FORMAT} document")
        if doc.get("version") != RECORD_VERSION:
            raise bad(f"unsupported version {doc.get('version')!r}")
        checkpoint = doc.get("checkpoint")
        if checkpoint is not None and (type(checkpoint) is not int or checkpoint < 0):
            raise bad(f"checkpoint is {checkpoint!r}")
        removed_through = doc.get("removed_through", 0)
        if type(removed_through) is not int or removed_through < 0:
            raise bad(f"removed_through is {removed_through!r}")
        last_commit = doc.get("last_commit_seq")
        if last_commit is not None and (type(last_commit) is not int or last_commit < 0):
            raise bad(f"last_commit_seq is {last_commit!r}")
        restored_from = doc.get("restored_from_checkpoint")
        if restored_from is not None and (type(restored_from) is not int or restored_from < 0):
            raise bad(f"restored_from_checkpoint is {restored_from!r}")
        entries = doc.get("segments")
        if not isinstance(entries, list):
            raise bad("segments is not a list")
        segments: dict[tuple[int, str], ArchivedSegment] = {}
        for i, item in enumerate(entries):
            try:
                seq, size, digest, url = (
                    item["segment_seq"],
                    item["size"],
                    item["blake3"],
                    item["url"],
                )
                raw = bytes.fromhex(digest)
                last = item.get("last_commit_seq")
                instance = item.get("instance_id")
                ok = (
                    type(seq) is int
                    and seq >= 0
                    and type(size) is int
                    and size >= 0
                    and len(raw) == 32
                    and isinstance(url, str)
                    and (last is None or (type(last) is int and last >= 0))
                    and (instance is None or (type(instance) is int and instance >= 0))
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                ok = False
            if not ok:
                raise bad(f"segments[{i}] is not a valid entry")
            segments[seq, url] = ArchivedSegment(seq, size, raw, url, last, instance)
        return cls(store, segments, checkpoint, removed_through, last_commit, restored_from)

    # --- queries ------------------------------------------------------------------------

    @property
    def checkpoint(self) -> int | None:
        return self._checkpoint

    @property
    def restored_from(self) -> int | None:
        """The checkpoint this log was restored from (``walship restore --from-checkpoint``):
        its frames up to that commit_seq are in the snapshot, so the log's ``first_seq`` is
        above it (``None``: not restored from a checkpoint)."""
        return self._restored_from

    @property
    def removed_through(self) -> int:
        """Every segment up to this seq was archived and then removed locally (0: none)."""
        return self._removed_through

    def archived(self, segment_seq: int, url: str) -> bool:
        """Whether segment ``segment_seq`` is recorded as archived and verified at ``url``."""
        with self._lock:
            return url in self._segments.get(segment_seq, {})

    def archived_everywhere(self, segment_seq: int, urls: Iterable[str]) -> bool:
        """Whether segment ``segment_seq`` is recorded as archived and verified at every one of
        ``urls`` (read under one lock: one consistent view of the record)."""
        with self._lock:
            at = self._segments.get(segment_seq, {})
            return all(u in at for u in urls)

    def entry(self, segment_seq: int, url: str | None = None) -> ArchivedSegment | None:
        """The entry of ``segment_seq`` at ``url`` (``None``: at any URL, the first recorded;
        every URL holds the same local segment, so size and BLAKE3 agree)."""
        with self._lock:
            at = self._segments.get(segment_seq)
            if not at:
                return None
            return at.get(url) if url is not None else next(iter(at.values()))

    def entries(self, url: str | None = None) -> list[ArchivedSegment]:
        """Every entry (at ``url`` only, when given), by segment_seq, then in recorded order."""
        with self._lock:
            return [
                e
                for s in sorted(self._segments)
                for e in self._segments[s].values()
                if url is None or e.url == url
            ]

    @property
    def last_commit_seq(self) -> int | None:
        """The highest commit_seq of any segment ever recorded (0: only empty segments;
        ``None``: nothing recorded, or a record from before walship kept it)."""
        return self._last_commit_seq

    def chain_base(self) -> ChainBase | None:
        """The newest recorded segment and the highest recorded commit_seq, for
        :func:`walship.core.repair.recover` (``None`` when nothing is recorded)."""
        with self._lock:
            if not self._segments:
                return None
            top = next(iter(self._segments[max(self._segments)].values()))
            return ChainBase(top.segment_seq, top.blake3, self._last_commit_seq, top.instance_id)

    def anchor_for(self, first_seq: int | None) -> bytes | None:
        """The expected prev hash of local segment ``first_seq``: the recorded BLAKE3 of the
        segment before it (removed by retention), or ``None`` when nothing is recorded."""
        if first_seq is None or first_seq <= 1:
            return None
        e = self.entry(first_seq - 1)
        return e.blake3 if e is not None else None

    # --- changes (each one durable on return) -------------------------------------------

    def mark_archived(self, entry: ArchivedSegment) -> None:
        self.mark_many([entry])

    def mark_many(self, entries: list[ArchivedSegment]) -> None:
        with self._lock:
            for e in entries:
                self._segments.setdefault(e.segment_seq, {})[e.url] = e
                self._last_commit_seq = max(self._last_commit_seq or 0, e.last_commit_seq or 0)
            self._save()

    def mark_removed(self, segment_seq: int) -> None:
        """Retention removed every segment up to ``segment_seq``: raise :attr:`removed_through`
        and drop the entries below it (its own entry stays: it is the anchor)."""
        with self._lock:
            self._removed_through = max(self._removed_through, segment_seq)
            for s in [s for s in self._segments if s < segment_seq]:
                del self._segments[s]
            self._save()

    def set_checkpoint(self, commit_seq: int) -> None:
        with self._lock:
            self._checkpoint = commit_seq
            self._save()

    def save(self) -> None:
        """Write the record as it is now (durable on return)."""
        with self._lock:
            self._save()

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "version": RECORD_VERSION,
            "checkpoint": self._checkpoint,
            "removed_through": self._removed_through,
            "last_commit_seq": self._last_commit_seq,
            **(
                {"restored_from_checkpoint": self._restored_from}
                if self._restored_from is not None
                else {}
            ),
            "segments": [
                {
                    "segment_seq": e.segment_seq,
                    "size": e.size,
                    "blake3": e.blake3.hex(),
                    "url": e.url,
                    "last_commit_seq": e.last_commit_seq,
                    "instance_id": e.instance_id,
                }
                for s in sorted(self._segments)
                for e in self._segments[s].values()
            ],
        }
        self.store.write_atomic(RECORD_NAME, json.dumps(doc, indent=1).encode() + b"\n")


def load_anchor(store: SegmentStore) -> bytes | None:
    """The anchor for ``scan_store(store, anchor=...)``: the recorded hash of the segment before
    the store's first local segment (``None`` when there is no record or no such entry).

    Raises:
        ArchiveRecordError: the record is invalid.
    """
    return ArchiveRecord.load(store).anchor_for(first_local_seq(store))


_LEN_SEQ = struct.Struct(">IQ")


def check_continues(
    store: SegmentStore,
    segment_seq: int,
    record: ArchiveRecord,
    stat: Callable[[str], ArchivedPredecessor | None],
) -> None:
    """Refuse to archive a local segment that does not continue the archive before it.

    The segment before it, as the record knows it (else as ``stat`` finds it in the archive;
    when it is not archived yet there is nothing to contradict), must be the BLAKE3 in this
    segment's prev hash, and this segment's first commit_seq must be above its last one (a
    predecessor whose manifest cannot be read is not checked against). A log
    whose numbering went back (a lost record, a local log restored from an old copy) would
    otherwise put frames with commit_seqs the archive holds already into the archive.

    Raises:
        ArchiveConflictError: it does not continue the archive (named, with both sides).
        OSError: the store or the archive failed.
    """
    if segment_seq <= 1:
        return
    name = segment_name(segment_seq)
    before = segment_name(segment_seq - 1)
    head = store.read(name, 0, HEADER_SIZE + _LEN_SEQ.size)
    header = SegmentHeader.decode(head, name, segment_seq)
    entry = record.entry(segment_seq - 1)
    if entry is not None:
        blake3, last = entry.blake3, entry.last_commit_seq
    else:
        try:
            m = stat(before)
        except ArchiveIntegrityError:  # an invalid manifest there is that segment's own problem
            return
        if m is None:
            return
        blake3, last = m.blake3, m.last_commit_seq
    why = ""
    if header.prev_segment_hash != blake3:
        why = f"its prev_segment_hash is not the BLAKE3 of the archived {before}"
    elif last is not None and len(head) == HEADER_SIZE + _LEN_SEQ.size:
        first = _LEN_SEQ.unpack_from(head, HEADER_SIZE)[1]
        if first <= last:
            why = f"its first commit_seq {first} is not above {last}, the last of {before}"
    if why:
        raise ArchiveConflictError(
            f"{name} does not continue the archive ({why}): not uploaded; the local log's "
            "numbering went back or it forked (see walship verify and walship repair)"
        )
