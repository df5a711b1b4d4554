"""The events a walship plugin can hear (pluggy hook specifications, project ``walship``).

Every hook is a notification:

* It runs on the log's event thread (``walship-events``, one per log), never on the thread that
  appends: ``append`` only queues the event, so a slow or blocked plugin never slows it down (the
  events behind it wait; nothing is dropped).
* Events arrive in the order they happened, and only after the segment they speak of is durable.
* Every plugin hears every event. A hook that raises is logged (logger ``walship.plugins``) with
  its plugin's name and counted in ``log.stats()["plugin_errors"][name]``; the other plugins
  still hear the event, no data is lost and the log goes on. A hook's return value is ignored.
* ``log.close()`` delivers what is queued before it returns (it waits up to 30 s for a stuck
  plugin, then lets the daemon thread go).
* Every hook receives ``log``, the :class:`walship.log.Log` it comes from (for ``log.store``,
  ``log.stats()``...; do not append to it from a hook or close it: the hook runs while the log
  is live, and a plugin that writes to its own log would feed itself).

An implementation may take any subset of a hook's arguments, by name; a name that the hook does
not give is refused when the plugin is registered::

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
    from walship.core.repair import RecoveryReport
    from walship.core.segment import ClosedSegment

PROJECT = "walship"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def segment_opened(log: Any, name: str, segment_seq: int, prev_segment_hash: bytes) -> None:
    """A new segment was created and is now the active one.

    When: at open for a brand-new log (``segment_seq`` 1, zero prev hash), and after every
    rotation, right after the ``segment_closed`` of its predecessor. The header (with
    ``prev_segment_hash``, the BLAKE3 of the previous file) is durable.
    Receives: the file ``name`` (``segment_{seq:016}.aedbwal``), ``segment_seq``, and the
    32-byte ``prev_segment_hash``.
    """


@hookspec
def segment_closed(log: Any, segment: ClosedSegment, reason: str) -> None:
    """A segment was rotated out: it is synced, will never be written again, and its successor
    exists (so its hash is in the chain). This is the event to archive, index or compact on.

    When: after every rotation, before the successor's ``segment_opened``. Closing the log does
    not fire it (the last segment stays active and is resumed at the next open).
    Receives: ``segment``, a :class:`walship.core.segment.ClosedSegment` (``name``,
    ``segment_seq``, ``size`` in bytes with the header, ``blake3`` of the whole file,
    ``first_commit_seq``/``last_commit_seq`` (``None`` when it holds no frame), ``frame_count``,
    ``created_at_micros``, first/last frame timestamps); ``reason``: ``"forced"``
    (``log.rotate()``), ``"size"`` or ``"age"``.
    """


@hookspec
def log_recovered(log: Any, report: RecoveryReport) -> None:
    """The log was opened and recovered.

    When: once per open, after recovery. For a brand-new log it follows the ``segment_opened``
    of segment 1 (recovery found nothing, so the first segment is created during the open).

    Receives: ``report``, a :class:`walship.core.repair.RecoveryReport`: segments and frames
    found, the last commit_seq, every torn tail cut (``repairs``, with the side file that keeps
    the cut bytes), segments moved aside by a salvage open, and ``summary()`` as one line.
    """


@hookspec
def segment_archived(
    log: Any, name: str, segment_seq: int, url: str, size: int, blake3: str, seconds: float
) -> None:
    """A closed segment was uploaded and verified (size and BLAKE3) at ``url``.

    When: by the archiver, once the upload is verified and recorded (so a restart will not
    upload it again). Receives: the segment's ``name`` and ``segment_seq``, the object ``url``,
    its ``size``, its ``blake3`` as hex, and ``seconds`` the upload took (retries included).
    """


@hookspec
def archive_failed(
    log: Any, name: str, segment_seq: int, attempt: int, error: str, url: str
) -> None:
    """An upload attempt failed; the segment stays pending and is retried with backoff.

    Receives: the segment's ``name`` and ``segment_seq``, ``attempt`` counting from 1, the
    ``error`` as one line (never credentials), and the destination's archive ``url`` (without
    a password; with several destinations, ``archives:``, the one that failed). An
    implementation may take any subset of these arguments (one written before ``url`` existed
    keeps working).
    """


@hookspec
def archive_lagging(log: Any, pending: int, oldest_pending: str, url: str) -> None:
    """More closed segments wait for upload than the configured ``archive.lag_warning``.

    Receives: how many are ``pending`` and the name of the oldest one, at the destination
    whose archive ``url`` is given (each destination of ``archives:`` warns on its own).
    """


@hookspec
def segment_removed(log: Any, name: str, segment_seq: int, reason: str) -> None:
    """Retention removed a local closed segment (it is archived and verified).

    Receives: the segment's ``name`` and ``segment_seq``, and the ``reason`` (the retention rule
    that removed it).
    """


@hookspec
def archive_backpressure(
    log: Any,
    blocked: bool,
    pending_bytes: int,
    max_pending: int,
    oldest_pending: str | None,
    url: str,
) -> None:
    """Backpressure on appends (``archive.max_pending``) began or ended.

    When: ``blocked`` True once more bytes of closed segments wait for upload than
    ``max_pending``: from then on every append waits (up to ``archive.backpressure_timeout``,
    then it fails with :class:`~walship.errors.ArchiveBackpressureError`, nothing written);
    ``blocked`` False once uploads brought the backlog back to ``max_pending`` or below and
    appends go on. It fires once per change, never twice in a row with the same ``blocked``.
    Receives: the bytes waiting for upload (``pending_bytes``), the limit (``max_pending``),
    the name of the oldest pending segment (``None`` when none is), and the archive ``url`` of
    the destination (each destination of ``archives:`` has its own gate: appends wait while
    any one of them is shut).
    """


@hookspec
def follower_lag(
    follower: Any,
    url: str,
    directory: str,
    frames: int,
    seconds: float,
    replica_seq: int | None,
    archive_seq: int | None,
) -> None:
    """A follower (``walship follow``, :class:`walship.archive.follow.Follower`) finished a
    round: it listed the archive and took every new sealed segment it could.

    When: after every round, on the thread that runs the follower (not a log's event thread:
    a follower has no log; it receives ``follower`` instead of ``log``). A hook that raises is
    logged and counted in ``follower.stats()["hook_errors"]``; the other plugins still hear it.
    Receives: the archive ``url`` (credentials redacted), the replica ``directory``, the lag
    after the round: ``frames`` (the archive's last commit_seq minus the replica's) and
    ``seconds`` (the archive's newest frame timestamp minus the replica's; 0 when caught up),
    and the two commit_seqs, ``replica_seq`` and ``archive_seq`` (``None``: no frame yet).
    """
