"""The asyncio writer process of the crash harness (run as a script; the parent SIGKILLs it).

    python aio_crash_writer.py DIR FD INCARNATION THREADS [DURABILITY]

As ``crash_writer.py``, but the appends are awaited: ``walship.open_async`` (small segments,
short segment age), ``ready <last_seq>`` to FD, then 4 x THREADS tasks on one event loop await
``append`` and ``append_batch`` (and one thread appends beside them, sharing the group commit)
until killed; after each append returns, ``<commit_seq> <key>`` for every acknowledged frame goes
to FD in one ``os.write``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from support import make_payload  # type: ignore[import-not-found]  # run as a script

import walship

SEGMENT_BYTES = 2048
SEGMENT_AGE = 0.05


def report(fd: int, seqs: list[int], keys: list[str]) -> None:
    os.write(fd, "".join(f"{s} {k}\n" for s, k in zip(seqs, keys, strict=True)).encode())


async def main() -> None:
    path, fd, incarnation, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    durability = sys.argv[5] if len(sys.argv) > 5 else "always"
    log = await walship.open_async(
        path,
        durability=durability,
        max_segment_bytes=SEGMENT_BYTES,
        max_segment_age=SEGMENT_AGE,
        entry_point_plugins=False,
    )
    os.write(fd, f"ready {log.last_seq}\n".encode())

    def thread_worker() -> None:
        i = 0
        while True:
            i += 1
            key = f"{incarnation}.thread.{i}.0"
            report(fd, [log.log.append(make_payload(key))], [key])

    threading.Thread(target=thread_worker, daemon=True).start()

    async def task(t: int) -> None:
        i = 0
        while True:
            i += 1
            keys = [f"{incarnation}.{t}.{i}.{j}" for j in range(3 if i % 5 == 0 else 1)]
            payloads = [make_payload(k) for k in keys]
            if len(keys) == 1:
                seqs = [await log.append(payloads[0])]
            else:
                seqs = await log.append_batch(payloads)
            report(fd, seqs, keys)

    await asyncio.gather(*(task(t) for t in range(4 * threads)))


if __name__ == "__main__":
    asyncio.run(main())
