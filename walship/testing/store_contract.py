"""The store conformance suite: the tests every :class:`~walship.store.SegmentStore` must pass.

One suite runs against every store, walship's own (``posix``, ``memory``) and any a third-party
package adds through the ``walship.backends`` entry points (as Litestream's
``RunWithReplicaClient`` runs one suite against every replica client). A backend package runs
it from its own tests by subclassing :class:`StoreContract` in a class whose name starts with
``Test`` and overriding :meth:`~StoreContract.make_store`::

    from walship.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self, tmp_path):
            return MyStore(root=tmp_path / "wal")

        def make_other(self, store, tmp_path):  # optional: a second writer's view
            return MyStore(root=tmp_path / "wal")

pytest collects every ``test_*`` method of the subclass (for its detailed assertion messages,
call ``pytest.register_assert_rewrite("walship.testing.store_contract")`` in a ``conftest.py``
before the import). This module imports pytest, which
``import walship`` never does: pytest is a dependency of the tests (the ``test`` extra), not of
walship. What each test checks is a promise written in :mod:`walship.store`; a store that
cannot keep one should not pass by overriding its test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import walship
from walship.core.header import parse_segment_name
from walship.errors import StoreLockedError
from walship.store import SegmentStore, written_bytes


class StoreContract:
    """The shared tests; subclass it (as ``TestSomething``) and override :meth:`make_store`.

    Attributes:
        own_names: names the store keeps for itself next to the caller's files (the POSIX
            store's ``walship.lock`` and ``walship.reserve``); :meth:`SegmentStore.list_names`
            may list them, and nothing else the caller did not write.
    """

    own_names: frozenset[str] = frozenset()

    def make_store(self, tmp_path: Path) -> SegmentStore:
        """A new, empty store; ``tmp_path`` is a fresh directory it may use. Override it."""
        raise NotImplementedError(f"{type(self).__name__} must override make_store")

    def make_other(self, store: SegmentStore, tmp_path: Path) -> SegmentStore | None:
        """Another handle on the same storage as ``store`` (what a second process would
        open), to check that its lock keeps the first one's writer out; ``None`` (the default)
        when the store has no such handle: then ``store`` itself must refuse a second lock."""
        return None

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SegmentStore]:
        s = self.make_store(tmp_path)
        yield s
        s.close()

    def names(self, store: SegmentStore) -> list[str]:
        """The store's names without :attr:`own_names`, sorted."""
        return sorted(n for n in store.list_names() if n not in self.own_names)

    # --- files ---------------------------------------------------------------------------

    def test_create_write_sync_read(self, store: SegmentStore) -> None:
        f = store.create("a", b"head")
        assert f.size == 4
        f.write(b"-tail")
        f.sync()
        assert f.size == 9
        assert store.read("a") == b"head-tail"
        assert store.read("a", 2, 3) == b"ad-"
        assert store.read("a", 5) == b"tail"
        assert store.read("a", 7, 100) == b"il"  # fewer bytes only at the end
        assert store.read("a", 9) == b""
        assert store.read("a", 20) == b""
        assert store.size("a") == 9
        f.close()
        f.close()  # idempotent

    def test_create_refuses_an_existing_name(self, store: SegmentStore) -> None:
        store.create("a", b"x").close()
        with pytest.raises(FileExistsError):
            store.create("a", b"")
        assert store.read("a") == b"x"

    def test_open_append_writes_at_the_end(self, store: SegmentStore) -> None:
        store.create("a", b"head-tail").close()
        g = store.open_append("a")
        assert g.size == 9
        g.write(b"!")
        g.sync()
        g.close()
        assert store.read("a") == b"head-tail!"

    def test_write_many_and_write_durable_append_in_order(self, store: SegmentStore) -> None:
        f = store.create("a", b"h")
        f.write_many([b"1", bytearray(b"22"), memoryview(b"333")])
        f.sync()
        f.write_durable([b"4"])
        f.write_durable([b"5", b"66"])
        assert f.size == 11
        assert store.read("a") == b"h1223334566"
        f.close()

    def test_truncate_rename_write_atomic_remove(self, store: SegmentStore) -> None:
        store.create("a", b"head-tail").close()
        store.truncate("a", 4)
        assert store.read("a") == b"head"
        assert store.size("a") == 4
        store.rename("a", "b")
        store.write_atomic("c", b"record")
        store.write_atomic("c", b"record2")
        assert self.names(store) == ["b", "c"]
        assert store.read("c") == b"record2"
        assert store.read("b") == b"head"
        store.remove("b")
        assert self.names(store) == ["c"]
        with pytest.raises(FileNotFoundError):
            store.read("b")
        with pytest.raises(FileNotFoundError):
            store.open_append("b")
        with pytest.raises(FileNotFoundError):
            store.remove("b")

    def test_rename_replaces_the_target(self, store: SegmentStore) -> None:
        store.write_atomic("old", b"old")
        store.write_atomic("new", b"new")
        store.rename("new", "old")
        assert self.names(store) == ["old"]
        assert store.read("old") == b"new"

    def test_a_missing_file_is_file_not_found(self, store: SegmentStore) -> None:
        for op in (
            lambda: store.read("nope"),
            lambda: store.size("nope"),
            lambda: store.open_append("nope"),
            lambda: store.remove("nope"),
            lambda: store.written_end("nope"),
            lambda: store.map("nope"),
            lambda: store.truncate("nope", 0),
            lambda: store.rename("nope", "other"),
        ):
            with pytest.raises(FileNotFoundError):
                op()
        assert self.names(store) == []

    def test_list_names_of_an_empty_store(self, store: SegmentStore) -> None:
        assert self.names(store) == []

    def test_map_reads_what_read_reads(self, store: SegmentStore) -> None:
        store.create("a", b"0123456789").close()
        view = store.map("a")
        try:
            assert bytes(view) == b"0123456789"
        finally:
            view.release()
        view = store.map("a", 4)
        try:
            assert bytes(view) == b"0123"
        finally:
            view.release()

    def test_written_end_and_preallocation(self, store: SegmentStore) -> None:
        f = store.create("a", b"head")
        f.write(b"data")
        f.sync()
        assert store.written_end("a") == 8  # nothing reserved yet
        reserved = f.preallocate(1 << 16)
        if not store.capabilities.preallocates:
            assert reserved is False
        assert f.size == 8  # where the next write goes, reserved or not
        if reserved:
            assert store.size("a") >= 1 << 16
        f.write(b"more")
        f.sync()
        assert written_bytes(store, "a", 0) == b"headdatamore"
        assert store.read("a", 0, 12) == b"headdatamore"
        assert f.trim() is reserved
        assert store.size("a") == 12
        assert store.read("a") == b"headdatamore"
        f.close()

    def test_local_path_is_none_or_the_file(self, store: SegmentStore) -> None:
        store.create("a", b"bytes").close()
        path = store.local_path("a")
        if path is not None:
            assert Path(path).read_bytes() == b"bytes"

    def test_location_names_the_store(self, store: SegmentStore) -> None:
        assert isinstance(store.location, str)
        assert store.location

    def test_reads_while_another_thread_appends(self, store: SegmentStore) -> None:
        """The log's readers and archive threads use the store while its writer appends."""
        chunk = bytes(range(256))
        f = store.create("a", b"")
        store.write_atomic("record", b"0")
        failures: list[BaseException] = []

        def write() -> None:
            try:
                for i in range(200):
                    f.write(chunk)
                    if i % 20 == 0:
                        f.sync()
                        store.write_atomic("record", b"%d" % i)
                f.sync()
            except BaseException as e:  # seen by the test's thread below
                failures.append(e)

        writer = threading.Thread(target=write)
        writer.start()
        while writer.is_alive():
            seen = store.read("a")
            assert seen == (chunk * 200)[: len(seen)]  # whole bytes written, up to some point
            assert store.read("record").isdigit()  # the old record or the new, never a mix
        writer.join()
        assert not failures, failures
        assert store.read("a") == chunk * 200
        assert store.read("record") == b"180"
        f.close()

    # --- the lock ------------------------------------------------------------------------

    def test_single_writer_lock(self, store: SegmentStore, tmp_path: Path) -> None:
        store.lock()
        store.check_lock()  # held: nothing to say
        other = self.make_other(store, tmp_path) or store
        with pytest.raises(StoreLockedError):
            other.lock()
        store.unlock()
        store.unlock()  # idempotent
        store.check_lock()  # not locked: nothing to check
        other.lock()
        other.unlock()
        if other is not store:
            other.close()

    def test_sync_dir_and_close_are_safe_to_repeat(self, store: SegmentStore) -> None:
        store.sync_dir()
        store.create("a", b"x").close()
        store.sync_dir()
        store.lock()
        store.close()
        store.close()
        store.lock()  # close released the lock
        store.unlock()

    # --- a log on the store ----------------------------------------------------------------

    def test_a_log_runs_on_it(self, store: SegmentStore) -> None:
        with walship.open(store=store, max_segment_bytes=256) as log:
            seqs = [log.append(b"record %d" % i) for i in range(40)]
            assert log.durable_seq == seqs[-1]
        with walship.open(store=store, max_segment_bytes=256) as log:
            assert [f.payload for f in log.read()] == [b"record %d" % i for i in range(40)]
            assert log.append(b"after") == seqs[-1] + 1
        assert len([n for n in store.list_names() if parse_segment_name(n) is not None]) > 1
