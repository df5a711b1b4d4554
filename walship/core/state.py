"""Where an open log is: its commit_seqs, its index, its failed and closed flags, its counters.

One :class:`LogState` per open :class:`walship.log.Log`, shared by the log (lifecycle, failure
state, the public API), its write path (:mod:`walship.core.writer`, run by the holder of the
I/O turn) and its readers (:mod:`walship.core.reader`, any thread). Plain attributes, no
property: the append path reads and writes them directly.

Who writes what:

* ``next_seq``, ``written_seq``, ``durable_seq``, ``counters``, the latencies: the holder of
  the I/O turn (:class:`~walship.core.commit.GroupCommit`); read from any thread without a lock
  (an int is read whole).
* ``index``: swapped whole (it is immutable) under ``index_lock``, which also guards the
  segment manager's ``active`` where a reader needs the two to agree.
* ``failed``: set once, by the log's failure (the first failure wins); ``closed``: set once, by
  close, while the I/O turn is held.
* ``durable_changed``/``followers``: the wake-ups of ``read(follow=True)``
  (:meth:`LogState.wake_followers` wherever ``durable_seq`` advances, or the log fails or closes).
"""

from __future__ import annotations

import threading
from collections import Counter

from walship.core.index import Index
from walship.core.latency import LatencyHistogram
from walship.core.segment import SegmentManager


class LogState:
    """The shared state of one open log (see the module docstring for who writes what)."""

    __slots__ = (
        "append_latency",
        "closed",
        "counters",
        "durable_changed",
        "durable_seq",
        "failed",
        "followers",
        "fsync_latency",
        "index",
        "index_lock",
        "manager",
        "next_seq",
        "written_seq",
    )

    def __init__(self, manager: SegmentManager, next_seq: int, index: Index) -> None:
        """A log resumed at ``next_seq`` (everything before it is on disk: durable)."""
        self.manager = manager
        self.next_seq = next_seq
        self.written_seq = next_seq - 1
        self.durable_seq = self.written_seq
        self.index = index
        self.index_lock = threading.Lock()
        self.failed: BaseException | None = None
        self.closed = False
        self.counters: Counter[str] = Counter()
        self.append_latency = LatencyHistogram()
        self.fsync_latency = LatencyHistogram()
        self.durable_changed = threading.Condition()
        self.followers = 0

    def wake_followers(self) -> None:
        """``durable_seq`` advanced (or the log closed or failed): wake ``read(follow=True)``.
        Any thread; cheap when nobody follows."""
        if self.followers:
            with self.durable_changed:
                self.durable_changed.notify_all()


__all__ = ["LogState"]
