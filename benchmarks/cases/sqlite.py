"""SQLite (stdlib ``sqlite3``, WAL mode) as the baseline a user would otherwise reach for."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from benchmarks.cases.appends import payloads, run_threads, walship_batches, walship_sync_appends
from benchmarks.runner import Context, Result, Target, alternate, median, remove_tree


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: autocommit, so one INSERT is one transaction; a long busy timeout
    # so that 16 writers queue for the write lock instead of failing.
    conn = sqlite3.connect(path, isolation_level=None, timeout=120, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def _new_db(ctx: Context, synchronous: str) -> tuple[Path, Path]:
    d = ctx.fresh_dir("sqlite")
    path = d / "bench.db"
    conn = _connect(path, synchronous)
    conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    conn.close()
    return d, path


def sqlite_sync_rows(ctx: Context, payload: bytes, count: int, threads: int) -> float:
    """Rows per second: ``threads`` threads, a connection each, one row per transaction,
    WAL mode, synchronous=FULL."""
    d, path = _new_db(ctx, "FULL")
    conns = [_connect(path, "FULL") for _ in range(threads)]
    try:
        if threads == 1:
            conn = conns[0]
            return run_threads(
                lambda: conn.execute("INSERT INTO log (payload) VALUES (?)", (payload,)), count, 1
            )
        local = threading.local()
        free = iter(conns)
        lock = threading.Lock()

        def insert() -> None:
            conn = getattr(local, "conn", None)
            if conn is None:
                with lock:
                    conn = local.conn = next(free)
            conn.execute("INSERT INTO log (payload) VALUES (?)", (payload,))

        return run_threads(insert, count, threads)
    finally:
        for c in conns:
            c.close()
        remove_tree(d)


def sqlite_batches(ctx: Context, items: list[bytes], batches: int) -> float:
    """Seconds for ``batches`` transactions of ``executemany`` over ``items`` (WAL,
    synchronous=NORMAL)."""
    d, path = _new_db(ctx, "NORMAL")
    conn = _connect(path, "NORMAL")
    try:
        rows = [(p,) for p in items]
        start = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO log (payload) VALUES (?)", rows)
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()
        remove_tree(d)


def sqlite_sync(ctx: Context) -> Result:
    p = ctx.profile
    payload = os.urandom(100)
    a, b = alternate(
        ctx,
        lambda: walship_sync_appends(ctx, payload, p.sync_appends, 1),
        lambda: sqlite_sync_rows(ctx, payload, p.sync_appends, 1),
    )
    return Result(
        "sqlite_sync",
        "appends/s",
        "sqlite3 WAL, synchronous=FULL, one row per transaction",
        Target(">=", 1.0),
        median(a),
        median(b),
        a,
        b,
        note="walship: append_sync_1thread",
    )


def sqlite_sync_16threads(ctx: Context) -> Result:
    p = ctx.profile
    payload = os.urandom(100)
    a, b = alternate(
        ctx,
        lambda: walship_sync_appends(ctx, payload, p.sync_appends_per_thread, p.sync_threads),
        lambda: sqlite_sync_rows(ctx, payload, p.sync_appends_per_thread, p.sync_threads),
    )
    return Result(
        "sqlite_sync_16threads",
        "appends/s",
        f"sqlite3 as sqlite_sync, {p.sync_threads} threads, a connection each",
        Target(">=", 5),
        median(a),
        median(b),
        a,
        b,
        note="walship: append_sync_16threads",
    )


def sqlite_batch(ctx: Context) -> Result:
    p = ctx.profile
    items = payloads(100, p.batch_frames)
    frames = p.batch_frames * p.batches_100b
    a, b = alternate(
        ctx,
        lambda: frames / walship_batches(ctx, items, p.batches_100b)[0],
        lambda: frames / sqlite_batches(ctx, items, p.batches_100b),
    )
    return Result(
        "sqlite_batch",
        "frames/s",
        f"sqlite3 executemany of {p.batch_frames} rows per transaction, WAL, synchronous=NORMAL",
        Target(">=", 3),
        median(a),
        median(b),
        a,
        b,
        note="walship: append_batch_100B",
    )


__all__ = ["sqlite_batch", "sqlite_sync", "sqlite_sync_16threads"]
