"""Which segments a restore takes, decided on the archive's plan alone: a pure function.

:func:`plan_restore` reads only an :class:`~walship.archive.plan.ArchivePlan` (one LIST and its
manifests) and the target; it downloads nothing and writes nothing, so that every rule of a
restore (strict or partial, to a commit_seq or to a time, where the cut falls, which later
segments must still be checked) is testable without a bucket. What it decides on the manifests'
claims is checked against the bytes when :mod:`walship.archive.restore` fetches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from walship.archive.manifest import SegmentManifest
from walship.archive.plan import (
    LOG_FIRST_SEGMENT,
    ArchivePlan,
    ArchiveProblem,
    describe_problems,
    plan_error,
)
from walship.core.header import segment_name
from walship.errors import RestoreError

_PARTIAL_HINT = (
    "; a partial restore (walship restore --allow-partial, allow_partial=True) restores "
    "the segments there are up to the first missing one and names what it leaves out"
)


@dataclass
class RestorePlan:
    """What a restore takes: segments ``first..last`` (``run``, their manifests), the one the
    target cuts, the later ones checked though not restored, and what it leaves out."""

    first: int
    last: int
    to_seq: int | None = None
    to_micros: int | None = None
    cut: int | None = None
    """The segment whose manifest ends past the target (``None``: none is cut on its word)."""
    passed: list[SegmentManifest] = field(default_factory=list)
    """Segments past the target downloaded and checked only: a lie in their manifests could
    hide frames at or before the target."""
    stop: int | None = None
    """Where a partial restore stopped: the first piece missing after ``first``."""
    run: list[SegmentManifest] = field(default_factory=list)
    damage: list[ArchiveProblem] = field(default_factory=list)
    """Damage the manifests show in ``first..last`` (and missing pieces with it): the restore
    names each lying manifest (on the bytes) and refuses, before it writes anything."""
    left_out: tuple[str, ...] = ()

    @property
    def walk(self) -> bool:
        """Whether every segment's frames are walked: to a time, a clock that stepped back can
        stamp a frame past the target in a segment whose manifest ends before it."""
        return self.to_micros is not None

    @property
    def anchored(self) -> bool:
        """Whether the restore starts at the log's first segment."""
        return self.first == LOG_FIRST_SEGMENT


def refuse(plan: ArchivePlan, problems: list[ArchiveProblem], partial_hint: bool) -> None:
    """Raise the plan error naming ``problems`` (nothing was written), with the hint about a
    partial restore when ``partial_hint`` and every problem is a missing piece."""
    hint = _PARTIAL_HINT if partial_hint and all(p.missing for p in problems) else ""
    raise plan_error(
        f"cannot restore {plan.archive.url}: {describe_problems(problems)}; nothing was "
        f"written{hint}",
        problems,
    )


def plan_restore(
    plan: ArchivePlan,
    to_seq: int | None = None,
    to_micros: int | None = None,
    allow_partial: bool = False,
    start: int | None = None,
) -> RestorePlan:
    """The restore of ``plan`` up to ``to_seq`` or ``to_micros`` (at most one; neither: all).

    Pure: reads the plan only. Damage the manifests show is returned in ``damage`` (naming a
    lying manifest as itself needs its bytes); everything else that makes a restore
    impossible raises here. ``start``: the run starts at this segment (a restore from a
    checkpoint: the segment after it; what comes before is not needed, and an empty run is
    no error: the archive may not hold that segment yet).

    Raises:
        RestoreError: the archive holds no segment, or no frame at or before the target.
        ArchiveIncompleteError: pieces the restore needs are missing (every one named; with
            ``allow_partial`` only when nothing at all is there).
    """
    if start is not None and (plan.last_seq is None or start > plan.last_seq):
        return RestorePlan(start, start - 1, to_seq, to_micros)
    if plan.first_seq is None or plan.last_seq is None:
        raise RestoreError(f"{plan.archive.url} holds no archived segments")
    rp = _select(plan, to_seq, to_micros, allow_partial, start)
    if rp.last < rp.first:
        if start is not None:
            return rp
        _refuse_nothing(plan, rp, allow_partial)
    found = plan.check(rp.first, rp.last).problems
    if start is not None:  # what lies before the checkpoint's segment is not needed
        found = [p for p in found if p.seq >= start]
    if allow_partial:
        found = [p for p in found if not p.missing]  # only the missing start can be left
    if found and all(p.missing for p in found):
        refuse(plan, found, not allow_partial)
    rp.damage = found
    rp.left_out = _left_out(plan, rp) if allow_partial else ()
    rp.run = plan.segments(rp.first, rp.last)
    return rp


def _refuse_nothing(plan: ArchivePlan, rp: RestorePlan, allow_partial: bool) -> None:
    """Nothing to restore: say why."""
    assert plan.first_seq is not None and plan.last_seq is not None
    if rp.first > plan.last_seq:  # partial, and every piece is missing
        refuse(plan, plan.check(plan.first_seq, plan.last_seq).problems, False)
    start = plan.start_problem()
    if start is not None and not allow_partial:
        refuse(plan, [start], True)  # what is there came later than the log's start
    what = f"commit_seq {rp.to_seq}" if rp.to_seq is not None else _format_micros(rp.to_micros)
    raise RestoreError(
        f"{plan.archive.url} holds no frame at or before {what} (its first segment is "
        f"{segment_name(rp.first)})"
    )


def _format_micros(micros: int | None) -> str:
    return datetime.fromtimestamp((micros or 0) / 1e6, tz=timezone.utc).isoformat()


def _first_segment(plan: ArchivePlan, allow_partial: bool) -> int:
    """Where the run starts: the archive's first segment (a partial restore: its first one
    that is not missing)."""
    assert plan.first_seq is not None and plan.last_seq is not None
    if not allow_partial:
        return plan.first_seq
    return next(
        (s for s in plan.seqs if (e := plan.entry_problem(s)) is None or not e.missing),
        plan.last_seq + 1,
    )


def _past(m: SegmentManifest, to_seq: int | None, to_micros: int | None) -> tuple[bool, bool]:
    """Whether segment ``m`` starts past the target, and whether it ends past it (its
    manifest's claims)."""
    assert m.first_commit_seq is not None and m.last_commit_seq is not None
    assert m.first_timestamp_micros is not None and m.last_timestamp_micros is not None
    if to_seq is not None:
        return m.first_commit_seq > to_seq, m.last_commit_seq > to_seq
    assert to_micros is not None
    return m.first_timestamp_micros > to_micros, m.last_timestamp_micros > to_micros


def _select(
    plan: ArchivePlan,
    to_seq: int | None,
    to_micros: int | None,
    allow_partial: bool,
    start: int | None = None,
) -> RestorePlan:
    """Walk the segments from the first and choose the run to restore, by the manifests'
    claims (every claim is checked against the bytes when they are downloaded)."""
    assert plan.last_seq is not None
    targeted = to_seq is not None or to_micros is not None
    first = _first_segment(plan, allow_partial) if start is None else start
    rp = RestorePlan(first, first - 1, to_seq, to_micros)
    if not targeted and not allow_partial:
        rp.last = plan.last_seq  # everything is needed: plan.check names every missing piece
        return rp
    reached: int | None = None  # the last commit_seq of the segments taken so far
    for s in range(first, plan.last_seq + 1):
        if to_seq is not None and reached is not None and reached >= to_seq:
            break  # the target frame is taken: numbering rises, nothing later can be needed
        entry = plan.entry_problem(s)
        if entry is not None:
            if entry.missing and allow_partial:
                rp.stop = s
            else:
                rp.last = s  # needed: plan.check names it
            break
        m = plan.manifests[s]
        if not targeted:
            rp.last = s
            continue
        if not m.frame_count:
            rp.passed.append(m)
            continue
        starts_after, ends_after = _past(m, to_seq, to_micros)
        if starts_after:
            rp.passed.append(m)
            break
        rp.passed.clear()
        rp.last, reached = s, m.last_commit_seq
        if ends_after:
            rp.cut = s
            break
    if to_seq is not None and reached == to_seq:
        rp.passed.clear()  # the target frame itself is restored: nothing later can be needed
    return rp


def _left_out(plan: ArchivePlan, rp: RestorePlan) -> tuple[str, ...]:
    """What a partial restore left out: the missing pieces before its run, and the one it
    stopped at with everything after it."""
    assert plan.first_seq is not None and plan.last_seq is not None
    whole = plan.check(plan.first_seq, plan.last_seq).problems
    lines = [f"{p.segment}: {p.detail}" for p in whole if p.missing and p.seq < rp.first]
    if rp.stop is not None:
        lines += [f"{p.segment}: {p.detail}" for p in whole if p.seq == rp.stop]
        after = plan.segments(rp.stop + 1, plan.last_seq)
        framed = [m for m in after if m.first_commit_seq is not None]
        if after:
            frames = (
                f" (commit_seq {framed[0].first_commit_seq}..{framed[-1].last_commit_seq})"
                if framed
                else ""
            )
            lines.append(
                f"{len(after)} archived segment(s) after {segment_name(rp.stop)}{frames} not "
                "restored: a log cannot go on past a missing segment"
            )
    return tuple(lines)
