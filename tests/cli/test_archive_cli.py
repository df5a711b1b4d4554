"""``walship archive -c CONFIG``, ``walship restore`` and the archiving ``walship demo``, run as
the installed ``walship`` script (a real entry point, a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import walship
from walship.core.header import parse_segment_name, segment_name

WALSHIP = str(Path(sys.executable).with_name("walship"))


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [WALSHIP, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def local_segments(path: Path) -> list[int]:
    return sorted(s for p in path.iterdir() if (s := parse_segment_name(p.name)) is not None)


def make_log(path: Path, segments: int = 4) -> list[bytes]:
    payloads = []
    with walship.open(path) as log:
        for s in range(segments):
            batch = [b"cli %d/%d" % (s, i) for i in range(10)]
            log.append_batch(batch)
            payloads += batch
            log.rotate()
    return payloads


def write_config(path: Path, wal: Path, url: str, extra: str = "") -> Path:
    path.write_text(
        f"""
store:
  backend: posix
  path: {wal}
archive:
  url: {url}
  workers: 2
  compression: zstd
  retries: {{attempts: 2, backoff: 10ms, max_backoff: 20ms}}
{extra}
"""
    )
    return path


def test_archive_uploads_what_is_pending_and_applies_retention(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    make_log(wal)
    url = (tmp_path / "archive").as_uri()
    config = write_config(
        tmp_path / "walship.yaml",
        wal,
        "${WALSHIP_TEST_ARCHIVE}",
        "retention:\n  keep_local: ${WALSHIP_TEST_KEEP:-until_archived}\n",
    )
    out = run("archive", "-c", str(config), env={"WALSHIP_TEST_ARCHIVE": url})
    assert out.returncode == 0, out.stderr
    assert "archived 4 segments" in out.stdout and url in out.stdout
    assert "removed 4 local segments" in out.stdout
    assert local_segments(wal) == [5]
    again = run("archive", "-c", str(config), env={"WALSHIP_TEST_ARCHIVE": url})
    assert again.returncode == 0 and "archived 0 segments" in again.stdout


def test_archive_exits_1_and_names_what_could_not_be_archived(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    make_log(wal, segments=2)
    (tmp_path / "blocker").write_bytes(b"a file where the archive directory should be")
    url = (tmp_path / "blocker" / "archive").as_uri()
    config = write_config(tmp_path / "walship.yaml", wal, url)
    out = run("archive", "-c", str(config))
    assert out.returncode == 1
    assert "2 segments are not archived" in out.stderr
    assert segment_name(1) in out.stderr and segment_name(2) in out.stderr
    assert "Traceback" not in out.stderr
    assert "still pending upload" not in out.stderr  # named once, not again by the close
    assert local_segments(wal) == [1, 2, 3]


def test_archive_without_an_archive_section_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "walship.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'wal'}\n")
    out = run("archive", "-c", str(config))
    assert out.returncode == 2 and "no archive: section" in out.stderr


def test_restore_on_the_command_line(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    payloads = make_log(wal)
    url = (tmp_path / "archive").as_uri()
    assert run("archive", "-c", str(write_config(tmp_path / "c.yaml", wal, url))).returncode == 0
    out = run("restore", url, str(tmp_path / "full"), "--jobs", "3")
    assert out.returncode == 0, out.stderr
    assert "restored 4 segments, 40 frames" in out.stdout
    assert f"continues in {segment_name(5)}" in out.stdout
    with walship.open(tmp_path / "full") as log:
        assert [f.payload for f in log.read()] == payloads
    out = run("restore", url, str(tmp_path / "pit"), "--to-seq", "15")
    assert out.returncode == 0, out.stderr
    assert "ends at commit_seq 15" in out.stdout and "cut" in out.stdout
    with walship.open(tmp_path / "pit") as log:
        assert [f.payload for f in log.read()] == payloads[:15]
    out = run("restore", url, str(tmp_path / "late"), "--to-time", "2999-01-01T00:00:00Z")
    assert out.returncode == 0 and "restored everything" in out.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--to-seq", "1", "--to-time", "2024-01-01"], 2, "at most one of --to-seq and --to-time"),
        (["--to-time", "soon"], 2, "is not an ISO 8601 time"),
        (["--jobs", "0"], 2, "0 is not in the range"),
        (["-o", "novalue"], 2, "expected KEY=VALUE"),
    ],
)
def test_restore_usage_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    url = (tmp_path / "archive").as_uri()
    out = run("restore", url, str(tmp_path / "r"), *args)
    assert out.returncode == code and message in out.stderr and "Traceback" not in out.stderr


def test_restore_names_a_missing_segment_and_exits_1(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    make_log(wal)
    url = (tmp_path / "archive").as_uri()
    assert run("archive", "-c", str(write_config(tmp_path / "c.yaml", wal, url))).returncode == 0
    (tmp_path / "archive" / (segment_name(2) + ".zst")).unlink()
    out = run("restore", url, str(tmp_path / "r"))
    assert out.returncode == 1
    assert (
        f"{segment_name(2)} is missing (missing_segment): its manifest is in the archive"
        in out.stderr
    )
    assert "--allow-partial" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()
    (tmp_path / "nonempty").mkdir()
    (tmp_path / "nonempty" / "x").write_text("")
    out = run("restore", url, str(tmp_path / "nonempty"))
    assert out.returncode == 2 and "not an empty directory" in out.stderr


def test_demo_archives_to_a_file_archive_and_restores_from_it(tmp_path: Path) -> None:
    out = run(
        "demo", "--dir", str(tmp_path / "demo"), "--frames", "3000", "--segment-bytes", "20000"
    )
    assert out.returncode == 0, out.stderr
    for line in ("log directory", "frames written", "segments", "reopened", "read back", "verify"):
        assert line in out.stdout
    assert "archive          " in out.stdout and (tmp_path / "demo.archive").as_uri() in out.stdout
    assert "verified: sizes, BLAKE3 and chain" in out.stdout
    assert "frames match byte for byte" in out.stdout
    with walship.open(tmp_path / "demo.restored") as log:
        assert sum(1 for _ in log.read()) == 3000
    out = run("demo", "--dir", str(tmp_path / "plain"), "--frames", "100", "--no-archive")
    assert out.returncode == 0 and "archive " not in out.stdout
    assert not (tmp_path / "plain.archive").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "NoCredentialsError: Unable to locate credentials"),
        (["-o", "endpoint_url=notaurl"], "Invalid endpoint: notaurl"),
    ],
)
def test_object_store_client_errors_are_one_line(
    tmp_path: Path, options: list[str], message: str
) -> None:
    env = {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    for command in (["verify"], ["inspect"], ["restore"]):
        args = [*command, "s3://walship-no-bucket/p", *options]
        if command == ["restore"]:
            args.insert(2, str(tmp_path / "out"))
        out = run(*args, env=env)
        assert out.returncode == 2, (command, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert message in out.stderr
    assert not (tmp_path / "out").exists()


def slow_retries(config: Path, extra: str = "") -> None:
    """Make ``config``'s retries slow (a minute between attempts), and add ``extra``."""
    text = config.read_text().replace(
        "retries: {attempts: 2, backoff: 10ms, max_backoff: 20ms}",
        "retries: {attempts: 5, backoff: 60s, max_backoff: 60s}" + extra,
    )
    config.write_text(text)


def test_archive_shows_the_error_of_a_segment_waiting_to_retry(tmp_path: Path) -> None:
    """At --timeout, a segment between attempts is named with its last error, and the lag
    warning of a running log is not given for a catch-up run."""
    wal = tmp_path / "wal"
    make_log(wal, segments=2)  # one per worker: both tried, both waiting to retry
    (tmp_path / "blocker").write_bytes(b"a file where the archive directory should be")
    url = (tmp_path / "blocker" / "archive").as_uri()
    config = write_config(tmp_path / "walship.yaml", wal, url)
    slow_retries(config, "\n  lag_warning: 1")
    # (the first attempts come within seconds, the retries a minute later: 8 s leaves both
    # segments between attempts even on a loaded machine, where 2 s once found one untried)
    out = run("archive", "-c", str(config), "--timeout", "8")
    assert out.returncode == 1, out.stderr
    assert "2 segments are not archived" in out.stderr
    assert "still in progress" not in out.stderr and "Errno" in out.stderr
    assert "lagging" not in out.stderr


def test_archive_a_conflict_exits_3_at_once(tmp_path: Path) -> None:
    """Different content under a segment's name: no retry, exit 3, the segment named."""
    from walship.archive import ArchiveStore

    url = (tmp_path / "archive").as_uri()
    other = tmp_path / "other"
    make_log(other, segments=2)
    wal = tmp_path / "wal"
    make_log(wal, segments=1)
    config = write_config(tmp_path / "walship.yaml", wal, url)
    assert run("archive", "-c", str(config)).returncode == 0  # segment 1, and the record
    with walship.open(wal) as log:
        log.append(b"different content")
        log.rotate()
    ArchiveStore(url).put(segment_name(2), (other / segment_name(2)).read_bytes())
    slow_retries(config)
    out = run("archive", "-c", str(config), "--timeout", "30")
    assert out.returncode == 3, out.stderr
    assert f"{segment_name(2)}: conflict:" in out.stderr
    assert "refusing to overwrite" in out.stderr
    assert "exit 3" in out.stderr
