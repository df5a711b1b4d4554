"""``walship verify/inspect --seed-restarts``: a log the seed wrote across restarts (a zero
prev_segment_hash in a later segment) verifies only when asked to, and each accepted restart is
named; without the flag it stays a chain_mismatch (exit 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import walship
from walship.archive import ArchiveStore
from walship.cli import build_cli

FIXTURE = Path(__file__).resolve().parents[1] / "seed_fixtures" / "seed_restart_new_segment"
WALSHIP = Path(sys.executable).parent / "walship"
RESTART = "segment_0000000000000002.aedbwal"  # the segment the seed opened after its restart


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(build_cli(), [str(a) for a in args], prog_name="walship")


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


@pytest.fixture
def seed_log(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE / "segments", tmp_path / "wal"))


def test_without_the_flag_the_restart_is_a_chain_mismatch(seed_log: Path) -> None:
    before = snapshot(seed_log)
    result = run("verify", seed_log)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{RESTART}: offset 32: chain_mismatch: prev_segment_hash 0000")
    assert lines[1] == "DAMAGED: 1 problem(s) in 3 segments (4 valid frames, commit_seq 1..4)"
    assert lines[2] == (
        f"note: {RESTART} has a zero prev_segment_hash, as the seed wrote after a restart; "
        "--seed-restarts accepts it as a restart of the chain"
    )
    assert len(lines) == 3
    doc = json.loads(run("verify", seed_log, "--json").stdout)
    assert doc["ok"] is False and doc["chain_restarts"] == []
    assert [(p["file"], p["offset"], p["kind"]) for p in doc["problems"]] == [
        (RESTART, 32, "chain_mismatch")
    ]
    assert snapshot(seed_log) == before


def test_with_the_flag_the_log_verifies_and_names_each_restart(seed_log: Path) -> None:
    before = snapshot(seed_log)
    result = run("verify", "--seed-restarts", seed_log)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{RESTART}: offset 32: seed restart: a zero prev_segment_hash, accepted as a restart "
        "of the chain (--seed-restarts)",
        "ok: 3 segments, 4 frames, commit_seq 1..4: every header, frame and chain link is valid "
        "(1 seed restart(s) accepted)",
    ]
    result = run("verify", seed_log, "--json", "--seed-restarts")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["frames"] == 4
    assert doc["chain_restarts"] == [RESTART]
    assert snapshot(seed_log) == before  # read only


def test_the_flag_accepts_only_a_zero_prev_hash(seed_log: Path) -> None:
    last = seed_log / "segment_0000000000000003.aedbwal"
    raw = bytearray(last.read_bytes())
    raw[40] ^= 0x01  # a prev hash that is merely wrong stays damage
    last.write_bytes(bytes(raw))
    result = run("verify", "--seed-restarts", seed_log)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{last.name}: offset 32: chain_mismatch: ")
    assert lines[1].startswith(f"{RESTART}: offset 32: seed restart: ")
    assert lines[2].startswith("DAMAGED: 1 problem(s)")
    assert not any(line.startswith("note:") for line in lines)  # no hint for a wrong hash


def test_the_hint_is_given_only_for_a_zero_prev_hash(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    with walship.open(wal, entry_point_plugins=False) as log:
        for i in range(3):
            log.append(b"frame %d" % i)
            log.rotate()
    last = sorted(wal.glob("segment_*.aedbwal"))[-1]
    raw = bytearray(last.read_bytes())
    raw[40] ^= 0xFF
    last.write_bytes(bytes(raw))
    for flag in ((), ("--seed-restarts",)):
        result = run("verify", wal, *flag)
        assert result.exit_code == 1
        assert "chain_mismatch" in result.stdout and "note:" not in result.stdout
    raw[32:64] = bytes(32)  # now what the seed writes after a restart
    last.write_bytes(bytes(raw))
    result = run("verify", wal)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].startswith(f"note: {last.name} has a zero prev_")
    result = run("verify", wal, "--seed-restarts")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{last.name}: offset 32: seed restart: ")


def test_a_log_walship_continued_after_the_seed_verifies_with_the_flag(seed_log: Path) -> None:
    with walship.open(seed_log, entry_point_plugins=False, seed_restarts=True) as log:
        assert log.recovery.chain_restarts == [RESTART]
        log.append(b"walship goes on")
        log.rotate()
        log.append(b"and on")
    doc = json.loads(run("verify", seed_log, "--json", "--seed-restarts").stdout)
    assert doc["ok"] is True and doc["chain_restarts"] == [RESTART]
    assert (doc["frames"], doc["last_commit_seq"]) == (6, 6)
    assert run("verify", seed_log).exit_code == 1


def test_inspect_marks_the_restart_with_the_flag(seed_log: Path) -> None:
    plain = run("inspect", seed_log)
    assert plain.exit_code == 1  # the restart is a chain_mismatch without the flag
    rows = plain.stdout.splitlines()
    assert [r.split()[-1] for r in rows[1:4]] == ["start", "BROKEN", "ok"]
    assert rows[4].endswith("chain BROKEN")
    result = run("inspect", seed_log, "--seed-restarts")
    assert result.exit_code == 0
    rows = result.stdout.splitlines()
    assert [r.split()[-1] for r in rows[1:4]] == ["start", "restart", "ok"]
    assert rows[4].endswith(f"chain ok (1 seed restart(s): {RESTART})")
    assert len(rows) == 5  # no problem line
    doc = json.loads(run("inspect", seed_log, "--json", "--seed-restarts").stdout)
    assert [s["chain"] for s in doc["segments"]] == ["start", "restart", "ok"]
    assert doc["total"]["chain_ok"] is True and doc["problems"] == []
    assert doc["chain_restarts"] == [RESTART]


def test_dump_reads_a_seed_log_without_a_flag(seed_log: Path) -> None:
    # dump reads frames and does not check the chain: it never refused a seed log
    result = run("dump", seed_log)
    assert result.exit_code == 0
    assert [json.loads(line)["commit_seq"] for line in result.stdout.splitlines()] == [1, 2, 3, 4]


def test_the_flag_on_an_archive_url(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    archive = ArchiveStore(bucket.as_uri())
    for seg in sorted((FIXTURE / "segments").iterdir()):
        archive.put(seg.name, seg.read_bytes())  # with its manifest, as the archiver does
    result = run("verify", bucket.as_uri())
    assert result.exit_code == 1
    assert f"{RESTART}: offset 32: chain_mismatch" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"note: {RESTART} has a zero prev_")
    result = run("verify", bucket.as_uri(), "--seed-restarts", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chain_restarts"] == [RESTART]


def test_the_installed_script(seed_log: Path) -> None:
    assert WALSHIP.exists(), f"the walship script is not installed at {WALSHIP}"
    argv = [str(WALSHIP), "verify", str(seed_log)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"{RESTART}: offset 32: chain_mismatch" in proc.stdout
    proc = subprocess.run([*argv, "--seed-restarts"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"{RESTART}: offset 32: seed restart" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("ok: 3 segments, 4 frames")
