"""``walship tail DIR [--from-seq N] [-f] [--timeout S]``: the ``walship dump`` JSON lines,
following a writer in another process (both as real processes)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from test_readonly import start_writer

import walship
from walship.core.header import segment_name

WALSHIP = str(Path(sys.executable).with_name("walship"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WALSHIP, *args], capture_output=True, text=True, timeout=60)


def test_tail_prints_the_dump_schema(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=512) as log:
        for i in range(1, 41):
            log.append(b"frame-%d|" % i, payload_type=i % 3)
    tail = run("tail", str(tmp_path), "--from-seq", "5")
    dump = run("dump", str(tmp_path), "--from-seq", "5")
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout == dump.stdout  # the same lines, segment_seq included
    first = json.loads(tail.stdout.splitlines()[0])
    assert first["commit_seq"] == 5 and base64.b64decode(first["payload_b64"]) == b"frame-5|"
    assert len(tail.stdout.splitlines()) == 36


def test_tail_follows_a_writer_process(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    count = 1500
    writer = start_writer(wal, count, size=4096)
    tail = subprocess.Popen(
        [
            WALSHIP,
            "tail",
            str(wal),
            "--from-seq",
            "1",
            "-f",
            *("--timeout", "5", "--interval", "0.01"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert tail.stdout is not None
    seqs = []
    for line in tail.stdout:
        record = json.loads(line)
        seqs.append(record["commit_seq"])
        assert base64.b64decode(record["payload_b64"]).startswith(b"frame-%d|" % seqs[-1])
        if seqs[-1] == count:
            break
    tail.terminate()
    tail.wait(timeout=10)
    assert writer.wait(timeout=30) == 0
    assert seqs == list(range(1, count + 1))
    assert len(os.listdir(wal)) > 3  # it followed across rotations


def test_tail_f_without_from_seq_starts_at_the_next_frame(tmp_path: Path) -> None:
    with walship.open(tmp_path) as log:
        log.append_batch([b"old"] * 3)
    out = run("tail", str(tmp_path), "-f", "--timeout", "0.2")
    assert out.returncode == 0 and out.stdout == ""


def test_tail_of_removed_frames_exits_1(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=256) as log:
        for i in range(1, 30):
            log.append(b"frame-%d|" % i)
    os.remove(tmp_path / segment_name(1))
    out = run("tail", str(tmp_path), "--from-seq", "1")
    assert out.returncode == 1
    assert "walship: error: frames from commit_seq 1 are not in the local log" in out.stderr
    missing = run("tail", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
