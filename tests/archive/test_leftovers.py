"""Leftovers: what a killed restore, a crash and a repair leave beside a log. The next open
removes what is safely its own (dead restores' staging directories, interrupted temporaries);
side files are kept, listed by ``walship verify DIR`` and ``walship status``, and removed by
``walship repair DIR --clean-side-files``. Two restores into one DIR: the second fails with one
clear line. ``walship verify URL`` names foreign objects once."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import walship
from walship.archive.restore import restore
from walship.archive.staging import staging_directory
from walship.cli import build_cli
from walship.core.header import segment_name
from walship.errors import RestoreError

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), [str(a) for a in args])
    return result.exit_code, result.output


def archived_log(tmp_path: Path, segments: int = 2) -> str:
    url = (tmp_path / "archive").as_uri()
    archive = {"url": url, "upload_process": False}
    with walship.open(tmp_path / "source", archive=archive) as log:
        for s in range(segments):
            log.append_batch([b"leftover %d %d" % (s, i) for i in range(4)])
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=20)
    return url


def spawn(code: str) -> subprocess.Popen[str]:
    """A Python child that prints one line when it is ready, then waits on stdin."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_restore_into_the_same_directory_fails_with_one_line(tmp_path: Path) -> None:
    url = archived_log(tmp_path)
    target = tmp_path / "restored"
    holder = spawn(
        f"""
        import sys
        from pathlib import Path
        from walship.archive.staging import restore_lock
        with restore_lock(Path({str(target)!r})):
            print("ready", flush=True)
            sys.stdin.readline()
        """
    )
    try:
        with pytest.raises(RestoreError, match="another restore into this directory") as e:
            restore(url, target)
        assert str(target) in str(e.value)
        code, out = cli("restore", url, target)
        assert code == 2
        [line] = out.strip().splitlines()
        assert str(target) in line and "another restore" in line
        assert not target.exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert restore(url, target).segments == 2  # the lock went with its holder
    assert sorted(p.name for p in tmp_path.iterdir() if "walship-restore" in p.name) == []


def test_the_lock_of_a_killed_restore_does_not_block_the_next(tmp_path: Path) -> None:
    url = archived_log(tmp_path)
    target = tmp_path / "restored"
    holder = spawn(
        f"""
        import sys
        from pathlib import Path
        from walship.archive.staging import restore_lock
        with restore_lock(Path({str(target)!r})):
            print("ready", flush=True)
            sys.stdin.readline()
        """
    )
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    lock = tmp_path / ".restored.walship-restore.lock"
    assert lock.exists()  # (the dead holder could not remove it)
    assert restore(url, target).segments == 2
    assert not lock.exists()
    holder = spawn(
        f"""
        import sys
        from pathlib import Path
        from walship.archive.staging import restore_lock
        with restore_lock(Path({str(tmp_path / "wal")!r})):
            print("ready", flush=True)
            sys.stdin.readline()
        """
    )
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    restore(url, tmp_path / "wal")
    (tmp_path / ".wal.walship-restore.lock").touch()  # as a killed restore leaves it
    with walship.open(tmp_path / "wal", archive={"url": url, "upload_process": False}):
        pass
    assert not (tmp_path / ".wal.walship-restore.lock").exists()  # the open removed it


def killed_restore_staging(target: Path) -> Path:
    """A restore's staging directory (with a segment in it) whose owner was SIGKILLed."""
    child = spawn(
        f"""
        import sys
        from pathlib import Path
        from walship.archive.staging import staging_directory
        with staging_directory(Path({str(target)!r})) as staging:
            staging.mkdir()
            (staging / "segment_0000000000000001.aedbwal").write_bytes(b"half a restore")
            print("ready", flush=True)
            sys.stdin.readline()
        """
    )
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    return target.parent / next(
        p.name for p in target.parent.iterdir() if p.is_dir() and "walship-restore-" in p.name
    )


def test_open_removes_a_dead_restores_staging_and_interrupted_temporaries(
    tmp_path: Path,
) -> None:
    url = archived_log(tmp_path)
    target = tmp_path / "wal"
    restore(url, target)
    staging = killed_restore_staging(target)
    assert staging.is_dir() and staging.with_name(staging.name + ".lock").exists()
    (target / ".walship.archive.json.tmp").write_bytes(b'{"half": ')  # a crash mid-write
    with walship.open(target, archive={"url": url, "upload_process": False}) as log:
        assert log.last_seq == 8
    assert not staging.exists() and not staging.with_name(staging.name + ".lock").exists()
    assert not (target / ".walship.archive.json.tmp").exists()


def test_open_keeps_a_live_restores_staging(tmp_path: Path) -> None:
    url = archived_log(tmp_path)
    target = tmp_path / "wal"
    restore(url, target)
    with staging_directory(target) as staging:
        staging.mkdir()
        with walship.open(target, archive={"url": url, "upload_process": False}):
            pass
        assert staging.is_dir()


def torn_log(path: Path) -> str:
    """A log whose last segment got garbage after its last frame (a crash): the open cuts it
    and keeps the cut bytes in a side file, whose name it returns."""
    with walship.open(path) as log:
        log.append_batch([b"torn %d" % i for i in range(3)])
    with open(path / segment_name(1), "ab") as f:
        f.write(b"\x00\x00\x00\x30garbage after the last frame")
    with walship.open(path) as log:
        [repair] = log.recovery.repairs
    return repair.side_file


def test_side_files_are_kept_listed_and_cleaned_on_request(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    side = torn_log(wal)
    with walship.open(wal):  # an open never removes one
        pass
    assert (wal / side).exists()
    code, out = cli("verify", wal)
    assert code == 0 and f"note: {side}: a side file (torn tail)" in out
    code, out = cli("verify", wal, "--json")
    assert code == 0 and json.loads(out)["side_files"] == {side: "torn_tail"}
    damaged = wal / f"{segment_name(7)}.damaged"
    damaged.write_bytes(b"an old salvage")
    old = time.time() - 40 * 86400
    os.utime(damaged, (old, old))
    code, out = cli("repair", wal, "--clean-side-files", "--older-than", "30d")
    assert code == 0, out
    assert f"removed side file {damaged.name}" in out and "kept 1 side file(s)" in out
    assert not damaged.exists() and (wal / side).exists()
    with walship.open(wal):  # a writer holds the lock: nothing is removed
        code, out = cli("repair", wal, "--clean-side-files")
        assert code == 2 and (wal / side).exists()
    code, out = cli("repair", wal, "--clean-side-files")
    assert code == 0 and f"removed side file {side}" in out
    assert not (wal / side).exists()
    code, out = cli("repair", wal)
    assert code == 2 and "-c CONFIG" in out
    code, out = cli("repair", wal, "--clean-side-files", "--older-than", "soon")
    assert code == 2 and "--older-than" in out


def test_verify_url_names_foreign_objects_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = archived_log(tmp_path)
    (tmp_path / "archive" / "README.txt").write_text("not a segment")
    caplog.set_level(logging.WARNING, "walship.archive")
    code, out = cli("verify", url)
    assert code == 0, out
    assert out.count("README.txt") == 1, out
    assert not [r for r in caplog.records if "README.txt" in r.getMessage()]
