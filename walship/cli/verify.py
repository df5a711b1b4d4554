"""``walship verify TARGET``: check every header, frame and chain link; change nothing."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from walship.cli.inspect import DAMAGED, problem_dicts, scan_for_report, total_dict
from walship.cli.target import seed_restart_hints, seed_restarts_option, target_options
from walship.core.scan import LogScan
from walship.core.sidefiles import side_files

if TYPE_CHECKING:
    from walship.archive.check import ArchiveScan


class _OwnNote(logging.Filter):
    """Drops the archive's warnings naming foreign objects and a fenced writer's leftovers:
    verify prints them itself (``note:`` lines, ``foreign`` and ``fenced`` in ``--json``),
    once."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "that are not walship's" not in message and "of a fenced writer" not in message


@contextlib.contextmanager
def _foreign_noted_once() -> Iterator[None]:
    archive_log = logging.getLogger("walship.archive")
    note = _OwnNote()
    archive_log.addFilter(note)
    try:
        yield
    finally:
        archive_log.removeFilter(note)


def _note_side_files(kept: dict[str, str]) -> None:
    for name, kind in kept.items():
        click.echo(
            f"note: {name}: a side file ({kind.replace('_', ' ')}) kept by recovery or "
            "repair, not part of the log (walship repair DIR --clean-side-files removes it)"
        )


@click.command("verify")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
@seed_restarts_option
@target_options
def verify_command(
    target: str,
    as_json: bool,
    seed_restarts: bool,
    config: str | None,
    storage_option: tuple[str, ...],
) -> None:
    """Verify TARGET (a log directory or an archive URL): every segment header, every frame's
    length and CRC-32C, the commit_seq order, and every BLAKE3 chain link. Reads everything,
    changes nothing.

    A log the seed wrote across restarts has a zero prev_segment_hash in a later segment: a
    chain_mismatch, unless --seed-restarts accepts it as a restart of the chain (each such
    segment is named; the segments before a restart are then not chained to it).

    On an archive URL, verify checks what a restore relies on, with the same plan: the
    archive must start at the log's first segment (segment 1), hold every segment from there
    to its last with its manifest (an object without one is an upload that never finished:
    missing_manifest), each segment's bytes must match its manifest (altered_segment, and the
    damaged frame's offset), the chain must hold and commit_seq must rise from segment to
    segment. Whatever verify reports makes a full restore fail, and nothing else does.

    Exit status: 0 when everything is valid; 1 when anything is damaged or missing, each
    problem listed with its file, offset and kind (truncated_tail, corrupt_frame, bad_header,
    chain_mismatch, missing_segment; in an archive also missing_manifest, altered_segment,
    bad_manifest); 2 for usage or I/O errors.
    """
    with _foreign_noted_once():
        scan = scan_for_report(target, config, storage_option, seed_restarts=seed_restarts)
    kept = side_files(os.listdir(target)) if isinstance(scan, LogScan) else {}
    if as_json:
        click.echo(json.dumps(_json_report(target, scan, kept), indent=2))
    else:
        _print_report(scan)
        _print_notes(scan, kept)
    if not scan.ok:
        sys.exit(DAMAGED)


def _json_report(
    target: str, scan: LogScan | ArchiveScan, kept: dict[str, str]
) -> dict[str, object]:
    """``--json``: the verdict, the totals, every problem, the notes as data."""
    return {
        "target": target,
        "ok": scan.ok,
        **total_dict(scan),
        "problems": problem_dicts(scan),
        "chain_restarts": list(scan.chain_restarts),
        "foreign": list(getattr(scan, "foreign", [])),
        "side_files": kept,
        "checkpoints": list(getattr(scan, "checkpoints", [])),
        "pruned_to": getattr(scan, "pruned_to", None),
        "fenced": dict(getattr(scan, "fenced", {})),
    }


def _print_report(scan: LogScan | ArchiveScan) -> None:
    """Every problem on its line, the accepted seed restarts, then the verdict line."""
    total = total_dict(scan)
    problems = problem_dicts(scan)
    span = (
        f"commit_seq {total['first_commit_seq']}..{total['last_commit_seq']}"
        if total["first_commit_seq"] is not None
        else "no frames"
    )
    for p in problems:
        note = " (open repairs it: a torn tail)" if p["repairable"] else ""
        click.echo(f"{p['file']}: offset {p['offset']}: {p['kind']}: {p['detail']}{note}")
    for name in scan.chain_restarts:
        click.echo(
            f"{name}: offset 32: seed restart: a zero prev_segment_hash, accepted as a "
            "restart of the chain (--seed-restarts)"
        )
    if scan.ok:
        restarts = len(scan.chain_restarts)
        accepted = f" ({restarts} seed restart(s) accepted)" if restarts else ""
        click.echo(
            f"ok: {total['segments']} segments, {total['frames']} frames, {span}: every "
            f"header, frame and chain link is valid{accepted}"
        )
    else:
        click.echo(
            f"DAMAGED: {len(problems)} problem(s) in {total['segments']} segments "
            f"({total['frames']} valid frames, {span})"
        )


def _print_notes(scan: LogScan | ArchiveScan, kept: dict[str, str]) -> None:
    """The ``note:`` lines after the verdict: seed restart hints, checkpoints and pruning,
    foreign objects, a fenced writer's leftovers, side files, an unanchored first segment."""
    hints = seed_restart_hints(scan) if isinstance(scan, LogScan) else scan.zero_hash_breaks
    for name in hints:
        click.echo(
            f"note: {name} has a zero prev_segment_hash, as the seed wrote after a restart; "
            "--seed-restarts accepts it as a restart of the chain"
        )
    if not isinstance(scan, LogScan) and (scan.checkpoints or scan.pruned_to):
        pruned = (
            f"; pruned: it starts at segment {scan.pruned_to} on purpose (prune marker)"
            if scan.pruned_to
            else ""
        )
        click.echo(f"note: {len(scan.checkpoints)} checkpoint(s) checked{pruned}")
    if not isinstance(scan, LogScan) and scan.foreign:
        click.echo(f"note: {scan.url}: {', '.join(scan.foreign)}: not walship's, ignored")
    if not isinstance(scan, LogScan):
        for why in dict.fromkeys(scan.fenced.values()):  # (an object and its manifest: one)
            click.echo(f"note: {why}")
    _note_side_files(kept)
    if isinstance(scan, LogScan) and not scan.anchored:
        click.echo(
            "note: the first segment's predecessor is not here, so its prev_segment_hash "
            "was not checked"
        )
