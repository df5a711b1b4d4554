"""What an archive holds, planned once from one LIST and its manifests, and checked the same
way by ``restore``, ``open_archive().read()`` and ``walship verify URL`` (the checks of the bytes
are in :mod:`walship.archive.check`).

:class:`ArchivePlan` is that plan. :meth:`ArchivePlan.check` lists, for a range of segments,
every piece that is missing or does not fit (nothing is downloaded):

* ``missing_segment``: nothing of a segment is in the archive (a gap), or its manifest is there
  and its object is not; and, when the range starts at the archive's first segment, the
  segments before it if the archive does not start at the log's first segment (see below);
* ``missing_manifest``: a segment's object is there without its manifest: the upload never
  finished (the archiver verifies such an object against its local bytes and writes the
  manifest on its next run; until then the object is checked by nothing and never restored,
  but in the live tail, where the parts after it prove it: :mod:`walship.archive.parts`);
* ``bad_manifest``: a manifest that does not parse;
* ``altered_segment``: an object whose listed size is not the one its manifest promises;
* ``chain_mismatch``: a manifest's ``prev_segment_hash`` is not the BLAKE3 of the segment
  before (or segment 1's is not zero); ``bad_header``: two instance_ids in one log;
* ``corrupt_frame``: a segment's first commit_seq does not follow the last commit_seq before it
  (a log that restarted its numbering: such an archive restores into a directory that does not
  open, so it is refused).

:func:`walship.archive.check.check_segment` downloads one segment and checks its bytes against
its manifest (size and BLAKE3: ``altered_segment``), its header and every frame (``bad_header``,
``corrupt_frame``, at the offset of the damage), and every other claim of the manifest
(``bad_manifest``): once every segment passes, what the plan checked on the manifests holds for
the bytes too. :func:`walship.archive.check.verify_archive` is ``walship verify URL``.

Where a log starts: a walship log (and the seed) starts at segment 1, whose prev_segment_hash is
32 zero bytes. An archive starts at the log's first segment when it holds segment 1; a zero
prev hash in a later segment is not a start (it is what the seed wrote after a restart, see
``--seed-restarts``), so an archive whose first segment is N > 1 misses segments 1..N-1, whatever
that segment's prev hash. A pruned archive (``walship prune``) starts where its prune marker
says (:attr:`ArchivePlan.start`): segments and checkpoints before it are set aside
(:attr:`ArchivePlan.leftovers`), that segment's prev hash must be the marker's anchor, and any
other gap is still missing.

A fenced writer's leftover (:mod:`walship.archive.epoch`: a segment whose manifest's epoch is
below that of a takeover whose own segments start at or before it) is set aside too
(:attr:`ArchivePlan.fenced`), named in one warning: never planned on, never part of the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from walship.archive import ArchiveListing, ArchiveStore, SegmentManifest
from walship.archive.checkpoint_manifest import CheckpointManifest, PruneMarker
from walship.archive.checkpoints import load_checkpoints, load_prune_marker
from walship.archive.epoch import EpochStarts
from walship.archive.listing import WarnedNames
from walship.archive.names import (
    checkpoint_manifest_name,
    manifest_name,
    object_name,
    snapshot_name,
)
from walship.core.header import HEADER_SIZE, ZERO_HASH, segment_name
from walship.core.scan import ProblemKind
from walship.errors import ArchiveIncompleteError, ArchiveIntegrityError, ArchivePlanError

LOG_FIRST_SEGMENT = 1
"""The segment_seq every log starts at (its prev_segment_hash is zero)."""

MISSING_SEGMENT = ProblemKind.MISSING_SEGMENT.value
MISSING_MANIFEST = "missing_manifest"
BAD_MANIFEST = "bad_manifest"
ALTERED_SEGMENT = "altered_segment"
BAD_HEADER = ProblemKind.BAD_HEADER.value
CHAIN_MISMATCH = ProblemKind.CHAIN_MISMATCH.value
CORRUPT_FRAME = ProblemKind.CORRUPT_FRAME.value
MISSING_KEY = "missing_key"
"""An encrypted object whose key was not given (``walship verify URL`` names the key id)."""

MISSING_KINDS = frozenset({MISSING_SEGMENT, MISSING_MANIFEST})
"""The kinds of problem that are pieces the archive lacks (what a partial restore may leave
out); every other kind is damage, which nothing skips."""

_MANIFEST_JOBS = 16
logger = logging.getLogger("walship.archive")
_fenced_warned = WarnedNames()
"""Fenced leftovers already warned about by this process (a follower loads a plan a round)."""


def warn_fenced(url: str, fenced: Mapping[str, str]) -> None:
    """One warning line naming the fenced writer's leftovers of ``fenced`` (name -> why) this
    process has not warned about yet (on the ``walship.archive`` logger)."""
    new = _fenced_warned.new(url, fenced)
    if new:
        logger.warning(
            "%s: %d object(s) of a fenced writer ignored: %s", url, len(new), fenced[new[0]]
        )


def short(value: object) -> str:
    """A hash as its first 16 hex digits, anything else as its repr (for messages)."""
    return value.hex()[:16] + "..." if isinstance(value, bytes) else repr(value)


def _span(first: int, last: int) -> str:
    return segment_name(first) if first == last else f"{segment_name(first)}..{segment_name(last)}"


@dataclass(frozen=True)
class ArchiveProblem:
    """One missing or damaged piece of an archive: its kind (see the module docstring), the
    segment (or range of segments) it concerns, an offset in that segment, and what is wrong.
    ``seq`` is the first segment_seq concerned."""

    kind: str
    segment: str
    offset: int
    detail: str
    seq: int
    repairable: bool = False
    """Always False: nothing in an archive is a torn tail that opening a log repairs."""

    @property
    def missing(self) -> bool:
        """Whether this is a piece the archive lacks rather than damage."""
        return self.kind in MISSING_KINDS

    def __str__(self) -> str:
        return f"{self.segment} at offset {self.offset}: {self.kind}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "segment": self.segment,
            "offset": self.offset,
            "detail": self.detail,
            "repairable": self.repairable,
        }


def plan_error(message: str, problems: list[ArchiveProblem]) -> ArchivePlanError:
    """The error for ``problems``: :class:`ArchiveIncompleteError` when every one is a missing
    piece, else :class:`ArchivePlanError`."""
    if problems and all(p.missing for p in problems):
        return ArchiveIncompleteError(message, problems)
    return ArchivePlanError(message, problems)


_STATES = {
    MISSING_SEGMENT: "missing",
    MISSING_MANIFEST: "incomplete",
    BAD_MANIFEST: "misdescribed",
    ALTERED_SEGMENT: "altered",
    CHAIN_MISMATCH: "off the chain",
    BAD_HEADER: "damaged",
    CORRUPT_FRAME: "damaged",
    MISSING_KEY: "unreadable without its key",
}


def describe_problems(problems: list[ArchiveProblem]) -> str:
    """The problems as one line, in segment order: ``segment_... is missing (missing_segment):
    detail; ...``."""
    return "; ".join(
        f"{p.segment} {'are' if '..' in p.segment else 'is'} {_STATES.get(p.kind, 'damaged')} "
        f"({p.kind}): {p.detail}"
        for p in problems
    )


@dataclass
class RunCheck:
    """What :meth:`ArchivePlan.check` found in a range of segments."""

    problems: list[ArchiveProblem] = field(default_factory=list)
    chain_restarts: list[str] = field(default_factory=list)
    """Segments whose zero prev hash was accepted as a seed restart (``seed_restarts``)."""
    zero_hash_breaks: list[str] = field(default_factory=list)
    """Segments whose chain_mismatch is a zero prev hash (what ``seed_restarts`` accepts)."""


@dataclass
class ArchivePlan:
    """One LIST of an archive and every manifest it names, validated (see the module docstring).

    ``manifests`` holds every valid manifest; ``invalid`` the reason for each one that does not
    parse. Build with :meth:`load`.
    """

    archive: ArchiveStore
    listing: ArchiveListing
    manifests: dict[int, SegmentManifest]
    invalid: dict[int, str]
    checkpoints: dict[int, CheckpointManifest] = field(default_factory=dict)
    """Every valid checkpoint manifest, by commit_seq (see :mod:`walship.archive.checkpoints`)."""
    checkpoint_invalid: dict[int, str] = field(default_factory=dict)
    marker: PruneMarker | None = None
    """The prune marker in force: the archive starts at its ``first_segment`` on purpose."""
    leftovers: dict[str, int] = field(default_factory=dict)
    """Objects below the prune marker (an interrupted prune left them), name -> size: not
    planned on, removed by the next prune."""
    epoch_starts: EpochStarts = field(default_factory=lambda: EpochStarts({}))
    """Where each epoch's own segments start (:mod:`walship.archive.epoch`)."""
    fenced: dict[str, str] = field(default_factory=dict)
    """A fenced writer's leftovers set aside, name -> why (module docstring); the live tail
    adds its parts (:func:`walship.archive.parts.attach_tail`)."""

    @classmethod
    def load(
        cls,
        archive: ArchiveStore,
        jobs: int = _MANIFEST_JOBS,
        listing: ArchiveListing | None = None,
    ) -> ArchivePlan:
        """LIST ``archive`` once (``listing``: the caller's, made just before) and fetch every
        listed manifest (``jobs`` at a time). Objects that are not walship's
        (``listing.foreign``) are ignored, named in one warning on the ``walship.archive``
        logger.

        Raises:
            ArchiveNameError: the archive holds an object named like walship's that is not a
                segment or manifest, or a hostile name (named).
            OSError: the store failed.
        """
        listing = listing if listing is not None else archive.list()
        listing.raise_rejected(archive.url)
        listing.warn_foreign(archive.url)
        seqs = sorted(listing.manifests)
        manifests: dict[int, SegmentManifest] = {}
        invalid: dict[int, str] = {}

        def stat(seq: int) -> SegmentManifest | str | None:
            try:
                return archive.stat(segment_name(seq))
            except ArchiveIntegrityError as e:
                return str(e)

        if seqs:
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seqs)))) as pool:
                for seq, m in zip(seqs, pool.map(stat, seqs), strict=True):
                    if isinstance(m, SegmentManifest):
                        manifests[seq] = m
                    elif isinstance(m, str):
                        invalid[seq] = m
                    else:  # listed, then gone: as if it had never been written
                        del listing.manifests[seq]
        plan = cls(archive, listing, manifests, invalid)
        plan.marker = load_prune_marker(archive, listing)
        plan.drop_pruned()
        plan.drop_fenced()
        plan.checkpoints, plan.checkpoint_invalid = load_checkpoints(archive, listing, jobs)
        return plan

    def drop_pruned(self) -> None:
        """Set aside (in :attr:`leftovers`) what the prune marker says is gone on purpose:
        segments before its first segment, checkpoints before its checkpoint."""
        marker, listing = self.marker, self.listing
        if marker is None:
            return
        for seq in [s for s in listing.segment_seqs if s < marker.first_segment]:
            for compression, size in listing.objects.pop(seq, {}).items():
                self.leftovers[object_name(seq, compression)] = size
            if seq in listing.manifests:
                self.leftovers[manifest_name(seq)] = listing.manifests.pop(seq)
            self.manifests.pop(seq, None)
            self.invalid.pop(seq, None)
        for kind, naming in (
            (listing.checkpoint_manifests, checkpoint_manifest_name),
            (listing.snapshots, snapshot_name),
        ):
            for seq in [s for s in kind if s < marker.checkpoint]:
                self.leftovers[naming(seq)] = kind.pop(seq)

    def drop_fenced(self) -> None:
        """Set aside (in :attr:`fenced`, one warning) the segments a fenced writer uploaded
        past a takeover (module docstring): their manifests and objects are not planned on."""
        starts = EpochStarts.of((m.segment_seq, m.epoch) for m in self.manifests.values())
        self.epoch_starts = starts
        for seq, m in sorted(self.manifests.items()):
            why = starts.leftover(m.manifest_object, seq, m.epoch)
            if why is None:
                continue
            self.fenced[m.manifest_object] = why
            del self.manifests[seq]
            self.listing.manifests.pop(seq, None)
            objects = self.listing.objects.get(seq, {})
            if objects.pop(m.compression, None) is not None:
                self.fenced[m.object] = why
            if not objects:
                self.listing.objects.pop(seq, None)
        warn_fenced(self.archive.url, self.fenced)

    @property
    def start(self) -> int:
        """Where the archive starts on purpose: the prune marker's first segment, else the
        log's first segment."""
        return self.marker.first_segment if self.marker is not None else LOG_FIRST_SEGMENT

    @property
    def seqs(self) -> list[int]:
        """Every segment_seq the archive holds anything of, ascending."""
        return self.listing.segment_seqs

    @property
    def first_seq(self) -> int | None:
        seqs = self.seqs
        return seqs[0] if seqs else None

    @property
    def last_seq(self) -> int | None:
        seqs = self.seqs
        return seqs[-1] if seqs else None

    @property
    def starts_at_log_start(self) -> bool:
        """Whether the archive holds the log's first segment (module docstring), or the first
        segment its prune marker says it starts at."""
        return self.first_seq == self.start

    @property
    def last_commit_seq(self) -> int | None:
        """The last commit_seq the manifests claim."""
        framed = [m for m in self.manifests.values() if m.last_commit_seq is not None]
        return max(framed, key=lambda m: m.segment_seq).last_commit_seq if framed else None

    def complete(self, seq: int) -> bool:
        """Whether segment ``seq`` has a valid manifest and its object, listed at the size the
        manifest promises (what a restore can fetch and check)."""
        m = self.manifests.get(seq)
        return m is not None and self.listing.objects.get(seq, {}).get(m.compression) == (
            m.stored_size
        )

    def start_problem(self) -> ArchiveProblem | None:
        """The segments missing before the archive's first one, when that is not the log's
        first segment (module docstring)."""
        first = self.first_seq
        if first is None or first <= self.start:
            return None
        where = (
            f"at {segment_name(self.start)}, where its prune marker says it starts"
            if self.marker is not None
            else f"at the log's first segment ({segment_name(LOG_FIRST_SEGMENT)})"
        )
        return ArchiveProblem(
            MISSING_SEGMENT,
            _span(self.start, first - 1),
            0,
            f"the archive does not start {where}: its first segment is {segment_name(first)}",
            self.start,
        )

    def _gap(self, first: int, last: int) -> ArchiveProblem:
        seqs = self.seqs
        earlier = [s for s in seqs if s < first]
        later = [s for s in seqs if s > last]
        around = ([f"after {segment_name(earlier[-1])}"] if earlier else []) + (
            [f"before {segment_name(later[0])}"] if later else []
        )
        where = f" ({' and '.join(around)})" if around else ""
        return ArchiveProblem(
            MISSING_SEGMENT,
            _span(first, last),
            0,
            f"nothing of it is in {self.archive.url}{where}",
            first,
        )

    def entry_problem(self, seq: int) -> ArchiveProblem | None:
        """What is missing of segment ``seq`` itself, or its listed object's wrong size."""
        name = segment_name(seq)
        url = self.archive.url
        objects = self.listing.objects.get(seq, {})
        if seq in self.invalid:
            return ArchiveProblem(BAD_MANIFEST, name, 0, self.invalid[seq], seq)
        m = self.manifests.get(seq)
        if m is None:
            if objects:
                return ArchiveProblem(
                    MISSING_MANIFEST,
                    name,
                    0,
                    f"its object is in {url} but not its manifest (the upload never finished; "
                    "the archiver checks the object against the local segment and writes the "
                    "manifest on its next run, e.g. `walship archive -c CONFIG`)",
                    seq,
                )
            return self._gap(seq, seq)
        if m.compression not in objects:
            return ArchiveProblem(
                MISSING_SEGMENT,
                name,
                0,
                f"its manifest is in the archive, its object {self.archive.object_url(m.object)} "
                "is not",
                seq,
            )
        if objects[m.compression] != m.stored_size:
            return ArchiveProblem(
                ALTERED_SEGMENT,
                name,
                0,
                f"{self.archive.object_url(m.object)} is {objects[m.compression]} bytes, its "
                f"manifest says {m.stored_size}: partial or altered",
                seq,
            )
        return None

    def check(
        self,
        first: int,
        last: int,
        seed_restarts: bool = False,
        found: Mapping[int, SegmentManifest | None] | None = None,
    ) -> RunCheck:
        """Every problem of segments ``first..last`` the listing and manifests show (see the
        module docstring), in segment order; nothing is downloaded. When ``first`` is the
        archive's first segment and that is not the log's first, the segments before it are
        listed as missing too. ``seed_restarts`` accepts a zero prev hash in a later segment
        as a restart of the chain.

        The links between segments (chain, instance, numbering) are checked on the manifests'
        claims, or, for each segment in ``found``, on what its bytes really are (``None``: its
        header is unreadable, so its links are not checked): a manifest that lies is then named
        as itself, not as a broken link of its neighbour."""
        out = RunCheck()
        problems = out.problems
        start = self.start_problem()
        if start is not None and first == self.first_seq:
            problems.append(start)
        gap: int | None = None  # the first seq of a run of wholly absent segments
        prev: SegmentManifest | None = None
        framed: SegmentManifest | None = None  # the last earlier manifest with frames
        for seq in range(first, last + 2):
            present = seq <= last and seq in self.seqs
            if gap is not None and (present or seq > last):
                problems.append(self._gap(gap, seq - 1))
                gap = None
            if seq > last:
                break
            if not present:
                gap = seq if gap is None else gap
                prev = None
                continue
            problem = self.entry_problem(seq)
            if problem is not None:
                problems.append(problem)
            m = self.manifests.get(seq)
            if found is not None and seq in found:
                m = found[seq]
            if m is None:
                prev = None
                continue
            problems += self._links(prev, framed, m, seed_restarts, out)
            prev = m
            if m.last_commit_seq is not None:
                framed = m
        return out

    def _links(
        self,
        prev: SegmentManifest | None,
        framed: SegmentManifest | None,
        m: SegmentManifest,
        seed_restarts: bool,
        out: RunCheck,
    ) -> list[ArchiveProblem]:
        """The problems between manifest ``m`` and the one before it (``prev``, when it is
        ``m``'s direct predecessor) and the last one with frames (``framed``)."""
        found = self._anchor_problems(m)
        if prev is not None:
            found += _predecessor_problems(prev, m, seed_restarts, out)
        numbering = _numbering_problem(framed, m)
        if numbering is not None:
            found.append(numbering)
        return found

    def _anchor_problems(self, m: SegmentManifest) -> list[ArchiveProblem]:
        """The problems of ``m``'s prev hash where the archive says what it must be: the log's
        first segment (zero), the prune marker's first segment (the marker's anchor)."""
        found: list[ArchiveProblem] = []
        seq = m.segment_seq
        if seq == LOG_FIRST_SEGMENT and m.prev_segment_hash != ZERO_HASH:
            found.append(
                ArchiveProblem(
                    CHAIN_MISMATCH,
                    m.name,
                    32,
                    f"prev_segment_hash {short(m.prev_segment_hash)} is not zero, as the first "
                    "segment of a log has",
                    seq,
                )
            )
        marker = self.marker
        if (
            marker is not None
            and seq == marker.first_segment
            and m.prev_segment_hash != marker.prev_segment_hash
        ):
            found.append(
                ArchiveProblem(
                    CHAIN_MISMATCH,
                    m.name,
                    32,
                    f"prev_segment_hash {short(m.prev_segment_hash)} is not the anchor "
                    f"{short(marker.prev_segment_hash)} the prune marker {marker.object} gives "
                    "the archive's first segment",
                    seq,
                )
            )
        return found

    def segments(self, first: int, last: int) -> list[SegmentManifest]:
        """The manifests of ``first..last`` that exist, in order."""
        return [self.manifests[s] for s in range(first, last + 1) if s in self.manifests]


def _predecessor_problems(
    prev: SegmentManifest, m: SegmentManifest, seed_restarts: bool, out: RunCheck
) -> list[ArchiveProblem]:
    """The problems between ``m`` and its direct predecessor ``prev``: one log (the instance
    id), one chain (``m``'s prev hash is ``prev``'s BLAKE3; a seed restart noted in ``out``)."""
    seq = m.segment_seq
    found: list[ArchiveProblem] = []
    if m.instance_id != prev.instance_id:
        found.append(
            ArchiveProblem(
                BAD_HEADER,
                m.name,
                8,
                f"instance_id {m.instance_id} differs from {prev.name}'s "
                f"{prev.instance_id}: not one log",
                seq,
            )
        )
    if m.prev_segment_hash != prev.blake3:
        if seed_restarts and m.prev_segment_hash == ZERO_HASH:
            out.chain_restarts.append(m.name)
        else:
            if m.prev_segment_hash == ZERO_HASH:
                out.zero_hash_breaks.append(m.name)
            found.append(
                ArchiveProblem(
                    CHAIN_MISMATCH,
                    m.name,
                    32,
                    f"prev_segment_hash {short(m.prev_segment_hash)} is not the BLAKE3 "
                    f"of {prev.name} ({short(prev.blake3)}); one of them was altered",
                    seq,
                )
            )
    return found


def _numbering_problem(framed: SegmentManifest | None, m: SegmentManifest) -> ArchiveProblem | None:
    """``m``'s first commit_seq at or below the last of ``framed`` (the last segment with
    frames before it): the numbering goes back."""
    if (
        framed is None
        or m.first_commit_seq is None
        or framed.last_commit_seq is None
        or m.first_commit_seq > framed.last_commit_seq
    ):
        return None
    return ArchiveProblem(
        CORRUPT_FRAME,
        m.name,
        HEADER_SIZE,
        f"commit_seq {m.first_commit_seq} does not follow {framed.last_commit_seq}, "
        f"the last of {framed.name}: the numbering goes back (a log that restarted "
        "it, e.g. after losing its archive record, or a manifest that lies); "
        "restored, it would not open",
        m.segment_seq,
    )
