"""``walship verify TARGET``: check every header, frame and chain link; change nothing."""

from __future__ import annotations

import json
import sys

import click

from walship.cli.inspect import total_dict
from walship.cli.target import scan_target, target_options

DAMAGED = 1
"""Exit status when verify finds damage (2 is for usage and I/O errors)."""


@click.command("verify")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
@target_options
def verify_command(
    target: str, as_json: bool, config: str | None, storage_option: tuple[str, ...]
) -> None:
    """Verify TARGET (a log directory or an archive URL): every segment header, every frame's
    length and CRC-32C, the commit_seq order, and every BLAKE3 chain link. Reads everything,
    changes nothing.

    Exit status: 0 when everything is valid; 1 when anything is damaged, each problem listed
    with its file, offset and kind (truncated_tail, corrupt_frame, bad_header, chain_mismatch,
    missing_segment); 2 for usage or I/O errors.
    """
    scan = scan_target(target, config, storage_option)
    total = total_dict(scan)
    problems = [
        {
            "file": p.segment,
            "offset": p.offset,
            "kind": p.kind.value,
            "detail": p.detail,
            "repairable": p.repairable,
        }
        for p in scan.problems
    ]
    if as_json:
        doc = {"target": target, "ok": scan.ok, **total, "problems": problems}
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
        if scan.ok:
            click.echo(
                f"ok: {total['segments']} segments, {total['frames']} frames, {span}: every "
                "header, frame and chain link is valid"
            )
        else:
            click.echo(
                f"DAMAGED: {len(problems)} problem(s) in {total['segments']} segments "
                f"({total['frames']} valid frames, {span})"
            )
        if not scan.anchored:
            click.echo(
                "note: the first segment's predecessor is not here, so its prev_segment_hash "
                "was not checked"
            )
    if not scan.ok:
        sys.exit(DAMAGED)
