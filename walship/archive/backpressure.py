"""Backpressure: appends wait while the archive is too far behind, instead of filling the disk.

With ``archive.max_pending`` set, the archiver tells :class:`Backpressure` how many bytes of
closed segments wait for upload (queued, uploading, retrying or stalled) every time that number
changes. Above ``max_pending`` the gate is shut: every append waits on its own thread, before it
reaches the group commit (so it holds nothing another thread needs), up to
``backpressure_timeout``, and then fails with :class:`~walship.errors.ArchiveBackpressureError`
(nothing written, the log not failed). Once uploads bring the backlog back to ``max_pending`` or
below, the waiting appends go on. The active segment does not count: it is bounded by
``rotation.max_segment_bytes``, and only closed segments can be uploaded.

Each time the gate shuts or opens, the ``archive_backpressure`` hook fires and a line is logged.
A waiting append also asks for the stalled segments to be retried (at most once per
``backpressure_timeout``): a stalled segment is otherwise retried only by ``walship archive``, a
flush or the next open, and backpressure would never lift by itself once the store is back.

Without ``max_pending`` there is no :class:`Backpressure` at all: the append path checks one
attribute (``None``) and goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from walship.errors import ArchiveBackpressureError

logger = logging.getLogger("walship.archiver")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class Backpressure:
    """The gate of one log's appends (module docstring). Thread-safe.

    Args:
        max_pending: bytes of closed segments waiting for upload above which appends wait.
        timeout: how long an append waits (seconds; 0: it is refused at once).
        url: the archive (for messages).
        emit: fires a hook on the log's event thread (``emit(hook, **kwargs)``).
        retry_stalled: queues the stalled segments again (called on an appending thread,
            holding no lock of this class).
        clock: monotonic seconds (for the retry's rate limit).
    """

    def __init__(
        self,
        max_pending: int,
        timeout: float,
        url: str,
        emit: Callable[..., None],
        retry_stalled: Callable[[], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pending = max_pending
        self.timeout = timeout
        self.url = url
        self._emit = emit
        self._retry_stalled = retry_stalled
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self.blocked = False
        """Whether appends wait now: read by every append without a lock (a plain bool)."""
        self.pending_bytes = 0
        self.oldest: str | None = None
        self.waits = 0
        """Appends that had to wait."""
        self.refusals = 0
        """Appends refused after waiting ``timeout``."""
        self.episodes = 0
        """How many times the gate shut."""
        self._last_retry: float | None = None
        self._open_for_good = False

    def update(self, pending_bytes: int, oldest: str | None) -> None:
        """The archiver's new backlog (any thread, the archiver's lock may be held: this takes
        only its own). Shuts or opens the gate, firing ``archive_backpressure`` on a change."""
        with self._cond:
            self.pending_bytes = pending_bytes
            self.oldest = oldest
            blocked = pending_bytes > self.max_pending and not self._open_for_good
            if blocked == self.blocked:
                return
            self.blocked = blocked
            if blocked:
                self.episodes += 1
                logger.warning(
                    "walship archive backpressure: %s of closed segments wait for upload to %s "
                    "(more than archive.max_pending %s, oldest %s): appends wait",
                    _size(pending_bytes),
                    self.url,
                    _size(self.max_pending),
                    oldest,
                )
            else:
                logger.info("walship archive backpressure lifted: %s pending", _size(pending_bytes))
                self._cond.notify_all()
            self._emit(
                "archive_backpressure",
                blocked=blocked,
                pending_bytes=pending_bytes,
                max_pending=self.max_pending,
                oldest_pending=oldest,
                url=self.url,
            )

    def open_for_good(self) -> None:
        """The archiver stopped: let every waiting append go on (it then meets the closed log)."""
        with self._cond:
            self._open_for_good = True
            self.blocked = False
            self._cond.notify_all()

    def wait(self, since: float | None = None) -> None:
        """Called by an append on its own thread when :attr:`blocked` is set: return once the
        gate opens, or raise ``timeout`` seconds after ``since`` (a ``time.monotonic()``
        reading: when the append began to wait, behind other gates too; ``None``: now). An
        interrupt (KeyboardInterrupt) goes on as it is: nothing was written.

        Raises:
            ArchiveBackpressureError: the gate stayed shut for ``timeout`` seconds.
        """
        self._maybe_retry()
        deadline = (time.monotonic() if since is None else since) + self.timeout
        with self._cond:
            if not self.blocked:
                return
            self.waits += 1
            while self.blocked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.refusals += 1
                    raise self._refusal()
                self._cond.wait(remaining)

    def _maybe_retry(self) -> None:
        now = self._clock()
        if self._last_retry is not None and now - self._last_retry < max(self.timeout, 1.0):
            return
        self._last_retry = now
        try:
            self._retry_stalled()
        except Exception:  # never fail an append for this: the wait says what is wrong
            logger.exception("walship backpressure could not retry the stalled segments")

    def _refusal(self) -> ArchiveBackpressureError:
        return ArchiveBackpressureError(
            f"append refused: {_size(self.pending_bytes)} of closed segments still wait for "
            f"upload to {self.url} (more than archive.max_pending {_size(self.max_pending)}; "
            f"oldest {self.oldest}) after waiting {self.timeout:g}s "
            "(archive.backpressure_timeout); nothing was written and the log is usable: retry "
            "once the archive catches up (walship status -c CONFIG shows why it is behind)",
            self.pending_bytes,
            self.max_pending,
        )

    def stats(self) -> dict[str, object]:
        """``backpressure`` (shut now), ``pending_bytes``, ``max_pending``, and the counters
        ``backpressure_waits``, ``backpressure_refusals``, ``backpressure_episodes``."""
        with self._cond:
            return {
                "backpressure": self.blocked,
                "max_pending_bytes": self.max_pending,
                "backpressure_waits": self.waits,
                "backpressure_refusals": self.refusals,
                "backpressure_episodes": self.episodes,
            }


NO_BACKPRESSURE = {
    "backpressure": False,
    "max_pending_bytes": None,
    "backpressure_waits": 0,
    "backpressure_refusals": 0,
    "backpressure_episodes": 0,
}
"""The fields of :meth:`Backpressure.stats` in an archiver's stats when ``archive.max_pending``
is off (no :class:`Backpressure` at all)."""
