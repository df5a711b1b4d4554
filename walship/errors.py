"""The exceptions walship raises. Every one derives from :class:`WalshipError`.

Each message is one line that names what was wrong and where (file, offset, key).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any, Protocol


class WalshipError(Exception):
    """Base class of every error walship raises on purpose."""


class FrameError(WalshipError):
    """A frame could not be decoded. ``offset`` is where the frame starts in its data."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class TruncatedFrameError(FrameError):
    """The data ends inside a frame: fewer bytes remain than the frame's length promises."""


class CorruptFrameError(FrameError):
    """A frame is damaged: its length is out of range or its CRC-32C does not match."""


class PayloadError(WalshipError, ValueError, TypeError):
    """A payload or payload_type cannot be written: the payload is not a contiguous bytes-like
    object, or payload_type is not an integer in 0..255. Nothing written."""


class FrameTooLargeError(WalshipError, ValueError):
    """A payload is too large for one frame (frame_length would exceed 64 MiB). Nothing written."""


class SegmentHeaderError(WalshipError):
    """A segment header is invalid (magic, version, reserved bytes, sequence or instance)."""


class SegmentReadError(WalshipError):
    """A store could not return a segment's true bytes: the stored copy was altered (its size
    or BLAKE3 differs from what was recorded) or is gone (``missing``). ``segment`` names it."""

    missing = False

    def __init__(self, message: str, segment: str = "") -> None:
        super().__init__(message)
        self.segment = segment


class LogCorruptError(WalshipError):
    """The log is damaged somewhere recovery must not repair on its own.

    ``problems`` lists every :class:`walship.core.scan.Problem` found; the message names the
    first one's file and offset.
    """

    def __init__(self, message: str, problems: list[object] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class FramesUnavailableError(WalshipError, LookupError):
    """``read`` was asked for frames that are no longer in the local log: retention removed
    their segments (after archiving them). Read them from the archive
    (``walship.open_archive(url).read(from_seq=...)``)."""


class FramesWithdrawnError(WalshipError):
    """A read-only reader (``walship.open(DIR, read_only=True)``, ``walship tail``) returned
    frames that the writer then cut: its write or sync failed, so they were never durable nor
    acknowledged, and it cut them (``SegmentManager.discard_unsynced``). Read again from the log
    as it is now."""


class LogFailedError(WalshipError):
    """A write or sync failed earlier; the log refuses further work until it is reopened.

    After a failed fsync the kernel may have dropped the dirty pages, so retrying proves nothing:
    the only safe continuation is to reopen, which recovers from what is really on disk.
    """


class LogClosedError(WalshipError):
    """The log was closed."""


class LogForkedError(WalshipError):
    """The log is used in a process forked from the one that opened it.

    A log belongs to the process that opened it: a forked child shares its files and its lock
    but not its threads or its state, so every call in the child raises this, and the child's
    ``close()``, ``with`` exit and garbage collection leave the files and the lock alone. Open
    the log in the child itself (after the parent closed it), or pass work to the parent.
    """


class CommitSeqLimitError(WalshipError, OverflowError):
    """An append would need a commit_seq above the format's limit, 2**64 - 1 (an unsigned
    64-bit field). Nothing was written; the log stays usable for reading."""


class StoreLockedError(WalshipError):
    """Another writer holds the store's single-writer lock."""


class LockLostError(StoreLockedError, OSError):
    """The writer's lock file was removed or replaced under it and could not be taken back
    (another process holds the new one): the log fails closed rather than share its files."""


class StoreEntryError(WalshipError, OSError):
    """An entry in the store's directory is in walship's way (a directory where walship keeps
    a file: the lock file, the archive record, a segment, a side file). The message names the
    entry and what to do; nothing was changed."""


class PlatformUnsupportedError(WalshipError, OSError):
    """The platform cannot do what walship needs here (e.g. lock a file); the message says
    what is missing."""


class BackendError(WalshipError, ValueError):
    """A store backend is unknown, failed to load, or is not a ``SegmentStore`` class (see
    :mod:`walship.backends.registry`)."""


class PluginError(WalshipError, ValueError):
    """A plugin failed to import, to be created, or to validate. The message names it (see
    :mod:`walship.plugins.manager`)."""


class ConfigError(WalshipError, ValueError):
    """A configuration value is invalid; the message names the key path."""


# The archive, the archiver, retention and restore.
class ArchiveError(WalshipError):
    """Base class: something about the archive (an object store holding closed segments)."""


class ArchiveNameError(ArchiveError, ValueError):
    """An object name is not one walship writes (not a segment, traversal, absolute, huge...).

    Such an object is never downloaded and nothing is written for it.
    """


class ArchiveConflictError(ArchiveError):
    """The archive already holds different content under a segment's name.

    walship never overwrites an archived object; the object must be inspected and removed by
    hand if it is known to be wrong (a planted or partial object, a forked log).
    """


class ArchiveFencedError(ArchiveError):
    """Another writer took this log's archive over (``walship promote``, ``walship.open(...,
    takeover=True)``): the archive holds an epoch object newer than this writer's. The writer
    fails closed: it uploads nothing more to the archive, its appends are refused, and every
    local segment stays where it is (nothing is removed). ``url`` is the archive, ``epoch`` the
    newer epoch, ``holder`` who took it (host, pid), as the epoch object says."""

    def __init__(self, message: str, url: str = "", epoch: int = 0, holder: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.epoch = epoch
        self.holder = holder


class ArchiveIntegrityError(ArchiveError, SegmentReadError):
    """An archived object or manifest does not match what it should be (size, BLAKE3, chain,
    a manifest that does not parse). ``segment`` names the segment."""


class ArchiveMissingError(ArchiveIntegrityError):
    """A segment the archive should hold is not there (``segment`` names it)."""

    missing = True


class ArchiveProblemLike(Protocol):
    """What an archive problem tells (:class:`walship.archive.plan.ArchiveProblem`): its kind,
    the segment (or range) it concerns, the offset there, what is wrong, and whether it is a
    missing piece rather than damage."""

    @property
    def kind(self) -> str: ...
    @property
    def segment(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def detail(self) -> str: ...
    @property
    def missing(self) -> bool: ...


class ArchivePlanError(ArchiveIntegrityError):
    """Pieces of the archive that a restore or read needs are damaged (or missing);
    ``problems`` lists every one (the message names them all), ``segment`` the first."""

    def __init__(self, message: str, problems: Sequence[ArchiveProblemLike]) -> None:
        super().__init__(message, problems[0].segment if problems else "")
        self.problems = list(problems)


class ArchiveIncompleteError(ArchivePlanError, ArchiveMissingError):
    """An :class:`ArchivePlanError` whose every problem is a missing piece (it is an
    :class:`ArchiveMissingError` too)."""


class ArchiveKeyError(ArchiveError):
    """An encrypted archived object needs a key that was not given (``key_id`` names it), or
    there is no current key to seal with (``key_id`` ``None``)."""

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class ArchiveStorageError(ArchiveError, OSError):
    """The object store refused or failed a request: an ``OSError`` (the archiver retries it;
    nothing is lost), whose message names the archive URL, the operation, the HTTP status and
    the server's error code (``SignatureDoesNotMatch``, ``AccessDenied``, ``QuotaExceeded``...),
    never a credential. ``status``, ``code`` and ``operation`` hold them (``None``/``""`` when
    the request never got an answer: no credentials, the endpoint unreachable)."""

    def __init__(
        self, message: str, status: int | None = None, code: str = "", operation: str = ""
    ) -> None:
        OSError.__init__(self, errno.EIO, message)
        self.status = status
        self.code = code
        self.operation = operation

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.strerror, self.status, self.code, self.operation))


class ArchiveBucketMissingError(ArchiveStorageError):
    """The archive URL's bucket does not exist (``NoSuchBucket``): never read as an empty
    archive."""


class ArchiveUnsupportedError(ArchiveError):
    """The object store cannot keep a promise walship relies on (a conditional create that is
    honoured, an object size a single request can take): refused rather than weakened."""


class ArchiveReadOnlyError(ArchiveError):
    """A mutating method was called on a read-only view of an archive."""


class ArchiveRecordError(ArchiveError):
    """The local archive record (``walship.archive.json``) is unreadable or invalid."""


class RestoreError(ArchiveError):
    """A restore cannot proceed: bad target directory, bad point in time, nothing to restore."""


class ArchiveBackpressureError(ArchiveError):
    """An append waited ``archive.backpressure_timeout`` for the archive to catch up (more bytes
    of closed segments waited for upload than ``archive.max_pending``) and was refused. Nothing
    was written and the log is not failed: the next append goes through once uploads catch up.
    ``pending_bytes`` and ``max_pending`` say how far behind the archive was."""

    def __init__(self, message: str, pending_bytes: int = 0, max_pending: int = 0) -> None:
        super().__init__(message)
        self.pending_bytes = pending_bytes
        self.max_pending = max_pending


class CheckpointError(WalshipError, ValueError):
    """``Log.checkpoint`` was given a commit_seq it cannot accept, or its snapshot could not be
    stored in the archive."""


class PruneError(ArchiveError):
    """``walship prune`` cannot prune: no rule given, the checkpoint it would keep is not sound,
    or another prune ran at the same time (nothing was removed)."""
