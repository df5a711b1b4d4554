"""The single-writer lock under hostile clean-up: ``walship.lock`` removed or replaced, by
another process, while a log is open, and processes racing to open one directory.

Never two writers: a second opener is refused while the first holds the log, whatever
happened to the lock file; the first notices at its next rotation (or sync) and locks a new
lock file; every acknowledged frame of every writer is in the log at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import walship
from reliability.support import FIGURES
from walship.backends import platform as backend_platform
from walship.backends.posix import LOCK_NAME, PosixStore
from walship.errors import LockLostError, LogFailedError, StoreLockedError

PYTHON = sys.executable


def in_other_process(code: str) -> None:
    """Run ``code`` (``d`` is the log directory) in a fresh interpreter: a clean-up job."""
    subprocess.run([PYTHON, "-c", textwrap.dedent(code)], check=True, timeout=60)


def other_open(d: Path) -> str:
    """Try to open ``d`` as a writer from another process; its one-line outcome."""
    code = f"""
        import walship
        try:
            walship.open({str(d)!r}).close()
            print("opened")
        except walship.StoreLockedError as e:
            print("refused:", e)
    """
    out = subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def remove_lock(d: Path) -> None:
    in_other_process(f"import os; os.unlink({str(d / LOCK_NAME)!r})")


def replace_lock(d: Path) -> None:
    """What an over-eager clean-up or a copy does: a new file renamed over the lock file."""
    in_other_process(
        f"""
        import os
        open({str(d / "new.lock")!r}, "w").close()
        os.replace({str(d / "new.lock")!r}, {str(d / LOCK_NAME)!r})
        """
    )


@pytest.mark.parametrize("hostile", [remove_lock, replace_lock], ids=["removed", "replaced"])
def test_lock_file_removed_or_replaced_keeps_a_second_writer_out(
    tmp_path: Path, hostile: object
) -> None:
    assert callable(hostile)
    with walship.open(tmp_path, max_segment_bytes=4096) as log:
        log.append(b"first")
        hostile(tmp_path)
        refused = other_open(tmp_path)
        assert refused.startswith("refused:") and "locked by another writer" in refused
        before = (tmp_path / LOCK_NAME).stat().st_ino if (tmp_path / LOCK_NAME).exists() else 0
        log.rotate()  # the writer notices at its next segment and locks a new lock file
        lock = tmp_path / LOCK_NAME
        assert lock.is_file()
        assert lock.read_text().strip() == str(os.getpid())
        assert other_open(tmp_path).startswith("refused:")
        if before:  # a replacement was kept, and it is the file now locked
            assert lock.stat().st_ino == before
        log.append(b"second")
    assert other_open(tmp_path) == "opened"
    with walship.open(tmp_path) as log:
        assert [f.payload for f in log.read()] == [b"first", b"second"]


def test_a_refused_opener_is_told_the_holder(tmp_path: Path) -> None:
    with walship.open(tmp_path):
        assert f"held by pid {os.getpid()}" in other_open(tmp_path)


def test_a_sync_notices_a_removed_lock_file(tmp_path: Path) -> None:
    with walship.open(tmp_path) as log:
        log.append(b"a")
        (tmp_path / LOCK_NAME).unlink()
        time.sleep(1.1)  # the check runs at most once a second at a sync
        log.append(b"b")
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_without_a_directory_lock_a_replaced_lock_file_fails_the_log_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the directory cannot be locked (NFS, Windows) the lock file alone guards the log:
    once it is gone another writer may have come and gone, so the log stops."""
    import walship.backends.posix as posix

    monkeypatch.setattr(posix, "lock_directory", lambda path: None)
    log = walship.open(tmp_path)
    log.append(b"kept")
    (tmp_path / LOCK_NAME).unlink()
    with pytest.raises(LogFailedError, match="was removed or replaced while this log held it"):
        log.rotate()
    with pytest.raises(LogFailedError):
        log.close()
    with walship.open(tmp_path) as log:
        assert [f.payload for f in log.read()] == [b"kept"]


def test_a_new_lock_file_held_by_someone_else_fails_the_log_closed(tmp_path: Path) -> None:
    store = PosixStore(tmp_path)
    store.lock()
    (tmp_path / LOCK_NAME).unlink()
    foreign = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        assert backend_platform.try_lock(foreign, "test")  # e.g. an older walship, file lock only
        with pytest.raises(LockLostError, match="locked by another process"):
            store.check_lock()
    finally:
        os.close(foreign)
        store.unlock()


def test_the_directory_lock_alone_refuses_a_second_writer(tmp_path: Path) -> None:
    with walship.open(tmp_path):
        (tmp_path / LOCK_NAME).unlink()
        with pytest.raises(StoreLockedError, match="locked by another writer"):
            PosixStore(tmp_path).lock()  # same process, another descriptor: refused too


RACER = """
import os, sys, time, walship
from walship.errors import StoreLockedError
d, me, marks, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
opens = refused = 0
with open(os.path.join(marks, f"acked-{me}"), "a") as acked:
    while time.time() < deadline:
        try:
            log = walship.open(d, max_segment_bytes=2048)
        except StoreLockedError:
            refused += 1
            continue
        # while we hold the log, nobody else may: a marker only one holder can create
        fd = os.open(os.path.join(marks, "holder"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        opens += 1
        for i in range(3):
            seq = log.append(f"{me}-{opens}-{i}".encode())
            acked.write(f"{seq} {me}-{opens}-{i}\\n")
        acked.flush()
        os.unlink(os.path.join(marks, "holder"))
        log.close()
print(opens, refused)
"""

CLEANER = """
import os, sys, time
d, deadline = sys.argv[1], float(sys.argv[2])
n = 0
while time.time() < deadline:
    for name in ("walship.lock",):
        try:
            if n % 2:
                os.unlink(os.path.join(d, name))
            else:
                open(os.path.join(d, "x.tmp"), "w").close()
                os.replace(os.path.join(d, "x.tmp"), os.path.join(d, name))
        except FileNotFoundError:
            pass
    n += 1
    time.sleep(0.001)
print(n)
"""


def race(tmp_path: Path, seconds: float, racers: int) -> None:
    d, marks = tmp_path / "wal", tmp_path / "marks"
    marks.mkdir()
    walship.open(d).close()
    deadline = time.time() + seconds
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", RACER, str(d), str(i), str(marks), str(deadline)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(racers)
    ]
    cleaner = subprocess.Popen(
        [PYTHON, "-c", CLEANER, str(d), str(deadline)], stdout=subprocess.PIPE, text=True
    )
    total_opens = 0
    results = [(p, *p.communicate(timeout=seconds + 120)) for p in procs]
    errors = "\n".join(err for p, _, err in results if p.returncode)
    assert not errors, f"two writers at once, or a racer failed:\n{errors}"
    for _, out, _ in results:
        total_opens += int(out.split()[0])
    cleanups, _ = cleaner.communicate(timeout=60)
    acked: dict[int, bytes] = {}
    for i in range(racers):
        for line in (marks / f"acked-{i}").read_text().splitlines():
            seq, payload = line.split()
            assert int(seq) not in acked, f"commit_seq {seq} handed out twice"
            acked[int(seq)] = payload.encode()
    with walship.open(d) as log:
        got = {f.commit_seq: f.payload for f in log.read()}
    assert got == acked
    assert total_opens > racers  # the processes really took turns
    FIGURES["lock.race_opens"] += total_opens
    FIGURES["lock.race_frames"] += len(acked)
    FIGURES["lock.hostile_cleanups"] += int(cleanups)


def test_processes_racing_to_open_under_hostile_cleanup(tmp_path: Path) -> None:
    race(tmp_path, seconds=4, racers=3)


@pytest.mark.slow
def test_processes_racing_to_open_under_hostile_cleanup_long(tmp_path: Path) -> None:
    race(tmp_path, seconds=120, racers=4)


def test_check_lock_through_the_store_interface(tmp_path: Path) -> None:
    """A caller (e.g. a log under durability ``none``, which rarely syncs) may check; the
    fault wrapper passes it on; an unlocked store has nothing to check."""
    from walship.backends.memory import MemoryStore
    from walship.testing.faults import FaultyStore

    MemoryStore().check_lock()
    PosixStore(tmp_path / "unlocked").check_lock()
    store = FaultyStore(PosixStore(tmp_path / "wal"))
    store.lock()
    try:
        (tmp_path / "wal" / LOCK_NAME).unlink()
        store.check_lock()
        assert (tmp_path / "wal" / LOCK_NAME).read_text().strip() == str(os.getpid())
        assert other_open(tmp_path / "wal").startswith("refused:")
    finally:
        store.unlock()
