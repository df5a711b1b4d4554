"""The benchmark suite runs: every case of the issue produces the JSON fields.

Smoke-sized (seconds): the numbers are not checked here, since timings flake on shared machines;
performance is judged by the suite itself (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks import report
from benchmarks.cases import CASES, HEADINGS, seed
from benchmarks.cli import main, run
from benchmarks.runner import PROFILES, Context, Result, Target
from walship.cli import build_cli

FIELDS = {"name", "value", "unit", "baseline_name", "baseline_value", "ratio", "target"}
ISSUE_CASES = [
    "append_batch_100B",
    "append_batch_4KiB",
    "append_batch_64KiB",
    "append_sync_1thread",
    "append_sync_16threads",
    "sqlite_sync",
    "sqlite_sync_16threads",
    "sqlite_batch",
    "recover_100B",
    "recover_64KiB",
    "archive",
    "append_p99_while_archiving",
    "restore",
    "rss_1GiB",
    "asyncio_appends",
    "read_back_100B",
    "read_back_64KiB",
    "peers_sync_1thread",
    "peers_sync_16threads",
    "peers_batch_100B",
]


def test_every_case_of_the_issue_is_in_the_suite() -> None:
    assert [c for c in CASES if c in ISSUE_CASES] == ISSUE_CASES  # in order (others may join)


def test_smoke_run_prints_every_case_with_exactly_the_json_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--smoke", "--json", "--quiet", "--no-doc", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    doc = json.loads(out)
    assert list(doc) == ["cases"]
    assert [c["name"] for c in doc["cases"]] == list(CASES)
    for case in doc["cases"]:
        assert set(case) == FIELDS, case["name"]
        assert isinstance(case["unit"], str) and case["unit"]
        assert isinstance(case["target"], str) and case["target"][:2] in (">=", "<=")
        # a case that is skipped or fails shows the target it would have run against
        assert case["target"] == str(HEADINGS[case["name"]][2]), case["name"]
        if case["name"] == seed.NAME and seed.find_cargo() is None:
            continue  # skipped without cargo (see test_the_seed_case_says_why_it_cannot_run)
        if case["name"] not in ("archive", "append_p99_while_archiving", "restore"):
            # walship's half always runs; the archive's may be skipped until it is installed
            assert isinstance(case["value"], float), case["name"]
        if case["baseline_name"] is not None:
            assert isinstance(case["baseline_value"], float), case["name"]
    # the scratch directory is left empty
    assert not any(tmp_path.iterdir())


def test_only_runs_the_named_cases_and_rejects_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--smoke", "--json", "-q", "--no-doc", "--dir", str(tmp_path), "--only"]
    assert main([*argv, "append_sync_1thread", "rss_1GiB"]) == 0
    names = [c["name"] for c in json.loads(capsys.readouterr().out)["cases"]]
    assert names == ["append_sync_1thread", "rss_1GiB"]
    assert main([*argv, "no_such_case"]) == 2
    assert "unknown case(s) no_such_case" in capsys.readouterr().err


def _results() -> list[Result]:
    met = Result("a", "MB/s", "base", Target(">=", 0.8), 90.0, 100.0)
    missed = Result("b", "ms", "base", Target("<=", 1.5), 3.0, 1.0)
    skipped = Result("c", "MB/s", "base", Target(">=", 0.8), None, 50.0, note="skipped: x")
    rss = Result("d", "MiB", None, Target("<=", 100, on="value", unit="MiB"), 12.0)
    return [met, missed, skipped, rss]


def test_targets_and_verdicts() -> None:
    met, missed, skipped, rss = _results()
    assert met.ratio == pytest.approx(0.9) and met.met is True
    assert missed.met is False and report.verdict(missed) == "NOT met"
    assert skipped.ratio is None and report.verdict(skipped) == "skipped"
    assert rss.met is True and str(rss.target) == "<= 100 MiB"
    assert rss.as_json()["ratio"] is None


def test_doc_section_is_replaced_between_markers(tmp_path: Path) -> None:
    doc = tmp_path / "PERF.md"
    doc.write_text("# Perf\n\nprose before\n")
    section = report.markdown(_results(), {"CPU": "x"}, "smoke", 1, 1.0, None)
    report.update_doc(doc, section)
    report.update_doc(doc, section.replace("| CPU | x |", "| CPU | y |"))
    text = doc.read_text()
    assert text.startswith("# Perf\n\nprose before\n")
    assert text.count(report.BEGIN) == 1 and "| CPU | y |" in text and "| CPU | x |" not in text
    assert "| `b` | 3 | 1 | ms | 3 | <= 1.5 | NOT met |" in text


def test_chart_is_skipped_cleanly_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    note = report.chart(_results(), tmp_path / "c.png", "t")
    assert note is not None and "matplotlib is not installed" in note
    assert not (tmp_path / "c.png").exists()


def test_chart_is_drawn_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert report.chart(_results(), tmp_path / "c.png", "t") is None
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_walship_bench_runs_the_same_suite(tmp_path: Path) -> None:
    args = ["bench", "--smoke", "--json", "-q", "--no-doc", "--dir", str(tmp_path)]
    result = CliRunner().invoke(build_cli(), [*args, "--only", "append_batch_100B"])
    assert result.exit_code == 0, result.output
    (case,) = json.loads(result.output)["cases"]
    assert set(case) == FIELDS and case["name"] == "append_batch_100B"


def test_a_peer_that_is_not_installed_is_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks.cases import peers

    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError
    found, missing = peers.installed()
    assert peers.LMDBPeer not in found and peers.SQLitePeer in found
    assert "LMDB skipped (lmdb is not installed)" in missing


@pytest.mark.parametrize(
    ("cargo_script", "note"),
    [
        (
            None,
            "skipped: cargo not found (on PATH or in $CARGO_HOME/bin): the seed cannot be built",
        ),
        (
            "echo 'warning: x' >&2; echo 'error: no matching package named `blake3` found' >&2;"
            " exit 101",
            "skipped: cargo build of tools/seedcheck failed (Debian's librust-*-dev crates, see "
            "tools/seedcheck/regenerate.sh): error: no matching package named `blake3` found",
        ),
    ],
    ids=["no-cargo", "build-fails"],
)
def test_the_seed_case_says_why_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cargo_script: str | None, note: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if cargo_script is not None:
        cargo = bin_dir / "cargo"
        cargo.write_text(f"#!/bin/sh\n{cargo_script}\n")
        cargo.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CARGO_HOME", str(tmp_path / "no-cargo-home"))
    ctx = Context(PROFILES["smoke"], tmp_path, verbose=False)
    (result,) = run([seed.NAME], ctx)
    assert (result.value, result.baseline_value, result.error) == (None, None, "")
    assert result.note == note
    for tool in bin_dir.iterdir():  # the outcome is kept for the run: no second look
        tool.unlink()
    (again,) = run([seed.NAME], ctx)
    assert again.note == note


def test_the_peer_table_has_a_ratio_per_peer_and_case() -> None:
    ours = Result("peers_x", "appends/s", "the fastest peer: LMDB", Target(">=", 1.3), 300.0, 200.0)
    ours.peers = {"SQLite": 100.0, "LMDB": 200.0, "LevelDB": 0.0}
    lines = report.peer_table([ours, *_results()])
    assert "| case | SQLite | LMDB | LevelDB |" in lines
    assert "| `peers_x` | 3 | 1.5 | — |" in lines
    assert report.peer_table(_results()) == []


def test_the_16_thread_case_says_how_many_appends_share_each_sync(tmp_path: Path) -> None:
    ctx = Context(PROFILES["smoke"], tmp_path, verbose=False)
    (result,) = run(["append_sync_16threads"], ctx)
    share = float(result.note.split("; ")[1].split(" appends shared")[0])
    assert 1.0 <= share <= PROFILES["smoke"].sync_threads
