"""Promotion: a follower's replica becomes the writer of the same archive URL
(``walship promote DIR -c CONFIG``, ``walship.open(DIR, archive=..., takeover=True)``).

:func:`take_over` runs on the opening thread, holding DIR's lock (the follower must be stopped
first: it holds that lock), before the log's recovery:

1. **Catch up**: one round as a follower's (:func:`~walship.archive.follow.next_run`): the
   sealed segments after DIR's last sealed one, each checked as a restore checks it. DIR's
   state is the follower's (:func:`~walship.archive.replica.replica_state`): its copy of the
   segment after the last sealed one, from live-shipped parts, is replaced by a segment taken
   (sealed since, or assembled from the parts in step 3) only when that segment starts with
   exactly the copy's bytes (else :class:`~walship.errors.ArchiveIntegrityError`); a copy no
   round replaced is never appended to: the new active segment follows it.
2. **Claim**: create the next epoch object conditionally (:func:`~walship.archive.epoch.
   claim_epoch`). From now on the old writer, if it is alive, is fenced at its next upload;
   an upload it checked before the claim may still land.
3. **Settle**: rounds again until the archive shows no missing piece any more (an upload of the
   old writer under way), at most :data:`SETTLE_SECONDS`; the last round also takes the
   live-shipped parts after the last sealed segment (:func:`~walship.archive.parts.
   attach_tail`, as a restore does), so that DIR ends with the last frame the archive proves;
   a follower's copy of the segment after the last sealed one is reused, only the parts past
   it downloaded (each verified) and appended to it (:func:`_extend_copy`).
4. **Hand over**: the segments taken are written into DIR whole, the sealed ones recorded as
   archived; the segment where the new writer's own objects start is archived sealed as the
   new epoch's (:func:`_seal_start`: the one assembled from parts, exactly the bytes they
   prove, or the follower's copy, else a new empty one, its header alone), so that the archive
   says where the new epoch starts (:class:`~walship.archive.epoch.EpochStarts`); a new active
   segment chained to it is created (the new writer never appends to a segment the old one
   may have sealed), and the epoch is saved in DIR (``walship.epoch.json``) with the last
   sealed segment: past it, an object that is not the new writer's is the old writer's,
   uploaded before it saw the claim (a fenced writer's leftover, ignored by every reader),
   and the new writer's archiver removes it when its own conflicts with it (never the
   reverse).

What the old writer acknowledged and the archive did not hold at the takeover (frames not yet
shipped, and frames past the prefix its parts proved) is not in the new writer's chain: the old
writer keeps it in its own directory and names it in its fencing error.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace

from walship.archive.check import check_segment
from walship.archive.epoch import (
    EpochObject,
    LocalEpoch,
    claim_epoch,
    current_epoch,
    remove_segment_objects,
)
from walship.archive.follow import ArchiveWatch, next_run
from walship.archive.follower_status import FOLLOWER_STATUS
from walship.archive.objects import ArchiveStore
from walship.archive.parts import attach_tail
from walship.archive.plan import ArchivePlan, ArchiveProblem
from walship.archive.replica import (
    ChainEnd,
    PartialCopy,
    check_continues,
    replica_state,
    take_parts,
)
from walship.archive.settings import ArchiveSettings
from walship.core.header import SegmentHeader, create_segment, segment_name, segment_seqs
from walship.core.record import ArchivedSegment, ArchiveRecord
from walship.errors import ArchiveConflictError
from walship.store import SegmentStore

logger = logging.getLogger("walship.archive")

SETTLE_SECONDS = 5.0
"""How long a takeover waits for the old writer's uploads under way at the claim."""
_SETTLE_POLL = 0.25


@dataclass(frozen=True)
class Takeover:
    """What :func:`take_over` did."""

    url: str
    epoch: EpochObject | None
    """The epoch claimed (``None``: DIR held the archive's epoch already, nothing done)."""
    segments: int
    """Segments taken from the archive in the takeover's rounds."""
    tail_segment: int | None
    """A segment taken from live-shipped parts (the takeover archived it sealed, as the new
    epoch's)."""
    last_commit_seq: int | None
    """DIR's last frame after the takeover."""

    def summary(self) -> str:
        if self.epoch is None:
            return f"{self.url}: this log holds its epoch already; nothing to take over"
        tail = (
            f", {segment_name(self.tail_segment)} from live-shipped parts"
            if self.tail_segment is not None
            else ""
        )
        return (
            f"took {self.url} over as epoch {self.epoch.epoch}: +{self.segments} segment(s)"
            f"{tail}; the log goes on after commit_seq {self.last_commit_seq}"
        )


@dataclass
class _Replica:
    """Where the takeover's DIR is: its last sealed segment, and the follower's copy of the
    next one from parts (until a round puts the segment over it)."""

    end: ChainEnd
    copy: PartialCopy | None


def _round(
    archive: ArchiveStore,
    watch: ArchiveWatch,
    store: SegmentStore,
    here: _Replica,
    record: ArchiveRecord,
    with_parts: bool,
) -> tuple[int, int | None, ArchiveProblem | None]:
    """One round: take the run after ``here`` into ``store`` (``with_parts``: the segments
    assembled from parts too; one that goes over the follower's copy must start with its
    bytes) and move ``here``; the segments taken, the one taken from parts, and the missing
    piece the run stopped at."""
    archive.overlay.clear()  # a segment assembled last round may be sealed by now
    plan = watch.refresh()
    live: set[int] = set()
    if with_parts:  # (a follower's copy: only the parts past it are downloaded)
        live = set(attach_tail(plan, held=_extend_copy(archive, plan, store, here)).segments)
    run, waiting = next_run(plan, here.end)
    tail = None
    sealed: list[ArchivedSegment] = []
    for m in run:
        data = check_segment(archive, m).raise_problems()
        if here.copy is not None:  # the run starts with the copy's segment
            held = store.read(here.copy.name, 0, here.copy.size)
            check_continues(here.copy, held, data, archive.object_url(m.name))
            here.copy = None
        store.write_atomic(m.name, data)
        here.end = here.end.after(m)
        if m.segment_seq in live:
            tail = m.segment_seq
            continue
        sealed.append(
            ArchivedSegment(
                m.segment_seq, m.size, m.blake3, archive.url, m.last_commit_seq, m.instance_id
            )
        )
    if sealed:
        record.mark_many(sealed)
    return len(run), tail, waiting


def _extend_copy(
    archive: ArchiveStore, plan: ArchivePlan, store: SegmentStore, here: _Replica
) -> dict[int, bytes]:
    """The follower's copy, when its segment is not sealed in the archive, extended with the
    parts that continue it (only those are downloaded, each verified:
    :func:`~walship.archive.replica.take_parts`): its bytes by segment, for
    :func:`~walship.archive.parts.attach_tail` (empty: no copy to reuse)."""
    copy = here.copy
    if copy is None or copy.segment_seq in plan.manifests or copy.segment_seq in plan.invalid:
        return {}
    copy, _parts = take_parts(archive, plan.listing, store, here.end, copy, plan.epoch_starts)
    here.copy = copy
    assert copy is not None  # (it had frames: it stays a copy)
    return {copy.segment_seq: store.read(copy.name, 0, copy.size)}


def take_over(
    store: SegmentStore, settings: ArchiveSettings, settle: float = SETTLE_SECONDS
) -> Takeover:
    """Make the log in ``store`` (a follower's replica, or a restored log) the writer of the
    archive of ``settings`` (module docstring). On the calling thread; ``store`` locked.

    Raises:
        ArchiveFencedError: another takeover claimed the next epoch first (nothing written).
        ArchivePlanError: DIR does not continue the archive (not a replica of it), or the
            archive shows damage.
        ArchiveIntegrityError / ArchiveMissingError: a segment fetched does not check.
        ArchiveUnsupportedError: the server does not honour the conditional create.
        OSError: the archive or the local disk failed.
    """
    archive = ArchiveStore(
        settings.url,
        settings.storage_options,
        compression=settings.compression,
        conditional_create=settings.conditional_create,
        keyring=settings.encryption,
    )
    archive.prepare_create()
    local = LocalEpoch.load(store, archive.url)
    watch = ArchiveWatch(archive)
    record = ArchiveRecord.load(store)
    here = _Replica(*replica_state(store, archive.url))
    current = current_epoch(watch.refresh().listing)
    if 0 < current <= local.epoch:
        return Takeover(archive.url, None, 0, None, _reached(store, here).last_commit_seq)
    taken, _tail, _waiting = _round(archive, watch, store, here, record, False)
    end = here.end  # the sealed segments the claim goes on after, as they were taken
    claim = claim_epoch(archive, current + 1, end.instance_id, end.segment_seq, end.last_commit_seq)
    deadline = time.monotonic() + settle
    while True:
        more, _tail, waiting = _round(archive, watch, store, here, record, False)
        taken += more
        if waiting is None or time.monotonic() >= deadline:
            break
        time.sleep(_SETTLE_POLL)
    if waiting is not None:
        logger.warning(
            "walship takeover of %s: gave up waiting for %s; the new writer goes on without it",
            archive.url,
            waiting,
        )
    more, tail, _waiting = _round(archive, watch, store, here, record, True)
    taken += more
    end = _reached(store, here)
    seqs = segment_seqs(store)
    if seqs and (taken or here.copy is not None or record.archived(seqs[-1], archive.url)):
        # (a copy from parts is a segment the old writer may seal: never appended to)
        end = _seal_start(archive, store, record, end, claim.epoch)
        header = SegmentHeader(
            end.instance_id or 0, end.segment_seq + 1, time.time_ns() // 1000, end.blake3
        )
        create_segment(store, header).close()
    archived = [e.segment_seq for e in record.entries() if e.url == archive.url]
    LocalEpoch(archive.url, claim.epoch, max(archived, default=0)).save(store)
    with contextlib.suppress(FileNotFoundError):  # a writer now: no follower's status
        store.remove(FOLLOWER_STATUS)
    result = Takeover(archive.url, claim, taken, tail, end.last_commit_seq)
    logger.warning("walship: %s", result.summary())
    return result


def _seal_start(
    archive: ArchiveStore, store: SegmentStore, record: ArchiveRecord, end: ChainEnd, epoch: int
) -> ChainEnd:
    """Archive sealed, as epoch ``epoch``'s, the segment where the new writer's own objects
    start (module docstring): DIR's last segment when it is not archived (taken from parts,
    or the follower's copy), else a new empty one (its header alone) after ``end``; recorded
    as archived. An older writer's object under its name (uploaded after the last round) is
    removed first. The chain end after it.

    Raises:
        ArchiveConflictError: the name was taken again each time (three times).
        OSError: the archive or the local disk failed.
    """
    last = segment_seqs(store)[-1]
    if record.archived(last, archive.url):
        last = end.segment_seq + 1
        header = SegmentHeader(end.instance_id or 0, last, time.time_ns() // 1000, end.blake3)
        create_segment(store, header).close()
    name = segment_name(last)
    data = store.read(name)
    archive.writer_epoch = epoch
    for _attempt in range(3):
        try:
            m = archive.put(name, data).manifest
        except ArchiveConflictError:
            m = None
        if m is not None and m.epoch > epoch:
            raise ArchiveConflictError(
                f"{archive.object_url(name)} is a newer takeover's (epoch {m.epoch}): this "
                f"takeover (epoch {epoch}) is overtaken"
            )
        if m is not None and m.epoch == epoch:
            break
        # the old writer's (its upload checked the fence before the claim): replaced
        remove_segment_objects(archive, last)
        logger.warning(
            "walship takeover of %s: %s was the fenced writer's (uploaded after the takeover "
            "took the archive): removed, archiving the new writer's own",
            archive.url,
            name,
        )
    else:
        raise ArchiveConflictError(
            f"{archive.object_url(name)} was created again by another writer while the "
            "takeover archived its own; run the takeover again"
        )
    record.mark_many(
        [ArchivedSegment(last, m.size, m.blake3, archive.url, m.last_commit_seq, m.instance_id)]
    )
    return end.after(m) if last > end.segment_seq else replace(end, blake3=m.blake3)


def _reached(store: SegmentStore, here: _Replica) -> ChainEnd:
    """DIR's end: its last sealed segment's, or the follower's copy after it."""
    return here.end if here.copy is None else here.copy.end(store, here.end)


__all__ = ["SETTLE_SECONDS", "Takeover", "take_over"]
