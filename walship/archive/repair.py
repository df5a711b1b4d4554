"""Repair a log from its archive, and rebuild a lost or damaged archive record.

Both run when a log with an ``archive:`` section opens, before recovery (see
:func:`prepare_archived_open`), and both cost one LIST of the archive plus the manifests they
need; neither runs on an ordinary open, whose record is intact and was not asked to repair (a
new log lists the archive once, see below).

**Repair** (``walship.open(..., repair=True)``, ``walship repair DIR -c CONFIG``): every archived
segment after the last one retention removed (after the record's ``removed_through``; without a
record, from the first local one) up to the archive's newest that is missing locally, damaged,
or not byte for byte its archived copy is fetched, checked against its manifest (size, BLAKE3),
against the record (the BLAKE3 it had when it was uploaded) and against the chain on both sides
(its prev hash is the BLAKE3 of the segment before it, and its BLAKE3 the prev hash of a local
segment after it that stays), and put back durably (temporary file, sync, rename,
directory sync); the local copy it replaces is kept as ``<segment>.damaged``. Only what the
archive does not hold is left to recovery: a torn tail is cut as usual, other damage still needs
``salvage=True``, which then never writes into an archived segment (see
:func:`walship.core.repair.recover`).

**Rebuilding the record**: when ``walship.archive.json`` is missing or invalid (the invalid file
is kept as ``walship.archive.json.damaged``), the record is rebuilt from the archive: an entry for
every archived segment from the one before the first local segment on (each local copy must be
its archived copy), the anchor, and the archive's last commit_seq, so that numbering continues
after the archive's last frame and never goes back while the archive holds later frames. A fresh
log whose archive holds nothing yet gets an empty record, so that its next open does not list
the archive again. The checkpoint set with ``Log.checkpoint`` is not found again (set it
again), except for a log restored from a checkpoint: its snapshot (``walship.snapshot``,
matched by size and BLAKE3 to a checkpoint manifest whose segment is the first local one) names
it, so ``first_seq`` stays just after it and ``read`` never hands out a frame of the snapshot.
A new log (a store with no record and no segment) costs one LIST: when the archive holds
segments already (a wiped directory, or a second log configured with the same prefix), the open
is refused (:class:`ArchiveConflictError`, naming restore and repair), since the new log would
number from 1 again; when it holds none, an empty record is written, so that later opens need
no request. ``repair=True`` on an empty store continues the archive: the record is rebuilt and
the log continues after the archive's last segment and frame, without their frames locally.

If the archive cannot be listed then, the open fails (an :class:`ArchiveError` naming the
archive): opening without knowing where the archive's numbering stands could hand out
commit_seqs the archive already holds. The exception is a missing record while the store holds
its whole log (no segment yet, or segment 1 with a zero prev hash: retention never removed
anything, so no frame lives only in the archive): it opens (a warning is logged) and lists the
archive at its next open; meanwhile its archiver refuses to upload a segment that does not
continue the archive (:func:`walship.core.record.check_continues`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from blake3 import blake3 as Blake3

from walship.archive import ArchiveListing, ArchiveStore, SegmentManifest
from walship.archive.checkpoint_manifest import CheckpointManifest
from walship.archive.checkpoints import SNAPSHOT_FILE, load_checkpoints
from walship.core.header import (
    HEADER_SIZE,
    ZERO_HASH,
    SegmentHeader,
    segment_name,
    segment_seqs,
)
from walship.core.record import RECORD_NAME, ArchivedSegment, ArchiveRecord
from walship.core.scan import LogScan, scan_store
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveRecordError,
    LogCorruptError,
    SegmentHeaderError,
)
from walship.store import SegmentStore, free_name

if TYPE_CHECKING:
    from walship.archive.settings import ArchiveSettings

logger = logging.getLogger("walship.archive.repair")
_MANIFEST_WORKERS = 8


def _whole_history_local(store: SegmentStore) -> bool:
    """Whether the store holds its log from the start: no segment, or segment 1 with a zero
    prev hash (retention never removed a segment, so no frame exists only in the archive)."""
    seqs = segment_seqs(store)
    if not seqs:
        return True
    if min(seqs) != 1:
        return False
    try:
        head = store.read(segment_name(1), 0, HEADER_SIZE)
        return SegmentHeader.decode(head, segment_name(1), 1).prev_segment_hash == ZERO_HASH
    except (SegmentHeaderError, OSError):
        return False


@dataclass
class ArchiveRepair:
    """What :func:`prepare_archived_open` did before recovery."""

    record: ArchiveRecord
    restored: list[str] = field(default_factory=list)
    """Segments put back from the archive."""
    kept_aside: list[str] = field(default_factory=list)
    """Where the local copies they replaced were kept (``<segment>.damaged``)."""
    record_rebuilt: bool = False


class _Archive:
    """One LIST of the archive and the manifests read so far (each read once)."""

    def __init__(self, archive: ArchiveStore) -> None:
        self.store = archive
        try:
            self.listing: ArchiveListing = archive.list()
        except (OSError, ArchiveError) as e:
            raise ArchiveError(
                f"cannot list the archive {archive.url} to check the log against it: "
                f"{archive.redact(str(e))}"
            ) from None
        self._manifests: dict[int, SegmentManifest] = {}

    @property
    def newest(self) -> int | None:
        return max(self.listing.manifests) if self.listing.manifests else None

    def manifests(self, seqs: list[int]) -> dict[int, SegmentManifest]:
        """The manifests of ``seqs`` that the listing holds (read in parallel, once each).

        Raises:
            ArchiveIntegrityError: a manifest is invalid. OSError: the store failed.
        """
        todo = [s for s in seqs if s in self.listing.manifests and s not in self._manifests]
        if todo:
            with ThreadPoolExecutor(min(_MANIFEST_WORKERS, len(todo))) as pool:
                for seq, m in zip(todo, pool.map(self._stat, todo), strict=True):
                    self._manifests[seq] = m
        return {s: self._manifests[s] for s in seqs if s in self._manifests}

    def _stat(self, seq: int) -> SegmentManifest:
        m = self.store.stat(segment_name(seq))
        if m is None:  # listed a moment ago
            raise ArchiveIntegrityError(
                f"{self.store.object_url(segment_name(seq))}: its manifest vanished",
                segment_name(seq),
            )
        return m

    def last_commit_seq(self) -> int:
        """The highest commit_seq in the archive (0: no frame), from the newest manifests."""
        for seq in sorted(self.listing.manifests, reverse=True):
            m = self.manifests([seq])[seq]
            if m.last_commit_seq is not None:
                return m.last_commit_seq
        return 0


def _record_state(store: SegmentStore) -> tuple[ArchiveRecord | None, str]:
    """The record and ``"ok"``; or ``None`` and ``"missing"`` / ``"invalid"`` (an invalid file
    is kept aside as ``walship.archive.json.damaged``)."""
    if RECORD_NAME not in store.list_names():
        return None, "missing"
    try:
        return ArchiveRecord.load(store), "ok"
    except ArchiveRecordError:
        store.rename(RECORD_NAME, free_name(store, f"{RECORD_NAME}.damaged"))
        return None, "invalid"


def prepare_archived_open(
    store: SegmentStore,
    settings: ArchiveSettings,
    *,
    repair: bool = False,
    archive: ArchiveStore | None = None,
) -> ArchiveRepair:
    """Load the archive record of a log archived as ``settings`` say; rebuild it from the
    archive when it is missing or invalid; with ``repair``, put back from the archive every
    archived segment that is missing or damaged locally. Call it with the store's lock held.

    Raises:
        ArchiveError: the archive cannot be listed (when it must be); a fetched segment does not
            match its manifest or the chain (:class:`ArchiveIntegrityError`, naming it).
        LogCorruptError: a local segment differs from its archived copy (rebuilding only; with
            ``repair`` the archived copy is put back instead).
        OSError: the store failed.
    """
    record, state = _record_state(store)
    if state == "ok" and not repair:
        assert record is not None
        return ArchiveRepair(record)
    archive = archive or ArchiveStore(
        settings.url,
        settings.storage_options,
        compression=settings.compression,
        keyring=settings.encryption,
    )
    if state == "missing" and not repair and not segment_seqs(store):
        return ArchiveRepair(_new_log_record(store, archive))
    try:
        view = _Archive(archive)
    except ArchiveError as e:
        if state == "missing" and not repair and _whole_history_local(store):
            # nothing was ever removed locally, so the local numbering is the log's; its
            # archiver checks every upload against the archive (check_continues), and the
            # next open lists the archive again
            logger.warning(
                "walship: %s cannot be listed (%s); the log opens on its own",
                archive.url,
                archive.redact(str(e)),
            )
            return ArchiveRepair(ArchiveRecord(store))
        raise
    scan = scan_store(store)
    out = ArchiveRepair(record or ArchiveRecord(store))
    if repair:
        _put_back(store, view, scan, record, out)
        if out.restored:
            scan = scan_store(store)
    if state != "ok":
        out.record = _rebuild(store, view, scan)
        # a fresh log's first open writes an empty record: nothing was lost, nothing to report
        out.record_rebuilt = bool(view.listing.manifests) or state == "invalid"
    return out


def _new_log_record(store: SegmentStore, archive: ArchiveStore) -> ArchiveRecord:
    """The record of a new log (no record, no segment), after one LIST of its archive.

    Raises:
        ArchiveConflictError: the archive holds segments already: a new log there would number
            from 1 again (a wiped directory, or a second log configured with the same prefix).
    """
    try:
        listing = archive.list()
    except (OSError, ArchiveError) as e:
        # a new log holds its whole history; its archiver checks every upload against the
        # archive (check_continues, conditional puts) and its next open lists the archive again
        logger.warning(
            "walship: %s cannot be listed (%s); the new log opens on its own",
            archive.url,
            archive.redact(str(e)),
        )
        return ArchiveRecord(store)
    # an archived segment is its object and its manifest (a lone one is a leftover or planted
    # object, which the archiver names when it gets there)
    held = sorted(set(listing.manifests) & set(listing.objects))
    if held:
        what = segment_name(held[0])
        if len(held) > 1:
            what = f"{len(held)} segments ({what}..{segment_name(held[-1])})"
        raise ArchiveConflictError(
            f"{store.location} holds no log, but its archive {archive.url} holds "
            f"{what} already: a new log would number from "
            f"1 again; restore the log into a new directory (walship restore {archive.url} "
            f"NEWDIR), continue it here without its old frames (walship repair {store.location} "
            "-c CONFIG), or configure an empty archive prefix"
        )
    record = ArchiveRecord(store)
    record.save()  # the next open need not list the archive again
    return record


def _put_back(
    store: SegmentStore,
    view: _Archive,
    scan: LogScan,
    record: ArchiveRecord | None,
    out: ArchiveRepair,
) -> None:
    """Put back every archived segment missing or not its archived copy locally, in order.

    An archived copy must be what was uploaded (the record's BLAKE3, when the record knows the
    segment) and must fit the log on both sides: its prev hash is the BLAKE3 of the segment
    before it, and its BLAKE3 is the prev hash of the local segment after it when that one
    stays (a forged copy whose manifest matches it never replaces an intact segment).

    Raises:
        ArchiveIntegrityError: an archived copy fails one of these checks (nothing is put back
            for it or after it).
    """
    newest = view.newest
    local = {s.segment_seq: s for s in scan.segments}
    if newest is None or not local:
        return  # nothing archived, or nothing local to repair (restore makes a log anew)
    # the record says which segments retention removed: every later one belongs here (a first
    # local segment missing is one to put back); without it, from the first local one
    start = record.removed_through + 1 if record is not None else min(local)
    # only numbers something holds (a hostile listing cannot make this walk a huge range)
    seqs = sorted(s for s in set(view.listing.manifests) | set(local) if start <= s <= newest)
    manifests = view.manifests([start - 1, *seqs] if start > 1 else seqs)
    prev_hash: bytes | None = manifests[start - 1].blake3 if start - 1 in manifests else None
    for i, seq in enumerate(seqs):
        name = segment_name(seq)
        m = manifests.get(seq)
        have = local.get(seq)
        if seq != (seqs[i - 1] if i else start - 1) + 1:
            prev_hash = None  # a gap: nothing holds the segment before it
        if m is None:  # the archive lacks it: recovery decides what is left
            prev_hash = have.blake3 if have is not None else None
            continue
        intact = have is not None and have.blake3 == m.blake3  # byte for byte its archived copy
        if not intact:
            where = view.store.object_url(m.object)
            entry = record.entry(seq, view.store.url) if record is not None else None
            if entry is not None and entry.blake3 != m.blake3:
                raise ArchiveIntegrityError(
                    f"{where}: its BLAKE3 is not the one {RECORD_NAME} recorded when it was "
                    "uploaded: the archived copy was replaced since; nothing was put back for it",
                    name,
                )
            data = view.store.get(m)  # checked against the manifest (size, BLAKE3)
            header = SegmentHeader.decode(data, name, seq)
            if prev_hash is not None and header.prev_segment_hash != prev_hash:
                raise ArchiveIntegrityError(
                    f"{where}: its prev_segment_hash is not the BLAKE3 of "
                    f"{segment_name(seq - 1)}: the archive's chain is broken there",
                    name,
                )
            after = local.get(seq + 1)
            if (
                after is not None
                and after.header is not None
                # the local successor stays: it is not archived, or it is its archived copy
                and (seq + 1 not in manifests or after.blake3 == manifests[seq + 1].blake3)
                and after.header.prev_segment_hash != m.blake3
            ):
                raise ArchiveIntegrityError(
                    f"{where}: its BLAKE3 is not the prev_segment_hash of the local "
                    f"{after.name}: the archived copy is not this log's; nothing was put back "
                    "for it",
                    name,
                )
            if have is not None:
                aside = free_name(store, f"{name}.damaged")
                store.rename(name, aside)
                out.kept_aside.append(aside)
            store.write_atomic(name, data)
            out.restored.append(name)
        prev_hash = m.blake3


def _rebuild(store: SegmentStore, view: _Archive, scan: LogScan) -> ArchiveRecord:
    """A new record from the archive (see the module docstring), durable on return."""
    url = view.store.url
    newest = view.newest
    local = {s.segment_seq: s for s in scan.segments}
    if newest is None:
        record = ArchiveRecord(store)
        record.save()  # the next open need not list the archive again
        return record
    first_local = min(local) if local else None
    lo = max(1, first_local - 1) if first_local is not None else newest
    manifests = view.manifests(sorted(s for s in view.listing.manifests if lo <= s <= newest))
    entries: dict[int, ArchivedSegment] = {}
    for seq, m in sorted(manifests.items()):
        have = local.get(seq)
        if have is not None and have.blake3 != m.blake3:
            raise LogCorruptError(
                f"{store.location}: {have.name} differs from its archived copy at {url} (and "
                f"{RECORD_NAME}, which would say which is right, is gone): walship repair DIR -c "
                "CONFIG (or repair=True) puts the archived copy back and keeps the local one "
                "aside"
            )
        entries[seq] = ArchivedSegment(seq, m.size, m.blake3, url, m.last_commit_seq, m.instance_id)
    removed = first_local - 1 if first_local is not None and first_local - 1 in entries else 0
    if first_local is None:
        removed = newest  # every archived segment is gone locally: the log continues after them
    cp = _restored_checkpoint(store, view, first_local)
    base = cp.commit_seq if cp is not None else None
    last = view.last_commit_seq()
    if base is not None:
        last = max(last or 0, base)  # (a checkpoint of the active segment: above every archived)
    record = ArchiveRecord(store, entries, base, removed, last, restored_from=base)
    record.save()
    return record


_HASH_CHUNK = 8 << 20


def _restored_checkpoint(
    store: SegmentStore, view: _Archive, first_local: int | None
) -> CheckpointManifest | None:
    """The checkpoint a log was restored from (``walship restore --from-checkpoint``), found
    again when its record is gone: the snapshot that restore wrote beside the log
    (``walship.snapshot``) is the one a checkpoint manifest of the archive names (its size and
    BLAKE3), and that checkpoint's segment is the log's first local one. Without it the
    rebuilt record would not know that the log's frames up to the checkpoint are in the
    snapshot, and ``read()`` would hand them out again. ``None``: not such a log."""
    if first_local is None or not view.listing.checkpoint_manifests:
        return None
    try:
        size = store.size(SNAPSHOT_FILE)
    except FileNotFoundError:
        return None
    valid, _ = load_checkpoints(view.store, view.listing)
    candidates = [m for m in valid.values() if m.segment_seq == first_local and m.size == size]
    if not candidates:
        return None
    hasher = Blake3()
    for offset in range(0, size, _HASH_CHUNK):
        hasher.update(store.read(SNAPSHOT_FILE, offset, _HASH_CHUNK))
    digest = hasher.digest()
    found = [m for m in candidates if m.blake3 == digest]
    return max(found, key=lambda m: m.commit_seq) if found else None
