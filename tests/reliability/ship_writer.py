"""The writer process of the live-shipping harness (run as a script; the parent SIGKILLs it).

    python ship_writer.py DIR FD URL OPTIONS_JSON INTERVAL THREADS

Opens the POSIX log in DIR with durability ``always`` and live shipping to URL every INTERVAL
seconds (OPTIONS_JSON: the storage options), writes ``ready`` to file descriptor FD, then
appends from THREADS threads until killed. After each append returns it writes
``A <commit_seq> <key> <monotonic seconds>`` to FD (one ``os.write``, atomic on a pipe below
PIPE_BUF); whenever the shipper's last shipped commit_seq moves it writes ``S <commit_seq>
<monotonic seconds> <its slowest round so far, seconds>``. Payloads are ``make_payload(key)``.
The environment variable WALSHIP_TEST_ENCRYPTION (JSON, as ``archive.encryption`` takes it)
seals the archive (keys never in argv).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from support import make_payload  # type: ignore[import-not-found]  # run as a script

import walship

SEGMENT_BYTES = 256 * 1024


def main() -> None:
    path, fd, url, options = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    interval, threads = float(sys.argv[5]), int(sys.argv[6])
    log = walship.open(
        path,
        durability="always",
        max_segment_bytes=SEGMENT_BYTES,
        entry_point_plugins=False,
        archive={
            "url": url,
            "storage_options": json.loads(options),
            "ship_interval": interval,
            "upload_process": False,
            "retries": {"attempts": 50, "backoff": 0.05, "max_backoff": 0.5},
            "encryption": json.loads(os.environ.get("WALSHIP_TEST_ENCRYPTION", "null")),
        },
    )
    archiver: Any = log.archiver
    shipper = archiver.shipper
    os.write(fd, b"ready\n")

    def worker(t: int) -> None:
        i = 0
        while True:
            i += 1
            key = f"{t}.{i}"
            seq = log.append(make_payload(key))
            os.write(fd, f"A {seq} {key} {time.monotonic():.6f}\n".encode())

    for t in range(threads):
        threading.Thread(target=worker, args=(t,), daemon=True).start()
    seen = 0
    while True:  # the shipper's progress, as the parent measures the promise against it
        shipped = shipper.shipped_seq
        if shipped != seen:
            seen = shipped
            slowest = shipper.round_seconds_max
            os.write(fd, f"S {shipped} {time.monotonic():.6f} {slowest:.6f}\n".encode())
        time.sleep(0.005)


if __name__ == "__main__":
    main()
