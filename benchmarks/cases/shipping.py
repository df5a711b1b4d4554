"""Live shipping's cost on the append path: synced 100 B appends with ``archive.ship_interval``
(the active segment's new bytes go to moto's S3 server as parts every interval) against the same
appends on a log without an archive, in the same run.

Two cases share the measurement of a round: ``append_sync_shipping`` compares appends per second
(the issue's "append throughput with live shipping on and off"), ``append_p99_shipping`` the p99
latency of one append (lower is better). Shipping never runs on the append path (a thread of
its own reads what is durable through the store), so what either ratio shows is the shipper's
share of the interpreter lock and of the two cores.
"""

from __future__ import annotations

import os
import time
from typing import Any

import walship
from benchmarks.cases.archive import archive_config, archive_missing, p99, remove_prefix
from benchmarks.runner import Context, Result, Skip, Target, alternate, median, remove_tree

SHIP_INTERVAL = "100ms"
"""Parts every 100 ms: ten PUT pairs a second while appends go on (the worst the README
recommends; the default is 1 s)."""

_SEGMENT_BYTES = 256 << 20  # one segment all along: what ships is parts only


def _appends(log: Any, count: int) -> tuple[float, float]:
    """Appends per second and p99 latency (ms) of ``count`` synced 100 B appends."""
    payload = os.urandom(100)
    lat = []
    clock = time.perf_counter
    start = clock()
    for _ in range(count):
        t = clock()
        log.append(payload)
        lat.append(clock() - t)
    elapsed = clock() - start
    return count / elapsed, p99(lat) * 1000


def _round(ctx: Context, shipping: bool) -> tuple[float, float]:
    d = ctx.fresh_dir("shipping")
    prefix = f"ship-{os.getpid()}-{time.monotonic_ns()}"
    options: dict[str, Any] = {"max_segment_bytes": _SEGMENT_BYTES}
    if shipping:
        options["archive"] = {**archive_config(ctx, prefix), "ship_interval": SHIP_INTERVAL}
    try:
        with walship.open(d, **options) as log:
            if shipping:
                time.sleep(0.2)  # the shipper's first round (and the bucket's probe) before
            out = _appends(log, ctx.profile.p99_appends * 2)
            if shipping and log.archiver is not None:
                shipped = log.stats()["archive"]["shipping"]
                if not shipped or not shipped.get("parts"):
                    ctx.say("append_shipping: no part was shipped during the appends")
            return out
    finally:
        remove_tree(d)
        if shipping:
            remove_prefix(ctx, prefix)


def _measured(ctx: Context) -> dict[str, tuple[list[float], list[float]]]:
    """Both cases' samples from one set of alternating rounds (taken once per run)."""
    key = "shipping-rounds"
    if key not in ctx.shared:
        missing = archive_missing()
        if missing:
            raise Skip(missing)
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []

        def on() -> float:
            ours.append(_round(ctx, True))
            return ours[-1][0]

        def off() -> float:
            theirs.append(_round(ctx, False))
            return theirs[-1][0]

        alternate(ctx, on, off)
        ctx.shared[key] = {
            "rate": ([r for r, _ in ours], [r for r, _ in theirs]),
            "p99": ([p for _, p in ours], [p for _, p in theirs]),
        }
    return ctx.shared[key]  # type: ignore[no-any-return]


def _result(ctx: Context, name: str, which: str, unit: str, target: Target, note: str) -> Result:
    result = Result(name, unit, "the same appends without an archive", target, note=note)
    result.samples, result.baseline_samples = _measured(ctx)[which]
    result.value, result.baseline_value = median(result.samples), median(result.baseline_samples)
    return result


def append_sync_shipping(ctx: Context) -> Result:
    return _result(
        ctx,
        "append_sync_shipping",
        "rate",
        "appends/s",
        Target(">=", 0.8),
        f"synced 100 B appends, one thread, live shipping every {SHIP_INTERVAL} to moto",
    )


def append_p99_shipping(ctx: Context) -> Result:
    return _result(
        ctx,
        "append_p99_shipping",
        "p99",
        "ms",
        Target("<=", 1.5),
        f"p99 of synced 100 B appends while live shipping every {SHIP_INTERVAL} (lower is better)",
    )


__all__ = ["SHIP_INTERVAL", "append_p99_shipping", "append_sync_shipping"]
