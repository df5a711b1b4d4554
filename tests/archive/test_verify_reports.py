"""Reports that say what is wrong: ``walship inspect`` of a segment with a garbage header names
it and exits 1 (never "chain ok"); a byte flipped inside an archived segment is reported as the
altered segment it is (BLAKE3 against its manifest, and the bad frame's offset), not as a chain
mismatch of the next one; ``walship restore`` names every missing piece in one line and exits 1,
or with ``--allow-partial`` restores what there is and names what it left out. Run as the
installed ``walship`` script where the exit status and streams matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_target import SHARED_KINDS, Archive, archived_log, frames_in, make_archive

import walship
from walship.archive import manifest_name
from walship.core.header import segment_name

WALSHIP = str(Path(sys.executable).with_name("walship"))


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WALSHIP, *map(str, args)], capture_output=True, text=True, timeout=120, env=os.environ
    )


@pytest.fixture(params=SHARED_KINDS)
def any_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    made = make_archive(request.param, tmp_path)
    yield made
    made.remove()


def make_dir_log(path: Path, segments: int = 3) -> None:
    with walship.open(path) as log:
        for s in range(segments):
            log.append_batch([b"inspect %d/%d" % (s, i) for i in range(5)])
            log.rotate()


@pytest.mark.parametrize("where", ["first", "middle"])
def test_inspect_of_a_garbage_header_reports_it_and_exits_1(tmp_path: Path, where: str) -> None:
    wal = tmp_path / "wal"
    make_dir_log(wal)
    seg = wal / segment_name(1 if where == "first" else 2)
    raw = bytearray(seg.read_bytes())
    raw[:64] = b"\xa5" * 64  # garbage where the header should be
    seg.write_bytes(bytes(raw))
    out = run("inspect", wal)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "chain ok" not in out.stdout and "chain BROKEN" in out.stdout
    row = out.stdout.splitlines()[int(seg.name[8:24])]  # after the heading, one row per seq
    assert row.endswith("BAD HEADER")
    assert f"{seg.name}: offset 0: bad_header: " in out.stdout
    doc = json.loads(run("inspect", wal, "--json").stdout)
    assert doc["ok"] is False and doc["total"]["chain_ok"] is False
    assert (doc["problems"][0]["file"], doc["problems"][0]["kind"]) == (seg.name, "bad_header")
    assert run("inspect", wal, "--json").returncode == 1
    assert run("verify", wal).returncode == 1


def test_a_healthy_log_inspects_with_chain_ok_and_exit_0(tmp_path: Path) -> None:
    make_dir_log(tmp_path / "wal")
    out = run("inspect", tmp_path / "wal")
    assert out.returncode == 0 and out.stdout.rstrip().endswith("chain ok")


def test_a_flipped_byte_in_an_archived_segment_is_named_as_that_segment(
    any_archive: Archive,
) -> None:
    archived_log(any_archive, segments=4)
    raw = any_archive.read(segment_name(2))
    offset = 64 + 30  # inside the first frame's payload
    any_archive.write(segment_name(2), raw[:offset] + bytes([raw[offset] ^ 1]) + raw[offset + 1 :])
    out = run("verify", any_archive.url, *any_archive.cli_options())
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("segment_")]
    assert lines[0].startswith(f"{segment_name(2)}: offset 0: altered_segment: ")
    assert "its manifest says" in lines[0] and "BLAKE3" in lines[0]
    assert lines[1].startswith(f"{segment_name(2)}: offset 64: corrupt_frame: CRC-32C mismatch")
    assert len(lines) == 2  # and no chain_mismatch of segment 3 in the list
    inspect = run("inspect", any_archive.url, *any_archive.cli_options())
    assert inspect.returncode == 1 and "altered_segment" in inspect.stdout


def test_restore_names_every_missing_piece_or_restores_a_partial_log_on_purpose(
    any_archive: Archive, tmp_path: Path
) -> None:
    written = archived_log(any_archive, segments=6)
    any_archive.delete(segment_name(1))
    any_archive.delete(manifest_name(1))
    any_archive.delete(manifest_name(5))
    out = run("restore", any_archive.url, tmp_path / "r", *any_archive.cli_options())
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert (
        f"{segment_name(1)} is missing (missing_segment): the archive does not start" in out.stderr
    )
    assert f"{segment_name(5)} is incomplete (missing_manifest): its object is in" in out.stderr
    assert "--allow-partial" in out.stderr and not (tmp_path / "r").exists()
    out = run(
        "restore", any_archive.url, tmp_path / "p", "--allow-partial", *any_archive.cli_options()
    )
    assert out.returncode == 0, out.stderr
    assert "restored 3 segments, 30 frames; commit_seq 11..40; PARTIAL: 3 piece(s) left out" in (
        out.stdout
    )
    left = out.stderr.splitlines()
    assert [line.split(": ")[2] for line in left if "left out" in line] == [
        f"left out {segment_name(1)}",
        f"left out {segment_name(5)}",
        f"left out 1 archived segment(s) after {segment_name(5)} (commit_seq 51..60) not restored",
    ]
    assert frames_in(tmp_path / "p") == written[10:40]
    verify = run("verify", any_archive.url, *any_archive.cli_options(), "--json")
    doc: dict[str, Any] = json.loads(verify.stdout)
    assert verify.returncode == 1
    assert [(p["file"], p["kind"]) for p in doc["problems"]] == [
        (segment_name(1), "missing_segment"),
        (segment_name(5), "missing_manifest"),
    ]


def test_a_restore_killed_at_any_moment_leaves_a_whole_log_or_nothing(tmp_path: Path) -> None:
    """SIGKILL of ``walship restore`` (a real process) at moments spread over its run: the
    target is then absent or a complete restore that opens with every frame; a new restore
    into it succeeds."""
    import signal
    import time

    archive = make_archive("file", tmp_path)
    written = archived_log(archive, segments=40, frames=50)
    started = time.monotonic()
    assert run("restore", archive.url, tmp_path / "timed").returncode == 0
    took = time.monotonic() - started
    for i in range(6):
        target = tmp_path / f"r{i}"
        proc = subprocess.Popen([WALSHIP, "restore", archive.url, str(target)], env=os.environ)
        time.sleep(took * (i + 1) / 7)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            assert frames_in(target) == written
        out = run("restore", archive.url, target) if not target.exists() else None
        assert out is None or out.returncode == 0, out.stderr
        assert frames_in(target) == written
