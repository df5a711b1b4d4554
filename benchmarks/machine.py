"""What machine the numbers come from: CPU, cores, memory, the filesystem under test, Python and
library versions."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path

LIBRARIES = ("walship", "blake3", "crc32c", "pluggy", "fsspec", "s3fs", "moto", "matplotlib")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    """Device, type and mount options of the filesystem holding ``path``."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best: list[str] | None = None
    for m in mounts:
        inside = len(m) >= 4 and (target == m[1] or target.startswith(m[1].rstrip("/") + "/"))
        if inside and (best is None or len(m[1]) > len(best[1])):
            best = m
    if best is None:
        return "unknown"
    return f"{best[2]} on {best[0]} mounted at {best[1]} ({best[3]})"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(scratch: Path) -> dict[str, str]:
    """The machine as ordered ``label: value`` pairs."""
    libs = ", ".join(f"{n} {_version(n)}" for n in LIBRARIES)
    return {
        "CPU": f"{_cpu_model()} ({platform.machine()})",
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "filesystem": f"{_filesystem(scratch)}; scratch directory {scratch}",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": f"{libs}, SQLite {sqlite3.sqlite_version}",
    }
