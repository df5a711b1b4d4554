"""Start-up restore and leftovers: ``restore --if-missing`` does nothing when the directory
holds a log, ``--allow-empty`` creates an empty log when the archive holds none (a container
runs both unconditionally before its service, every start), and a restore killed by SIGKILL or
SIGTERM leaves a staging directory that the next restore into the same directory removes
(never one a live restore owns)."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from archive_target import Archive, archived_log, frames_in, make_archive
from click.testing import CliRunner

import walship
from walship.archive import ArchiveStore
from walship.archive.restore import restore
from walship.archive.staging import clean_leftovers, holds_log
from walship.backends.platform import try_lock
from walship.cli import build_cli
from walship.core.header import segment_name
from walship.core.record import RECORD_NAME
from walship.errors import RestoreError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "file", "moto"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    a = make_archive(request.param, tmp_path)
    yield a
    a.remove()


def poisoned(tmp_path: Path) -> str:
    """A memory:// archive that any LIST refuses: proof that a restore did not ask it."""
    url = f"memory://poison-{secrets.token_hex(6)}/wal"
    store = ArchiveStore(url)
    store.fs.pipe_file(f"{store.root}/segment_1.aedbwal", b"x")
    return url


def service(directory: Path, archive: Archive, payloads: list[bytes]) -> None:
    """What the container's service does after the restore: open, append, archive, close."""
    settings = {
        "url": archive.url,
        "storage_options": archive.storage_options,
        "upload_process": False,
    }
    with walship.open(directory, archive=settings) as log:
        for p in payloads:
            log.append(p)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)


# --- --if-missing ------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["segment", "walship.lock", RECORD_NAME])
def test_if_missing_does_nothing_when_the_directory_holds_a_log(
    tmp_path: Path, marker: str
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    name = segment_name(3) if marker == "segment" else marker
    (d / name).write_bytes(b"")
    before = sorted(os.listdir(d))
    assert holds_log(d)
    result = restore(poisoned(tmp_path), d, if_missing=True)
    assert result.outcome == "present" and result.segments == 0 and result.frames == 0
    assert "nothing restored" in result.summary()
    assert sorted(os.listdir(d)) == before


def test_if_missing_still_refuses_a_directory_holding_something_else(tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "lost+found").mkdir(parents=True)
    assert not holds_log(d) and not holds_log(tmp_path / "absent")
    with pytest.raises(RestoreError, match="not an empty directory"):
        restore("memory://nothing-here/wal", d, if_missing=True, allow_empty=True)


def test_if_missing_restores_into_an_absent_or_empty_directory(
    archive: Archive, tmp_path: Path
) -> None:
    written = archived_log(archive, segments=2, frames=3)
    (tmp_path / "empty").mkdir()
    for d in (tmp_path / "absent", tmp_path / "empty"):
        result = restore(archive.url, d, storage_options=archive.storage_options, if_missing=True)
        assert result.outcome == "restored" and frames_in(d) == written


# --- --allow-empty ---------------------------------------------------------------------------


def test_an_empty_archive_is_refused_without_allow_empty(archive: Archive, tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="holds no archived segments"):
        restore(archive.url, tmp_path / "d", storage_options=archive.storage_options)
    assert not (tmp_path / "d").exists()


def test_allow_empty_creates_an_empty_log_that_appends_and_archives(
    archive: Archive, tmp_path: Path
) -> None:
    d = tmp_path / "d"
    result = restore(archive.url, d, storage_options=archive.storage_options, allow_empty=True)
    assert result.outcome == "created" and result.active_segment == segment_name(1)
    assert sorted(os.listdir(d)) == [segment_name(1), RECORD_NAME]
    assert [p.name for p in tmp_path.iterdir() if "walship-restore" in p.name] == []
    assert frames_in(d) == []
    service(d, archive, [b"a", b"b"])  # the archive held no segment: a new log is not refused
    again = tmp_path / "again"
    restore(archive.url, again, storage_options=archive.storage_options, allow_empty=True)
    assert [f.payload for f in frames_in(again)] == [b"a", b"b"]


def test_allow_empty_on_an_archive_that_does_not_exist_yet(tmp_path: Path) -> None:
    url = (tmp_path / "no" / "archive").as_uri()
    result = restore(url, tmp_path / "d", allow_empty=True, if_missing=True)
    assert result.outcome == "created"
    with walship.open(tmp_path / "d") as log:
        assert log.append(b"x") == 1


# --- the container's start-up, twice ---------------------------------------------------------


def start(archive: Archive, directory: Path) -> subprocess.CompletedProcess[str]:
    """``walship restore URL DIR --if-missing --allow-empty``, as a container runs it."""
    command = [sys.executable, "-m", "walship", "restore", archive.url, str(directory)]
    return subprocess.run(
        [*command, "--if-missing", "--allow-empty", *archive.cli_options()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize("kind", ["file", "moto"])
def test_a_container_restores_unconditionally_at_every_start(tmp_path: Path, kind: str) -> None:
    archive = make_archive(kind, tmp_path)
    try:
        d = tmp_path / "data" / "wal"
        d.parent.mkdir()
        first = start(archive, d)  # first deployment: the archive is empty
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("\n") == 1 and "created an empty log" in first.stdout
        service(d, archive, [b"one", b"two"])
        second = start(archive, d)  # a restart: the log is there
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("\n") == 1 and "nothing restored" in second.stdout
        service(d, archive, [b"three"])
        assert [f.payload for f in frames_in(d)] == [b"one", b"two", b"three"]
        for p in d.iterdir():  # the volume is lost: the next start restores from the archive
            p.unlink()
        d.rmdir()
        third = start(archive, d)
        assert third.returncode == 0 and "restored" in third.stdout, third.stderr
        fourth = start(archive, d)
        assert fourth.returncode == 0 and "nothing restored" in fourth.stdout, fourth.stderr
        service(d, archive, [b"four"])
        assert [f.payload for f in frames_in(d)] == [b"one", b"two", b"three", b"four"]
    finally:
        archive.remove()


def test_the_cli_flags_through_clicks_runner(tmp_path: Path) -> None:
    url = (tmp_path / "archive").as_uri()
    runner = CliRunner()
    d = tmp_path / "d"
    r = runner.invoke(build_cli(), ["restore", url, str(d), "--allow-empty"])
    assert r.exit_code == 0 and "created an empty log" in r.output, r.output
    r = runner.invoke(build_cli(), ["restore", url, str(d), "--if-missing"])
    assert r.exit_code == 0 and "nothing restored" in r.output, r.output
    r = runner.invoke(build_cli(), ["restore", url, str(d)])
    assert r.exit_code != 0  # without --if-missing a directory holding a log is refused


# --- leftovers ---------------------------------------------------------------------------------


def leftover(parent: Path, target: str, locked: bool = False) -> tuple[Path, int | None]:
    staging = parent / f".{target}.walship-restore-{secrets.token_hex(4)}"
    staging.mkdir()
    (staging / segment_name(1)).write_bytes(b"partial")
    fd = os.open(staging.with_name(staging.name + ".lock"), os.O_RDWR | os.O_CREAT)
    if locked:
        assert try_lock(fd, "test")
        return staging, fd
    os.close(fd)
    return staging, None


def test_clean_leftovers_removes_only_what_is_safely_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "walship.archive")
    dead, _ = leftover(tmp_path, "wal")
    live, fd = leftover(tmp_path, "wal", locked=True)
    other, _ = leftover(tmp_path, "wal2")  # another directory's
    lockless = tmp_path / f".wal.walship-restore-{secrets.token_hex(4)}"
    lockless.mkdir()
    try:
        assert clean_leftovers(tmp_path / "wal") == [dead.name]
        assert not dead.exists() and not dead.with_name(dead.name + ".lock").exists()
        assert live.exists() and other.exists() and lockless.exists()
        assert any(dead.name in m and "removed" in m for m in caplog.messages)
        assert any(lockless.name in m and "left alone" in m for m in caplog.messages)
    finally:
        assert fd is not None
        os.close(fd)
    assert clean_leftovers(tmp_path / "wal") == [live.name]  # its owner is gone now


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from walship.archive.restore import restore

    def progress(p):
        if p.done_segments == 2:
            Path(sys.argv[3]).write_text("paused")
            time.sleep(600)

    restore(sys.argv[1], sys.argv[2], jobs=1, progress=progress)
    """
)


def paused_restore(url: str, target: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A restore in a child process, paused after its second segment (its staging directory
    half written)."""
    marker = tmp_path / f"paused-{secrets.token_hex(3)}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(target), str(marker)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return child


def staging_dirs(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".walship-restore-" in p.name)


def five_segments(tmp_path: Path) -> tuple[Archive, list[Any], Path]:
    """A file:// archive of 5 segments, its frames, and a target in a fresh parent."""
    archive = Archive((tmp_path / "archive").as_uri())
    written = archived_log(archive, segments=5, frames=4)
    (tmp_path / "data").mkdir()
    return archive, written, tmp_path / "data" / "wal"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_restore_leaves_a_leftover_the_next_restore_removes(
    tmp_path: Path, how: signal.Signals
) -> None:
    archive, written, target = five_segments(tmp_path)
    parent = target.parent
    child = paused_restore(archive.url, target, tmp_path)
    child.send_signal(how)
    child.wait(timeout=30)
    left = staging_dirs(parent)
    assert len(left) == 2 and not target.exists()  # the staging directory and its lock file
    result = restore(archive.url, target)
    assert result.segments == 5 and frames_in(target) == written
    assert staging_dirs(parent) == []


def test_a_live_restores_staging_directory_is_left_alone(tmp_path: Path) -> None:
    archive, written, target = five_segments(tmp_path)
    parent = target.parent
    child = paused_restore(archive.url, target, tmp_path)
    try:
        live = staging_dirs(parent)
        assert len(live) == 2
        with pytest.raises(RestoreError, match="another restore into this directory"):
            restore(archive.url, target)  # a second restore into the same directory
        assert staging_dirs(parent) == live  # the live one's is untouched
    finally:
        child.kill()
        child.wait(timeout=30)
    restore(archive.url, parent / "elsewhere")
    assert staging_dirs(parent) == live  # another directory's restore removes nothing
    restore(archive.url, target, if_missing=True)
    assert staging_dirs(parent) == []  # the next restore into it cleans up (even a no-op one)
    assert frames_in(target) == written
