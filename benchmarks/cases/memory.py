"""Memory: the peak RSS growth of a process appending 1 GiB, measured in a child process so that
nothing the suite itself holds counts."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.runner import Context, Result, Target, median, remove_tree

_CHILD = r"""
import json, os, sys
import walship

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")

def reset_peak():
    # Linux >= 4.0: "5" resets the peak RSS (VmHWM) to the current RSS. (getrusage's ru_maxrss
    # cannot be used: a child forked from a large parent inherits the parent's peak.)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

directory, total = sys.argv[1], int(sys.argv[2])
payload = os.urandom(4096)
batch = [payload] * 256  # 1 MiB of payloads per append_batch
log = walship.open(directory)  # durability always: every batch synced, segments rotate at 64 MiB
log.append(b"warm-up")
reset_peak()
before = status("VmRSS")
written = 0
while written < total:
    log.append_batch(batch)
    written += 4096 * len(batch)
log.close()
peak = status("VmHWM")
print(json.dumps({"growth": peak - before, "written": written}))
"""


def peak_rss_growth(ctx: Context, total: int) -> float:
    """MiB of peak RSS growth of a child that appends ``total`` bytes."""
    d = ctx.fresh_dir("rss")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(d / "wal"), str(total)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        growth: float = json.loads(out)["growth"]
        return max(0.0, growth) / (1 << 20)
    finally:
        remove_tree(d)


def rss_1gib(ctx: Context) -> Result:
    total = ctx.profile.rss_bytes
    samples = [peak_rss_growth(ctx, total) for _ in range(max(1, min(3, ctx.rounds)))]
    return Result(
        "rss_1GiB",
        "MiB",
        None,
        Target("<=", 100, on="value", unit="MiB"),
        median(samples),
        None,
        samples,
        note=f"peak RSS growth of a child process appending {total >> 20} MiB "
        "(1 MiB batches of 4 KiB, durability always)",
    )


__all__ = ["rss_1gib"]
