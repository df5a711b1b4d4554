"""The public path of restore, kept for code written against it.

The implementation lives in :mod:`walship.archive.restore` (and reading an archive in place in
:mod:`walship.archive.reader`); this module only re-exports it.
"""

from walship.archive.checkpoints import SNAPSHOT_FILE
from walship.archive.reader import ArchiveReader, open_archive
from walship.archive.restore import RestoreProgress, RestoreResult, parse_time, restore
from walship.errors import RestoreError

__all__ = [
    "SNAPSHOT_FILE",
    "ArchiveReader",
    "RestoreError",
    "RestoreProgress",
    "RestoreResult",
    "open_archive",
    "parse_time",
    "restore",
]
