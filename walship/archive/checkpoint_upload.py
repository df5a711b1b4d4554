"""A checkpoint's snapshot stored by an archiver, and the archive pruned after it.

What ``Log.checkpoint(seq, snapshot=...)`` reaches through
:meth:`~walship.archive.archiver.Archiver.store_checkpoint`: the snapshot stored with its manifest
(:func:`walship.archive.checkpoints.store_checkpoint`), retried with the archive's backoff, then
``archive.prune`` applied once (:mod:`walship.archive.prune`). On the calling thread: it holds
no lock the archiver's workers or the log's appends need.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from walship.archive import ArchiveStore
from walship.archive.settings import ArchiveSettings
from walship.archiving import CheckpointPosition
from walship.errors import ArchiveError, ArchiveIntegrityError

logger = logging.getLogger("walship.archiver")

CHECKPOINT_ATTEMPTS = 3
"""Attempts to store a checkpoint's snapshot (the caller waits for them)."""

__all__ = ["CHECKPOINT_ATTEMPTS", "CheckpointUpload"]


class CheckpointUpload:
    """The checkpoints of one archiver's destination.

    Args:
        archive: the destination's archive store.
        settings: its settings (``retries``, ``prune``).
        counters: the archiver's counters (``checkpoints``, ``prune_errors``,
            ``pruned_objects`` counted here).
        backoff: ``backoff(attempt)``, the wait after failed attempt ``attempt`` (from 1).
    """

    def __init__(
        self,
        archive: ArchiveStore,
        settings: ArchiveSettings,
        counters: Counter[str],
        backoff: Callable[[int], float],
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.counters = counters
        self._backoff = backoff

    def store(self, snapshot: object, position: CheckpointPosition) -> object:
        """Store ``snapshot`` (bytes, a path or a binary file object) as the checkpoint at
        ``position`` (:func:`walship.archive.checkpoints.store_checkpoint`), on the calling
        thread. A failure of the store is retried (at most :data:`CHECKPOINT_ATTEMPTS`
        attempts, with the archive's backoff); once it is stored, :meth:`prune`. Returns the
        checkpoint's manifest, durable in the archive.

        Raises:
            TypeError: ``snapshot`` is not bytes, a path or a binary file object.
            ArchiveConflictError: a different checkpoint is archived at that commit_seq.
            ArchiveIntegrityError / OSError: the last attempt failed.
        """
        from walship.archive.checkpoints import read_snapshot, store_checkpoint

        data = read_snapshot(snapshot)
        attempts = min(self.settings.retries.attempts, CHECKPOINT_ATTEMPTS)
        for attempt in range(1, attempts + 1):
            try:
                manifest = store_checkpoint(self.archive, position, data)
            except (OSError, ArchiveIntegrityError):
                if attempt == attempts:
                    raise
                time.sleep(self._backoff(attempt))
                continue
            self.counters["checkpoints"] += 1
            self.prune()
            return manifest
        raise AssertionError("unreachable")

    def prune(self) -> None:
        """Apply ``archive.prune`` (when set) once, on the calling thread. A failure is logged
        on ``walship.archiver`` and counted (``prune_errors``), never raised: the checkpoint is
        stored, and the next one prunes again."""
        rules = self.settings.prune
        if rules is None:
            return
        from walship.archive.prune import apply_prune, load_for_prune, plan_prune

        try:
            pp = plan_prune(load_for_prune(self.archive), rules, time.time_ns() // 1000)
            apply_prune(self.archive, pp)
        except (OSError, ArchiveError) as e:
            self.counters["prune_errors"] += 1
            logger.warning(
                "walship archive %s: prune failed: %s",
                self.archive.url,
                self.archive.redact(str(e)),
            )
            return
        self.counters["pruned_objects"] += len(pp.objects)
