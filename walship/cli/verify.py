"""``walship verify TARGET``: check every header, frame and chain link; change nothing."""

from __future__ import annotations

import json
import sys

import click

from walship.cli.inspect import DAMAGED, problem_dicts, scan_for_report, total_dict
from walship.cli.target import seed_restart_hints, seed_restarts_option, target_options
from walship.core.scan import LogScan


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
    scan = scan_for_report(target, config, storage_option, seed_restarts=seed_restarts)
    total = total_dict(scan)
    problems = problem_dicts(scan)
    if as_json:
        doc = {
            "target": target,
            "ok": scan.ok,
            **total,
            "problems": problems,
            "chain_restarts": list(scan.chain_restarts),
            "foreign": list(getattr(scan, "foreign", [])),
        }
        click.echo(json.dumps(doc, indent=2))
    else:
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
        hints = seed_restart_hints(scan) if isinstance(scan, LogScan) else scan.zero_hash_breaks
        for name in hints:
            click.echo(
                f"note: {name} has a zero prev_segment_hash, as the seed wrote after a restart; "
                "--seed-restarts accepts it as a restart of the chain"
            )
        if not isinstance(scan, LogScan) and scan.foreign:
            click.echo(f"note: {scan.url}: {', '.join(scan.foreign)}: not walship's, ignored")
        if isinstance(scan, LogScan) and not scan.anchored:
            click.echo(
                "note: the first segment's predecessor is not here, so its prev_segment_hash "
                "was not checked"
            )
    if not scan.ok:
        sys.exit(DAMAGED)
