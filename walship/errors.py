"""The exceptions walship raises. Every one derives from :class:`WalshipError`.

Each message is one line that names what was wrong and where (file, offset, key).
"""

from __future__ import annotations


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

    ``problems`` lists every :class:`walship.core.recovery.Problem` found; the message names the
    first one's file and offset.
    """

    def __init__(self, message: str, problems: list[object] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class FramesUnavailableError(WalshipError, LookupError):
    """``read`` was asked for frames that are no longer in the local log: retention removed
    their segments (after archiving them). Read them from the archive
    (``walship.open_archive(url).read(from_seq=...)``)."""


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


class ConfigError(WalshipError, ValueError):
    """A configuration value is invalid; the message names the key path."""
