"""``walship bench``: the benchmark suite of the source tree (``benchmarks/``), side by side
with its baselines. The same as ``python -m benchmarks``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

import walship
from walship.errors import WalshipError


def _suite_main() -> object:
    """``benchmarks.cli.main``, from an importable ``benchmarks`` package or from the source
    tree this walship was installed from (the suite is not part of the wheel).

    Raises:
        WalshipError: no suite is to be found.
    """
    try:
        return importlib.import_module("benchmarks.cli").main
    except ImportError:
        pass
    root = Path(walship.__file__).resolve().parent.parent
    if (root / "benchmarks" / "cli.py").is_file():
        sys.path.insert(0, str(root))
        return importlib.import_module("benchmarks.cli").main
    raise WalshipError(
        "walship bench needs a source checkout: the benchmark suite (benchmarks/) ships with "
        "walship's source tree and sdist, not with the wheel; run it from an editable install "
        "(git clone, then pip install -e '.[bench]')"
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="The short run (under a minute).")
@click.option("--smoke", is_flag=True, hidden=True)
@click.option("--json", "as_json", is_flag=True, help='Print only {"cases": [...]} on stdout.')
@click.option("--only", multiple=True, metavar="CASE", help="Run this case (repeatable).")
@click.option("--rounds", type=click.IntRange(min=1), help="Rounds per case.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Scratch directory on the filesystem to measure (default: a temporary directory).",
)
@click.option(
    "--doc", type=click.Path(dir_okay=False, path_type=Path), help="Write the results here."
)
@click.option(
    "--chart", type=click.Path(dir_okay=False, path_type=Path), help="Write the PNG chart here."
)
@click.option("--no-doc", is_flag=True, help="Write neither document nor chart.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def bench(
    quick: bool,
    smoke: bool,
    as_json: bool,
    only: tuple[str, ...],
    rounds: int | None,
    directory: Path | None,
    doc: Path | None,
    chart: Path | None,
    no_doc: bool,
    quiet: bool,
) -> None:
    """Run the benchmark suite: each case alternates walship and its baseline in the same run
    and reports medians and their ratio against the target (see docs/PERFORMANCE.md). A full
    run writes docs/PERFORMANCE.md and its chart. Needs a source checkout (or an unpacked
    sdist) installed with pip install -e: the suite is not part of the wheel."""
    argv: list[str] = []
    flags = {"--quick": quick, "--smoke": smoke, "--json": as_json, "--no-doc": no_doc}
    argv += [flag for flag, on in flags.items() if on]
    if quiet:
        argv.append("--quiet")
    if only:
        argv += ["--only", *only]
    for flag, value in (("--rounds", rounds), ("--dir", directory), ("--doc", doc)):
        if value is not None:
            argv += [flag, str(value)]
    if chart is not None:
        argv += ["--chart", str(chart)]
    main = _suite_main()
    status = main(argv)  # type: ignore[operator]
    if status:
        sys.exit(status)
