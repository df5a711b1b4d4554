"""The archive: shipping closed segments to S3 (moto's server on 127.0.0.1), appending while it
runs, and restoring. The baselines are s3fs itself: ``put_file`` / ``get_file`` of the same files
with the same number of worker threads.

walship's half uses the archive API of the archive issue::

    walship.open(dir, archive={"url": "s3://bucket/prefix", "storage_options": {...},
                               "workers": N})
    walship.archive.restore.restore(url, directory, jobs=N)

and learns that a segment is archived from the ``segment_archived`` hook. When that API is not
installed, walship's half is skipped with an "archive not available" line and only the baseline
half runs (its numbers still show what the s3fs limit is on this machine).
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import walship
from benchmarks.cases.appends import payloads
from benchmarks.cases.recovery import segment_files
from benchmarks.cases.s3server import bucket, server
from benchmarks.runner import Context, Result, Skip, alternate, median, remove_tree
from benchmarks.runner import Target as _Target
from walship import hookimpl

if TYPE_CHECKING:
    from walship.options import ArchiveOptions

FRAME_PAYLOAD = 4096
ARCHIVE_TIMEOUT = 300.0


def archive_missing() -> str | None:
    """Why walship's archive cannot be measured here, or ``None`` when it can."""
    for module in ("walship.archive", "walship.archive.archiver", "walship.archive.restore"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"archive not available: {module} does not import ({e})"
    return None


class ArchivedCounter:
    """A plugin that counts ``segment_archived`` events and wakes a waiter at ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.failures = 0
        self._done = threading.Event()

    @hookimpl
    def segment_archived(self, name: str) -> None:
        self.count += 1
        if self.count >= self.expected:
            self._done.set()

    @hookimpl
    def archive_failed(self, name: str) -> None:
        self.failures += 1

    def wait(self, timeout: float = ARCHIVE_TIMEOUT) -> None:
        if not self._done.wait(timeout):
            raise RuntimeError(
                f"walship archived {self.count} of {self.expected} segments in {timeout:.0f} s "
                f"({self.failures} failed attempts)"
            )


def closed_log(ctx: Context) -> tuple[Path, list[Path]]:
    """A log of ``archive_segments`` closed segments of about ``archive_segment_bytes`` each (and
    an empty active one), written once per run. Returns its directory and the closed files."""
    if "archive-log" in ctx.shared:
        return ctx.shared["archive-log"]  # type: ignore[no-any-return]
    p = ctx.profile
    d = ctx.fresh_dir("archive-src")
    per_segment = max(1, math.ceil((p.archive_segment_bytes - 64) / (FRAME_PAYLOAD + 25)))
    items = payloads(FRAME_PAYLOAD, per_segment)
    ctx.say(f"writing {p.archive_segments} segments of {p.archive_segment_bytes >> 10} KiB")
    with walship.open(d, durability="none", max_segment_bytes=1 << 40) as log:
        for _ in range(p.archive_segments):
            log.append_batch(items)
            log.rotate()
    files = segment_files(d)[:-1]  # the last one is the empty active segment
    ctx.shared["archive-log"] = (d, files)
    return d, files


def copy_log(ctx: Context, src: Path) -> Path:
    """A copy of the log at ``src`` to open and change: closed segments hard-linked (never
    written again), everything else copied."""
    dst = ctx.fresh_dir("archive-copy")
    files = sorted(src.iterdir())
    segs = segment_files(src)
    for f in files:
        if f.is_file() and f.name != "walship.lock":
            if segs and f in segs[:-1]:
                os.link(f, dst / f.name)
            else:
                shutil.copy2(f, dst / f.name)
    return dst


def archive_config(ctx: Context, prefix: str) -> dict[str, Any]:
    srv = server(ctx)
    return {
        "url": f"s3://{bucket(ctx)}/{prefix}",
        "storage_options": srv.storage_options,
        "workers": ctx.profile.archive_workers,
    }


def open_archiving(ctx: Context, d: Path, prefix: str, counter: ArchivedCounter) -> Any:
    """``walship.open`` with the archive configured. Raises Skip when the API is not there."""
    missing = archive_missing()
    if missing:
        raise Skip(missing)
    try:
        options = cast("ArchiveOptions", archive_config(ctx, prefix))
        return walship.open(d, archive=options, plugins=[counter])
    except TypeError as e:
        raise Skip(f"archive not available: walship.open(archive=...) failed ({e})") from e


def remove_prefix(ctx: Context, prefix: str) -> None:
    fs = server(ctx).filesystem()
    path = f"{bucket(ctx)}/{prefix}"
    if fs.exists(path):
        fs.rm(path, recursive=True)


def s3fs_put(ctx: Context, files: list[Path], prefix: str) -> float:
    """Seconds to ``put_file`` every file with ``archive_workers`` threads."""
    fs = server(ctx).filesystem()
    root = f"{bucket(ctx)}/{prefix}"
    start = time.perf_counter()
    with ThreadPoolExecutor(ctx.profile.archive_workers) as pool:
        list(pool.map(lambda f: fs.put_file(str(f), f"{root}/{f.name}"), files))
    return time.perf_counter() - start


def _skipped_half(result: Result, why: str) -> Result:
    result.note = f"{why}; only the baseline half ran"
    return result


class _Rounds:
    """Numbers a round-based case collects, so that each half can be skipped on its own."""

    def __init__(self) -> None:
        self.prefixes = 0

    def prefix(self, kind: str) -> str:
        self.prefixes += 1
        return f"{kind}-{os.getpid()}-{self.prefixes}"


def archive(ctx: Context) -> Result:
    p = ctx.profile
    src, files = closed_log(ctx)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    rounds = _Rounds()
    result = Result(
        "archive",
        "MB/s",
        f"s3fs put_file of the same files, {p.archive_workers} threads",
        _Target(">=", 0.9),
        note=f"{len(files)} closed segments of {p.archive_segment_bytes >> 10} KiB to moto's "
        f"server on 127.0.0.1, {p.archive_workers} workers; timed from open's return to the "
        "last segment_archived",
    )
    missing = archive_missing()

    def ours() -> float:
        d = copy_log(ctx, src)
        prefix = rounds.prefix("walship")
        counter = ArchivedCounter(len(files))
        try:
            log = open_archiving(ctx, d, prefix, counter)
            try:
                start = time.perf_counter()
                counter.wait()
                return total_mb / (time.perf_counter() - start)
            finally:
                log.close()
        finally:
            remove_tree(d)
            remove_prefix(ctx, prefix)

    def theirs() -> float:
        prefix = rounds.prefix("s3fs")
        try:
            return total_mb / s3fs_put(ctx, files, prefix)
        finally:
            remove_prefix(ctx, prefix)

    if missing:
        result.baseline_samples = [theirs() for _ in range(ctx.rounds)]
        result.baseline_value = median(result.baseline_samples)
        return _skipped_half(result, missing)
    result.samples, result.baseline_samples = alternate(ctx, ours, theirs)
    result.value, result.baseline_value = median(result.samples), median(result.baseline_samples)
    return result


def p99(latencies: list[float]) -> float:
    xs = sorted(latencies)
    return xs[min(len(xs) - 1, math.ceil(0.99 * len(xs)) - 1)]


def _timed_appends(log: Any, count: int) -> float:
    """p99 latency in ms of ``count`` synced 100 B appends."""
    payload = os.urandom(100)
    lat = []
    clock = time.perf_counter
    for _ in range(count):
        t = clock()
        log.append(payload)
        lat.append(clock() - t)
    return p99(lat) * 1000


def append_p99_while_archiving(ctx: Context) -> Result:
    p = ctx.profile
    src, files = closed_log(ctx)
    rounds = _Rounds()
    result = Result(
        "append_p99_while_archiving",
        "ms",
        "the same appends without archiving",
        _Target("<=", 1.5),
        note=f"p99 of {p.p99_appends} synced 100 B appends while {len(files)} segments upload "
        "(lower is better)",
    )
    missing = archive_missing()

    def ours() -> float:
        d = copy_log(ctx, src)
        prefix = rounds.prefix("p99")
        counter = ArchivedCounter(len(files))
        try:
            log = open_archiving(ctx, d, prefix, counter)
            try:
                p99 = _timed_appends(log, p.p99_appends)
                if counter.count >= len(files):
                    ctx.say("append_p99_while_archiving: the archive finished before the appends")
                counter.wait()
                return p99
            finally:
                log.close()
        finally:
            remove_tree(d)
            remove_prefix(ctx, prefix)

    def theirs() -> float:
        d = copy_log(ctx, src)
        try:
            with walship.open(d) as log:
                return _timed_appends(log, p.p99_appends)
        finally:
            remove_tree(d)

    if missing:
        result.baseline_samples = [theirs() for _ in range(ctx.rounds)]
        result.baseline_value = median(result.baseline_samples)
        return _skipped_half(result, missing)
    result.samples, result.baseline_samples = alternate(ctx, ours, theirs)
    result.value, result.baseline_value = median(result.samples), median(result.baseline_samples)
    return result


def restore(ctx: Context) -> Result:
    p = ctx.profile
    src, files = closed_log(ctx)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    result = Result(
        "restore",
        "MB/s",
        f"parallel s3fs get_file of the same objects, {p.archive_workers} threads",
        _Target(">=", 1.0),
        note=f"restore of {len(files)} segments from moto's server on 127.0.0.1, "
        f"jobs={p.archive_workers}",
    )
    missing = archive_missing()
    prefix = "restore-source"
    remove_prefix(ctx, prefix)
    if missing:
        s3fs_put(ctx, files, prefix)  # so that the baseline half has objects to fetch
    else:
        counter = ArchivedCounter(len(files))
        d = copy_log(ctx, src)
        try:
            with open_archiving(ctx, d, prefix, counter):
                counter.wait()
        finally:
            remove_tree(d)
    ctx.on_exit(lambda: remove_prefix(ctx, prefix))
    fs = server(ctx).filesystem()
    objects = sorted(fs.find(f"{bucket(ctx)}/{prefix}"))
    url = f"s3://{bucket(ctx)}/{prefix}"

    def ours() -> float:
        from walship.archive.restore import restore as walship_restore

        d = ctx.fresh_dir("restored") / "wal"
        try:
            start = time.perf_counter()
            walship_restore(url, str(d), jobs=p.archive_workers, **_restore_options(ctx))
            elapsed = time.perf_counter() - start
            got = len(segment_files(d))
            if got < len(files):
                raise AssertionError(f"restore wrote {got} segments, expected {len(files)}")
            return total_mb / elapsed
        finally:
            remove_tree(d.parent)

    def theirs() -> float:
        d = ctx.fresh_dir("s3fs-get")
        try:
            start = time.perf_counter()
            with ThreadPoolExecutor(p.archive_workers) as pool:
                list(pool.map(lambda o: fs.get_file(o, str(d / Path(o).name)), objects))
            return total_mb / (time.perf_counter() - start)
        finally:
            remove_tree(d)

    if missing:
        result.baseline_samples = [theirs() for _ in range(ctx.rounds)]
        result.baseline_value = median(result.baseline_samples)
        return _skipped_half(result, missing)
    result.samples, result.baseline_samples = alternate(ctx, ours, theirs)
    result.value, result.baseline_value = median(result.samples), median(result.baseline_samples)
    return result


def _restore_options(ctx: Context) -> dict[str, Any]:
    """How restore reaches the server: its storage options, when it takes them."""
    import inspect

    from walship.archive.restore import restore as walship_restore

    params = inspect.signature(walship_restore).parameters
    if "storage_options" in params:
        return {"storage_options": server(ctx).storage_options}
    return {}


__all__ = ["append_p99_while_archiving", "archive", "archive_missing", "restore"]
