"""``walship repair DIR -c CONFIG`` in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import walship
from walship.core.header import HEADER_SIZE, segment_name
from walship.core.record import RECORD_NAME

WALSHIP = str(Path(sys.executable).with_name("walship"))
S2, S4 = segment_name(2), segment_name(4)


def _run(*args: str) -> Any:
    return subprocess.run(
        [WALSHIP, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    wal = tmp_path / "wal"
    config = tmp_path / "walship.yaml"
    config.write_text(
        f"store:\n  path: {tmp_path / 'elsewhere'}\narchive:\n  url: file://{tmp_path}/archive\n"
        "  retries: {attempts: 2, backoff: 10ms}\n"
    )
    with walship.open(wal, config=config) as log:
        for seq in range(1, 16):
            log.append(b"cli-%d" % seq)
            if seq % 5 == 0:
                log.rotate()
        log.append(b"cli-16")
        log.append(b"cli-17")
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    return wal, config


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x08
    path.write_bytes(bytes(data))


def test_repair_puts_an_archived_segment_back(tmp_path: Path) -> None:
    wal, config = _setup(tmp_path)
    _flip(wal / S2, HEADER_SIZE + 9)
    (wal / RECORD_NAME).unlink()
    out = _run("repair", str(wal), "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert f"put back {S2} from the archive" in out.stdout
    assert "rebuilt the archive record from the archive" in out.stdout
    assert "the log opens: 4 segments, 17 frames; last commit_seq 17" in out.stdout
    assert (wal / f"{S2}.damaged").exists()
    again = _run("repair", str(wal), "-c", str(config))
    assert again.returncode == 0 and "nothing to repair" in again.stdout
    with walship.open(wal, config=config) as log:
        assert [f.payload for f in log.read()] == [b"cli-%d" % s for s in range(1, 18)]


def test_damage_the_archive_does_not_hold_exits_1_then_salvage(tmp_path: Path) -> None:
    wal, config = _setup(tmp_path)
    _flip(wal / S4, HEADER_SIZE + 9)  # the active segment's first frame; another follows
    out = _run("repair", str(wal), "-c", str(config))
    assert out.returncode == 1
    assert f"{S4} at offset {HEADER_SIZE}: corrupt_frame" in out.stderr
    assert "rerun with --salvage" in out.stderr and "Traceback" not in out.stderr
    out = _run("repair", str(wal), "-c", str(config), "--salvage")
    assert out.returncode == 0, out.stderr
    assert f"moved aside {S4} (salvage)" in out.stdout
    with walship.open(wal, config=config) as log:
        assert log.last_seq == 15
        assert log.append(b"next") == 16


def test_repair_without_an_archive_section_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "walship.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'wal'}\n")
    out = _run("repair", str(tmp_path / "wal"), "-c", str(config))
    assert out.returncode == 2
    assert "repair=True needs the log's archive: section" in out.stderr
    assert "Traceback" not in out.stderr
