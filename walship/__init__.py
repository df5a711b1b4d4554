"""walship: a durable, segmented, tamper-evident write-ahead log with pluggable storage.

::

    import walship
    with walship.open("./wal") as log:
        seq = log.append(b"hello")

``import walship`` stays light: the command line and S3 load only when used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from walship.core.frame import Frame
from walship.core.readonly import ReadOnlyLog
from walship.core.repair import RecoveryReport
from walship.core.rotation import ManualClock, RotationReason
from walship.core.scan import Problem, ProblemKind
from walship.core.segment import ClosedSegment
from walship.errors import (
    ArchiveBackpressureError,
    ArchiveBucketMissingError,
    ArchiveConflictError,
    ArchiveError,
    ArchiveFencedError,
    ArchiveIncompleteError,
    ArchiveIntegrityError,
    ArchiveKeyError,
    ArchiveMissingError,
    ArchiveNameError,
    ArchivePlanError,
    ArchiveReadOnlyError,
    ArchiveRecordError,
    ArchiveStorageError,
    ArchiveUnsupportedError,
    BackendError,
    CheckpointError,
    CommitSeqLimitError,
    ConfigError,
    CorruptFrameError,
    FrameError,
    FramesUnavailableError,
    FramesWithdrawnError,
    FrameTooLargeError,
    LockLostError,
    LogClosedError,
    LogCorruptError,
    LogFailedError,
    LogForkedError,
    PayloadError,
    PlatformUnsupportedError,
    PluginError,
    PruneError,
    RestoreError,
    SegmentHeaderError,
    SegmentReadError,
    StoreEntryError,
    StoreLockedError,
    TruncatedFrameError,
    WalshipError,
)
from walship.log import Durability, Log
from walship.options import OpenOptions
from walship.plugins.hookspecs import hookimpl
from walship.store import SegmentStore

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from walship.aio import AsyncLog, open_async
    from walship.archive.reader import ArchiveReader

__version__ = "0.1.0"


@overload
def open(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: Literal[True],
    config: None = None,
    store: SegmentStore | None = None,
    **options: Any,
) -> ReadOnlyLog: ...


@overload
def open(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: Literal[False] = False,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    store: SegmentStore | Mapping[str, Any] | None = None,
    **options: Unpack[OpenOptions],
) -> Log: ...


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: bool = False,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    store: SegmentStore | Mapping[str, Any] | None = None,
    **options: Any,
) -> Log | ReadOnlyLog:
    """Open (or create) a log and recover it; or, with ``read_only=True``, open it for reading
    only (see :func:`open_read_only`).

    ::

        walship.open("./wal")                                  # a directory, the defaults
        walship.open("./wal", durability="interval", sync_interval="5ms",
                     max_segment_bytes="16MiB", archive={"url": "s3://bucket/wal"})
        walship.open(config="walship.yaml")                    # everything from a YAML file
        walship.open(config="walship.yaml", durability="none") # the file, one key overridden

    Every keyword argument (:class:`walship.options.OpenOptions`) is a config key of the same
    name, with the same values (sizes like ``"64MiB"``, durations like ``"10ms"``, the
    ``rotation``, ``archive`` and ``retention`` sections as dicts, ``archives`` as a list of
    ``archive`` dicts) and validated by the same
    model as a config file, so a bad one is one :class:`~walship.errors.ConfigError` line as
    there. Only in Python: ``salvage``, ``repair``, ``seed_restarts``, ``clock``, ``anchor``,
    and plugin objects in ``plugins``.

    Args:
        path: a directory for the POSIX store (created when missing), relative to the current
            directory; with ``config``, it replaces ``store.path`` (still relative to the
            current directory, where a ``store.path`` in the file is relative to the file's).
        config: a YAML file (or an already-parsed mapping) as described in
            :mod:`walship.config`; ``options`` then override its keys (mappings merge key by
            key; ``plugins`` are added to the file's).
        store: any :class:`~walship.store.SegmentStore` instead of ``path``; or a mapping, the
            config's ``store:`` section (``{"backend": "memory"}``).
        options: see :class:`walship.options.OpenOptions`: ``durability`` (``always`` |
            ``interval`` | ``none``), ``sync_interval``, ``max_segment_bytes``,
            ``max_segment_age``, ``rotation``, ``instance_id``, ``archive``, ``retention``,
            ``plugins``, ``entry_point_plugins``; and ``salvage``, ``repair`` (with an
            ``archive``: first put back from the archive every archived segment that is
            damaged or missing locally, see :mod:`walship.archive.repair`), ``seed_restarts``
            (open a log the seed wrote: its zero prev hash after each restart is then accepted
            and listed in ``log.recovery.chain_restarts``), ``clock``, ``anchor``. ``plugins``
            may hold plugin objects, and config-style specs (``"module:attr"``, an entry-point
            name, ``{"name": ..., "options": ...}``).
    Raises:
        ValueError: without ``config``, not exactly one of ``path`` and ``store``.
        ConfigError: the config file, an override or a keyword argument is invalid or unknown
            (one line, with the key path and a "did you mean").
        PluginError: a plugin given in ``plugins`` (or the config) failed to import, to be
            created or to validate (named); an entry-point plugin that fails is skipped with a
            warning instead (``log.plugins.skipped``).
        LogCorruptError: damage other than a torn tail (see ``salvage``; damage to an
            archived segment needs ``repair``: salvage never writes into one).
        ArchiveError: the archive record must be rebuilt (or ``repair`` was asked) and the
            archive cannot be listed, or a fetched segment does not match its manifest.
        StoreLockedError: another writer has the log open.
    """
    if read_only:
        if config is not None:
            raise ConfigError("read_only=True takes the log's directory (or store), not a config")
        if isinstance(store, Mapping):
            raise ConfigError("read_only=True takes a store object or a directory, not a mapping")
        return open_read_only(path, store=store, **options)
    from walship.config.opening import open_with_options

    return open_with_options(path, config, store, options)


def open_read_only(
    path: str | os.PathLike[str] | None = None,
    *,
    store: SegmentStore | None = None,
    poll_interval: float = 0.05,
) -> ReadOnlyLog:
    """Open the log in directory ``path`` (or ``store``) for reading only: no lock, no
    recovery, nothing written, safe while a writer in another process appends, rotates,
    repairs and removes segments (see :mod:`walship.core.readonly` for what it promises).
    ``read(from_seq, follow=True, timeout=None)`` waits for new frames, looking at the files
    every ``poll_interval`` seconds.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
        ValueError: neither or both of ``path`` and ``store``, or a bad ``poll_interval``.
    """
    if (path is None) == (store is None):
        raise ValueError("give exactly one of path or store")
    if store is None:
        from walship.backends.posix import PosixStore

        assert path is not None
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{os.fspath(path)}: no such log directory")
        store = PosixStore(path)
    return ReadOnlyLog(store, poll_interval=poll_interval)


def open_archive(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    encryption: Mapping[str, Any] | None = None,
) -> ArchiveReader:
    """Read a log straight from its archive: ``open_archive(url).read(from_seq=N)`` streams
    frames, each segment checked against its manifest and the chain (see
    :class:`walship.archive.reader.ArchiveReader`). ``encryption``: the keys of an encrypted
    archive, as ``archive.encryption`` takes them (``current`` may be left out). fsspec (and
    s3fs) load only when this is called.
    """
    from walship.archive.reader import open_archive as _open_archive

    return _open_archive(url, storage_options, encryption)


_LAZY = {"AsyncLog", "open_async"}
"""Names of :mod:`walship.aio`, loaded on first access (``import walship`` skips asyncio)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from walship import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'walship' has no attribute {name!r}")


__all__ = [
    "ArchiveBackpressureError",
    "ArchiveBucketMissingError",
    "ArchiveConflictError",
    "ArchiveError",
    "ArchiveFencedError",
    "ArchiveIncompleteError",
    "ArchiveIntegrityError",
    "ArchiveKeyError",
    "ArchiveMissingError",
    "ArchiveNameError",
    "ArchivePlanError",
    "ArchiveReadOnlyError",
    "ArchiveRecordError",
    "ArchiveStorageError",
    "ArchiveUnsupportedError",
    "AsyncLog",
    "BackendError",
    "CheckpointError",
    "ClosedSegment",
    "CommitSeqLimitError",
    "ConfigError",
    "CorruptFrameError",
    "Durability",
    "Frame",
    "FrameError",
    "FrameTooLargeError",
    "FramesUnavailableError",
    "FramesWithdrawnError",
    "LockLostError",
    "Log",
    "LogClosedError",
    "LogCorruptError",
    "LogFailedError",
    "LogForkedError",
    "ManualClock",
    "OpenOptions",
    "PayloadError",
    "PlatformUnsupportedError",
    "PluginError",
    "Problem",
    "ProblemKind",
    "PruneError",
    "ReadOnlyLog",
    "RecoveryReport",
    "RestoreError",
    "RotationReason",
    "SegmentHeaderError",
    "SegmentReadError",
    "StoreEntryError",
    "StoreLockedError",
    "TruncatedFrameError",
    "WalshipError",
    "__version__",
    "hookimpl",
    "open",
    "open_archive",
    "open_async",
    "open_read_only",
]
