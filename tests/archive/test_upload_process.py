"""Uploads from the child process (``archive.upload_process``, the default): the segments reach
the archive from another process, errors come back as the same one-line walship errors, and a
child killed mid-way costs a retried attempt, never a segment."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from pathlib import Path

import pytest
from s3server import FlakyFileSystem, Recorder, wait_until

import walship
from walship.archive import ArchiveReadStore, ArchiveStore
from walship.archive.names import epoch_name, part_name
from walship.archive.upload_process import (
    UploadProcess,
    flatten_error,
    offload,
    rebuild_error,
)
from walship.backends.memory import MemoryStore
from walship.core.header import segment_name
from walship.core.scan import scan_store
from walship.errors import (
    ArchiveBucketMissingError,
    ArchiveConflictError,
    ArchiveIntegrityError,
    ArchiveNameError,
)


def _write(log: walship.Log, segments: int) -> None:
    for s in range(segments):
        log.append_batch([f"segment {s} frame {i}".encode() for i in range(5)])
        log.rotate()


def _archive(url: str, **extra: object) -> dict[str, object]:
    return {"url": url, "workers": 2, "retries": {"attempts": 20, "backoff": 0.01}, **extra}


def test_segments_are_uploaded_by_the_child(tmp_path: Path) -> None:
    url = (tmp_path / "archive").as_uri()
    rec = Recorder()
    with walship.open(tmp_path / "wal", archive=_archive(url), plugins=[rec]) as log:
        archiver = log.archiver
        assert archiver is not None and archiver._in_child
        _write(log, 3)
        assert archiver.flush(timeout=30)
    child = UploadProcess.shared()
    assert child.alive and child._process.pid != os.getpid()
    assert len(rec.of("archived")) == 3
    assert scan_store(ArchiveReadStore(url)).ok


@pytest.mark.parametrize("option", [False, True])
def test_which_archives_upload_from_the_child(tmp_path: Path, option: bool) -> None:
    """``upload_process: false`` keeps the uploads in threads; ``memory://`` always does."""
    memory = f"memory://upload-child-{secrets.token_hex(6)}"  # one global store: a new name
    for url, expected in (((tmp_path / "a").as_uri(), option), (memory, False)):
        with walship.open(store=MemoryStore(), archive=_archive(url, upload_process=option)) as log:
            assert log.archiver is not None and log.archiver._in_child is expected
            # the archive's other requests (fence, predecessor's manifest, parts) go with them
            assert (log.archiver.archive._offload is not None) is expected
            _write(log, 1)  # a memory store has no file path: its bytes go to the child
            assert log.archiver.flush(timeout=30)
            assert log.stats()["archive"]["archived"] == 1


def test_a_killed_child_is_replaced(tmp_path: Path) -> None:
    """The child is killed (SIGKILL) between uploads: the next put starts a new one and every
    segment gets archived."""
    url = (tmp_path / "archive").as_uri()
    rec = Recorder()
    with walship.open(tmp_path / "wal", archive=_archive(url), plugins=[rec]) as log:
        archiver = log.archiver
        assert archiver is not None
        _write(log, 2)
        assert archiver.flush(timeout=30)
        first = UploadProcess.shared()
        os.kill(first._process.pid, signal.SIGKILL)
        assert wait_until(lambda: not first.alive, timeout=10)
        _write(log, 3)
        assert archiver.flush(timeout=30)
        assert UploadProcess.shared() is not first
    assert len(rec.of("archived")) == 5
    assert sorted(rec.seqs("archived")) == [1, 2, 3, 4, 5]
    assert scan_store(ArchiveReadStore(url)).ok


def test_a_put_in_flight_when_the_child_dies_fails_as_oserror(tmp_path: Path) -> None:
    """The child is stopped (SIGSTOP) with a put sent to it, then killed: the put raises
    OSError (an attempt the archiver retries), and the next put works in a new child."""
    url = (tmp_path / "archive").as_uri()
    with walship.open(tmp_path / "wal") as log:
        _write(log, 1)
    raw = (tmp_path / "wal" / segment_name(1)).read_bytes()
    child = UploadProcess.shared()
    os.kill(child._process.pid, signal.SIGSTOP)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            child.put((url, {}, "none", "required", None, 0), segment_name(1), raw, None)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=put)
    t.start()
    assert wait_until(lambda: bool(child._futures), timeout=10)
    os.kill(child._process.pid, signal.SIGKILL)
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    assert "upload process" in str(errors[0])
    key = (url, {}, "none", "required", None, 0)
    assert UploadProcess.shared().put(key, segment_name(1), raw, None).uploaded


def test_a_conflict_in_the_child_is_the_same_error_here(tmp_path: Path) -> None:
    """Different content planted under a segment's name: the child's ArchiveConflictError
    comes back as one, with its message, and the segment stays pending."""
    url = (tmp_path / "archive").as_uri()
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / segment_name(1)).write_bytes(b"planted")
    rec = Recorder()
    retries = {"attempts": 2, "backoff": 0.01}
    with walship.open(
        tmp_path / "wal", archive=_archive(url, retries=retries), plugins=[rec]
    ) as log:
        _write(log, 1)
        assert log.archiver is not None and not log.archiver.flush(timeout=30)
        stalled = log.archiver.stalled()
    assert "refusing to overwrite" in stalled[segment_name(1)]
    assert "\n" not in stalled[segment_name(1)]
    with pytest.raises(ArchiveConflictError, match="refusing to overwrite"):
        UploadProcess.shared().put(
            (url, {}, "none", "required", None, 0),
            segment_name(1),
            (tmp_path / "wal" / segment_name(1)).read_bytes(),
            None,
        )


def test_errors_cross_the_process_boundary_whole() -> None:
    e = rebuild_error(*flatten_error(ArchiveIntegrityError("upload did not verify", "segment_x")))
    assert isinstance(e, ArchiveIntegrityError) and e.segment == "segment_x"
    assert str(e) == "upload did not verify"
    e = rebuild_error(*flatten_error(OSError(5, "store failed")))
    assert isinstance(e, OSError) and e.errno == 5 and "store failed" in str(e)
    e = rebuild_error(*flatten_error(KeyError("odd")))
    assert type(e).__name__ == "ArchiveError" and "KeyError" in str(e)
    assert ArchiveStore("memory://x").shared_across_processes is False
    flaky = FlakyFileSystem.make(fail_puts=0)  # registered in this process only
    assert ArchiveStore(f"{flaky.protocol[0]}://b/wal").shared_across_processes is False
    assert ArchiveStore("file:///tmp/x").shared_across_processes is True


QUIET_CHILD = """
import asyncio, logging, sys, threading
from walship.archive.upload_process import quiet_child
from fsspec.asyn import get_loop, sync
quiet_child()
logging.getLogger("aiohttp.client").exception("failed", exc_info=RuntimeError("one"))
t = threading.Thread(target=lambda: 1 / 0)
t.start(); t.join()
loop = get_loop()
async def never_retrieved():
    loop.call_exception_handler({"message": "Task exception was never retrieved",
                                 "exception": ConnectionResetError("two")})
    loop.call_exception_handler({"message": "Unclosed client session"})
sync(loop, never_retrieved)
class Finalized:
    def __del__(self):
        raise OSError("three")
Finalized()
raise KeyError("four")
"""


def test_the_upload_child_prints_one_line_per_error_and_never_a_traceback() -> None:
    """What aiohttp, threads, finalizers and the main thread would print as tracebacks is one
    line each in the child (which shares the parent's stderr); "Unclosed client session" at
    exit is nothing to act on and says nothing."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", QUIET_CHILD], capture_output=True, text=True, timeout=60
    )
    lines = out.stderr.splitlines()
    assert "Traceback" not in out.stderr and "Unclosed" not in out.stderr, out.stderr
    assert len(lines) == 5, out.stderr
    assert all(line.startswith("walship upload process: ") for line in lines), out.stderr
    for word in ("one", "ZeroDivisionError", "two", "three", "four"):
        assert sum(word in line for line in lines) == 1, (word, out.stderr)


def test_offloaded_requests_run_in_the_child_with_the_same_results(tmp_path: Path) -> None:
    """A store offloaded to the child (:func:`offload`) answers every offloadable method as
    it would here, errors included, although its own filesystem here is unusable."""
    url = (tmp_path / "archive").as_uri()
    store = ArchiveStore(url)
    offload(store)
    store.fs = store._creator.fs = None  # a request made in this process would fail
    name = part_name(1, 0, 100)
    assert store.read_object(epoch_name(1), 1 << 10) is None
    assert store.stat(segment_name(1)) is None
    assert store.create_part_object(name, b"part bytes") is True
    assert store.create_part_object(name, b"part bytes") is False  # exactly those bytes: taken
    with pytest.raises(ArchiveConflictError, match="refusing to overwrite"):
        store.create_part_object(name, b"other bytes")
    assert store.read_object(name, limit=1 << 10) == b"part bytes"
    assert store.create_sealed_part(part_name(1, 100, 200), b"more") is None  # no keyring
    with pytest.raises(ArchiveNameError):
        store.read_object("not-a-walship-name", 10)
    assert store.remove_object(name) is True
    assert store.remove_object(name) is False
    store.prepare_create()
    assert not (tmp_path / "archive" / name).exists()
    assert (tmp_path / "archive" / part_name(1, 100, 200)).read_bytes() == b"more"


def test_an_offloaded_request_fails_as_oserror_when_the_child_dies(tmp_path: Path) -> None:
    store = ArchiveStore((tmp_path / "archive").as_uri())
    offload(store)
    child = UploadProcess.shared()
    os.kill(child._process.pid, signal.SIGKILL)
    assert wait_until(lambda: not child.alive, timeout=10)
    assert store.read_object(epoch_name(1), 10) is None  # a new child answers
    assert UploadProcess._shared is not child and UploadProcess._shared.alive


def test_a_storage_error_keeps_its_status_and_code_across_the_boundary() -> None:
    e = rebuild_error(*flatten_error(ArchiveBucketMissingError("no bucket", 404, "NoSuchBucket")))
    assert isinstance(e, ArchiveBucketMissingError) and isinstance(e, OSError)
    assert (e.status, e.code, str(e)) == (404, "NoSuchBucket", "no bucket")
    e = rebuild_error(*flatten_error(FileNotFoundError(2, "gone")))
    assert isinstance(e, FileNotFoundError)
