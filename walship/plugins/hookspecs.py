"""The events a walship plugin can hear (pluggy hook specifications, project ``walship``).

Every hook is a notification. It runs on the log's event thread (``walship-events``), never on
the thread that appends, in the order the events happened, and only after the segment it speaks
of is durable. A hook's return value is ignored. A hook that raises is logged with its plugin's
name and counted in ``log.stats()["plugin_errors"]``; the other plugins still hear the event, and
the log goes on.

An implementation may take any subset of a hook's arguments, by name::

    from walship import hookimpl

    class Printer:
        @hookimpl
        def segment_closed(self, segment, reason):
            print(segment.name, reason)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from walship.core.recovery import RecoveryReport
    from walship.core.segment import ClosedSegment

PROJECT = "walship"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def segment_opened(log: Any, name: str, segment_seq: int, prev_segment_hash: bytes) -> None:
    """A new segment was created (its header is durable) and is now the active one.

    Fires at open for a brand-new log and after every rotation, after ``segment_closed``.
    """


@hookspec
def segment_closed(log: Any, segment: ClosedSegment, reason: str) -> None:
    """A segment was rotated out: it is synced, will never be written again, and its successor
    exists (so its hash is in the chain).

    ``segment`` carries name, segment_seq, size, blake3, first/last commit_seq, frame_count;
    ``reason`` is ``"forced"``, ``"size"`` or ``"age"``.
    """


@hookspec
def log_recovered(log: Any, report: RecoveryReport) -> None:
    """The log was opened and recovered; ``report`` says what was found, cut or moved aside."""


@hookspec
def segment_archived(
    log: Any, name: str, segment_seq: int, url: str, size: int, blake3: str, seconds: float
) -> None:
    """A closed segment was uploaded and verified (size and BLAKE3) at ``url``."""


@hookspec
def archive_failed(log: Any, name: str, segment_seq: int, attempt: int, error: str) -> None:
    """An upload attempt failed; ``attempt`` counts from 1. The segment stays pending."""


@hookspec
def archive_lagging(log: Any, pending: int, oldest_pending: str) -> None:
    """More closed segments wait for upload than the configured threshold."""


@hookspec
def segment_removed(log: Any, name: str, segment_seq: int, reason: str) -> None:
    """Retention removed a local closed segment (it is archived and verified)."""
