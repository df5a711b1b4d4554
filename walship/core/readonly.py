"""Reading a log without its writer's lock, while a writer (in another process, or this one)
appends, rotates, repairs on its own open and removes segments by retention:
:class:`ReadOnlyLog` (``walship.open(DIR, read_only=True)``) and :func:`tail_frames`, the one
reader behind it and behind ``Log.read(follow=True)``.

What the reader promises, and how it keeps it:

* **Never a torn or half-written frame.** Every frame returned has a valid length and CRC-32C
  and a commit_seq above the one before. In the last segment (the writer's active one) the read
  stops at the last such frame: what follows it (a frame being written, preallocated zeros, a
  torn tail a crash left) is "not written yet", and is read again at the next poll.
* **Sealed means sealed.** Segment N is final once segment N+1 exists with a whole, valid
  header: the writer syncs and trims N before it creates N+1, and a crash while N+1's header is
  written leaves a header recovery removes (N is then the active segment again). A sealed
  segment is read to its end; any damage in it raises :class:`LogCorruptError`.
* **The chain.** Every segment the read passes through is hashed as it is read; N+1's
  ``prev_segment_hash`` must be that BLAKE3 (else :class:`LogCorruptError`); the first segment
  of the read is checked against the archive record's anchor when the log has one. Frames read
  from a segment the read started in the middle of are hashed from its header all the same.
* **Retention.** A segment is read through a descriptor held open (on a store with local
  paths: POSIX), so a segment removed while it is read stays readable to its end. When the read
  must move on to a segment that is gone (the reader fell behind retention), or starts below the
  first local frame of a log whose older segments were removed, it raises
  :class:`FramesUnavailableError`: a gap is never skipped (read those frames from the archive).
* **A writer that failed.** A writer whose write or sync fails cuts the bytes it never made
  durable. A reader in another process may have returned frames from those bytes (it sees what
  the OS holds): when it notices (the file ends before its position, or the last frame it
  returned changed) it raises :class:`FramesWithdrawnError`. A reader in the writer's process
  (``Log.read(follow=True)``) returns only durable frames, so it never sees this.
* **Never a write.** Nothing is locked, repaired, created or recorded.

Not thread-safe: one read (one generator) is used by one thread at a time; several reads of one
:class:`ReadOnlyLog` may run in different threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

from blake3 import blake3

from walship.core.frame import (
    CRC,
    CRC_SIZE,
    HEAD_SIZE,
    LENGTH_SIZE,
    MIN_FRAME_LENGTH,
    Frame,
    FrameScan,
    StopReason,
)
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, segment_name, segment_seqs
from walship.core.record import ArchiveRecord
from walship.errors import (
    ArchiveRecordError,
    FramesUnavailableError,
    FramesWithdrawnError,
    LogCorruptError,
    SegmentHeaderError,
)
from walship.store import SegmentStore

POLL_INTERVAL = 0.05
"""Seconds between two looks at the files of a following read (``follow=True``)."""
CHUNK = 4 * 1024 * 1024
"""A segment is read at most this many bytes at a time (a larger frame in one read)."""
FIRST_READ = 16 * 1024
"""The first read at a position: small, since an idle look at the active segment finds only
the zeros a preallocating writer reserved; reads grow to :data:`CHUNK` while frames fill them."""

Wait = Callable[[float, int | None], bool]
"""How a following read waits: ``wait(seconds, last_seq)`` returns after at most ``seconds``
(earlier when something may have changed), ``False`` when the read must end (closed)."""
Located = tuple[int, Frame]
"""A frame and the segment_seq of the segment it was read from."""


class SegmentHandle:
    """One segment file open for reading: through a descriptor when the store has local paths
    (a removed segment stays readable to its end), else by name through the store.

    Raises:
        FileNotFoundError: the segment does not exist (on opening).
    """

    def __init__(self, store: SegmentStore, seq: int) -> None:
        self.store = store
        self.seq = seq
        self.name = segment_name(seq)
        self.path = store.local_path(self.name) if hasattr(os, "pread") else None
        self.fd: int | None = None
        if self.path is not None:
            self.fd = os.open(self.path, os.O_RDONLY)
        else:
            store.size(self.name)

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer at the end of the file).

        Raises:
            FileNotFoundError: the segment was removed (a store without local paths).
        """
        if self.fd is not None:
            return os.pread(self.fd, n, offset)
        return self.store.read(self.name, offset, n)

    def size(self) -> int:
        if self.fd is not None:
            return os.fstat(self.fd).st_size
        return self.store.size(self.name)

    def removed(self) -> bool:
        """Whether the segment's name no longer leads to it (removed by retention)."""
        try:
            self.store.size(self.name)
        except FileNotFoundError:
            return True
        return False

    def replaced(self) -> bool:
        """Whether the path now names another file than the one held (a follower that put a
        segment in place atomically, over a shorter copy of it)."""
        if self.fd is None or self.path is None:
            return False
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self.fd)
        return (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino)

    def reopen(self) -> None:
        """Hold the file the path names now."""
        assert self.path is not None
        fd = os.open(self.path, os.O_RDONLY)
        self.close()
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Tail:
    """The position of one read: the segment held, the offset after the last frame taken, the
    BLAKE3 of the segment's bytes before it, the last commit_seq taken and that frame's CRC."""

    def __init__(
        self,
        store: SegmentStore,
        from_seq: int | None,
        to_seq: int | None,
        limit: Callable[[], int] | None,
    ) -> None:
        self.store = store
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.limit = limit
        self.handle: SegmentHandle | None = None
        self.pos = 0
        self.hasher = blake3()
        self.expect_prev: bytes | None = None
        self.last_seq: int | None = None
        self.last_crc = b""
        self.done = False
        """``to_seq`` was passed: the read is over."""
        self.held = False
        """The next frame is past ``limit()`` (not durable yet): wait."""

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    # --- where the read starts ----------------------------------------------------------

    def start(self) -> bool:
        """Open the segment the read starts in; ``False`` when the store holds none yet.

        Raises:
            FramesUnavailableError: ``from_seq`` is below the first local frame of a log whose
                older segments were removed.
        """
        seqs = segment_seqs(self.store)
        if not seqs:
            return False
        i = self._start_index(seqs)
        try:
            self.handle = SegmentHandle(self.store, seqs[i])
        except FileNotFoundError:  # removed since the listing: list again at the next look
            return False
        head = self.handle.read(0, HEADER_SIZE + LENGTH_SIZE + HEAD_SIZE)
        if i == 0 and len(head) >= HEADER_SIZE:
            prev = head[32:HEADER_SIZE]
            first = _first_commit_seq(head)
            if (
                self.from_seq is not None
                and prev != ZERO_HASH
                and first is not None
                and first > self.from_seq
            ):
                self.close()
                raise FramesUnavailableError(
                    f"frames from commit_seq {self.from_seq} are not in the local log at "
                    f"{self.store.location} (the first local frame is {first}): their segments "
                    "were removed (by retention, after archiving); read them from the archive "
                    "with walship.open_archive(url)"
                )
            self.expect_prev = ZERO_HASH if prev == ZERO_HASH else self._anchor(seqs[0])
        return True

    def _start_index(self, seqs: list[int]) -> int:
        """The last segment whose first frame is at or before ``from_seq`` (0 without one)."""
        if self.from_seq is None:
            return 0
        start = 0
        for i in range(1, len(seqs)):
            try:
                head = self.store.read(segment_name(seqs[i]), 0, HEADER_SIZE + LENGTH_SIZE + 17)
            except FileNotFoundError:
                continue
            first = _first_commit_seq(head)
            if first is None or first > self.from_seq:
                break
            start = i
        return start

    def _anchor(self, seq: int) -> bytes | None:
        """The recorded BLAKE3 of the segment before ``seq`` (removed), when known."""
        try:
            return ArchiveRecord.load(self.store).anchor_for(seq)
        except (ArchiveRecordError, OSError):
            return None  # nothing to check the first link against: the others are checked

    # --- reading ------------------------------------------------------------------------

    def advance(self) -> Iterator[Located]:
        """Every frame readable now, from the position on, across sealed segments."""
        if self.handle is None and not self.start():
            return
        while True:
            yield from self.frames(sealed=False)
            if self.done or self.held:
                return
            nxt = self.successor()
            if nxt is None:
                assert self.handle is not None
                if self.handle.replaced():  # put in place over a shorter copy: read on in it
                    self.handle.reopen()
                    continue
                self.check_not_withdrawn()
                return
            yield from self.seal(nxt)
            if self.handle is not nxt[0]:  # stopped before the end: look again next time
                nxt[0].close()
                return

    def header(self, sealed: bool) -> bool:
        """Read and check the held segment's header (at position 0); ``False`` when it is not
        whole yet (the writer is creating the segment).

        Raises:
            LogCorruptError: a sealed segment's header is damaged, or the chain is broken.
        """
        assert self.handle is not None
        data = self.handle.read(0, HEADER_SIZE)
        try:
            header = SegmentHeader.decode(data, self.handle.name, self.handle.seq)
        except SegmentHeaderError as e:
            if sealed:
                raise self.corrupt(0, str(e)) from None
            return False
        if self.expect_prev is not None and header.prev_segment_hash != self.expect_prev:
            raise self.corrupt(
                32,
                f"prev_segment_hash {header.prev_segment_hash.hex()[:16]}... is not the BLAKE3 "
                f"of the segment before it ({self.expect_prev.hex()[:16]}...)",
            )
        self.hasher = blake3(data)
        self.pos = HEADER_SIZE
        return True

    def frames(self, sealed: bool) -> Iterator[Located]:
        """The valid frames of the held segment from the position on.

        Raises:
            LogCorruptError: damage in a ``sealed`` segment, or numbering that goes back.
        """
        handle = self.handle
        assert handle is not None
        if self.pos == 0 and not self.header(sealed):
            return
        want = FIRST_READ
        while True:
            base = self.pos
            data = memoryview(handle.read(base, want))
            scan = FrameScan(data)
            taken = 0
            for off, end, seq, ts, ptype in scan:
                if self.last_seq is not None and seq <= self.last_seq:
                    raise self.corrupt(
                        base + off, f"commit_seq {seq} does not follow {self.last_seq}"
                    )
                if self._stop_before(seq):
                    break
                taken = end
                self.pos = base + end
                self.last_seq = seq
                self.last_crc = bytes(data[end - CRC_SIZE : end])
                if self.from_seq is None or seq >= self.from_seq:
                    payload = bytes(data[off + HEAD_SIZE : end - CRC_SIZE])
                    yield handle.seq, Frame(seq, ts, ptype, payload)
                if seq == self.to_seq:
                    self.done = True
                    break
            self.hasher.update(data[:taken])
            if self.done or self.held:
                return
            stop = scan.stop
            assert stop is not None
            if len(data) == want and stop.reason in (StopReason.END, StopReason.TRUNCATED):
                # the rest is beyond this read: read more at a time (up to CHUNK), the frame whole
                want = max(min(CHUNK, want * 4), _needed(data, stop.offset))
                continue
            if stop.reason is not StopReason.END and sealed:
                raise self.corrupt(base + stop.offset, stop.detail)
            return

    def _stop_before(self, seq: int) -> bool:
        if self.to_seq is not None and seq > self.to_seq:
            self.done = True
            return True
        if self.limit is not None and seq > self.limit():
            self.held = True
            return True
        self.held = False
        return False

    def successor(self) -> tuple[SegmentHandle, SegmentHeader] | None:
        """The next segment, held, when it exists with a whole header (so the held one is
        sealed); ``None`` while the held segment is the last.

        Raises:
            FramesUnavailableError: the held segment and its successor were both removed
                (the read fell behind retention).
        """
        assert self.handle is not None
        seq = self.handle.seq + 1
        try:
            nxt = SegmentHandle(self.store, seq)
        except FileNotFoundError:
            if self.handle.removed():
                raise self.unavailable() from None
            return None
        try:
            header = SegmentHeader.decode(nxt.read(0, HEADER_SIZE), nxt.name, seq)
        except SegmentHeaderError:  # being created (or torn: the writer's recovery removes it)
            nxt.close()
            return None
        return nxt, header

    def seal(self, nxt: tuple[SegmentHandle, SegmentHeader]) -> Iterator[Located]:
        """Read the held (sealed) segment to its end, check the chain link to ``nxt`` and move
        on to it. Stops without moving when ``to_seq`` or the limit is reached first."""
        assert self.handle is not None
        if self.handle.replaced():
            self.handle.reopen()
        yield from self.frames(sealed=True)
        if self.done or self.held:
            return
        handle, header = nxt
        digest = self.hasher.digest()
        if header.prev_segment_hash != digest:
            self.close()
            self.handle = handle
            raise self.corrupt(
                32,
                f"prev_segment_hash {header.prev_segment_hash.hex()[:16]}... is not the BLAKE3 "
                f"of {segment_name(header.segment_seq - 1)} as read ({digest.hex()[:16]}...)",
            )
        self.close()
        self.handle = handle
        self.expect_prev = digest
        self.pos = 0  # its header is read (and checked again) by the next frames()

    def check_not_withdrawn(self) -> None:
        """Raise :class:`FramesWithdrawnError` when the writer cut frames this read returned
        (a failed writer cuts the bytes it never made durable)."""
        handle = self.handle
        assert handle is not None
        if self.pos <= HEADER_SIZE:
            return
        size = handle.size()
        cut = size < self.pos
        if not cut and self.last_crc:
            cut = handle.read(self.pos - CRC_SIZE, CRC_SIZE) != self.last_crc
        if cut:
            raise FramesWithdrawnError(
                f"{self.store.location}/{handle.name}: frames this read returned, up to "
                f"commit_seq {self.last_seq}, were cut by the writer (a write or sync failed: "
                "they were never durable, never acknowledged); read again from the log as it is"
            )

    def corrupt(self, offset: int, detail: str) -> LogCorruptError:
        name = self.handle.name if self.handle is not None else "?"
        return LogCorruptError(
            f"{self.store.location}: {name} at offset {offset}: {detail}; "
            "`walship verify` says more"
        )

    def unavailable(self) -> FramesUnavailableError:
        after = self.last_seq if self.last_seq is not None else self.from_seq
        return FramesUnavailableError(
            f"frames after commit_seq {after} are no longer in the local log at "
            f"{self.store.location}: retention removed their segments while this read was "
            "behind; read them from the archive with walship.open_archive(url)"
        )


def _first_commit_seq(head: bytes) -> int | None:
    """The commit_seq of the first frame, from a segment's first bytes (``None``: no frame
    there yet)."""
    if len(head) < HEADER_SIZE + LENGTH_SIZE + 8:
        return None
    (length,) = CRC.unpack_from(head, HEADER_SIZE)
    if length < MIN_FRAME_LENGTH:
        return None
    return int.from_bytes(head[HEADER_SIZE + LENGTH_SIZE : HEADER_SIZE + LENGTH_SIZE + 8], "big")


def _needed(data: memoryview, offset: int) -> int:
    """Bytes a read from ``offset`` needs to hold the frame that starts there whole."""
    if len(data) - offset < LENGTH_SIZE:
        return LENGTH_SIZE
    return int(LENGTH_SIZE + CRC.unpack_from(data, offset)[0])


def tail_frames(
    store: SegmentStore,
    from_seq: int | None = None,
    to_seq: int | None = None,
    *,
    follow: bool = False,
    timeout: float | None = None,
    wait: Wait,
    limit: Callable[[], int] | None = None,
    poll_interval: float = POLL_INTERVAL,
) -> Iterator[Located]:
    """Yield ``(segment_seq, frame)`` with ``from_seq <= commit_seq <= to_seq`` in order, as
    the module docstring promises; with ``follow``, then wait for new frames (``wait``, at most
    ``poll_interval`` seconds at a time) and yield them as they come, until ``to_seq`` is
    reached, ``timeout`` seconds pass without a new frame (``None``: never) or ``wait`` says
    to stop. ``limit()`` (when given) is the highest commit_seq that may be returned now (the
    writer's ``durable_seq``). Runs on the caller's thread.

    Raises:
        FramesUnavailableError / FramesWithdrawnError / LogCorruptError: see the module
            docstring.
        OSError: a file could not be read.
    """
    tail = _Tail(store, from_seq, to_seq, limit)
    since = time.monotonic()
    try:
        while True:
            for item in tail.advance():
                since = time.monotonic()
                yield item
            if tail.done or not follow:
                return
            remaining = poll_interval
            if timeout is not None:
                remaining = min(remaining, timeout - (time.monotonic() - since))
                if remaining <= 0:
                    return
            if not wait(remaining, tail.last_seq):
                return
    finally:
        tail.close()


class ReadOnlyLog:
    """A log opened for reading only (``walship.open(DIR, read_only=True)``): no lock, no
    recovery, no write; safe beside a writer in another process (see the module docstring).

    Frames are :class:`~walship.core.frame.Frame` objects, as :meth:`walship.log.Log.read`
    returns them. :meth:`close` ends every following read at its next wait (reads that are not
    waiting finish what they are yielding first). Thread-safe.
    """

    def __init__(self, store: SegmentStore, poll_interval: float = POLL_INTERVAL) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.store = store
        self.poll_interval = poll_interval
        self._closed = threading.Event()

    def read(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order (``from_seq``
        defaults to the first local frame); with ``follow``, then wait for new ones, polling
        the files every ``poll_interval`` seconds, until ``timeout`` seconds pass without a new
        frame (``None``: forever), ``to_seq`` is reached or the log is closed.

        Raises:
            FramesUnavailableError: frames from ``from_seq`` on (or, while following, the next
                ones) are no longer local: retention removed them; never skipped.
            FramesWithdrawnError: the writer cut frames this read returned (it failed).
            LogCorruptError: a sealed segment is damaged or the chain is broken.
        """
        for _, frame in self.read_located(from_seq, to_seq, follow=follow, timeout=timeout):
            yield frame

    def read_located(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[Located]:
        """As :meth:`read`, each frame with the segment_seq it was read from."""
        return tail_frames(
            self.store,
            from_seq,
            to_seq,
            follow=follow,
            timeout=timeout,
            wait=self._wait,
            poll_interval=self.poll_interval,
        )

    def _wait(self, seconds: float, last_seq: int | None) -> bool:
        return not self._closed.wait(seconds)

    @property
    def first_seq(self) -> int | None:
        """The commit_seq of the first local frame now (``None``: no frame is local)."""
        for seq in segment_seqs(self.store):
            try:
                head = self.store.read(segment_name(seq), 0, HEADER_SIZE + LENGTH_SIZE + 17)
            except FileNotFoundError:
                continue
            first = _first_commit_seq(head)
            if first is not None:
                return first
        return None

    @property
    def last_seq(self) -> int | None:
        """The commit_seq of the last valid frame now (``None``: no frame is local)."""
        for seq in reversed(segment_seqs(self.store)):
            try:
                data = memoryview(self.store.read(segment_name(seq)))
            except FileNotFoundError:
                continue
            last = None
            for _, _, commit_seq, _, _ in FrameScan(data, HEADER_SIZE):
                last = commit_seq
            if last is not None:
                return last
        return None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """End following reads at their next wait. Idempotent; nothing else to release."""
        self._closed.set()

    def __enter__(self) -> ReadOnlyLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReadOnlyLog({self.store!r})"


__all__ = ["POLL_INTERVAL", "ReadOnlyLog", "SegmentHandle", "tail_frames"]
