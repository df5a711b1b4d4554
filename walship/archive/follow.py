"""Following an archive as it grows: a local replica of its sealed segments and live-shipped
parts (:class:`Follower`, ``walship follow URL DIR``) and a stream of its frames
(:func:`follow_archive`, behind ``walship.open_archive(url).read(follow=True)``).

Each round (every ``interval``) lists the archive once and reads the manifests of the segments
it did not know (:class:`ArchiveWatch`), then takes the **run** of new segments: those after the
last one taken, contiguous and complete (object and manifest). A segment whose upload is still
under way (its object without its manifest yet) ends the run for this round; damage (a lying or
unparsable manifest, a broken chain, numbering that goes back, a wrong size) raises. Every
segment taken is downloaded and checked as a restore checks it (:func:`~walship.archive.check.
check_segment`: size, BLAKE3, header, every frame, every claim of the manifest) and must chain
to the one before it (its prev hash the BLAKE3 of the last one taken, its commit_seqs above).

The replica (:class:`Follower`) starts as a restore does when the directory holds no segment
(the archive must start at the log's first segment), and then adds each run: downloaded in
parallel into a staging directory by restore's own :func:`~walship.archive.restore.fetch`, then
renamed into the directory one segment at a time, in order, each whole (rename is atomic): a
reader of the directory (``walship.open(DIR, read_only=True)``, ``walship tail DIR``) sees each
segment whole or not at all, and segment N+1 only after N. The directory is the archive's
segments byte for byte and nothing else but the writer's lock file (the follower holds it: no
writer and no second follower can open the directory meanwhile), the archive record (every
sealed segment marked archived at the URL) and the follower's status for ``walship status``
(``walship.follower.json``, :mod:`walship.archive.follower_status`, after every round).
Unlike a restore it has no new active segment: it ends with the archive's last sealed
segment, or the copy of the one after it from parts.

Live-shipped parts (``archive.ship_interval``) slot in after the sealed run of a round
(:meth:`Follower.poll`; :mod:`walship.archive.replica`): the parts of the segment after the
last sealed one that continue the local copy, each verified first (manifest, BLAKE3, contiguous
ranges, every frame and claim, the header's prev hash, commit_seq continuing), go at the end of
the copy whole and durably; a read-only reader treats the copy as the active segment of a
writer (it stops at the last whole frame). The copy is not recorded as archived. When that
segment is archived sealed, the run puts it in place over the copy (rename), once its bytes
start with exactly the copy's (else :class:`~walship.errors.ArchiveIntegrityError`: the replica
never diverges); a reader holding the old file reopens it by name when it reaches its end. The
replica thus lags the writer by at most one ``ship_interval`` and a round.

Lag (:class:`FollowLag`) is what the archive holds that the replica does not, measured each
round after the run and the parts (frames taken from parts count): frames (the archive's last
commit_seq, a part's the replica took included, minus the replica's) and seconds (its last
frame's timestamp minus the replica's); ``age_seconds`` is how old the replica's last frame
is by this machine's clock (what the writer has not shipped yet shows there). It is in
:meth:`Follower.stats` and goes to the ``follower_lag`` hook after every round.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from walship.archive import ArchiveStore, SegmentManifest
from walship.archive.check import check_segment
from walship.archive.follower_status import FOLLOWER_STATUS, FollowerStatus
from walship.archive.listing import ArchiveListing
from walship.archive.plan import (
    CHAIN_MISMATCH,
    CORRUPT_FRAME,
    LOG_FIRST_SEGMENT,
    ArchivePlan,
    ArchiveProblem,
    describe_problems,
    plan_error,
)
from walship.archive.replica import (
    ChainEnd,
    PartialCopy,
    check_continues,
    local_end,
    replica_state,
    take_parts,
)
from walship.archive.restore import fetch
from walship.archive.restore_plan import RestorePlan
from walship.archive.sealing import Keyring, keyring_argument
from walship.archive.staging import clean_leftovers, staging_directory
from walship.backends.platform import fsync_dir
from walship.backends.posix import PosixStore
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE, segment_name
from walship.core.record import ArchivedSegment, ArchiveRecord
from walship.errors import ArchiveError, ArchiveIntegrityError, ArchiveKeyError

logger = logging.getLogger("walship.archive")

DEFAULT_INTERVAL = 1.0
"""Seconds between two rounds (one LIST each, plus a GET per new manifest and segment)."""


class ArchiveWatch:
    """The plan of an archive, refreshed round after round: one LIST each time, and a GET only
    for the manifests not seen before, or listed at another size since (a manifest is created
    once and only a fenced writer's leftover is ever replaced, by the new writer's, which
    carries its epoch: :mod:`walship.archive.epoch`). Used by one thread."""

    def __init__(self, archive: ArchiveStore) -> None:
        self.archive = archive
        self._manifests: dict[int, tuple[int, SegmentManifest]] = {}

    def refresh(self) -> ArchivePlan:
        """This round's plan.

        Raises:
            ArchiveNameError: a hostile or unknown walship-like name (as every plan).
            OSError: the store failed.
        """
        listing: ArchiveListing = self.archive.list()
        listing.raise_rejected(self.archive.url)
        listing.warn_foreign(self.archive.url)  # (each object named once per process)
        manifests: dict[int, SegmentManifest] = {}
        invalid: dict[int, str] = {}
        for seq, size in sorted(listing.manifests.items()):
            seen = self._manifests.get(seq)
            m = seen[1] if seen is not None and seen[0] == size else None
            if m is None:
                try:
                    m = self.archive.stat(segment_name(seq))
                except ArchiveIntegrityError as e:
                    invalid[seq] = str(e)
                    continue
                if m is None:  # listed, then gone
                    del listing.manifests[seq]
                    continue
                self._manifests[seq] = (size, m)
            manifests[seq] = m
        plan = ArchivePlan(self.archive, listing, manifests, invalid)
        plan.drop_fenced()
        for seq in [s for s in self._manifests if s not in plan.manifests]:
            del self._manifests[seq]  # (a leftover, replaced next: read again)
        return plan


def next_run(
    plan: ArchivePlan, end: ChainEnd, limit: int | None = None
) -> tuple[list[SegmentManifest], ArchiveProblem | None]:
    """The segments after ``end`` to take this round (module docstring): contiguous, complete,
    at most ``limit``; chained to ``end`` on the manifests' word (the bytes are checked when
    fetched). Also the missing piece the run stopped at, if any: an upload under way (the
    archiver uploads several segments at once, so a later one can be there before an earlier
    one; and a segment's object comes before its manifest), or a piece that never comes (it
    is named in every round's :class:`FollowStep` and in ``stats()["waiting_for"]``).

    Raises:
        ArchivePlanError: damage in the manifests of the run or in its link to ``end``.
    """
    first = end.segment_seq + 1
    if plan.last_seq is None or plan.last_seq < first:
        return [], None
    if first == LOG_FIRST_SEGMENT and (start := plan.start_problem()) is not None:
        return [], start
    run: list[SegmentManifest] = []
    waiting: ArchiveProblem | None = None
    for seq in range(first, plan.last_seq + 1):
        if limit is not None and len(run) >= limit:
            break
        problem = plan.entry_problem(seq)
        if problem is not None and problem.missing:
            waiting = problem
            break
        if problem is not None:
            raise plan_error(f"cannot follow {plan.archive.url}: {problem}", [problem])
        run.append(plan.manifests[seq])
    if not run:
        return run, waiting
    problems = _link_problems(end, run[0])
    problems += plan.check(run[0].segment_seq, run[-1].segment_seq).problems
    if problems:
        message = f"cannot follow {plan.archive.url}: {describe_problems(problems)}"
        raise plan_error(message, problems)
    return run, waiting


def _link_problems(end: ChainEnd, m: SegmentManifest) -> list[ArchiveProblem]:
    """What breaks the link between the last segment taken and ``m``, its successor."""
    found = []
    if m.prev_segment_hash != end.blake3:
        found.append(
            ArchiveProblem(
                CHAIN_MISMATCH,
                m.name,
                32,
                f"prev_segment_hash {m.prev_segment_hash.hex()[:16]}... is not the BLAKE3 of "
                f"{segment_name(end.segment_seq)} as taken ({end.blake3.hex()[:16]}...)",
                m.segment_seq,
            )
        )
    last = end.last_commit_seq
    if m.first_commit_seq is not None and last is not None and m.first_commit_seq <= last:
        found.append(
            ArchiveProblem(
                CORRUPT_FRAME,
                m.name,
                HEADER_SIZE,
                f"commit_seq {m.first_commit_seq} does not follow {last}",
                m.segment_seq,
            )
        )
    return found


@dataclass(frozen=True)
class FollowLag:
    """How far a replica is behind its archive after a round (module docstring)."""

    frames: int
    seconds: float
    age_seconds: float | None
    replica_seq: int | None
    archive_seq: int | None


def measure_lag(plan: ArchivePlan, end: ChainEnd, now_micros: int) -> FollowLag:
    """The lag of a replica that reaches ``end`` (its last frame: from its parts, if any)
    behind the archive of ``plan``: the archive's newest frame is the newest sealed segment's,
    or the replica's own when it took later frames from parts."""
    framed = [m for m in plan.manifests.values() if m.last_commit_seq is not None]
    newest = max(framed, key=lambda m: m.segment_seq) if framed else None
    archive_seq = newest.last_commit_seq if newest is not None else None
    archive_ts = newest.last_timestamp_micros if newest is not None else None
    have, have_ts = end.last_commit_seq, end.last_timestamp_micros
    if have is not None and (archive_seq is None or have > archive_seq):
        archive_seq, archive_ts = have, have_ts  # what the replica took from parts
    frames = max(0, (archive_seq or 0) - (have or 0))
    seconds = max(0.0, ((archive_ts or 0) - (have_ts or archive_ts or 0)) / 1e6)
    age = None if have_ts is None else max(0.0, (now_micros - have_ts) / 1e6)
    return FollowLag(frames, seconds, age, have, archive_seq)


@dataclass(frozen=True)
class FollowStep:
    """What one round of a :class:`Follower` did: segments and frames added, and the lag."""

    segments: int
    frames: int
    """Frames added: of the sealed segments (less those the replica's copy held already) and
    of the live-shipped parts."""
    lag: FollowLag
    waiting_for: str | None = None
    """The missing piece the round stopped at (an upload under way, or a gap), as one line."""
    parts: int = 0
    """Live-shipped parts taken."""
    part_frames: int = 0
    """Of :attr:`frames`, those taken from the parts."""

    def summary(self) -> str:
        """One line: what the round added (segments, parts, frames, of which from parts) and
        the lag."""
        lag = self.lag
        age = f", last frame {lag.age_seconds:.1f} s old" if lag.age_seconds is not None else ""
        waiting = f"; waiting for {self.waiting_for}" if self.waiting_for else ""
        return (
            f"+{self.segments} segment(s), +{self.parts} part(s), +{self.frames} frame(s) "
            f"({self.part_frames} from live parts); replica at commit_seq {lag.replica_seq}; "
            f"lag {lag.frames} frame(s), {lag.seconds:.3f} s behind the archive's newest"
            f"{age}{waiting}"
        )


class Follower:
    """Keeps ``directory`` an exact replica of the sealed segments archived at ``url`` and of
    the live-shipped parts after them (module docstring). Holds the directory's writer lock
    from construction to :meth:`close`.

    Args:
        interval: seconds between two rounds of :meth:`run`.
        jobs: parallel downloads of a round.
        plugins: objects implementing walship hooks (``follower_lag`` is the one a follower
            calls, on the thread that runs the round).
        encryption: the keys of an encrypted archive, as ``archive.encryption`` takes them
            (``current`` may be left out), or a :class:`~walship.archive.sealing.Keyring`.
    Raises:
        StoreLockedError: a writer or another follower has the directory open.
        ArchiveError: the URL cannot be opened.
        ConfigError: ``encryption`` is malformed.
    """

    def __init__(
        self,
        url: str,
        directory: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        jobs: int = 4,
        plugins: Iterable[object] = (),
        encryption: Mapping[str, Any] | Keyring | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.archive = ArchiveStore(url, storage_options, keyring=keyring_argument(encryption))
        self.url = self.archive.url
        self.directory = Path(directory)
        self.interval = interval
        self.jobs = jobs
        from walship.plugins.manager import new_plugin_manager

        self.plugins = new_plugin_manager(entry_points=False)
        for plugin in plugins:
            self.plugins.register(plugin)
        clean_leftovers(self.directory)
        self.store = PosixStore(self.directory)
        self.store.lock()
        try:
            self._end, self._partial = replica_state(self.store, self.url)
        except BaseException:
            self.store.close()
            raise
        self._watch = ArchiveWatch(self.archive)
        self._stop = threading.Event()
        self._stats: dict[str, Any] = {
            "rounds": 0,
            "segments": 0,
            "parts": 0,
            "frames": 0,
            "errors": 0,
        }
        self.lag: FollowLag | None = None

    @property
    def end(self) -> ChainEnd:
        """The replica's last sealed segment, and its last frame (one from parts included)."""
        return self._end if self._partial is None else self._partial.reached(self._end)

    @property
    def partial(self) -> PartialCopy | None:
        """The replica's copy of the segment after its last sealed one, from parts."""
        return self._partial

    def poll(self) -> FollowStep:
        """One round: list, take the run of new sealed segments into the directory, then the
        live-shipped parts that continue the segment after the last one (module docstring),
        measure the lag and tell the ``follower_lag`` hook. On the calling thread.

        A missing piece (an upload under way, a gap, an archive that does not start at the
        log's first segment) ends the round's run and is named in the step's ``waiting_for``.

        Raises:
            ArchivePlanError: the manifests show damage (nothing of the run is added).
            ArchiveMissingError / ArchiveIntegrityError: a segment fetched does not match its
                manifest or the chain, a sealed segment does not start with the bytes the
                replica took from its parts, or a part does not check (nothing of it added).
            OSError: the archive or the local disk failed.
        """
        plan = self._watch.refresh()
        run, waiting = next_run(plan, self._end)
        segments, frames = self._sealed_step(run)
        parts, part_frames = self._parts_step(plan)
        frames += part_frames
        lag = measure_lag(plan, self.end, time.time_ns() // 1000)
        self.lag = lag
        self._stats["rounds"] += 1
        self._stats["segments"] += segments
        self._stats["frames"] += frames
        self._stats["waiting_for"] = None if waiting is None else str(waiting)
        self._notify(lag)
        self._save_status(lag)
        return FollowStep(segments, frames, lag, self._stats["waiting_for"], parts, part_frames)

    def _save_status(self, lag: FollowLag) -> None:
        """``walship.follower.json`` for ``walship status`` (:mod:`walship.archive.
        follower_status`); a failed write is logged, never the round's failure."""
        status = FollowerStatus(
            self.url,
            os.getpid(),
            time.time_ns() // 1000,
            self._stats["rounds"],
            lag.replica_seq,
            lag.archive_seq,
            lag.frames,
            lag.seconds,
            self._stats["waiting_for"],
        )
        try:
            status.save(self.store)
        except OSError as e:
            logger.warning(
                "walship follow %s: could not write %s: %s", self.url, FOLLOWER_STATUS, e
            )

    def _sealed_step(self, run: list[SegmentManifest]) -> tuple[int, int]:
        """Fetch ``run``, the segments after the replica's end (each checked, by restore's
        ``fetch``), into a staging directory, then rename them into place in order and record
        them; return the segments and frames added."""
        if not run:
            return 0, 0
        rp = RestorePlan(run[0].segment_seq, run[-1].segment_seq, run=run)
        copy, had = self._partial, 0
        with staging_directory(self.directory) as staging:  # removed again on failure
            written = fetch(self.archive, rp, PosixStore(staging), self.jobs)
            if copy is not None:  # run[0] is its segment: it goes over the copy
                held = self.store.read(copy.name, 0, copy.size)
                got = (staging / copy.name).read_bytes()
                check_continues(copy, held, got, self.archive.object_url(copy.name))
                had = copy.frames
            for m in run:  # in order: a reader sees N+1 only after N, each whole
                os.rename(staging / m.name, self.directory / m.name)
                fsync_dir(self.directory)
                self._end = self._end.after(m)
                self._partial = None
            for leftover in staging.iterdir():  # write_atomic's temporary names, if any
                leftover.unlink()
            staging.rmdir()
        ArchiveRecord.load(self.store).mark_many(
            [
                ArchivedSegment(
                    m.segment_seq, m.size, m.blake3, self.url, m.last_commit_seq, m.instance_id
                )
                for m in run
            ]
        )
        return len(run), sum(w.frames for w in written) - had

    def _parts_step(self, plan: ArchivePlan) -> tuple[int, int]:
        """Take the parts that continue the copy of the segment after the last sealed one
        (none while that segment is sealed in the archive: the next run takes it); return
        the parts and frames added."""
        seq = self._end.segment_seq + 1
        if seq in plan.manifests or seq in plan.invalid:
            return 0, 0
        before = self._partial.frames if self._partial is not None else 0
        self._partial, parts = take_parts(
            self.archive, plan.listing, self.store, self._end, self._partial, plan.epoch_starts
        )
        self._stats["parts"] += parts
        return parts, (self._partial.frames if self._partial is not None else 0) - before

    def _notify(self, lag: FollowLag) -> None:
        """Call every ``follower_lag`` implementation on this thread; one that raises is
        logged and counted (``stats()["hook_errors"]``) and never hides the event from the
        others."""
        args = {
            "follower": self,
            "url": self.url,
            "directory": str(self.directory),
            "frames": lag.frames,
            "seconds": lag.seconds,
            "replica_seq": lag.replica_seq,
            "archive_seq": lag.archive_seq,
        }
        for impl in reversed(self.plugins.hook.follower_lag.get_hookimpls()):
            try:
                impl.function(*[args[a] for a in impl.argnames])
            except Exception:
                self._stats["hook_errors"] = self._stats.get("hook_errors", 0) + 1
                logger.exception("plugin %s failed in hook follower_lag", impl.plugin_name)

    def run(
        self,
        rounds: int | None = None,
        on_step: Callable[[FollowStep], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run a round every ``interval`` seconds until :meth:`stop` (or ``rounds`` rounds).
        A failure of the store (``OSError``) is counted, handed to ``on_error`` (else logged)
        and retried next round; damage (:class:`ArchiveIntegrityError`, a plan error) ends
        the run with the error: nothing after it can be taken; so does a segment sealed under a
        key not given (no later round can open it).

        Raises:
            ArchiveIntegrityError: as :meth:`poll`.
            ArchiveKeyError: a segment is sealed under a key this follower was not given.
        """
        done = 0
        while not self._stop.is_set() and (rounds is None or done < rounds):
            started = time.monotonic()
            try:
                step = self.poll()
            except (ArchiveIntegrityError, ArchiveKeyError):
                raise
            except (OSError, ArchiveError) as e:
                self._stats["errors"] += 1
                self._stats["last_error"] = str(e)
                if on_error is not None:
                    on_error(e)
                else:
                    logger.warning("walship follow %s: %s; retrying", self.url, e)
            else:
                if on_step is not None:
                    on_step(step)
            done += 1
            if rounds is not None and done >= rounds:
                break
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        """End :meth:`run` after its current round. Any thread."""
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        """Rounds, segments and frames taken, store errors, and the last lag measured."""
        out = dict(self._stats)
        out["replica_seq"] = self.end.last_commit_seq
        out["last_segment"] = segment_name(self._end.segment_seq) if self._end.instance_id else None
        out["partial_segment"] = self._partial.name if self._partial is not None else None
        if self.lag is not None:
            out["lag"] = asdict(self.lag)
        return out

    def close(self) -> None:
        """Stop and release the directory's lock. Idempotent."""
        self._stop.set()
        self.store.close()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def follow_archive(
    archive: ArchiveStore,
    from_seq: int = 1,
    to_seq: int | None = None,
    *,
    interval: float = DEFAULT_INTERVAL,
    timeout: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Frame]:
    """Yield the archive's frames from ``from_seq`` on, in order, then each new sealed
    segment's frames as it is archived (a round every ``interval`` seconds), until ``to_seq``,
    ``timeout`` seconds without a new frame (``None``: never) or ``stop`` is set. Every segment is
    checked as a restore checks it and chained to the one before it (module docstring).

    The read starts at the last segment whose manifest puts its first frame at or before
    ``from_seq`` (its download proves it).

    A missing piece is waited for, as :meth:`Follower.poll` waits.

    Raises:
        ArchivePlanError / ArchiveIntegrityError: as :meth:`Follower.poll`.
        OSError: the store failed.
    """
    watch = ArchiveWatch(archive)
    stop = stop or threading.Event()
    end: ChainEnd | None = None
    since = time.monotonic()
    while True:
        plan = watch.refresh()
        if end is None:
            end = _start_before(plan, from_seq)
        if end is not None:
            for m in next_run(plan, end)[0]:
                data = check_segment(archive, m).raise_problems()
                end = end.after(m)
                for f in framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
                    if to_seq is not None and f.commit_seq > to_seq:
                        return
                    if f.commit_seq >= from_seq:
                        since = time.monotonic()
                        yield f
                    if f.commit_seq == to_seq:
                        return
        wait = interval
        if timeout is not None:
            wait = min(wait, timeout - (time.monotonic() - since))
            if wait <= 0:
                return
        if stop.wait(wait):
            return


def _start_before(plan: ArchivePlan, from_seq: int) -> ChainEnd | None:
    """The end of the chain just before the segment a read from ``from_seq`` starts in: the
    log's start, or the start segment's own word on its predecessor (its download checks it);
    ``None`` while the archive holds no segment."""
    if plan.first_seq is None:
        return None
    start = plan.first_seq
    for seq in sorted(plan.manifests):
        m = plan.manifests[seq]
        if m.first_commit_seq is not None and m.first_commit_seq <= from_seq:
            start = seq
    if start == plan.first_seq:
        return ChainEnd()  # from the log's first segment (next_run waits while it is absent)
    m = plan.manifests[start]  # the read cannot check what lies before where it starts
    return ChainEnd(start - 1, m.prev_segment_hash, m.instance_id)


__all__ = [
    "DEFAULT_INTERVAL",
    "ArchiveWatch",
    "ChainEnd",
    "FollowLag",
    "FollowStep",
    "Follower",
    "follow_archive",
    "local_end",
    "measure_lag",
    "next_run",
]
