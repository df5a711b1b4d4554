"""One sealed segment into the archive, for an archiver's worker: fenced, continuing the archive.

:meth:`FencedPut.put` is the attempt an :class:`~walship.archive.archiver.Archiver` worker makes
(and retries): the fence checked first (one GET a second at most:
:class:`~walship.archive.epoch.Fence`), the
segment checked to continue the archive (:func:`walship.core.record.check_continues`), then
put (:meth:`walship.archive.objects.ArchiveStore.put`, in this process or in the upload child,
:mod:`walship.archive.upload_process`). Past this writer's takeover, an object under the
segment's name that conflicts is a fenced writer's (uploaded before it saw the takeover): it is
removed and the put tried again once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from walship.archive import ArchiveStore, PutResult
from walship.archive.epoch import Fence, remove_segment_objects
from walship.archive.settings import ArchiveSettings
from walship.core.header import segment_name
from walship.core.record import ArchiveRecord, check_continues
from walship.errors import ArchiveConflictError, ArchiveError
from walship.store import SegmentStore

logger = logging.getLogger("walship.archiver")

__all__ = ["FencedPut"]


def _in_flight(name: str) -> None:
    """The predecessor's manifest as :func:`check_continues` asks for it: not there yet (its
    own put, in this archiver, is still on its way)."""
    return None


class FencedPut:
    """The put of one archiver's segments (see the module docstring). On the worker's thread;
    several workers at once (it keeps no state of its own but ``counters``).

    Args:
        store: the log's segment store (the segment's bytes are read from it).
        archive: the archive store.
        record: the log's archive record (what the archive held before).
        fence: this writer's fence at ``archive``.
        settings: the destination's settings (for the upload child).
        in_child: put in the upload child process (``archive.upload_process``).
        settle_before: ``settle_before(seq)`` waits until segment ``seq - 1`` is no longer
            being uploaded by another worker of the archiver, and returns whether it is still
            pending there.
        own_predecessor: ``own_predecessor(seq)``: whether segment ``seq - 1`` is still
            pending in the archiver, after a put of the archiver succeeded.
        counters: the archiver's counters (``fenced_removed`` counted here).
    """

    def __init__(
        self,
        store: SegmentStore,
        archive: ArchiveStore,
        record: ArchiveRecord,
        fence: Fence,
        settings: ArchiveSettings,
        *,
        in_child: bool,
        settle_before: Callable[[int], bool],
        own_predecessor: Callable[[int], bool] = lambda seq: False,
        counters: Counter[str],
    ) -> None:
        self.store = store
        self.archive = archive
        self.record = record
        self.fence = fence
        self.settings = settings
        self.in_child = in_child
        self._settle_before = settle_before
        self._own_predecessor = own_predecessor
        self.counters = counters

    def put(self, seq: int, blake3: bytes | None) -> PutResult:
        """Archive segment ``seq`` (``blake3``: its hash when it was closed, checked against
        its bytes; ``None``: not known): the fence, the continuity, the put.

        Raises:
            ArchiveFencedError: this writer is fenced.
            ArchiveConflictError: the segment does not continue the archive, or the archive
                holds different content under its name (outside this writer's takeover).
            ArchiveError: it waits for its predecessor, this writer's own, to be archived
                first (retried: not a conflict); or as
                :meth:`~walship.archive.objects.ArchiveStore.put`.
            OSError: the store or the archive failed.
        """
        self.fence.check()
        self.check_continues(seq)
        return self.put_fenced(seq, blake3)

    def check_continues(self, seq: int) -> None:
        """:func:`walship.core.record.check_continues`; past this writer's takeover, after the
        upload of the segment before when another worker runs it (it may be replacing a fenced
        writer's object, which the check would otherwise be made against), and, while that
        segment is still pending here, a mismatch is retried (an
        :class:`~walship.errors.ArchiveError`), not a conflict.

        Before the takeover, a segment whose predecessor is still pending in this archiver,
        once one of its puts succeeded, is checked against the record only: the predecessor's
        own put checks the archive under its name (a conflict stops it, loudly), and the GET
        of its manifest, which almost always finds it still on its way up, would be a third
        request per segment.
        """
        if not self.fence.owns(seq - 1):
            own = self._own_predecessor(seq)
            stat = _in_flight if own else self.archive.stat
            check_continues(self.store, seq, self.record, stat)
            return
        before_pending = self._settle_before(seq)
        try:
            check_continues(self.store, seq, self.record, self.archive.stat)
        except ArchiveConflictError:
            if not before_pending:
                raise
            raise ArchiveError(
                f"{segment_name(seq)} waits for {segment_name(seq - 1)}, this writer's own "
                "(past its takeover), to be archived first"
            ) from None

    def put_fenced(self, seq: int, blake3: bytes | None) -> PutResult:
        """:meth:`put_here_or_in_child`, a conflict checked against the fence: fenced, the
        error says so; past this writer's takeover, the other object is a fenced writer's
        (uploaded before it saw the takeover): it is removed and the put tried again once.

        Raises:
            ArchiveFencedError: this writer is fenced.
            ArchiveConflictError: as :meth:`~walship.archive.objects.ArchiveStore.put`, outside
                this writer's takeover.
        """
        name = segment_name(seq)
        try:
            return self.put_here_or_in_child(name, blake3)
        except ArchiveConflictError:
            self.fence.check(fresh=True)
            if not self.fence.owns(seq):
                raise
        remove_segment_objects(self.archive, seq)
        logger.warning(
            "walship archive %s: %s was a fenced writer's (past this writer's takeover, "
            "epoch %d): its object and manifest removed, archiving this writer's own",
            self.archive.url,
            name,
            self.fence.local.epoch,
        )
        self.counters["fenced_removed"] += 1
        return self.put_here_or_in_child(name, blake3)

    def put_here_or_in_child(self, name: str, blake3: bytes | None) -> PutResult:
        """:meth:`~walship.archive.objects.ArchiveStore.put` of the local segment ``name``, in
        this process or (with ``in_child``) in the shared upload child, which builds its own
        archive store from the settings."""
        if not self.in_child:
            return self.archive.put(name, self.store.read(name), expected_blake3=blake3)
        from walship.archive.upload_process import UploadProcess

        s = self.settings
        keys = s.encryption.as_mapping() if s.encryption is not None else None
        key = (
            s.url,
            s.storage_options,
            s.compression,
            s.conditional_create,
            keys,
            self.fence.local.epoch,
        )
        raw = self.store.local_path(name) or self.store.read(name)
        return UploadProcess.shared().put(key, name, raw, blake3)
