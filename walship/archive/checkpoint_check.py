"""The checks of an archive's checkpoints (``walship verify URL`` runs them, a restore from a
checkpoint the ones of the checkpoint it starts from): a manifest that does not parse, a
snapshot that is gone, partial or altered, a checkpoint whose anchor is not the prev hash of
the segment it says the log goes on in; a prune marker that hides what its checkpoint
needs."""

from __future__ import annotations

from walship.archive.checkpoint_manifest import CheckpointManifest
from walship.archive.checkpoints import fetch_snapshot
from walship.archive.names import checkpoint_manifest_name
from walship.archive.plan import (
    ALTERED_SEGMENT,
    BAD_MANIFEST,
    CHAIN_MISMATCH,
    MISSING_KEY,
    MISSING_SEGMENT,
    ArchivePlan,
    ArchiveProblem,
    short,
)
from walship.errors import ArchiveIntegrityError, ArchiveKeyError, ArchiveMissingError


def anchor_problem(plan: ArchivePlan, m: CheckpointManifest) -> ArchiveProblem | None:
    """The chain mismatch between checkpoint ``m`` and the segment it says the log goes on in,
    when the archive describes that segment (``None``: nothing contradicts it)."""
    seg = plan.manifests.get(m.segment_seq)
    if seg is None or seg.prev_segment_hash == m.prev_segment_hash:
        return None
    return ArchiveProblem(
        CHAIN_MISMATCH,
        m.manifest_object,
        0,
        f"its anchor {short(m.prev_segment_hash)} is not the prev_segment_hash "
        f"{short(seg.prev_segment_hash)} of {seg.name}, where it says the log goes on",
        m.segment_seq,
    )


def listed_problem(plan: ArchivePlan, m: CheckpointManifest) -> ArchiveProblem | None:
    """What the listing shows wrong with checkpoint ``m``'s snapshot (gone, wrong size)."""
    listed = plan.listing.snapshots.get(m.commit_seq)
    where = plan.archive.object_url(m.object)
    if listed is None:
        return ArchiveProblem(
            MISSING_SEGMENT,
            m.object,
            0,
            f"the checkpoint's manifest is in the archive, its snapshot {where} is not",
            m.segment_seq,
        )
    if listed != m.stored_size:
        return ArchiveProblem(
            ALTERED_SEGMENT,
            m.object,
            0,
            f"{where} is {listed} bytes, its manifest says {m.stored_size}: partial or altered",
            m.segment_seq,
        )
    return None


def marker_problem(plan: ArchivePlan) -> ArchiveProblem | None:
    """What is wrong with the prune marker in force: the checkpoint it keeps must be in the
    archive, and the archive must start at or before the segment that checkpoint goes on in
    (else the marker would hide what a restore needs)."""
    marker = plan.marker
    if marker is None:
        return None
    cp = plan.checkpoints.get(marker.checkpoint)
    if cp is None:
        why = f"the checkpoint it keeps ({marker.checkpoint}) is not in the archive"
    elif marker.first_segment > cp.segment_seq:
        why = (
            f"it starts the archive at segment {marker.first_segment}, after segment "
            f"{cp.segment_seq}, where its checkpoint {cp.commit_seq} goes on"
        )
    else:
        return None
    return ArchiveProblem(
        MISSING_SEGMENT,
        marker.object,
        0,
        f"prune marker {plan.archive.object_url(marker.object)}: {why}",
        marker.first_segment,
    )


def check_checkpoints(plan: ArchivePlan, download: bool = True) -> list[ArchiveProblem]:
    """Every problem of the archive's checkpoints: invalid manifests, snapshots missing or of
    the wrong size, anchors off the chain, and (``download``) snapshots whose bytes are not
    the ones their manifest describes.

    Raises:
        OSError: the store failed.
    """
    problems = [
        ArchiveProblem(BAD_MANIFEST, checkpoint_manifest_name(seq), 0, why, 0)
        for seq, why in sorted(plan.checkpoint_invalid.items())
    ]
    marker = marker_problem(plan)
    if marker is not None:
        problems.append(marker)
    for m in (plan.checkpoints[s] for s in sorted(plan.checkpoints)):
        found = [p for p in (listed_problem(plan, m), anchor_problem(plan, m)) if p is not None]
        if download and not found:
            try:
                fetch_snapshot(plan.archive, m)
            except ArchiveMissingError as e:
                found.append(ArchiveProblem(MISSING_SEGMENT, m.object, 0, str(e), m.segment_seq))
            except ArchiveIntegrityError as e:
                found.append(ArchiveProblem(ALTERED_SEGMENT, m.object, 0, str(e), m.segment_seq))
            except ArchiveKeyError as e:
                found.append(ArchiveProblem(MISSING_KEY, m.object, 0, str(e), m.segment_seq))
        problems += found
    return problems
