"""Permissions: what the POSIX store creates is not world-writable, whatever the umask.

Segment files, side files of cut bytes, the lock file and the directory are checked on real
files with the umask at 0 (nothing masked), so the modes are exactly the ones the store asks
for: files 0o640 (owner read/write, group read), the directory 0o750.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import walship
from walship.backends.posix import DIR_MODE, FILE_MODE, LOCK_NAME


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nothing_is_world_writable(tmp_path: Path, no_umask: None) -> None:
    wal = tmp_path / "deep" / "wal"
    log = walship.open(wal, max_segment_bytes=200, entry_point_plugins=False)
    for i in range(10):
        log.append(b"x" * 50 + bytes([i]))
    log.rotate()
    log.close()
    last = max(p for p in wal.iterdir() if p.name.endswith(".aedbwal"))
    with last.open("ab") as f:  # a torn tail for recovery to cut
        f.write(b"\0\0\0\x30torn")
    log = walship.open(wal, entry_point_plugins=False)
    assert log.recovery.repairs
    log.close()

    files = sorted(p for p in wal.iterdir())
    names = {p.name for p in files}
    assert LOCK_NAME in names
    assert any(".torn-" in n for n in names)
    assert sum(n.endswith(".aedbwal") for n in names) >= 3
    for p in files:
        assert mode(p) & (stat.S_IWOTH | stat.S_IWGRP) == 0, f"{p.name} is writable by others"
        assert mode(p) == FILE_MODE, f"{p.name} has mode {oct(mode(p))}"
    assert mode(wal) == DIR_MODE
    assert mode(wal) & stat.S_IWOTH == 0
    assert FILE_MODE & 0o022 == 0 and DIR_MODE & 0o022 == 0
