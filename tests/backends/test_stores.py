"""The store conformance suite (:mod:`walship.testing.store_contract`) on both stores and the
fault-injecting wrapper; the POSIX store's specifics; the memory store's model."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from walship.backends.memory import MemoryStore
from walship.backends.platform import RWF_DSYNC
from walship.backends.posix import LOCK_NAME, RESERVE_NAME, PosixStore
from walship.errors import StoreLockedError
from walship.store import SegmentStore
from walship.testing.faults import FaultyStore
from walship.testing.store_contract import StoreContract


class TestPosixStoreContract(StoreContract):
    own_names = frozenset({LOCK_NAME, RESERVE_NAME})

    def make_store(self, tmp_path: Path) -> SegmentStore:
        return PosixStore(tmp_path / "wal")

    def make_other(self, store: SegmentStore, tmp_path: Path) -> SegmentStore:
        return PosixStore(tmp_path / "wal")


class TestMemoryStoreContract(StoreContract):
    def make_store(self, tmp_path: Path) -> SegmentStore:
        return MemoryStore()


class TestFaultyStoreContract(StoreContract):
    """The fault-injecting wrapper, unarmed, is a store like the one it wraps."""

    def make_store(self, tmp_path: Path) -> SegmentStore:
        return FaultyStore(MemoryStore())


def test_posix_lock_names_the_other_writer(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "wal")
    store.lock()
    with pytest.raises(StoreLockedError, match="locked by another writer"):
        PosixStore(tmp_path / "wal").lock()
    store.close()


def test_posix_lock_excludes_another_process(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "wal")
    store.lock()
    code = (
        "import sys; from walship.backends.posix import PosixStore\n"
        "from walship.errors import StoreLockedError\n"
        f"s = PosixStore({str(tmp_path / 'wal')!r})\n"
        "try:\n    s.lock()\nexcept StoreLockedError as e:\n    print(e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert "locked by another writer" in out.stdout
    store.close()
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_posix_file_modes_are_not_world_writable(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "wal")
    store.lock()
    store.create("seg", b"x").close()
    store.write_atomic("rec", b"y")
    for name in ("seg", "rec", LOCK_NAME):
        mode = stat.S_IMODE(os.stat(tmp_path / "wal" / name).st_mode)
        assert not mode & stat.S_IWOTH, (name, oct(mode))
        assert not mode & stat.S_IROTH, (name, oct(mode))
    store.close()


def test_posix_finishes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PosixStore(tmp_path)
    f = store.create("s", b"")
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:3])  # at most 3 bytes per call

    monkeypatch.setattr(os, "write", short_write)
    f.write(b"0123456789")
    monkeypatch.undo()
    assert store.read("s") == b"0123456789"
    assert len(calls) == 4
    assert f.size == 10


def test_posix_finishes_short_gathering_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PosixStore(tmp_path)
    f = store.create("s", b"")
    real_writev = os.writev

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        return real_writev(fd, [b"".join(bytes(b) for b in buffers)[:3]])  # 3 bytes at most

    monkeypatch.setattr(os, "writev", short_writev)
    f.write_many([b"0123", b"45", b"6789"])
    monkeypatch.undo()
    assert store.read("s") == b"0123456789"
    assert f.size == 10


@pytest.mark.skipif(RWF_DSYNC is None, reason="no pwritev2 with RWF_DSYNC here")
def test_posix_finishes_a_short_durable_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PosixStore(tmp_path)
    f = store.create("s", b"ab")
    real_pwritev = os.pwritev

    def short_pwritev(fd: int, buffers: list[bytes], offset: int, flags: int) -> int:
        return real_pwritev(fd, [b"".join(bytes(b) for b in buffers)[:3]], offset, flags)

    monkeypatch.setattr(os, "pwritev", short_pwritev)
    f.write_durable([b"0123", b"456789"])
    monkeypatch.undo()
    assert store.read("s") == b"ab0123456789"
    assert f.size == 12
    f.write(b"!")  # and the file goes on at its end
    assert store.read("s") == b"ab0123456789!"


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_posix_write_error_keeps_size_honest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store = PosixStore(tmp_path)
    f = store.create("s", b"ab")
    real_write = os.write
    state = {"n": 0}

    def failing(fd: int, data: bytes | memoryview) -> int:
        state["n"] += 1
        if state["n"] == 1:
            return real_write(fd, bytes(data)[:2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(OSError) as raised:
        f.write(b"123456")
    monkeypatch.undo()
    assert raised.value.errno == code
    if code == errno.EIO:
        assert f.size == 4  # the two bytes that did land are counted
        assert store.read("s") == b"ab12"
    else:  # a full disk: the write took its bytes back, and the error names file and space
        assert f"no space left on device writing {tmp_path / 's'} (" in str(raised.value)
        assert "bytes free" in str(raised.value)
        assert f.size == 2
        assert store.read("s") == b"ab"
        f.write(b"cd")  # and the file goes on at its end
        assert store.read("s") == b"abcd"


def test_posix_rejects_names_outside_its_directory(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "wal")
    for bad in ["../x", "a/b", "..", ""]:
        with pytest.raises(ValueError, match="invalid file name"):
            store.create(bad, b"")


# --- the memory store's durability model ----------------------------------------------------


def test_memory_crash_drops_unsynced_bytes() -> None:
    s = MemoryStore()
    f = s.create("a", b"H")
    f.write(b"synced")
    f.sync()
    f.write(b"lost")
    assert s.unsynced_bytes("a") == 4
    s.crash()
    assert s.read("a") == b"Hsynced"
    with pytest.raises(OSError):
        f.write(b"after crash")  # handles die with the "machine"


@pytest.mark.parametrize("keep", range(0, 6))
def test_memory_crash_tears_the_last_write(keep: int) -> None:
    s = MemoryStore()
    other = s.create("other", b"")
    other.write(b"unsynced elsewhere")
    f = s.create("a", b"")
    f.write(b"12345")
    s.crash(keep_unsynced=keep, garbage=b"\x00\x00")
    assert s.read("a") == b"12345"[:keep] + b"\x00\x00"
    assert s.read("other") == b""  # only the last write can be torn


def test_memory_crash_releases_the_lock() -> None:
    s = MemoryStore()
    s.lock()
    s.crash()
    s.lock()


def test_memory_durable_operations_survive_a_crash() -> None:
    s = MemoryStore()
    f = s.create("a", b"hdr")
    f.write(b"data")
    s.truncate("a", 5)  # truncate fsyncs: what is left is durable
    s.write_atomic("rec", b"r")
    s.rename("rec", "rec2")
    s.crash()
    assert s.files() == {"a": b"hdrda", "rec2": b"r"}


def test_open_syncs_the_directory_of_a_resumed_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import walship
    from walship.backends import posix

    with walship.open(tmp_path) as log:
        log.append(b"x")
    synced: list[str] = []
    real = posix.fsync_dir
    monkeypatch.setattr(posix, "fsync_dir", lambda p: (synced.append(str(p)), real(p))[1])
    with walship.open(tmp_path) as log:
        assert str(tmp_path) in synced  # before any append claims durability
        assert log.durable_seq == 1


def test_memory_unsynced_bytes_of_a_removed_file_is_a_clear_error() -> None:
    s = MemoryStore()
    s.create("a", b"x").close()
    s.remove("a")
    with pytest.raises(FileNotFoundError):
        s.unsynced_bytes("a")


def test_memory_capacity_is_checked() -> None:
    for bad in ("1MiB", -1, 1.5):
        with pytest.raises(TypeError, match="capacity must be a number of bytes"):
            MemoryStore(capacity=bad)  # type: ignore[arg-type]
    disk = MemoryStore(capacity=10)
    f = disk.create("a", b"12345")
    with pytest.raises(OSError, match=r"no space left on device writing memory:a \(5 bytes free\)"):
        f.write(b"123456")
    assert disk.read("a") == b"12345"  # nothing of the failed write
    f.write(b"67890")
    disk.set_capacity(None)
    f.write(b"more")
    assert disk.used() == 14
