"""``python -m benchmarks [--quick] [--json] [--only CASE...]`` (and ``walship bench``)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import machine, report
from benchmarks.runner import PROFILES, Context, Result, Skip

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "PERFORMANCE.md"
CHART = ROOT / "docs" / "performance.png"


def parser() -> argparse.ArgumentParser:
    from benchmarks.cases import CASES

    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="walship's benchmark suite: every case alternates walship and its baseline "
        "in the same run and reports medians and their ratio.",
    )
    p.add_argument("--quick", action="store_true", help="the short run (under a minute)")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests: seconds
    p.add_argument(
        "--json",
        action="store_true",
        help='print only {"cases": [...]} on stdout (progress goes to stderr)',
    )
    p.add_argument("--only", nargs="+", metavar="CASE", help=f"run these cases: {', '.join(CASES)}")
    p.add_argument("--rounds", type=int, help="rounds per case (default: 9 full, 3 quick)")
    p.add_argument(
        "--dir", type=Path, help="scratch directory on the filesystem to test (default: a temp dir)"
    )
    p.add_argument(
        "--doc",
        type=Path,
        help=f"write the results section into this Markdown file (default for a full run of every "
        f"case: {DOC})",
    )
    p.add_argument("--chart", type=Path, help=f"write the PNG chart here (default: {CHART})")
    p.add_argument("--no-doc", action="store_true", help="write neither document nor chart")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def run(names: list[str], ctx: Context) -> list[Result]:
    """Run the named cases in order; a skip or an error becomes that case's result."""
    from benchmarks.cases import CASES, HEADINGS

    results = []
    for name in names:
        ctx.say(f"{name} ...")
        started = time.perf_counter()
        try:
            result = CASES[name](ctx)
        except Skip as e:
            unit, base, target = HEADINGS[name]
            result = Result(name, unit, base, target, note=f"skipped: {e}")
            ctx.say(f"{name}: skipped: {e}")
        except Exception as e:
            unit, base, target = HEADINGS[name]
            result = Result(name, unit, base, target, error=f"{type(e).__name__}: {e}")
            print(traceback.format_exc(), file=sys.stderr)
        result.seconds = time.perf_counter() - started
        if result.note.startswith("archive not available"):
            ctx.say(f"{name}: {result.note}")
        ctx.say(
            f"{name}: {report.fmt(result.value)} vs {report.fmt(result.baseline_value)} "
            f"{result.unit}, ratio {report.fmt(result.ratio)} (target {result.target}) "
            f"in {result.seconds:.1f} s"
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return the exit status (1 when a case failed with an error)."""
    from benchmarks.cases import CASES

    args = parser().parse_args(argv)
    names = list(CASES)
    if args.only:
        unknown = [n for n in args.only if n not in CASES]
        if unknown:
            print(
                f"benchmarks: unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}",
                file=sys.stderr,
            )
            return 2
        names = [n for n in CASES if n in args.only]
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.rounds:
        if args.rounds < 1:
            print("benchmarks: --rounds must be at least 1", file=sys.stderr)
            return 2
        from dataclasses import replace

        profile = replace(profile, rounds=args.rounds)
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="walship-bench-", dir=args.dir))
    ctx = Context(profile, scratch, verbose=not args.quiet)
    started = time.perf_counter()
    try:
        results = run(names, ctx)
    finally:
        ctx.close()
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started

    if args.json:
        print(json.dumps({"cases": [r.as_json() for r in results]}, indent=2))
    else:
        print(report.text_table(results))
        print(f"\n{profile.name} run, {profile.rounds} rounds per case, {seconds:.0f} s")

    # a full run of some cases only would replace the whole table with those few rows
    full_table = profile.name == "full" and not args.only
    write_doc = not args.no_doc and (args.doc is not None or full_table)
    if write_doc:
        doc = args.doc or DOC
        chart_path = args.chart or (doc.parent / CHART.name)
        note = report.chart(results, chart_path, f"walship benchmarks ({profile.name} run)")
        if note:
            ctx.say(note)
            chart_md = f"_{note}_"
        else:
            rel = (
                chart_path.relative_to(doc.parent)
                if chart_path.is_relative_to(doc.parent)
                else chart_path
            )
            chart_md = f"![each case's ratio against its target]({rel})"
        desc = machine.describe(scratch.parent)
        report.update_doc(
            doc, report.markdown(results, desc, profile.name, profile.rounds, seconds, chart_md)
        )
        ctx.say(f"wrote {doc} and {'no chart' if note else chart_path}")
    return 1 if any(r.error for r in results) else 0
