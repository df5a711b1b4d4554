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
from typing import TYPE_CHECKING, Any

from walship.core.frame import Frame
from walship.core.repair import RecoveryReport
from walship.core.rotation import ManualClock, RotationReason
from walship.core.scan import Problem, ProblemKind
from walship.core.segment import ClosedSegment
from walship.errors import (
    ArchiveBucketMissingError,
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
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
    FrameTooLargeError,
    LockLostError,
    LogClosedError,
    LogCorruptError,
    LogFailedError,
    LogForkedError,
    PayloadError,
    PlatformUnsupportedError,
    PluginError,
    RestoreError,
    SegmentHeaderError,
    SegmentReadError,
    StoreEntryError,
    StoreLockedError,
    TruncatedFrameError,
    WalshipError,
)
from walship.log import Durability, Log
from walship.plugins.hookspecs import hookimpl
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.archive.reader import ArchiveReader

__version__ = "0.1.0"


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    store: SegmentStore | None = None,
    **options: Any,
) -> Log:
    """Open (or create) a log and recover it.

    ::

        walship.open("./wal")                                  # a directory, the defaults
        walship.open(config="walship.yaml")                    # everything from a YAML file
        walship.open(config="walship.yaml", durability="none") # the file, one key overridden

    Args:
        path: a directory for the POSIX store (created when missing); with ``config``, it
            replaces ``store.path``.
        config: a YAML file (or an already-parsed mapping) as described in
            :mod:`walship.config`; ``options`` then override its keys.
        store: any :class:`~walship.store.SegmentStore` instead of ``path``.
        options: without ``config``, see :class:`walship.log.Log`: ``durability`` (``always`` |
            ``interval`` | ``none``), ``sync_interval`` (s), ``max_segment_bytes``,
            ``max_segment_age`` (s), ``instance_id``, ``salvage``, ``repair`` (with an
            ``archive``: first put back from the archive every archived segment that is
            damaged or missing locally, see :mod:`walship.archive.repair`), ``seed_restarts``
            (open a log the seed wrote: its zero prev hash after each restart is then accepted and
            listed in ``log.recovery.chain_restarts``), ``clock``, ``plugins``,
            ``entry_point_plugins``. ``plugins`` may hold plugin objects, and config-style
            specs (``"module:attr"``, an entry-point name, ``{"name": ..., "options": ...}``).
    Raises:
        ConfigError: the config file or an override is invalid (one line, with the key path).
        PluginError: a plugin given in ``plugins`` (or the config) failed to import, to be
            created or to validate (named); an entry-point plugin that fails is skipped with a
            warning instead (``log.plugins.skipped``).
        LogCorruptError: damage other than a torn tail (see ``salvage``; damage to an
            archived segment needs ``repair``: salvage never writes into one).
        ArchiveError: the archive record must be rebuilt (or ``repair`` was asked) and the
            archive cannot be listed, or a fetched segment does not match its manifest.
        StoreLockedError: another writer has the log open.
    """
    if config is not None:
        from walship.config import open_log

        if path is not None:
            options["path"] = path
        if store is not None:
            options["store"] = store
        return open_log(config, **options)
    if (path is None) == (store is None):
        raise ValueError("give exactly one of path or store (or a config)")
    if store is None:
        from walship.backends.posix import PosixStore

        assert path is not None
        store = PosixStore(path)
    if "plugins" in options:
        from walship.plugins.manager import collect_plugins

        options["plugins"] = collect_plugins(
            options["plugins"], autoload=options.pop("entry_point_plugins", True)
        )
        options["entry_point_plugins"] = False
    from walship.wiring import build_log

    return build_log(store, **options)


def open_archive(url: str, storage_options: Mapping[str, Any] | None = None) -> ArchiveReader:
    """Read a log straight from its archive: ``open_archive(url).read(from_seq=N)`` streams
    frames, each segment checked against its manifest and the chain (see
    :class:`walship.archive.reader.ArchiveReader`). fsspec (and s3fs) load only when this is
    called.
    """
    from walship.archive.reader import open_archive as _open_archive

    return _open_archive(url, storage_options)


__all__ = [
    "ArchiveBucketMissingError",
    "ArchiveConflictError",
    "ArchiveError",
    "ArchiveIntegrityError",
    "ArchiveMissingError",
    "ArchiveNameError",
    "ArchiveReadOnlyError",
    "ArchiveRecordError",
    "ArchiveStorageError",
    "ArchiveUnsupportedError",
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
    "LockLostError",
    "Log",
    "LogClosedError",
    "LogCorruptError",
    "LogFailedError",
    "LogForkedError",
    "ManualClock",
    "PayloadError",
    "PlatformUnsupportedError",
    "PluginError",
    "Problem",
    "ProblemKind",
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
]
