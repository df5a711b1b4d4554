"""Unsynced 100 B batches against the Rust seed's own segment engine (tools/seedcheck).

The seed side runs ``seedcheck bench-batch`` (tools/seedcheck/src/bench.rs) as a child process,
one round per call: it appends the same batches through the seed's ``SegmentManager`` (one
``append_frames_with_sync(.., false)`` per batch, then the caller's rotation check) and reports
its own timing of the appends, so the child's start-up is not counted. The harness is built
once per run, offline, from Debian's packaged crate sources (tools/seedcheck/.cargo/config.toml).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.cases.appends import ONE_SEGMENT, encode_frames, payloads, walship_batches
from benchmarks.runner import Context, Result, Skip, Target, alternate, median, remove_tree

NAME = "seed_batch_100B"
UNIT = "frames/s"
BASELINE = "the Rust seed's SegmentManager, append_frames_with_sync without sync, per batch"
TARGET = Target(">=", 1.0)

HARNESS = Path(__file__).resolve().parents[2] / "tools" / "seedcheck"
_SHARED_KEY = "seedcheck"
BUILD_TIMEOUT = 1800.0
"""Seconds; a first build from nothing takes about a minute on two cores."""


def find_cargo() -> str | None:
    """``cargo`` on ``PATH``, else ``$CARGO_HOME/bin/cargo`` (rustup's ``~/.cargo/bin``), else
    ``None``."""
    found = shutil.which("cargo")
    if found is not None:
        return found
    home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    candidate = home / "bin" / "cargo"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    return (HARNESS / target / "release" / "seedcheck").resolve()


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    return (errors or lines or ["no output"])[0]


def _build() -> Path:
    """Build the harness (``cargo build --release --offline --quiet`` in tools/seedcheck) and
    return its binary.

    Raises:
        Skip: no checkout's tools/seedcheck, no cargo, or the build failed (one line).
    """
    if not (HARNESS / "Cargo.toml").is_file():
        raise Skip(f"the seed harness is not here ({HARNESS}): run from a source checkout")
    cargo = find_cargo()
    if cargo is None:
        raise Skip("cargo not found (on PATH or in $CARGO_HOME/bin): the seed cannot be built")
    try:
        done = subprocess.run(
            [cargo, "build", "--release", "--offline", "--quiet"],
            cwd=HARNESS,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Skip(f"cargo build of tools/seedcheck did not run: {e}") from None
    binary = _binary()
    if done.returncode != 0 or not binary.is_file():
        raise Skip(
            "cargo build of tools/seedcheck failed (Debian's librust-*-dev crates, see "
            f"tools/seedcheck/regenerate.sh): {_first_error(done.stderr)}"
        )
    return binary


def harness(ctx: Context) -> Path:
    """The seed harness's binary, built at most once per run (the outcome, a binary or the
    reason it cannot be built, is kept in ``ctx.shared``).

    Raises:
        Skip: as :func:`_build`, again on every call once it failed.
    """
    cached = ctx.shared.get(_SHARED_KEY)
    if cached is None:
        try:
            cached = _build()
        except Skip as e:
            cached = e
        ctx.shared[_SHARED_KEY] = cached
    if isinstance(cached, Skip):
        raise cached
    assert isinstance(cached, Path)
    return cached


def seed_batches(
    ctx: Context, binary: Path, payload_bytes: int, frames: int, batches: int
) -> tuple[float, int]:
    """One round of the seed: seconds of its appends (its own clock) and the frame bytes it
    wrote, into a fresh directory under the scratch directory (removed after).

    Raises:
        RuntimeError: the harness failed or printed something else than one round.
    """
    d = ctx.fresh_dir("seed-batch")
    try:
        args = [str(x) for x in (d, batches, frames, payload_bytes, 1, ONE_SEGMENT)]
        done = subprocess.run(
            [str(binary), "bench-batch", *args], capture_output=True, text=True, check=False
        )
        lines = done.stdout.splitlines()
        if done.returncode != 0 or len(lines) != 1:
            raise RuntimeError(
                f"seedcheck bench-batch exited {done.returncode}: {done.stderr.strip()}"
                f" {done.stdout.strip()}"
            )
        report = json.loads(lines[0])
        return float(report["seconds"]), int(report["bytes"])
    finally:
        remove_tree(d)


def seed_batch_100b(ctx: Context) -> Result:
    """walship's ``append_batch`` (durability ``none``) against the seed's batch append, the
    same frames of 100 B (one payload ``batch_frames`` times) in the same batches, one segment
    per round on both sides.

    Raises:
        Skip: the seed harness cannot be built here (see :func:`harness`).
        AssertionError: a side wrote other than the expected number of bytes.
    """
    binary = harness(ctx)
    p = ctx.profile
    items = payloads(100, p.batch_frames)
    frames = p.batch_frames * p.batches_100b
    expected = len(encode_frames(items)) * p.batches_100b

    def checked(side: str, timing: tuple[float, int]) -> float:
        elapsed, written = timing
        if written != expected:
            raise AssertionError(f"{side} wrote {written} frame bytes, expected {expected}")
        return frames / elapsed

    a, b = alternate(
        ctx,
        lambda: checked("walship", walship_batches(ctx, items, p.batches_100b)),
        lambda: checked("the seed", seed_batches(ctx, binary, 100, p.batch_frames, p.batches_100b)),
    )
    return Result(
        NAME,
        UNIT,
        BASELINE,
        TARGET,
        median(a),
        median(b),
        a,
        b,
        note=f"{p.batch_frames} frames of 100 B per batch, no sync (durability none); "
        "the seed built with cargo --release from tools/seedcheck",
    )


__all__ = ["BASELINE", "NAME", "TARGET", "UNIT", "find_cargo", "harness", "seed_batch_100b"]
