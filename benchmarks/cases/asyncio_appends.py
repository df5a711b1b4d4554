"""Durable appends from many tasks on one event loop: ``await AsyncLog.append`` (the loop's
appends share the group commit, resolved through the loop) against ``asyncio.to_thread(log.append,
...)`` on the sync API (each append a trip through the default executor's threads)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import walship
from benchmarks.runner import Context, Result, Target, alternate, median, remove_tree

TASKS = 64
"""Tasks appending at once on the one loop."""
NAME = "asyncio_appends"
UNIT = "appends/s"
BASELINE = "asyncio.to_thread(log.append) on the sync API, same tasks"
TARGET = Target(">=", 1.5)


def appends_per_task(ctx: Context) -> int:
    """From the profile: about as many appends in all as the 16-thread case makes."""
    p = ctx.profile
    return max(2, p.sync_appends_per_thread * p.sync_threads // TASKS)


async def _tasks(append: Callable[[], Awaitable[object]], count: int) -> float:
    """Appends per second of :data:`TASKS` tasks each awaiting ``append(payload)`` ``count``
    times, from a common start to the last task's end."""

    async def one() -> None:
        for _ in range(count):
            await append()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(TASKS)))
    return TASKS * count / (time.perf_counter() - start)


def walship_async(ctx: Context, payload: bytes, count: int) -> float:
    d = ctx.fresh_dir("wal-aio")

    async def main() -> float:
        async with await walship.open_async(d, durability="always") as log:
            await log.append(payload)  # the segment exists and is warm
            return await _tasks(lambda: log.append(payload), count)

    try:
        return asyncio.run(main())
    finally:
        remove_tree(d)


def to_thread(ctx: Context, payload: bytes, count: int) -> float:
    d = ctx.fresh_dir("wal-to-thread")

    async def main() -> float:
        with walship.open(d, durability="always") as log:
            log.append(payload)
            return await _tasks(lambda: asyncio.to_thread(log.append, payload), count)

    try:
        return asyncio.run(main())
    finally:
        remove_tree(d)


def asyncio_appends(ctx: Context) -> Result:
    payload = os.urandom(100)
    count = appends_per_task(ctx)
    a, b = alternate(
        ctx, lambda: walship_async(ctx, payload, count), lambda: to_thread(ctx, payload, count)
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
        note=f"{TASKS} tasks on one loop, {count} awaited 100 B appends each, durability always",
    )


__all__ = ["BASELINE", "NAME", "TARGET", "TASKS", "UNIT", "asyncio_appends"]
