"""A real full filesystem: a small tmpfs and a loop-mounted ext4, mounted per test.

On a full disk a log opens (a reservation that does not fit degrades to plain appends), reads,
verifies, archives (to a file:// archive on another filesystem) and is restored from it; an
append fails closed with ENOSPC naming the file and the free space; once space is freed a reopen
appends again, with every acknowledged frame intact. Needs root (mount); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import walship
from reliability.support import FIGURES
from walship.archive.restore import restore
from walship.errors import LogFailedError

SEGMENT = 256 * 1024


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def mounted(kind: str, where: Path) -> Iterator[Path]:
    """Mount a fresh small filesystem of ``kind`` at ``where`` (unique per test); always
    unmount it (and remove its image) afterwards."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("a real full filesystem needs root (mount)")
    mnt = where / "mnt"
    mnt.mkdir()
    image = where / "fs.img"
    try:
        if kind == "tmpfs":
            _run("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt))
        else:
            _run("truncate", "-s", "32M", str(image))
            _run("mkfs.ext4", "-q", "-m", "0", str(image))
            _run("mount", "-o", "loop", str(image), str(mnt))
    except (OSError, subprocess.CalledProcessError) as e:
        image.unlink(missing_ok=True)
        pytest.skip(f"cannot mount a {kind} here: {getattr(e, 'stderr', b'') or e}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        image.unlink(missing_ok=True)


@pytest.fixture(params=["tmpfs", "ext4"])
def small_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    with mounted(request.param, tmp_path) as mnt:
        yield mnt


def fill(directory: Path, name: str = "ballast") -> Path:
    """Write a file in ``directory`` until the filesystem is full; return it."""
    path = directory / name
    chunk = b"\xaa" * 65536
    with open(path, "ab", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    with contextlib.suppress(OSError), open(path, "ab", buffering=0) as f:
        while True:  # the last bytes of the last block
            f.write(b"\xaa")
    return path


def leave_free(directory: Path, free: int) -> Path:
    """Take all but about ``free`` bytes of the filesystem with a file (fast to fill)."""
    path = directory / "taken"
    with open(path, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(1, shutil.disk_usage(directory).free - free))
    return path


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from walship.cli import main; main()", "verify", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def options(archive: str) -> dict[str, object]:
    return {
        "max_segment_bytes": SEGMENT,
        "archive": {"url": archive, "retries": {"attempts": 2, "backoff": 0.01}},
        "retention": {"keep_local": "all"},
    }


def append_until_full(log: walship.Log, acked: dict[int, bytes], size: int) -> LogFailedError:
    for i in range(10**6):
        payload = (b"%08d" % (len(acked) + i)) * (size // 8)
        try:
            acked[log.append(payload)] = payload
        except LogFailedError as e:
            return e
    raise AssertionError("the filesystem never filled")


@pytest.mark.parametrize("size", [1000, 40_000], ids=["small-frames", "large-frames"])
def test_a_full_disk_fails_closed_and_loses_nothing(
    small_fs: Path, tmp_path: Path, size: int
) -> None:
    wal = small_fs / "wal"
    archive = (tmp_path / "archive").as_uri()  # another filesystem
    spare = small_fs / "spare"
    spare.write_bytes(b"\0" * (512 * 1024))  # freed at the end
    leave_free(small_fs, 3 << 20)  # a few segments' worth: fills in seconds
    acked: dict[int, bytes] = {}
    log = walship.open(wal, **options(archive))
    failure = append_until_full(log, acked, size)
    cause = failure.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC, failure
    assert f"no space left on device writing {wal}/segment_" in str(failure)
    assert "bytes free" in str(failure)
    with pytest.raises(LogFailedError):
        log.close()
    assert len(acked) > 10

    # full: it opens, reads, verifies, and refuses a large append, failing closed
    log = walship.open(wal, **options(archive))
    assert not log.recovery.salvaged
    assert {f.commit_seq: f.payload for f in log.read()} == acked
    assert log.archiver is not None and log.archiver.flush(timeout=60)  # the reserve's use
    with pytest.raises(LogFailedError, match="no space left on device"):
        for _ in range(64):
            acked[log.append(b"x" * 65536)] = b"x" * 65536
    with pytest.raises(LogFailedError):
        log.close()
    result = verify(wal)
    assert result.returncode == 0, result.stdout + result.stderr

    # restore: from the archive to another filesystem works; into the full one, a clear error
    restored = tmp_path / "restored"
    restore(archive, restored)
    with walship.open(restored) as copy:
        got = [(f.commit_seq, f.payload) for f in copy.read()]
    assert got == sorted(acked.items())[: len(got)]  # a prefix: what was archived
    with pytest.raises(OSError, match="no space left on device") as raised:
        restore(archive, small_fs / "restored")
    assert raised.value.errno == errno.ENOSPC
    assert not (small_fs / "restored").exists()
    assert [p.name for p in small_fs.iterdir() if p.name.startswith(".restored")] == []

    # space freed: a reopen appends again, archives everything, and loses nothing
    spare.unlink()
    with walship.open(wal, **options(archive)) as log:
        for i in range(5):
            acked[log.append(b"after %d" % i)] = b"after %d" % i
        assert {f.commit_seq: f.payload for f in log.read()} == acked
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    FIGURES["full_disk.runs"] += 1
    FIGURES["full_disk.acknowledged_frames"] += len(acked)


def test_a_full_disk_at_rotation_and_at_reopen(small_fs: Path, tmp_path: Path) -> None:
    """The active segment's reservation lets appends go on into a full disk until the
    rotation needs a new file: that fails closed; the reopen on the full disk (which used to
    raise from posix_fallocate) works, and the log goes on once space is freed."""
    wal = small_fs / "wal"
    archive = (tmp_path / "archive").as_uri()
    acked: dict[int, bytes] = {}
    with walship.open(wal, **options(archive)) as log:
        acked[log.append(b"first")] = b"first"
    with walship.open(wal, **options(archive)) as log:
        ballast = fill(small_fs)
        failure = append_until_full(log, acked, 1000)
        assert "no space left on device" in str(failure)
        with pytest.raises(LogFailedError):
            log.close()
    names = sorted(p.name for p in wal.iterdir())
    assert all(p.stat().st_size >= 64 for p in wal.glob("segment_*")), names  # no torn create
    with walship.open(wal, **options(archive)) as log:  # on the full disk
        assert {f.commit_seq: f.payload for f in log.read()} == acked
    assert verify(wal).returncode == 0
    os.truncate(ballast, 0)
    with walship.open(wal, **options(archive)) as log:
        acked[log.append(b"after")] = b"after"
        assert {f.commit_seq: f.payload for f in log.read()} == acked
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    FIGURES["full_disk.rotation_runs"] += 1


def test_archiving_and_retention_free_a_full_disk(small_fs: Path, tmp_path: Path) -> None:
    """With ``keep_local: until_archived`` the way out of a full disk needs nobody: the
    archive record is written from the writer's reserve, retention removes the archived
    segments, and appends go on."""
    wal = small_fs / "wal"
    opts = options((tmp_path / "archive").as_uri())
    opts["retention"] = {"keep_local": "until_archived"}
    leave_free(small_fs, 3 << 20)
    acked: dict[int, bytes] = {}
    log = walship.open(wal, **opts)
    assert log.archiver is not None
    log.archiver.close()  # archiving stalls: the disk fills with unarchived segments
    failure = append_until_full(log, acked, 1000)
    assert "no space left on device" in str(failure)
    with pytest.raises(LogFailedError):
        log.close()
    with walship.open(wal, **opts) as log:  # on the full disk
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        deadline = time.monotonic() + 30
        while shutil.disk_usage(small_fs).free < SEGMENT and time.monotonic() < deadline:
            time.sleep(0.05)  # retention removes what is archived
        assert shutil.disk_usage(small_fs).free >= SEGMENT
        for i in range(20):
            acked[log.append(b"%d" % i * 1000)] = b"%d" % i * 1000
    restored = tmp_path / "restored"
    with walship.open(wal, **opts) as log:
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    restore(opts["archive"]["url"], restored)  # type: ignore[index]
    with walship.open(restored) as copy:
        assert {f.commit_seq: f.payload for f in copy.read()} == acked
    FIGURES["full_disk.freed_by_retention"] += 1


def fill_cycle(fs: Path, rng: random.Random, durability: str) -> int:
    """One history: a nearly full disk, appends (single and batches) until it is full, a
    reopen on the full disk, space freed, a reopen that goes on. Returns the frames checked."""
    wal = fs / "wal"
    shutil.rmtree(wal, ignore_errors=True)
    taken = leave_free(fs, rng.randrange(256 * 1024, 3 << 20))
    opts = {"max_segment_bytes": rng.choice([64 * 1024, SEGMENT]), "durability": durability}
    acked: dict[int, bytes] = {}
    log = walship.open(wal, **opts)
    size = rng.choice([100, 1000, 9000, 70_000])
    try:
        while True:
            if rng.random() < 0.3:
                batch = [b"%d" % rng.getrandbits(64) * (size // 20 + 1) for _ in range(8)]
                acked.update(zip(log.append_batch(batch), batch, strict=True))
            else:
                payload = b"%d" % rng.getrandbits(64) * (size // 20 + 1)
                acked[log.append(payload)] = payload
    except LogFailedError as e:
        assert "no space left on device" in str(e), e
    durable = log.durable_seq
    with contextlib.suppress(LogFailedError):
        log.close()
    with walship.open(wal, **opts) as again:
        got = {f.commit_seq: f.payload for f in again.read()}
    for seq, payload in acked.items():  # durable ones surely; the rest were written whole
        assert got.get(seq) == payload or (seq > durable and seq not in got), seq
    taken.unlink()
    with walship.open(wal, **opts) as again:
        seq = again.append(b"after")
        got = {f.commit_seq: f.payload for f in again.read()}
    assert got[seq] == b"after" and all(got[s] == acked[s] for s in got if s in acked)
    return len(got)


@pytest.mark.parametrize("durability", ["always", "interval", "none"])
def test_fill_cycles(small_fs: Path, durability: str) -> None:
    rng = random.Random(f"{small_fs}-{durability}")
    FIGURES["full_disk.frames_checked"] += fill_cycle(small_fs, rng, durability)
    FIGURES["full_disk.cycles"] += 1


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["always", "interval", "none"])
def test_fill_cycles_long(small_fs: Path, durability: str) -> None:
    rng = random.Random(f"{small_fs}-{durability}-long")
    for _ in range(25):
        FIGURES["full_disk.frames_checked"] += fill_cycle(small_fs, rng, durability)
        FIGURES["full_disk.cycles"] += 1


@pytest.mark.parametrize("durability", ["always", "interval", "none"])
def test_a_full_memory_disk(durability: str) -> None:
    """The memory model of a small disk (no root needed): the same promises."""
    from walship.backends.memory import MemoryStore

    disk = MemoryStore(capacity=64 * 1024)
    acked: dict[int, bytes] = {}
    log = walship.open(store=disk, durability=durability, max_segment_bytes=8192)
    failure = append_until_full(log, acked, 300)
    assert "no space left on device writing memory:segment_" in str(failure)
    assert disk.used() <= 64 * 1024
    with contextlib.suppress(LogFailedError):
        log.close()
    disk.crash()  # and a power loss on top
    with walship.open(store=disk, durability=durability) as again:
        got = {f.commit_seq: f.payload for f in again.read()}
    durable = max(got) if got else 0
    assert all(acked[s] == p for s, p in got.items())
    if durability == "always":
        assert got == acked
    disk.set_capacity(None)
    with walship.open(store=disk, durability=durability, max_segment_bytes=8192) as again:
        seq = again.append(b"after")
        assert seq == durable + 1
        assert {f.commit_seq: f.payload for f in again.read()} == {**got, seq: b"after"}


def test_full_disk_cleanup_of_the_fixture(tmp_path: Path) -> None:
    """The fixture leaves nothing mounted behind."""
    with mounted("tmpfs", tmp_path) as mnt:
        (mnt / "x").write_bytes(b"x")
    assert not os.path.ismount(tmp_path / "mnt")
    assert not (tmp_path / "mnt" / "x").exists()
    shutil.rmtree(tmp_path / "mnt")
