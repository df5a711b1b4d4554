"""The restore's plan as a pure function: manifests and a listing in, the run out; no bucket,
nothing downloaded (:func:`walship.archive.restore_plan.plan_restore`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from walship.archive.listing import ArchiveListing
from walship.archive.manifest import SegmentManifest
from walship.archive.plan import ArchiveIncompleteError, ArchivePlan
from walship.archive.restore_plan import plan_restore
from walship.core.header import ZERO_HASH, segment_name
from walship.errors import RestoreError

FRAMES = 10  # per segment: segment s holds commit_seq 10*(s-1)+1 .. 10*s, stamped 1000*seq


@dataclass
class NoBucket:
    """What a plan asks of its archive besides the listing: a URL for messages."""

    url: str = "memory://no-bucket/wal"

    def object_url(self, name: str) -> str:
        return f"{self.url}/{name}"


def manifest(seq: int, prev: bytes, frames: int = FRAMES) -> SegmentManifest:
    first = FRAMES * (seq - 1) + 1
    last = first + frames - 1
    return SegmentManifest(
        name=segment_name(seq),
        segment_seq=seq,
        instance_id=7,
        size=1000 + seq,
        blake3=bytes([seq]) * 32,
        prev_segment_hash=prev,
        created_at_micros=0,
        frame_count=frames,
        first_commit_seq=first if frames else None,
        last_commit_seq=last if frames else None,
        first_timestamp_micros=1000 * first if frames else None,
        last_timestamp_micros=1000 * last if frames else None,
        stored_size=1000 + seq,
    )


def archive_plan(seqs: list[int], without_object: tuple[int, ...] = ()) -> ArchivePlan:
    """An archive holding segments ``seqs``, chained; ``without_object``: manifest only."""
    manifests: dict[int, SegmentManifest] = {}
    listing = ArchiveListing()
    prev = ZERO_HASH
    for seq in range(1, max(seqs) + 1):
        m = manifest(seq, prev)
        prev = m.blake3
        if seq in seqs:
            manifests[seq] = m
            listing.manifests[seq] = 300
            if seq not in without_object:
                listing.objects[seq] = {"none": m.stored_size}
    archive: Any = NoBucket()
    return ArchivePlan(archive, listing, manifests, {})


def test_a_whole_restore_takes_every_segment() -> None:
    rp = plan_restore(archive_plan([1, 2, 3]))
    assert (rp.first, rp.last, rp.cut, rp.passed, rp.damage) == (1, 3, None, [], [])
    assert [m.segment_seq for m in rp.run] == [1, 2, 3] and rp.anchored and not rp.walk


def test_to_a_commit_seq_inside_a_segment_cuts_it_and_stops() -> None:
    rp = plan_restore(archive_plan([1, 2, 3, 4]), to_seq=15)
    assert (rp.first, rp.last, rp.cut) == (1, 2, 2)
    assert [m.segment_seq for m in rp.run] == [1, 2] and rp.passed == []


def test_to_the_last_frame_of_a_segment_needs_nothing_later() -> None:
    rp = plan_restore(archive_plan([1, 2, 3]), to_seq=20)
    assert (rp.last, rp.cut, rp.passed) == (2, None, [])


def test_to_a_time_walks_every_frame_and_checks_the_next_segment() -> None:
    # the target falls between segment 2's last stamp and segment 3's first: segment 3 is
    # downloaded and checked (its manifest could lie about a frame at or before the target)
    rp = plan_restore(archive_plan([1, 2, 3, 4]), to_micros=20_500)
    assert (rp.last, rp.cut, rp.walk) == (2, None, True)
    assert [m.segment_seq for m in rp.passed] == [3]


def test_a_gap_is_refused_naming_it() -> None:
    with pytest.raises(ArchiveIncompleteError, match=r"segment_0000000000000002.*missing"):
        plan_restore(archive_plan([1, 3]))


def test_a_gap_after_the_target_does_not_matter() -> None:
    rp = plan_restore(archive_plan([1, 2, 4]), to_seq=12)
    assert (rp.first, rp.last, rp.cut) == (1, 2, 2)


def test_an_archive_not_starting_at_segment_1_is_refused_unless_partial() -> None:
    with pytest.raises(ArchiveIncompleteError, match="does not start at the log's first segment"):
        plan_restore(archive_plan([2, 3]))
    rp = plan_restore(archive_plan([2, 3]), allow_partial=True)
    assert (rp.first, rp.last, rp.anchored) == (2, 3, False)
    assert rp.left_out and "segment_0000000000000001" in rp.left_out[0]


def test_a_partial_restore_stops_before_the_first_missing_piece() -> None:
    rp = plan_restore(archive_plan([1, 2, 3, 4], without_object=(3,)), allow_partial=True)
    assert (rp.first, rp.last, rp.stop) == (1, 2, 3)
    assert any("1 archived segment(s) after segment_0000000000000003" in x for x in rp.left_out)


def test_a_manifest_off_the_chain_is_damage_for_the_fetch_to_name() -> None:
    plan = archive_plan([1, 2, 3])
    m = plan.manifests[2]
    plan.manifests[2] = replace(m, prev_segment_hash=b"\xee" * 32)
    rp = plan_restore(plan)
    assert [p.kind for p in rp.damage] == ["chain_mismatch"]


def test_nothing_at_or_before_the_target_and_an_empty_archive_are_restore_errors() -> None:
    with pytest.raises(RestoreError, match="holds no frame at or before"):
        plan_restore(archive_plan([1, 2]), to_micros=10)
    plan = archive_plan([1])
    plan.listing.manifests.clear()
    plan.listing.objects.clear()
    plan.manifests.clear()
    with pytest.raises(RestoreError, match="holds no archived segments"):
        plan_restore(plan)
