"""Calls a type checker must refuse: each line marked ``# refused`` must have an error on it,
and no other line may (tests/config/test_typed_open.py). Never run."""

from __future__ import annotations

import walship


def calls(log: walship.Log) -> None:
    walship.open("./wal", durabilty="none")  # refused
    walship.open("./wal", durability="alway")  # refused
    walship.open("./wal", max_segment_bytes=1.5)  # refused
    walship.open("./wal", sync_interval=[10])  # refused
    walship.open("./wal", archive={"url": "s3://b/w", "wrokers": 2})  # refused
    walship.open("./wal", archive={"workers": 2})  # refused
    walship.open("./wal", rotation={"max_segment_byte": "1MiB"})  # refused
    walship.open("./wal", retention={"keep": "all"})  # refused
    walship.open("./wal", salvage="yes")  # refused
    print(log.stats()["sycs"])  # refused
    walship.open("./wal", durability="none", max_segment_bytes="64MiB", sync_interval=0.5)
