"""Archive retention: remove what no kept checkpoint needs (``walship prune``, the
``archive.prune:`` section).

**What is kept.** A checkpoint (with its snapshot) is kept when it is one of the
``keep_checkpoints`` newest, or was taken less than ``older_than`` ago, or is the newest one
taken before that (so that any time in the ``older_than`` window can still be restored: a
restore to a time needs a checkpoint at or before it). Everything before the oldest kept
checkpoint goes: the older checkpoints, and the segments before the one that checkpoint says
the log goes on in. Never a segment holding a frame after the oldest kept checkpoint, never the
archive's newest segment (the live archiver goes on from it), and nothing at all when the
archive holds no checkpoint.

**The marker first.** Before anything is removed, a prune marker
(``prune_<version>.json``, created conditionally: two prunes racing cannot both write the same
version) says where the archive now starts on purpose and with which chain hash; restore and
verify (:class:`walship.archive.plan.ArchivePlan`) then start there and still refuse every other
gap. Objects left below the marker by an interrupted prune are set aside by the plan and
removed by the next prune. Superseded markers go last.

A pruned archive restores from a checkpoint (see :func:`walship.archive.restore.restore`).

**Encrypted archives** (``archive.encryption``) are pruned without a key: a prune reads only the
listing, the segment and checkpoint manifests and the prune markers, which are never encrypted,
and removes objects by name; it never opens an object's contents.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from walship.archive.checkpoint_check import anchor_problem, listed_problem
from walship.archive.checkpoint_manifest import CheckpointManifest, PruneMarker
from walship.archive.checkpoints import load_checkpoints, load_prune_marker
from walship.archive.listing import ArchiveListing
from walship.archive.names import (
    checkpoint_manifest_name,
    manifest_name,
    object_name,
    prune_marker_name,
    snapshot_name,
)
from walship.archive.objects import ArchiveStore
from walship.archive.plan import ArchivePlan
from walship.archive.settings import PruneSettings
from walship.core.header import segment_name
from walship.errors import ArchiveIntegrityError, PruneError


@dataclass
class PrunePlan:
    """What a prune removes (or, ``dry_run``, would remove)."""

    url: str
    kept: list[int] = field(default_factory=list)
    """The commit_seq of every checkpoint kept."""
    marker: PruneMarker | None = None
    """The new prune marker (``None``: the archive's start does not move)."""
    removed_checkpoints: list[int] = field(default_factory=list)
    removed_segments: list[int] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    """Every object that goes, name -> size (leftovers of an earlier prune included)."""
    superseded: list[str] = field(default_factory=list)
    """Older prune markers, removed last."""
    note: str = ""
    """Why nothing (more) can go, when that is so."""

    @property
    def bytes_freed(self) -> int:
        return sum(self.objects.values())

    def lines(self) -> list[str]:
        """What goes, one line per object, and a last line with the totals."""
        out = [f"{name} ({size} bytes)" for name, size in self.objects.items()]
        start = (
            f"; the archive now starts at {segment_name(self.marker.first_segment)}"
            if self.marker is not None
            else ""
        )
        out.append(
            f"{len(self.objects)} object(s), {self.bytes_freed} bytes: "
            f"{len(self.removed_segments)} segment(s), "
            f"{len(self.removed_checkpoints)} checkpoint(s); kept checkpoint(s) "
            f"{', '.join(str(k) for k in self.kept) or 'none'}{start}"
            + (f" ({self.note})" if self.note else "")
        )
        return out


def kept_checkpoints(
    checkpoints: Mapping[int, CheckpointManifest], rules: PruneSettings, now_micros: int
) -> list[int]:
    """The commit_seqs of the checkpoints ``rules`` keeps (module docstring), ascending."""
    seqs = sorted(checkpoints)
    kept: set[int] = set()
    if rules.keep_checkpoints is not None:
        kept.update(seqs[-rules.keep_checkpoints :])
    if rules.older_than is not None:
        cutoff = now_micros - int(rules.older_than * 1_000_000)
        recent = [s for s in seqs if checkpoints[s].created_at_micros >= cutoff]
        older = [s for s in seqs if checkpoints[s].created_at_micros < cutoff]
        kept.update(recent + older[-1:])
    return sorted(kept)


def load_for_prune(archive: ArchiveStore) -> ArchivePlan:
    """The plan a prune needs: one LIST, the prune marker, every checkpoint manifest, and the
    manifests of the segments checkpoints name (not every segment's: a prune after each
    checkpoint stays cheap).

    Raises:
        ArchiveNameError: a hostile or malformed walship name in the archive.
        ArchiveIntegrityError: the prune marker in force does not parse.
        OSError: the store failed.
    """
    listing: ArchiveListing = archive.list()
    listing.raise_rejected(archive.url)
    plan = ArchivePlan(archive, listing, {}, {})
    plan.marker = load_prune_marker(archive, listing)
    plan.drop_pruned()
    plan.checkpoints, plan.checkpoint_invalid = load_checkpoints(archive, listing)
    wanted = {m.segment_seq for m in plan.checkpoints.values()}
    if listing.segment_seqs:
        wanted.add(listing.segment_seqs[-1])
    for seq in sorted(wanted & set(listing.manifests)):
        try:
            m = archive.stat(segment_name(seq))
        except ArchiveIntegrityError as e:
            plan.invalid[seq] = str(e)
            continue
        if m is not None:
            plan.manifests[seq] = m
    return plan


def plan_prune(plan: ArchivePlan, rules: PruneSettings, now_micros: int) -> PrunePlan:
    """What a prune of ``plan`` under ``rules`` removes at ``now_micros``. Pure.

    Raises:
        PruneError: the oldest checkpoint to keep is not sound (its snapshot is missing or of
            the wrong size, its anchor is off the chain, the segment it needs is not
            described): nothing before it may go.
    """
    url = plan.archive.url
    pp = PrunePlan(url, objects=dict(plan.leftovers))
    pp.kept = kept_checkpoints(plan.checkpoints, rules, now_micros)
    if not pp.kept:
        pp.note = "the archive holds no checkpoint: nothing before one can go"
        return pp
    oldest = plan.checkpoints[pp.kept[0]]
    seqs = plan.listing.segment_seqs
    first = oldest.segment_seq if not seqs else min(oldest.segment_seq, seqs[-1])
    for problem in (listed_problem(plan, oldest), anchor_problem(plan, oldest)):
        if problem is not None:
            raise PruneError(f"cannot prune {url}: checkpoint {oldest.commit_seq}: {problem}")
    anchor = oldest.prev_segment_hash
    if first != oldest.segment_seq:
        m = plan.manifests.get(first)
        if m is None:
            raise PruneError(
                f"cannot prune {url}: {segment_name(first)}, where the archive would start, "
                f"has no valid manifest ({plan.invalid.get(first, 'none is there')})"
            )
        anchor = m.prev_segment_hash
    pp.removed_checkpoints = [s for s in sorted(plan.checkpoints) if s < oldest.commit_seq]
    for s in pp.removed_checkpoints:
        pp.objects[checkpoint_manifest_name(s)] = plan.listing.checkpoint_manifests.get(s, 0)
        if s in plan.listing.snapshots:
            pp.objects[snapshot_name(s)] = plan.listing.snapshots[s]
    for s in sorted(plan.listing.snapshots):  # unfinished checkpoints before the oldest kept
        if s < oldest.commit_seq and s not in plan.checkpoints:
            pp.objects[snapshot_name(s)] = plan.listing.snapshots[s]
    pp.removed_segments = [s for s in seqs if s < first]
    for s in pp.removed_segments:
        for compression, size in plan.listing.objects.get(s, {}).items():
            pp.objects[object_name(s, compression)] = size
        if s in plan.listing.manifests:
            pp.objects[manifest_name(s)] = plan.listing.manifests[s]
    current = plan.marker
    if first > plan.start or (current is not None and oldest.commit_seq > current.checkpoint):
        version = max(plan.listing.prune_markers, default=0) + 1
        pp.marker = PruneMarker(version, first, anchor, oldest.commit_seq, now_micros)
        pp.superseded = [prune_marker_name(v) for v in sorted(plan.listing.prune_markers)]
    elif not pp.objects:
        pp.note = "nothing before the oldest kept checkpoint is left to remove"
    return pp


def apply_prune(archive: ArchiveStore, pp: PrunePlan) -> None:
    """Carry ``pp`` out: the new marker first (created conditionally, verified), then every
    object it lists, then the superseded markers.

    Raises:
        PruneError: another prune wrote the same marker version meanwhile (nothing removed;
            run it again).
        OSError: the store failed (what is left below the marker goes with the next prune).
    """
    if pp.marker is not None:
        try:
            archive.create_object(pp.marker.object, pp.marker.to_json())
        except FileExistsError:
            raise PruneError(
                f"cannot prune {pp.url}: {pp.marker.object} appeared meanwhile (another prune "
                "ran at the same time); nothing was removed: run it again"
            ) from None
    # manifests before their objects: what an interruption leaves is never planned on
    for name in sorted(pp.objects, key=lambda n: (not n.endswith(".json"), n)):
        archive.remove_object(name)
    for name in pp.superseded:
        archive.remove_object(name)


def prune(
    url: str,
    older_than: float | str | None = None,
    keep_checkpoints: int | None = None,
    dry_run: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    now_micros: int | None = None,
    archive: ArchiveStore | None = None,
) -> PrunePlan:
    """Prune the archive at ``url`` (module docstring); with ``dry_run`` only say what would
    go. ``older_than`` is seconds or a duration like ``30d``; at least one rule is given.

    Raises:
        PruneError: no rule given, a rule that is not a valid value (named), or what
            :func:`plan_prune` / :func:`apply_prune` raise.
        ArchiveNameError / ArchiveIntegrityError / OSError: see :func:`load_for_prune`.
    """
    if older_than is None and keep_checkpoints is None:
        raise PruneError("prune needs --older-than, --keep-checkpoints or both")
    try:
        given = {"older_than": older_than, "keep_checkpoints": keep_checkpoints}
        rules = PruneSettings.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "prune"
        raise PruneError(f"{where}: {first['msg']} (got {first.get('input')!r})") from None
    store = archive or ArchiveStore(url, storage_options)
    plan = load_for_prune(store)
    pp = plan_prune(plan, rules, now_micros if now_micros is not None else time.time_ns() // 1000)
    if not dry_run:
        apply_prune(store, pp)
    return pp
