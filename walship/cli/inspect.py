"""``walship inspect TARGET``: a table of the segments of a log directory or archive."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from walship.cli.errors import CliError
from walship.cli.target import (
    keyring_from,
    scan_target,
    seed_restarts_option,
    storage_options_from,
    target_options,
)
from walship.core.header import ZERO_HASH
from walship.core.scan import LogScan, ProblemKind, SegmentScan

if TYPE_CHECKING:
    from walship.archive.check import ArchiveScan

DAMAGED = 1
"""Exit status when ``inspect`` or ``verify`` finds damage (2 is for usage and I/O errors)."""

_CHAIN_KINDS = frozenset(
    {
        ProblemKind.BAD_HEADER.value,
        ProblemKind.CHAIN_MISMATCH.value,
        ProblemKind.MISSING_SEGMENT.value,
        "missing_manifest",
        "altered_segment",
        "bad_manifest",
    }
)
"""Problems that leave the chain unproven: a total says "chain ok" only without any."""


def scan_for_report(
    target: str,
    config: str | None = None,
    storage_option: tuple[str, ...] = (),
    seed_restarts: bool = False,
) -> LogScan | ArchiveScan:
    """What ``inspect`` and ``verify`` show of ``target``: a directory's scan
    (:func:`scan_target`), or for an archive URL the check of everything it holds
    (:func:`walship.archive.check.verify_archive`: the plan a restore follows, and every
    segment's bytes). Reads only.

    Raises:
        CliError: the target is missing or holds no segment.
        WalshipError, OSError: the archive or a segment could not be read.
    """
    if "://" not in target:
        return scan_target(target, config, storage_option, seed_restarts=seed_restarts)
    from walship.archive import ArchiveStore
    from walship.archive.check import verify_archive

    archive = ArchiveStore(
        target,
        storage_options_from(config, storage_option, target),
        keyring=keyring_from(config, target),
    )
    scan = verify_archive(archive, seed_restarts=seed_restarts)
    if not scan.segments and not scan.problems:
        raise CliError(f"{target}: holds no archived segments")
    return scan


def problem_dicts(scan: LogScan | ArchiveScan) -> list[dict[str, object]]:
    """Every problem of ``scan`` as plain data (``file`` names the segment)."""
    return [{"file": d["segment"], **d} for d in (p.as_dict() for p in scan.problems)]


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    try:
        moment = datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _chain(seg: SegmentScan, restarts: frozenset[str] = frozenset()) -> str:
    """ok, BROKEN, start (the first segment of a log), restart (a seed restart accepted by
    ``--seed-restarts``), ? (its predecessor is elsewhere), -."""
    if seg.name in restarts:
        return "restart"
    if seg.chain_ok is True:
        return "ok"
    if seg.chain_ok is False:
        return "BROKEN"
    if seg.header is None:
        return "BAD HEADER"
    return "start" if seg.header.prev_segment_hash == ZERO_HASH else "?"


def segment_dict(seg: SegmentScan, restarts: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One segment of a scan as plain data (``restarts``: the scan's accepted chain restarts)."""
    header = seg.header
    return {
        "name": seg.name,
        "segment_seq": seg.segment_seq,
        "size": seg.size,
        "frames": seg.frame_count,
        "first_commit_seq": seg.first_commit_seq,
        "last_commit_seq": seg.last_commit_seq,
        "created_at_micros": header.created_at_micros if header else None,
        "created_at": _iso(header.created_at_micros) if header else None,
        "instance_id": header.instance_id if header else None,
        "blake3": seg.blake3.hex(),
        "prev_segment_hash": header.prev_segment_hash.hex() if header else None,
        "chain": _chain(seg, restarts),
        "chain_ok": seg.chain_ok,
        "valid_end": seg.valid_end,
    }


def total_dict(scan: LogScan | ArchiveScan) -> dict[str, Any]:
    """The totals of a scan as plain data."""
    firsts = [s.first_commit_seq for s in scan.segments if s.first_commit_seq is not None]
    chain_ok = not any(s.chain_ok is False for s in scan.segments) and not any(
        p.as_dict()["kind"] in _CHAIN_KINDS for p in scan.problems
    )
    return {
        "segments": len(scan.segments),
        "bytes": sum(s.size for s in scan.segments),
        "frames": scan.frame_count,
        "first_commit_seq": firsts[0] if firsts else None,
        "last_commit_seq": scan.last_commit_seq,
        "chain_ok": chain_ok,
        "anchored": scan.anchored,
        "problems": len(scan.problems),
    }


def _range(first: int | None, last: int | None) -> str:
    return "-" if first is None else f"{first}..{last}"


@click.command("inspect")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
@seed_restarts_option
@target_options
def inspect_command(
    target: str,
    as_json: bool,
    seed_restarts: bool,
    config: str | None,
    storage_option: tuple[str, ...],
) -> None:
    """Show the segments of TARGET (a log directory or an archive URL).

    One row per segment: seq, size, frames, first..last commit_seq, created_at (UTC), the
    BLAKE3 prefix, and whether its prev hash matches the segment before ("start" for the first
    segment of a log, "restart" for a seed restart accepted by --seed-restarts, "?" when that
    segment is not here, "BAD HEADER" when its header cannot be read); then a total line, and
    every problem found, as `walship verify` lists them. Reads only.

    Exit status: 0 when everything is valid; 1 when anything is damaged or missing (each
    problem listed); 2 for usage or I/O errors.
    """
    scan = scan_for_report(target, config, storage_option, seed_restarts=seed_restarts)
    total = total_dict(scan)
    restarts = frozenset(scan.chain_restarts)
    problems = problem_dicts(scan)
    if as_json:
        doc = {
            "target": target,
            "ok": scan.ok,
            "segments": [segment_dict(s, restarts) for s in scan.segments],
            "total": total,
            "problems": problems,
            "chain_restarts": list(scan.chain_restarts),
        }
        click.echo(json.dumps(doc, indent=2))
        if not scan.ok:
            sys.exit(DAMAGED)
        return
    rows = [("SEQ", "SIZE", "FRAMES", "COMMIT_SEQ", "CREATED_AT", "BLAKE3", "CHAIN")]
    for s in scan.segments:
        d = segment_dict(s, restarts)
        rows.append(
            (
                str(s.segment_seq),
                str(s.size),
                str(s.frame_count),
                _range(s.first_commit_seq, s.last_commit_seq),
                d["created_at"] or "-",
                d["blake3"][:12],
                d["chain"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 1, 2}
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())
    chain = "chain ok" if total["chain_ok"] else "chain BROKEN"
    if restarts:
        chain += f" ({len(restarts)} seed restart(s): {', '.join(scan.chain_restarts)})"
    click.echo(
        f"total: {total['segments']} segments, {total['bytes']} bytes, {total['frames']} frames, "
        f"commit_seq {_range(total['first_commit_seq'], total['last_commit_seq'])}, {chain}"
    )
    if problems:
        for p in problems:
            click.echo(f"{p['file']}: offset {p['offset']}: {p['kind']}: {p['detail']}")
        click.echo(f"{len(problems)} problem(s); `walship verify {target}` lists them too")
        sys.exit(DAMAGED)
