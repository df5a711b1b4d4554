"""The errors of the archive, the archiver, retention and restore.

Kept apart from :mod:`walship.backends.archive` so that raising or catching them never imports
fsspec. Every one is a :class:`walship.errors.WalshipError` with a one-line message that names
the object, segment or key that was wrong.
"""

from __future__ import annotations

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


class ArchiveReadOnlyError(ArchiveError):
    """A mutating method was called on a read-only view of an archive."""


class ArchiveRecordError(ArchiveError):
    """The local archive record (``walship.archive.json``) is unreadable or invalid."""


class RestoreError(ArchiveError):
    """A restore cannot proceed: bad target directory, bad point in time, nothing to restore."""


class CheckpointError(WalshipError, ValueError):
    """``Log.checkpoint`` was given a commit_seq it cannot accept."""
