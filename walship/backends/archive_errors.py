"""The errors of the archive, the archiver, retention and restore.

Kept apart from :mod:`walship.backends.archive` so that raising or catching them never imports
fsspec. Every one is a :class:`walship.errors.WalshipError` with a one-line message that names
the object, segment or key that was wrong.
"""

from __future__ import annotations

import errno
from typing import Any

from walship.errors import SegmentReadError, WalshipError


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


class ArchiveIntegrityError(ArchiveError, SegmentReadError):
    """An archived object or manifest does not match what it should be (size, BLAKE3, chain,
    a manifest that does not parse). ``segment`` names the segment."""


class ArchiveMissingError(ArchiveIntegrityError):
    """A segment the archive should hold is not there (``segment`` names it)."""

    missing = True


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


class CheckpointError(WalshipError, ValueError):
    """``Log.checkpoint`` was given a commit_seq it cannot accept."""
