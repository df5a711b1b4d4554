"""Odd entries in the log directory: a directory where walship keeps a file (the lock file,
the archive record, the next segment, a side file). walship's own one-line error names the
entry and what to do, nothing is lost, and once the entry is moved the log goes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import walship
from walship.backends.posix import LOCK_NAME, PosixStore
from walship.core.header import segment_name
from walship.core.record import RECORD_NAME
from walship.errors import LogFailedError, StoreEntryError


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from walship.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", [LOCK_NAME, RECORD_NAME])
def test_a_directory_where_walship_keeps_a_file_is_named(tmp_path: Path, name: str) -> None:
    with walship.open(tmp_path) as log:
        log.append(b"kept")
    (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / name).mkdir()
    with pytest.raises(StoreEntryError) as raised:
        walship.open(tmp_path)
    text = one_line(raised.value)
    assert f"{tmp_path / name} is a directory where walship keeps" in text
    assert f"move it out of {tmp_path}" in text
    config = tmp_path.parent / f"{tmp_path.name}.yaml"
    config.write_text(f"store: {{backend: posix, path: {tmp_path}}}\n")
    out = cli("append", "-c", str(config), stdin="x\n")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{tmp_path / name} is a directory" in out.stderr
    (tmp_path / name).rmdir()  # moved: the log goes on, nothing lost
    with walship.open(tmp_path) as log:
        assert [f.payload for f in log.read()] == [b"kept"]


def test_a_directory_named_like_the_next_segment(tmp_path: Path) -> None:
    log = walship.open(tmp_path)
    log.append(b"one")
    blocker = tmp_path / segment_name(2)
    blocker.mkdir()
    with pytest.raises(LogFailedError) as raised:  # the rotation finds its name taken
        log.rotate()
    assert f"{blocker} is a directory where walship keeps a file" in one_line(raised.value)
    with pytest.raises(LogFailedError):
        log.close()
    with pytest.raises(StoreEntryError, match=f"{blocker} is a directory"):
        walship.open(tmp_path)  # the reopen says which entry to move
    out = cli("verify", str(tmp_path))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert str(blocker) in out.stdout + out.stderr
    blocker.rename(tmp_path.parent / f"{tmp_path.name}-moved")
    with walship.open(tmp_path) as log:
        log.append(b"two")
        log.rotate()
        log.append(b"three")
        assert [f.payload for f in log.read()] == [b"one", b"two", b"three"]
    assert cli("verify", str(tmp_path)).returncode == 0


def test_a_directory_named_like_a_side_file_is_stepped_over(tmp_path: Path) -> None:
    with walship.open(tmp_path) as log:
        log.append(b"kept")
    seg = tmp_path / segment_name(1)
    end = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x01")  # a torn tail
    (tmp_path / f"{seg.name}.torn-{end}").mkdir()
    with walship.open(tmp_path) as log:
        assert [f.payload for f in log.read()] == [b"kept"]
        (repair,) = log.recovery.repairs
    assert repair.side_file == f"{seg.name}.torn-{end}.2"
    assert (tmp_path / repair.side_file).read_bytes() == b"\x00\x00\x01"


def test_store_operations_on_a_directory(tmp_path: Path) -> None:
    store = PosixStore(tmp_path)
    (tmp_path / "d").mkdir()
    assert "d" in store.list_names()
    for op in (
        lambda: store.read("d"),
        lambda: store.size("d"),
        lambda: store.map("d"),
        lambda: store.open_append("d"),
        lambda: store.create("d", b"x"),
        lambda: store.write_atomic("d", b"x"),
        lambda: store.truncate("d", 0),
        lambda: store.remove("d"),
        lambda: store.written_end("d"),
    ):
        with pytest.raises(StoreEntryError, match="is a directory where walship keeps a file"):
            op()
    store.write_atomic("f", b"x")
    with pytest.raises(StoreEntryError):
        store.rename("f", "d")
    assert (tmp_path / "f").read_bytes() == b"x" and (tmp_path / "d").is_dir()
