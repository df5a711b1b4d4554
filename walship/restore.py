"""The public path of restore, kept for code written against it.

The implementation lives in :mod:`walship.archive.restore`; this module only re-exports it.
"""

from walship.archive.restore import (
    ArchiveReader,
    RestoreProgress,
    RestoreResult,
    open_archive,
    parse_time,
    restore,
)
from walship.errors import RestoreError

__all__ = [
    "ArchiveReader",
    "RestoreError",
    "RestoreProgress",
    "RestoreResult",
    "open_archive",
    "parse_time",
    "restore",
]
