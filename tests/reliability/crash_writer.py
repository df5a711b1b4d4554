"""The writer process of the crash harness (run as a script; the parent SIGKILLs it).

    python crash_writer.py DIR FD INCARNATION THREADS [DURABILITY]

Opens the POSIX log in DIR (durability DURABILITY, ``always`` by default; small segments, short
segment age), writes
``ready <last_seq>`` to file descriptor FD, then appends from THREADS threads until killed. After
each append returns it writes ``<commit_seq> <key>`` for every acknowledged frame to FD, one
``os.write`` per append (atomic on a pipe below PIPE_BUF). Payloads are ``make_payload(key)``.
"""

from __future__ import annotations

import os
import sys
import threading

from support import make_payload  # type: ignore[import-not-found]  # run as a script

import walship

SEGMENT_BYTES = 2048
SEGMENT_AGE = 0.05


def main() -> None:
    path, fd, incarnation, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    durability = sys.argv[5] if len(sys.argv) > 5 else "always"
    log = walship.open(
        path,
        durability=durability,
        max_segment_bytes=SEGMENT_BYTES,
        max_segment_age=SEGMENT_AGE,
        entry_point_plugins=False,
    )
    os.write(fd, f"ready {log.last_seq}\n".encode())

    def worker(t: int) -> None:
        i = 0
        while True:
            i += 1
            keys = [f"{incarnation}.{t}.{i}.{j}" for j in range(3 if i % 5 == 0 else 1)]
            payloads = [make_payload(k) for k in keys]
            seqs = [log.append(payloads[0])] if len(keys) == 1 else log.append_batch(payloads)
            os.write(fd, "".join(f"{s} {k}\n" for s, k in zip(seqs, keys, strict=True)).encode())

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


if __name__ == "__main__":
    main()
