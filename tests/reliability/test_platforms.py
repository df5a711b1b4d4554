"""Other platforms, simulated in a fresh interpreter: what macOS, a minimal POSIX and Windows
lack is removed (or stood in for) before walship is imported, then a log is appended to,
rotated, reopened, verified, locked against a second writer and driven through the CLI.

* macOS: no ``os.fdatasync``, no ``os.posix_fallocate``; ``fcntl.F_FULLFSYNC`` exists (a
  stand-in counts its calls): every flush must use it.
* a minimal POSIX: no ``fdatasync``, ``posix_fallocate``, ``pwritev``/``RWF_DSYNC``,
  ``writev`` or ``SEEK_DATA``: ``fsync`` and plain writes.
* Windows: no ``fcntl`` at all (``sys.modules['fcntl'] = None``), no ``O_DIRECTORY``, no
  ``O_CLOEXEC``, no ``writev``; ``msvcrt.locking`` is stood in for by a per-descriptor lock.
* nothing to lock with (neither ``fcntl`` nor ``msvcrt``): a clear one-line error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reliability.support import FIGURES

PRELUDES = {
    "macos": """
        import os, sys, types
        import fcntl as _real
        del os.fdatasync, os.posix_fallocate
        FULLFSYNC = {"calls": 0}
        fake = types.ModuleType("fcntl")
        fake.__dict__.update({k: getattr(_real, k) for k in dir(_real) if not k.startswith("__")})
        fake.F_FULLFSYNC = 51
        def _fcntl(fd, cmd, arg=0):
            if cmd == 51:
                FULLFSYNC["calls"] += 1
                os.fsync(fd)
                return 0
            return _real.fcntl(fd, cmd, arg)
        fake.fcntl = _fcntl
        sys.modules["fcntl"] = fake
    """,
    "posix-minimal": """
        import os
        for name in ("fdatasync", "posix_fallocate", "pwritev", "RWF_DSYNC", "writev",
                     "SEEK_DATA", "SEEK_HOLE"):
            if hasattr(os, name):
                delattr(os, name)
    """,
    "windows": """
        import os, sys, types, errno
        import fcntl as _real
        for name in ("fdatasync", "posix_fallocate", "pwritev", "RWF_DSYNC", "writev",
                     "O_DIRECTORY", "O_CLOEXEC"):
            if hasattr(os, name):
                delattr(os, name)
        sys.modules["fcntl"] = None
        msvcrt = types.ModuleType("msvcrt")
        msvcrt.LK_NBLCK = 2
        msvcrt.LK_UNLCK = 0
        LOCKED = {"calls": 0}
        def _locking(fd, mode, nbytes):
            assert mode == 2 and nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0
            LOCKED["calls"] += 1
            try:  # msvcrt locks per handle, like flock per open file description
                _real.flock(fd, _real.LOCK_EX | _real.LOCK_NB)
            except BlockingIOError:
                raise OSError(errno.EACCES, "Permission denied") from None
        msvcrt.locking = _locking
        sys.modules["msvcrt"] = msvcrt
    """,
    "no-lock": """
        import sys
        sys.modules["fcntl"] = None
        sys.modules["msvcrt"] = None
    """,
}

BODY = """
import json, os, sys
import walship
from walship.backends import platform as backend_platform
from walship.backends.posix import PosixStore
from walship.cli import main
from walship.core.scan import scan_store

d = sys.argv[1]
out = {"flush": backend_platform.FLUSH_NAME, "dir_sync": backend_platform.DIRECTORY_SYNC,
       "preallocates": PosixStore.capabilities.preallocates}
try:
    log = walship.open(d, max_segment_bytes=4096)
except walship.WalshipError as e:
    out["open_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out)); sys.exit(0)
seqs = [log.append(b"frame %d" % i) for i in range(200)]
log.append_batch([b"batch %d" % i for i in range(50)])
try:
    PosixStore(d).lock()
    out["second_writer"] = "let in"
except walship.StoreLockedError as e:
    out["second_writer"] = str(e)
log.close()
with walship.open(d) as log:
    out["frames"] = len(list(log.read()))
    log.append(b"after reopen")
scan = scan_store(PosixStore(d))
out["verify_ok"] = scan.ok
out["segments"] = len(scan.segments)
for name in ("FULLFSYNC", "LOCKED"):
    if name in globals():
        out[name] = globals()[name]["calls"]
sys.argv = ["walship", "verify", d]
try:
    main()
except SystemExit as e:
    out["cli_verify"] = e.code
print(json.dumps(out))
"""


def simulate(platform: str, directory: Path) -> dict[str, object]:
    code = textwrap.dedent(PRELUDES[platform]) + BODY
    run = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("platform", ["macos", "posix-minimal", "windows"])
def test_a_log_works_on_the_platform(platform: str, tmp_path: Path) -> None:
    out = simulate(platform, tmp_path / "wal")
    assert "open_error" not in out, out
    assert out["frames"] == 250
    assert out["verify_ok"] is True and out["cli_verify"] in (0, None)
    assert isinstance(out["segments"], int) and out["segments"] >= 3  # it rotated
    assert "locked by another writer" in str(out["second_writer"])
    assert out["preallocates"] is False
    if platform == "macos":
        assert out["flush"] == "fcntl(F_FULLFSYNC)"
        assert isinstance(out["FULLFSYNC"], int) and out["FULLFSYNC"] >= 201  # 1 a sync
    elif platform == "posix-minimal":
        assert out["flush"] == "fsync" and out["dir_sync"] is True
    else:
        assert out["flush"] == "fsync" and out["dir_sync"] is False
        assert isinstance(out["LOCKED"], int) and out["LOCKED"] >= 2
    FIGURES["platforms.simulated"] += 1


def test_a_platform_without_locks_gets_a_clear_error(tmp_path: Path) -> None:
    out = simulate("no-lock", tmp_path / "wal")
    error = str(out["open_error"])
    assert error.startswith("PlatformUnsupportedError: cannot lock ")
    assert "neither fcntl.flock nor msvcrt.locking" in error and "\n" not in error
    code = textwrap.dedent(PRELUDES["no-lock"]) + textwrap.dedent(
        f"""
        import sys
        from walship.cli import main
        open({str(tmp_path / "c.yaml")!r}, "w").write("store: {{path: {tmp_path / "w2"}}}\\n")
        sys.argv = ["walship", "append", "-c", {str(tmp_path / "c.yaml")!r}]
        main()
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], input="x\n", capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("walship: error: cannot lock ")
