"""``walship status``: read-only, from another process, while a writer process holds the log.

The writer is a real subprocess (it holds the store's lock the whole time); status runs in this
process through the CLI and must neither take the lock nor write a byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from walship.archive.status import gather_status
from walship.cli import build_cli
from walship.core.header import segment_name

WRITER = textwrap.dedent(
    """
    import sys, walship
    log = walship.open(config=sys.argv[1])
    print("open", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "append":
            n = int(args[0])
            log.append_batch([b"status frame %d" % i for i in range(n)])
        elif cmd == "rotate":
            log.rotate()
        elif cmd == "settle":  # every closed segment archived or stalled
            log.archiver.flush(timeout=30, retry_stalled=False)
        elif cmd == "quit":
            break
        print("ok", log.last_seq, flush=True)
    log.close(drain=0)
    print("closed", flush=True)
    """
)


class Writer:
    """A log held open by another process, driven line by line (each command answered)."""

    def __init__(self, config: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.read() == "open"

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line, f"the writer died (exit {self.proc.poll()})"
        return line

    def do(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def quit(self) -> None:
        assert self.do("quit") == "closed"
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def writer_config(tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    archive.mkdir()
    config = tmp_path / "walship.yaml"
    doc: dict[str, Any] = {
        "store": {"path": str(tmp_path / "wal")},
        "archive": {
            "url": archive.as_uri(),
            "upload_process": False,
            "retries": {"attempts": 2, "backoff": "10ms", "max_backoff": "10ms"},
        },
    }
    config.write_text(yaml.safe_dump(doc))
    return config


def status_json(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(build_cli(), ["status", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def test_status_of_a_log_open_in_another_process(writer_config: Path, tmp_path: Path) -> None:
    wal, archive = tmp_path / "wal", tmp_path / "archive"
    w = Writer(writer_config)
    try:
        w.do("append 10")
        w.do("rotate")
        w.do("settle")  # segment 1 archived
        shutil.rmtree(archive)
        archive.write_text("not a directory: every upload fails")
        w.do("append 7")
        w.do("rotate")
        w.do("append 3")
        w.do("rotate")
        w.do("settle")  # segments 2 and 3 stalled
        w.do("append 4")  # in the active segment
        before = tree(wal)
        doc = status_json(writer_config)
        assert tree(wal) == before  # read-only: not a byte written, no lock taken
        assert doc["local_segments"] == 4 and doc["active_segment"] == segment_name(4)
        assert doc["last_commit_seq"] == 24
        assert doc["last_archived_segment"] == segment_name(1)
        assert doc["last_archived_commit_seq"] == 10
        assert doc["pending_count"] == 2 and doc["oldest_pending"] == segment_name(2)
        assert doc["pending_bytes"] == sum((wal / segment_name(s)).stat().st_size for s in (2, 3))
        assert doc["oldest_pending_age_seconds"] is not None
        assert doc["oldest_pending_age_seconds"] >= 0
        assert doc["lag_frames"] == 14
        assert doc["lag_bytes"] > doc["pending_bytes"]
        assert doc["lag_seconds"] >= 0
        assert set(doc["stalled"]) == {segment_name(2), segment_name(3)}
        assert all(doc["stalled"].values())  # each with its last error
        text = CliRunner().invoke(build_cli(), ["status", "-c", str(writer_config)])
        assert text.exit_code == 0, text.output
        assert f"oldest {segment_name(2)}" in text.stdout
        assert f"stalled     {segment_name(3)}" in text.stdout
        assert "14 frames" in text.stdout
    finally:
        w.quit()


def test_status_after_everything_is_archived(writer_config: Path, tmp_path: Path) -> None:
    w = Writer(writer_config)
    try:
        w.do("append 5")
        w.do("rotate")
        w.do("settle")
        doc = status_json(writer_config)
        assert doc["pending_count"] == 0 and doc["stalled"] == {}
        assert doc["lag_frames"] == 0 and doc["lag_seconds"] == 0.0
        assert doc["last_archived_commit_seq"] == 5
    finally:
        w.quit()
    doc = status_json(writer_config)  # the same when nobody holds the log
    assert doc["pending_count"] == 0 and doc["last_commit_seq"] == 5


def test_status_lists_leftovers(writer_config: Path, tmp_path: Path) -> None:
    w = Writer(writer_config)
    w.do("append 2")
    w.quit()
    wal = tmp_path / "wal"
    (wal / f"{segment_name(1)}.torn-100").write_bytes(b"x" * 20)
    (wal / f"{segment_name(2)}.damaged").write_bytes(b"y" * 30)
    staging = tmp_path / ".wal.walship-restore-0123abcd"
    staging.mkdir()
    (staging / segment_name(1)).write_bytes(b"z" * 40)
    doc = status_json(writer_config)
    kinds = {left["name"]: (left["kind"], left["size"]) for left in doc["leftovers"]}
    assert kinds == {
        f"{segment_name(1)}.torn-100": ("torn_tail", 20),
        f"{segment_name(2)}.damaged": ("damaged", 30),
        ".wal.walship-restore-0123abcd": ("restore_staging", 40),
    }


def test_status_without_an_archive_and_on_a_missing_directory(tmp_path: Path) -> None:
    config = tmp_path / "walship.yaml"
    config.write_text(yaml.safe_dump({"store": {"path": str(tmp_path / "wal")}}))
    result = CliRunner().invoke(build_cli(), ["status", "-c", str(config)])
    assert result.exit_code == 2 and "no such log directory" in result.stderr
    assert not (tmp_path / "wal").exists()  # not created
    (tmp_path / "wal").mkdir()
    st = gather_status(tmp_path / "wal", None)
    assert st.url is None and st.local_segments == 0 and st.pending == []
    result = CliRunner().invoke(build_cli(), ["status", "-c", str(config)])
    assert result.exit_code == 0 and "no archive: section" in result.stdout


def test_status_of_a_followers_replica_shows_its_lag(tmp_path: Path) -> None:
    """``walship status DIR`` of a replica (no config there): the follower's last round, its
    lag in frames and seconds; ``--json`` holds it; -c and DIR together, or neither, is a usage
    error."""
    import walship
    from walship.archive.follow import Follower

    url = (tmp_path / "archive").as_uri()
    with walship.open(tmp_path / "wal", max_segment_bytes=512, archive={"url": url}) as log:
        for i in range(1, 31):
            log.append(b"frame-%d|" % i)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    replica = tmp_path / "replica"
    with Follower(url, replica) as follower:
        follower.poll()
        follower.poll()
        out = CliRunner().invoke(build_cli(), ["status", str(replica)])
    assert out.exit_code == 0, out.output
    [line] = [x for x in out.output.splitlines() if x.startswith("follower")]
    assert f"of {follower.url}: replica at commit_seq 30, archive at 30; lag 0 frames" in line
    assert "(round 2," in line and f"pid {os.getpid()}" in line
    assert "archive     not known without -c CONFIG" in out.output
    doc = json.loads(CliRunner().invoke(build_cli(), ["status", str(replica), "--json"]).output)
    assert doc["follower"]["replica_seq"] == 30 and doc["follower"]["lag_frames"] == 0
    assert gather_status(tmp_path / "wal", url).follower is None  # a writer's: none
    config = tmp_path / "c.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'wal'}\n")
    both = CliRunner().invoke(build_cli(), ["status", str(replica), "-c", str(config)])
    neither = CliRunner().invoke(build_cli(), ["status"])
    assert both.exit_code == neither.exit_code == 2
    assert "give -c CONFIG or a DIRECTORY" in both.output
