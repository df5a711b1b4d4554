"""The background work of an open log that no append triggers: the interval flusher and the age
rotation of an idle log.

:class:`Maintenance` owns one daemon thread (``walship-maintenance``) and its stop event. Every
period (the ``sync_interval`` under durability ``interval``, and a tenth of
``max_segment_age``, between 5 ms and 1 s, for the age rotation) it syncs what was written
but not yet synced (durability ``interval`` only) and rotates the active segment once it is
due by age. Both go through the log's own calls (``sync`` and ``rotate_due``: the I/O turn of
the group commit), so that they are serialized with the appends like any caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from walship.core.rotation import RotationReason
from walship.core.state import LogState
from walship.errors import WalshipError

logger = logging.getLogger("walship")

__all__ = ["Maintenance"]


class Maintenance:
    """The interval flusher and age rotation of one log (see the module docstring).

    Args:
        state: the log's state (whether it failed or closed, what is synced, the segment
            manager's rotation policy).
        sync_interval: the flusher's period under durability ``interval``; ``None``: no
            flusher (durability ``always`` or ``none``), only the age rotation.
        sync: makes everything written durable (``Log.sync``).
        rotate_due: rotates the active segment if it is due (``Log``'s exclusive call of the
            writer's ``due_rotation_locked``).

    On failure the thread ends and nothing else: a :class:`~walship.errors.WalshipError` (the
    log failed, in ``sync`` or the rotation, which already put the log in its failed state;
    or it closed) ends it quietly, the appenders hear of it at their next call and ``close``
    raises it; any other exception is logged (logger ``walship``) and ends it too. It also
    ends by itself once the log failed or closed.
    """

    def __init__(
        self,
        state: LogState,
        sync_interval: float | None,
        sync: Callable[[], object],
        rotate_due: Callable[[], object],
    ) -> None:
        self._state = state
        self._interval = sync_interval
        self._sync = sync
        self._rotate_due = rotate_due
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="walship-maintenance", daemon=True)

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Tell the thread to end; with ``wait``, join it (unless it was never started or this
        is the thread itself). Idempotent; any thread. An interrupt in the join leaves the
        thread told to stop (it ends at its next wake-up)."""
        self._stop.set()
        thread = self._thread
        if wait and thread.ident is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        """The thread: a round every period until stopped, failed or closed."""
        state = self._state
        age_period = min(1.0, max(0.005, state.manager.policy.max_segment_age / 10))
        period = min(self._interval, age_period) if self._interval is not None else age_period
        while not self._stop.wait(period):
            if state.failed is not None or state.closed:
                return
            try:
                if self._interval is not None and state.written_seq != state.durable_seq:
                    self._sync()
                if state.manager.should_rotate() is RotationReason.AGE:
                    self._rotate_due()
            except WalshipError:
                return  # failed or closed: appenders see it on their next call
            except Exception:
                logger.exception("walship maintenance thread failed")
                return
