"""The embedded stores a Python engineer would use instead of walship for a durable
append-only log, measured in the same run: SQLite (stdlib, WAL), LMDB (``lmdb``), RocksDB
(``rocksdict``) and LevelDB (``plyvel``). ``pip install 'walship[bench]'`` installs the three
that are not in the standard library; a missing one is skipped with a note.

Every peer stores record ``seq`` under an 8-byte big-endian key (SQLite: an INTEGER PRIMARY
KEY), which is what a log in a key-value store looks like. Each case runs walship and every
peer that is installed, round by round in a rotating order, and compares walship with the
fastest peer (the issue's targets); the note lists the ratio against each peer.

Fair-play notes: durable means synced per write (SQLite synchronous=FULL, LMDB sync on,
RocksDB ``WriteOptions.sync``, LevelDB ``sync=True``); unsynced batches are one transaction or
write batch per 1,000 records with no sync (SQLite synchronous=NORMAL in WAL mode, which does
not sync at commit); reading back is opening the store anew and iterating every record,
each value copied into a ``bytes`` (walship: ``walship.open`` with its full recovery scan, then
``log.read()``, one :class:`~walship.core.frame.Frame` per record).
"""

from __future__ import annotations

import importlib
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import walship
from benchmarks.cases.appends import payloads, run_threads, walship_batches, walship_sync_appends
from benchmarks.cases.recovery import make_log
from benchmarks.runner import Context, Result, Skip, Target, median, remove_tree

KEY = struct.Struct(">Q")


class Peer:
    """One store: how it is opened, written and read back. Subclasses fill in the calls."""

    name = ""
    module = ""  # the import that must succeed (empty: the standard library)

    def __init__(self, path: Path, durable: bool) -> None:
        self.path = path
        self.durable = durable

    def put(self, seq: int, payload: bytes) -> None:
        raise NotImplementedError

    def put_batch(self, first_seq: int, items: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @classmethod
    def read_all(cls, path: Path) -> int:
        """Open the store at ``path`` anew and iterate every value; return how many."""
        raise NotImplementedError


class SQLitePeer(Peer):
    name = "SQLite"

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, payload BLOB)")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path / "log.db", isolation_level=None, timeout=120, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def put(self, seq: int, payload: bytes) -> None:
        self._conn().execute("INSERT INTO log VALUES (?, ?)", (seq, payload))

    def put_batch(self, first_seq: int, items: list[bytes]) -> None:
        conn = self._conn()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO log VALUES (?, ?)",
            zip(range(first_seq, first_seq + len(items)), items, strict=True),
        )
        conn.execute("COMMIT")

    def close(self) -> None:
        for c in self._conns:
            c.close()

    @classmethod
    def read_all(cls, path: Path) -> int:
        conn = sqlite3.connect(path / "log.db")
        try:
            n = 0
            for (_payload,) in conn.execute("SELECT payload FROM log ORDER BY seq"):
                n += 1
            return n
        finally:
            conn.close()


class LMDBPeer(Peer):
    name = "LMDB"
    module = "lmdb"

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        import lmdb

        self.env = lmdb.open(
            str(path), map_size=1 << 36, sync=durable, metasync=durable, max_spare_txns=16
        )

    def put(self, seq: int, payload: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(KEY.pack(seq), payload, append=True)

    def put_batch(self, first_seq: int, items: list[bytes]) -> None:
        pack = KEY.pack
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(
                [(pack(first_seq + i), p) for i, p in enumerate(items)], append=True
            )

    def close(self) -> None:
        self.env.close()

    @classmethod
    def read_all(cls, path: Path) -> int:
        import lmdb

        env = lmdb.open(str(path), map_size=1 << 36, readonly=True, lock=False)
        try:
            n = 0
            with env.begin() as txn:
                for _key, _value in txn.cursor():
                    n += 1
            return n
        finally:
            env.close()


class RocksDBPeer(Peer):
    name = "RocksDB"
    module = "rocksdict"

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        from rocksdict import Options, Rdict, WriteOptions

        self.db = Rdict(str(path / "db"), Options(raw_mode=True))
        self.opts = WriteOptions()
        self.opts.sync = durable

    def put(self, seq: int, payload: bytes) -> None:
        self.db.put(KEY.pack(seq), payload, self.opts)

    def put_batch(self, first_seq: int, items: list[bytes]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        pack = KEY.pack
        for i, p in enumerate(items):
            batch.put(pack(first_seq + i), p)
        self.db.write(batch, self.opts)

    def close(self) -> None:
        self.db.close()

    @classmethod
    def read_all(cls, path: Path) -> int:
        from rocksdict import Options, Rdict

        db = Rdict(str(path / "db"), Options(raw_mode=True))
        try:
            n = 0
            for _key, _value in db.items():
                n += 1
            return n
        finally:
            db.close()


class LevelDBPeer(Peer):
    name = "LevelDB"
    module = "plyvel"

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        import plyvel  # type: ignore[import-untyped]

        self.db = plyvel.DB(str(path / "db"), create_if_missing=True)

    def put(self, seq: int, payload: bytes) -> None:
        self.db.put(KEY.pack(seq), payload, sync=self.durable)

    def put_batch(self, first_seq: int, items: list[bytes]) -> None:
        pack = KEY.pack
        with self.db.write_batch(sync=self.durable) as batch:
            for i, p in enumerate(items):
                batch.put(pack(first_seq + i), p)

    def close(self) -> None:
        self.db.close()

    @classmethod
    def read_all(cls, path: Path) -> int:
        import plyvel

        db = plyvel.DB(str(path / "db"))
        try:
            n = 0
            for _key, _value in db.iterator():
                n += 1
            return n
        finally:
            db.close()


ALL_PEERS: list[type[Peer]] = [SQLitePeer, LMDBPeer, RocksDBPeer, LevelDBPeer]


def installed() -> tuple[list[type[Peer]], list[str]]:
    """The peers whose library imports here, and a note for each one that does not."""
    found, missing = [], []
    for peer in ALL_PEERS:
        if peer.module:
            try:
                importlib.import_module(peer.module)
            except ImportError:
                missing.append(f"{peer.name} skipped ({peer.module} is not installed)")
                continue
        found.append(peer)
    return found, missing


def rotate(ctx: Context, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run every side ``ctx.rounds`` times, the order rotating by one each round."""
    names = list(sides)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(ctx.rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(sides[n]())
    return out


def _compare(
    ctx: Context,
    name: str,
    unit: str,
    target: Target,
    ours: Callable[[], float],
    theirs: dict[str, Callable[[], float]],
    missing: list[str],
    what: str,
) -> Result:
    if not theirs:
        raise Skip("no peer store is installed")
    samples = rotate(ctx, {"walship": ours, **theirs})
    mine = samples.pop("walship")
    medians = {n: median(s) or 0.0 for n, s in samples.items()}
    fastest = max(medians, key=lambda n: medians[n])
    ours_median = median(mine) or 0.0
    ratios = ", ".join(
        f"{n} {medians[n]:,.4g} {unit} (ratio {ours_median / medians[n]:.3g})"
        for n in medians
        if medians[n]
    )
    notes = [what, f"each peer: {ratios}", *missing]
    return Result(
        name,
        unit,
        f"the fastest peer: {fastest}",
        target,
        ours_median,
        medians[fastest],
        mine,
        samples[fastest],
        note="; ".join(notes),
        peers=medians,
    )


def _peer_dir(ctx: Context, peer: type[Peer]) -> Path:
    return ctx.fresh_dir(f"peer-{peer.name.lower()}")


def _peer_sync(ctx: Context, peer: type[Peer], payload: bytes, count: int, threads: int) -> float:
    d = _peer_dir(ctx, peer)
    store = peer(d, durable=True)
    try:
        store.put(0, payload)  # warm, as walship's side
        seq = iter(range(1, count * threads + 1))
        lock = threading.Lock()

        def one() -> None:
            with lock:
                s = next(seq)
            store.put(s, payload)

        return run_threads(one, count, threads)
    finally:
        store.close()
        remove_tree(d)


def _peer_batches(ctx: Context, peer: type[Peer], items: list[bytes], batches: int) -> float:
    d = _peer_dir(ctx, peer)
    store = peer(d, durable=False)
    try:
        start = time.perf_counter()
        for b in range(batches):
            store.put_batch(b * len(items), items)
        return time.perf_counter() - start
    finally:
        store.close()
        remove_tree(d)


def peers_sync(ctx: Context, threads: int, name: str, target: Target) -> Result:
    p = ctx.profile
    found, missing = installed()
    payload = payloads(100, 1)[0]
    count = p.sync_appends if threads == 1 else p.sync_appends_per_thread
    return _compare(
        ctx,
        name,
        "appends/s",
        target,
        lambda: walship_sync_appends(ctx, payload, count, threads),
        {
            peer.name: lambda peer=peer: _peer_sync(ctx, peer, payload, count, threads)  # type: ignore[misc]
            for peer in found
        },
        missing,
        f"{threads} thread(s), one durable 100 B record per call",
    )


def peers_sync_1thread(ctx: Context) -> Result:
    return peers_sync(ctx, 1, "peers_sync_1thread", Target(">=", 1.3))


def peers_sync_16threads(ctx: Context) -> Result:
    return peers_sync(ctx, ctx.profile.sync_threads, "peers_sync_16threads", Target(">=", 1.2))


def peers_batch_100b(ctx: Context) -> Result:
    p = ctx.profile
    found, missing = installed()
    items = payloads(100, p.batch_frames)
    frames = p.batch_frames * p.batches_100b
    return _compare(
        ctx,
        "peers_batch_100B",
        "frames/s",
        Target(">=", 1.0),
        lambda: frames / walship_batches(ctx, items, p.batches_100b)[0],
        {
            peer.name: lambda peer=peer: frames / _peer_batches(ctx, peer, items, p.batches_100b)  # type: ignore[misc]
            for peer in found
        },
        missing,
        f"unsynced batches of {p.batch_frames} x 100 B",
    )


def _peer_log(ctx: Context, peer: type[Peer], payload_size: int, total: int) -> tuple[Path, int]:
    """The peer's store holding the same records as walship's log of :func:`make_log`."""
    key = f"peer-log-{peer.name}-{payload_size}-{total}"
    if key in ctx.shared:
        return ctx.shared[key]  # type: ignore[no-any-return]
    d, frames, _ = make_log(ctx, payload_size, total)
    target = _peer_dir(ctx, peer)
    store = peer(target, durable=False)
    try:
        with walship.open(d) as log:  # the same records, in batches of up to 1,000
            for batch in log.read_batches(max_frames=1000):
                store.put_batch(batch[0].commit_seq, [f.payload for f in batch])
    finally:
        store.close()
    ctx.shared[key] = (target, frames)
    ctx.on_exit(lambda: remove_tree(target))
    return target, frames


def walship_read_all(d: Path, frames: int) -> float:
    """Seconds for ``walship.open`` (its recovery scan) and ``read()`` of every frame."""
    start = time.perf_counter()
    with walship.open(d) as log:
        n = 0
        for _frame in log.read():
            n += 1
    elapsed = time.perf_counter() - start
    if n != frames:
        raise AssertionError(f"walship read {n} frames, expected {frames}")
    return elapsed


def _peer_read_all(peer: type[Peer], d: Path, frames: int) -> float:
    start = time.perf_counter()
    n = peer.read_all(d)
    elapsed = time.perf_counter() - start
    if n != frames:
        raise AssertionError(f"{peer.name} read {n} records, expected {frames}")
    return elapsed


def read_back(ctx: Context, payload_size: int, name: str) -> Result:
    total = ctx.profile.recover_bytes
    found, missing = installed()
    d, frames, size = make_log(ctx, payload_size, total)
    logs: dict[str, Any] = {
        peer.name: (peer, *_peer_log(ctx, peer, payload_size, total)) for peer in found
    }
    per_frame = payload_size < 4096
    scale = frames if per_frame else size / 1e6

    def theirs(peer: type[Peer], pd: Path) -> Callable[[], float]:
        return lambda: scale / _peer_read_all(peer, pd, frames)

    return _compare(
        ctx,
        name,
        "frames/s" if per_frame else "MB/s",
        Target(">=", 1.0),
        lambda: scale / walship_read_all(d, frames),
        {n: theirs(peer, pd) for n, (peer, pd, _) in logs.items()},
        missing,
        f"reopen + read every record of a {total >> 20} MiB log of {payload_size} B records",
    )


def read_back_100b(ctx: Context) -> Result:
    return read_back(ctx, 100, "read_back_100B")


def read_back_64kib(ctx: Context) -> Result:
    return read_back(ctx, 65536, "read_back_64KiB")


__all__ = [
    "ALL_PEERS",
    "installed",
    "peers_batch_100b",
    "peers_sync_1thread",
    "peers_sync_16threads",
    "read_back_64kib",
    "read_back_100b",
]
