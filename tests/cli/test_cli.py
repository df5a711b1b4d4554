"""The ``walship`` command line: click's CliRunner for most, the installed script for some.

Bad input always gives one line ``walship: error: ...`` and exit 2, never a traceback; verify
exits 1 on damage, listing each problem's file, offset and kind."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import walship
from walship.backends.posix import PosixStore
from walship.cli import build_cli
from walship.cli.append import parse_sep
from walship.cli.init import TEMPLATE
from walship.config import load_config
from walship.core.header import segment_name
from walship.core.scan import scan_store

WALSHIP = Path(sys.executable).parent / "walship"


def run(*args: str | Path, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(build_cli(), [str(a) for a in args], input=input, prog_name="walship")


def one_line_error(result: Result, code: int = 2) -> str:
    """The single stderr line of a failed command (and nothing on stdout)."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("walship: error: ")
    assert "Traceback" not in result.output
    return lines[0].removeprefix("walship: error: ")


def make_log(path: Path, frames: int = 200, segment_bytes: int = 1024) -> list[bytes]:
    """A closed log of several segments; returns the payloads in commit order."""
    payloads = [b"record %04d " % i * 3 for i in range(frames)]
    with walship.open(path, max_segment_bytes=segment_bytes, entry_point_plugins=False) as log:
        for i, p in enumerate(payloads):
            log.append(p, payload_type=i % 4)
        log.rotate()
    return payloads


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("segment_*.aedbwal"))


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


@pytest.fixture
def wal(tmp_path: Path) -> Path:
    make_log(tmp_path / "wal")
    return tmp_path / "wal"


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "walship.yaml"
    config.write_text(
        "store: {path: wal}\nrotation: {max_segment_bytes: 1KiB}\nentry_point_plugins: false\n"
        + extra
    )
    return config


# --- help, init, plugins ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["demo", "init", "append", "dump", "inspect", "verify", "plugins"]
)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: walship {command}")


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("demo", "init", "append", "dump", "inspect", "verify", "plugins"):
        assert f"  {command} " in result.stdout


def test_init_writes_a_commented_config_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("init")
    assert result.exit_code == 0, result.output
    path = tmp_path / "walship.yaml"
    assert path.read_text() == TEMPLATE
    assert TEMPLATE.count("#") > 30
    cfg = load_config(path)
    assert cfg.store_options() == {"path": str(tmp_path / "wal")}
    assert cfg.plugin_specs() == [{"name": "walship.plugins.logging", "options": {}}]
    assert cfg.log_kwargs()["max_segment_bytes"] == 64 * 1024 * 1024
    with walship.open(config=path) as log:
        assert log.plugins.has_plugin("walship.plugins.logging")
        log.append(b"from the template")
    assert one_line_error(run("init")) == (
        "walship.yaml: exists already (use --force to overwrite it)"
    )
    assert run("init", "--force").exit_code == 0
    assert one_line_error(run("init", tmp_path / "nope" / "w.yaml")) == (
        f"{tmp_path / 'nope'}: no such directory"
    )


def test_the_templates_commented_examples_are_valid_too(tmp_path: Path) -> None:
    # uncomment every commented-out setting (a comment at column 0 or 2 holding "key:" or "- ")
    setting = re.compile(r"^( {0,2})# ( *(?:[a-z_]+:(?: |$)|- ).*)$")
    uncommented = [
        m.group(1) + m.group(2) if (m := setting.match(line)) else line
        for line in TEMPLATE.splitlines()
    ]
    text = "\n".join(uncommented)
    (tmp_path / "full.yaml").write_text(text)
    cfg = load_config(tmp_path / "full.yaml", env={})
    assert cfg.archive is not None and cfg.archive.url == "s3://my-bucket/wal"
    assert cfg.retention_options() == {"keep_local": "until_archived"}
    assert cfg.instance_id == 1
    assert [p["name"] for p in cfg.plugin_specs()] == [
        "walship.plugins.logging",
        "walship.plugins.metrics",
    ]


def test_plugins_lists_builtins_and_backends() -> None:
    result = run("plugins")
    assert result.exit_code == 0
    assert "  walship.plugins.metrics\n" in result.stdout
    assert "  posix\n" in result.stdout
    doc = json.loads(run("plugins", "--json").stdout)
    assert doc["builtin_plugins"] == [
        "walship.plugins.logging",
        "walship.plugins.metrics",
        "walship.plugins.prometheus",
    ]
    assert {"memory", "posix"} <= set(doc["backends"])


# --- append -----------------------------------------------------------------------------


def test_append_lines_and_print_the_durable_seq(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run("append", "-c", config, input=b"alpha\nbeta\n\ngamma")
    assert result.exit_code == 0, result.output
    assert result.stdout == "4\n"
    result = run("append", "-c", config, "--type", "9", input=b"delta\n")
    assert result.stdout == "5\n"
    with walship.open(tmp_path / "wal") as log:
        frames = list(log.read())
    assert [f.payload for f in frames] == [b"alpha", b"beta", b"", b"gamma", b"delta"]
    assert [f.payload_type for f in frames] == [0, 0, 0, 0, 9]
    assert run("append", "-c", config, input=b"").stdout == "5\n"


def test_append_strips_the_cr_of_crlf_lines(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run("append", "-c", config, input=b"alpha\r\nbeta\r\n\r\ncr\rinside\r\nlast\r")
    assert result.exit_code == 0, result.output
    assert result.stdout == "5\n"
    result = run("append", "-c", config, "--sep", ";", input=b"kept\r;")  # --sep: as given
    assert result.stdout == "6\n"
    with walship.open(tmp_path / "wal") as log:
        assert [f.payload for f in log.read()] == [
            b"alpha",
            b"beta",
            b"",
            b"cr\rinside",
            b"last",
            b"kept\r",
        ]


def test_append_records_split_at_a_separator_in_batches(tmp_path: Path) -> None:
    config = write_config(tmp_path, "durability: none\n")
    records = [b"rec-%03d\n with a newline " % i * 4 for i in range(50)]
    result = run(
        "append", "-c", config, "--sep", "\\x1e", "--batch", "8", input=b"\x1e".join(records)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "50\n"
    with walship.open(tmp_path / "wal") as log:
        assert [f.payload for f in log.read()] == records
        assert log.stats()["segments"] > 3


def test_append_prints_metrics(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run("append", "-c", config, "--metrics", input=b"x" * 300 + b"\n" + b"y" * 900)
    assert result.exit_code == 0
    assert result.stdout == "2\n"
    assert "segments closed    1 (forced 0, size 1, age 0)" in result.stderr


@pytest.mark.parametrize(
    ("sep", "value"), [("\\0", b"\0"), ("\\t", b"\t"), (",", b","), ("\\r\\n", b"\r\n")]
)
def test_separators(sep: str, value: bytes) -> None:
    assert parse_sep(sep) == value


def test_append_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert one_line_error(run("append", input=b"x")) == (
        "walship.yaml: no such config file (`walship init` writes one)"
    )
    (tmp_path / "bad.yaml").write_text("store: {path: wal}\ndurability: sometimes\n")
    assert one_line_error(run("append", "-c", "bad.yaml", input=b"x")) == (
        "bad.yaml: durability = 'sometimes': expected one of always, interval, none"
    )
    (tmp_path / "broken.yaml").write_text("store: [\n")
    assert one_line_error(run("append", "-c", "broken.yaml", input=b"x")).startswith(
        "broken.yaml: invalid YAML at line 2, column 1:"
    )
    (tmp_path / "plugin.yaml").write_text("plugins: [nosuchmodule_abc:Plugin]\n")
    assert one_line_error(run("append", "-c", "plugin.yaml", input=b"x")) == (
        "plugin 'nosuchmodule_abc:Plugin': cannot import module 'nosuchmodule_abc': "
        "ModuleNotFoundError: No module named 'nosuchmodule_abc'"
    )
    assert (
        one_line_error(run("append", "-c", tmp_path, input=b"x")).endswith(
            "is a directory, expected a YAML config file"
        )
        or "Directory" in run("append", "-c", tmp_path).stderr
    )
    assert one_line_error(run("append", "-c", "bad.yaml", "--sep", "", input=b"x")) == (
        "--sep '': expected a non-empty separator"
    )
    result = run("append", "-c", "bad.yaml", "--type", "300", input=b"x")
    assert result.exit_code == 2 and "Traceback" not in result.output


# --- dump -------------------------------------------------------------------------------


def test_dump_prints_every_frame_as_json(tmp_path: Path) -> None:
    payloads = make_log(tmp_path / "wal")
    result = run("dump", tmp_path / "wal")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [base64.b64decode(r["payload_b64"]) for r in rows] == payloads
    assert [r["commit_seq"] for r in rows] == list(range(1, len(payloads) + 1))
    assert [r["payload_type"] for r in rows] == [i % 4 for i in range(len(payloads))]
    assert set(rows[0]) == {
        "segment_seq",
        "commit_seq",
        "timestamp_micros",
        "payload_type",
        "payload_b64",
    }
    scan = scan_store(PosixStore(tmp_path / "wal"))
    by_segment = {s.segment_seq: (s.first_commit_seq, s.last_commit_seq) for s in scan.segments}
    for r in rows:
        first, last = by_segment[r["segment_seq"]]
        assert first is not None and last is not None
        assert first <= r["commit_seq"] <= last


@pytest.mark.parametrize(("lo", "hi"), [(1, 1), (37, 121), (150, None), (None, 3), (200, 500)])
def test_dump_a_range(wal: Path, lo: int | None, hi: int | None) -> None:
    args: list[str | Path] = ["dump", wal]
    if lo is not None:
        args += ["--from-seq", str(lo)]
    if hi is not None:
        args += ["--to-seq", str(hi)]
    result = run(*args)
    assert result.exit_code == 0
    seqs = [json.loads(line)["commit_seq"] for line in result.stdout.splitlines()]
    assert seqs == list(range(lo or 1, min(hi or 200, 200) + 1))


def test_dump_stops_at_damage_with_exit_1(wal: Path) -> None:
    second = segments(wal)[1]
    data = bytearray(second.read_bytes())
    data[64 + 30] ^= 0xFF
    second.write_bytes(bytes(data))
    result = run("dump", wal)
    assert result.exit_code == 1
    printed = [json.loads(line)["segment_seq"] for line in result.stdout.splitlines()]
    assert set(printed) == {1}  # everything before the damage
    assert result.stderr == (
        f"walship: error: {second.name}: CRC mismatch in frame at offset 64; stopped here\n"
    )
    assert one_line_error(run("dump", wal, "--from-seq", "9", "--to-seq", "3")) == (
        "--from-seq 9 is after --to-seq 3"
    )


# --- inspect ----------------------------------------------------------------------------


def test_inspect_shows_a_table_and_a_total(wal: Path) -> None:
    scan = scan_store(PosixStore(wal))
    result = run("inspect", wal)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "SEQ",
        "SIZE",
        "FRAMES",
        "COMMIT_SEQ",
        "CREATED_AT",
        "BLAKE3",
        "CHAIN",
    ]
    rows = [line.split() for line in lines[1:-1]]
    assert len(rows) == len(scan.segments)
    for row, seg in zip(rows, scan.segments, strict=True):
        assert row[0] == str(seg.segment_seq)
        assert row[1] == str(seg.size)
        assert row[2] == str(seg.frame_count)
        expected_range = (
            "-"
            if seg.first_commit_seq is None
            else f"{seg.first_commit_seq}..{seg.last_commit_seq}"
        )
        assert row[3] == expected_range
        assert row[4].endswith("Z") and row[4][:2] == "20"
        assert row[5] == seg.blake3.hex()[:12]
    assert [r[6] for r in rows] == ["start"] + ["ok"] * (len(rows) - 1)
    total = sum(s.size for s in scan.segments)
    assert lines[-1] == (
        f"total: {len(rows)} segments, {total} bytes, 200 frames, commit_seq 1..200, chain ok"
    )


def test_inspect_json(wal: Path) -> None:
    result = run("inspect", wal, "--json")
    doc = json.loads(result.stdout)
    scan = scan_store(PosixStore(wal))
    assert doc["target"] == str(wal)
    assert [s["blake3"] for s in doc["segments"]] == [s.blake3.hex() for s in scan.segments]
    assert doc["segments"][1]["prev_segment_hash"] == scan.segments[0].blake3.hex()
    assert doc["total"] == {
        "segments": len(scan.segments),
        "bytes": sum(s.size for s in scan.segments),
        "frames": 200,
        "first_commit_seq": 1,
        "last_commit_seq": 200,
        "chain_ok": True,
        "anchored": True,
        "problems": 0,
    }
    assert doc["problems"] == []


# --- verify -----------------------------------------------------------------------------


def test_verify_a_good_log(wal: Path) -> None:
    n = len(segments(wal))
    result = run("verify", wal)
    assert result.exit_code == 0
    assert result.stdout == (
        f"ok: {n} segments, 200 frames, commit_seq 1..200: every header, frame and chain link "
        "is valid\n"
    )
    doc = json.loads(run("verify", wal, "--json").stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["frames"] == 200


def _torn_tail(wal: Path) -> list[tuple[str, int, str]]:
    last = segments(wal)[-1]
    with last.open("ab") as f:
        f.write(b"\x00\x00\x00\x40partial")
    return [(last.name, last.stat().st_size - 11, "truncated_tail")]


def _corrupt_frame(wal: Path) -> list[tuple[str, int, str]]:
    seg = segments(wal)[1]
    data = bytearray(seg.read_bytes())
    first_len = int.from_bytes(data[64:68], "big")
    second = 64 + 4 + first_len
    data[second + 25] ^= 0x01  # a payload byte of the second frame
    seg.write_bytes(bytes(data))
    # the altered file no longer hashes to what its successor recorded
    return [(seg.name, second, "corrupt_frame"), (segments(wal)[2].name, 32, "chain_mismatch")]


def _bad_header(wal: Path) -> list[tuple[str, int, str]]:
    seg = segments(wal)[2]
    data = bytearray(seg.read_bytes())
    data[0:4] = b"XXXX"
    seg.write_bytes(bytes(data))
    return [(seg.name, 0, "bad_header")]


def _chain_mismatch(wal: Path) -> list[tuple[str, int, str]]:
    last = segments(wal)[-1]
    data = bytearray(last.read_bytes())
    data[40] ^= 0xFF  # inside prev_segment_hash
    last.write_bytes(bytes(data))
    return [(last.name, 32, "chain_mismatch")]


def _missing_segment(wal: Path) -> list[tuple[str, int, str]]:
    seg = segments(wal)[3]
    seg.unlink()
    return [(seg.name, 0, "missing_segment")]


@pytest.mark.parametrize(
    "damage", [_torn_tail, _corrupt_frame, _bad_header, _chain_mismatch, _missing_segment]
)
def test_verify_lists_each_problem_and_exits_1(wal: Path, damage: object) -> None:
    expected = damage(wal)  # type: ignore[operator]
    before = snapshot(wal)
    result = run("verify", wal)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    problem_lines = [line for line in lines if line.startswith("segment_")]
    assert len(problem_lines) == len(expected)
    for line, (name, offset, kind) in zip(problem_lines, expected, strict=True):
        assert line.startswith(f"{name}: offset {offset}: {kind}: ")
    assert lines[len(expected)].startswith(f"DAMAGED: {len(expected)} problem(s) in ")
    result = run("verify", wal, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)  # one JSON document, nothing else
    assert doc["ok"] is False
    assert [(p["file"], p["offset"], p["kind"]) for p in doc["problems"]] == expected
    assert snapshot(wal) == before  # verify changed nothing
    inspect = run("inspect", wal)
    assert inspect.exit_code == 1  # inspect lists the damage too, and says so by its status
    assert inspect.stdout.splitlines()[-1].startswith(f"{len(expected)} problem(s);")


def test_verify_never_locks_or_writes(tmp_path: Path) -> None:
    make_log(tmp_path / "wal")
    (tmp_path / "wal" / "walship.lock").unlink()
    before = snapshot(tmp_path / "wal")
    assert run("verify", tmp_path / "wal").exit_code == 0
    assert run("inspect", tmp_path / "wal", "--json").exit_code == 0
    assert run("dump", tmp_path / "wal").exit_code == 0
    assert snapshot(tmp_path / "wal") == before  # no lock file, nothing touched


def test_verify_while_a_writer_holds_the_log(tmp_path: Path) -> None:
    with walship.open(tmp_path / "wal", max_segment_bytes=1024) as log:
        for i in range(100):
            log.append(b"live %d" % i * 5)
        result = run("verify", tmp_path / "wal")
        assert result.exit_code == 0, result.output
        assert "100 frames" in result.stdout


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "verify", "dump"])
def test_bad_targets_give_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing"
    assert one_line_error(run(command, missing)) == f"{missing}: no such directory"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert one_line_error(run(command, afile)) == f"{afile}: not a directory"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a segment")
    assert one_line_error(run(command, empty)) == (
        f"{empty}: not a segment directory (no segment_<seq>.aedbwal files in it)"
    )


def test_usage_errors_exit_2_without_a_traceback() -> None:
    for args in (["verify"], ["inspect", "--bogus", "x"], ["nosuchcommand"]):
        result = run(*args)
        assert result.exit_code == 2
        assert "Traceback" not in result.output


def test_io_and_walship_errors_become_one_line() -> None:
    import click

    from walship.cli.errors import WalshipGroup
    from walship.errors import LogCorruptError

    @click.group(cls=WalshipGroup)
    def group() -> None: ...

    @group.command()
    def io() -> None:
        raise PermissionError(13, "Permission denied", "/var/wal/segment_1")

    @group.command()
    def corrupt() -> None:
        raise LogCorruptError("/var/wal: segment_x at offset 64: corrupt_frame:\nCRC mismatch")

    result = CliRunner().invoke(group, ["io"])
    assert one_line_error(result) == "/var/wal/segment_1: Permission denied"
    result = CliRunner().invoke(group, ["corrupt"])
    assert one_line_error(result) == "/var/wal: segment_x at offset 64: corrupt_frame: CRC mismatch"


def test_storage_options_must_be_pairs(wal: Path) -> None:
    result = run("verify", "memory://walship-cli-test/nothing", "-o", "novalue")
    assert one_line_error(result) == "--storage-option 'novalue': expected KEY=VALUE"


# --- demo -------------------------------------------------------------------------------


def test_demo_runs_with_plugins_on(tmp_path: Path) -> None:
    result = run("demo", "--dir", tmp_path / "demo", "--frames", "400", "--segment-bytes", "4096")
    assert result.exit_code == 0, result.output
    assert "verify           ok: headers, frames and chain" in result.stdout
    assert "metrics (plugin walship.plugins.metrics, both opens):" in result.stdout
    assert "  segments closed    " in result.stdout
    assert "  recoveries         2 (0 repairs)" in result.stdout
    events = [line for line in result.stderr.splitlines() if line.startswith("event=")]
    closed = [e for e in events if e.startswith("event=segment_closed ")]
    scan = scan_store(PosixStore(tmp_path / "demo"))
    assert len(closed) == len(scan.segments) - 1
    quiet = run("demo", "--dir", tmp_path / "quiet", "--frames", "50", "--quiet")
    assert quiet.exit_code == 0 and "event=" not in quiet.stderr
    assert scan_store(PosixStore(tmp_path / "quiet")).ok  # a --dir is kept
    assert (tmp_path / "quiet.archive").is_dir() and (tmp_path / "quiet.restored").is_dir()


def test_demo_removes_its_temporary_directories_unless_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # mkdtemp reads TMPDIR again
    result = run("demo", "--frames", "50", "--quiet")
    assert result.exit_code == 0, result.output
    (made,) = re.findall(r"^log directory +(\S+)$", result.stdout, re.M)
    assert Path(made).parent == tmp_path
    assert f"removed          {made} and its archive (--keep keeps them)" in result.stdout
    assert list(tmp_path.iterdir()) == []
    result = run("demo", "--frames", "50", "--quiet", "--keep")
    assert result.exit_code == 0, result.output
    assert "--keep keeps them" not in result.stdout
    (made,) = re.findall(r"^log directory +(\S+)$", result.stdout, re.M)
    kept = sorted(p.name for p in tmp_path.iterdir())
    name = Path(made).name
    assert kept == [name, f"{name}.archive", f"{name}.from-checkpoint", f"{name}.restored"]
    assert scan_store(PosixStore(made)).ok


# --- the installed script ---------------------------------------------------------------


def _script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert WALSHIP.exists(), f"the walship script is not installed at {WALSHIP}"
    return subprocess.run(
        [str(WALSHIP), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:walship"},
    )


def test_the_installed_script(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = subprocess.run(
        [str(WALSHIP), "append", "-c", str(config), "--batch", "10"],
        input="\n".join(f"line {i}" for i in range(120)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "120\n"
    proc = _script("verify", tmp_path / "wal", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["frames"] == 120 and doc["segments"] > 3
    proc = _script("dump", tmp_path / "wal", "--from-seq", "120")
    assert [json.loads(line)["payload_b64"] for line in proc.stdout.splitlines()] == [
        base64.b64encode(b"line 119").decode()
    ]
    (tmp_path / "wal" / segment_name(2)).unlink()
    proc = _script("verify", tmp_path / "wal")
    assert proc.returncode == 1
    assert f"{segment_name(2)}: offset 0: missing_segment: " in proc.stdout
    proc = _script("inspect", tmp_path / "nowhere")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"walship: error: {tmp_path / 'nowhere'}: no such directory\n"
    proc = _script("append", "-c", tmp_path / "nope.yaml")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"walship: error: {tmp_path / 'nope.yaml'}: no such config file (`walship init` "
        "writes one)\n"
    )
    proc = _script("--version")
    assert proc.returncode == 0 and proc.stdout == f"walship, version {walship.__version__}\n"


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, "durability: none\n")
    lines = "".join(f"record number {i:05d} of many\n" for i in range(3000))
    assert _script_input(config, lines).returncode == 0
    proc = subprocess.run(
        f"{WALSHIP} dump {tmp_path / 'wal'} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(proc.stdout)["commit_seq"] == 1
    assert "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr


def _script_input(config: Path, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WALSHIP), "append", "-c", str(config), "--batch", "500"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
