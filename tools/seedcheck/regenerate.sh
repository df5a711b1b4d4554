#!/usr/bin/env bash
# Rebuild the seed harness and regenerate the seed's golden fixtures.
#
#   tools/seedcheck/regenerate.sh [OUT_DIR]
#
# For every tests/seed_fixtures/<name>/scenario.jsonl, runs the seed's segment engine (through
# the seedcheck harness) and writes OUT_DIR/<name>/{scenario.jsonl,segments/,closed.jsonl}.
# OUT_DIR defaults to tests/seed_fixtures itself (the committed fixtures are replaced).
# Also runs the harness's cargo tests: the seed's own unit tests and the frame codec's.
#
# Needs cargo and Debian's Rust crate sources (no network):
#   apt-get install librust-blake3-dev librust-thiserror-dev librust-crc-dev \
#       librust-serde-json-dev librust-serde-derive-dev librust-tempfile-dev
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fixtures="$repo/tests/seed_fixtures"
out="${1:-$fixtures}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

cd "$here"  # so that cargo reads .cargo/config.toml (Debian's crates, offline)
if [ -f /work/shared/seed/segment.rs ] || [ -n "${WALSHIP_SEED:-}" ]; then
    seed="${WALSHIP_SEED:-/work/shared/seed/segment.rs}"
    cmp -s "$seed" src/wal/segment.rs || {
        echo "regenerate.sh: src/wal/segment.rs differs from $seed; copy the seed first" >&2
        exit 1
    }
fi
cargo test --release --quiet >&2
cargo build --release --quiet
harness="$here/target/release/seedcheck"

shopt -s nullglob
scenarios=("$fixtures"/*/scenario.jsonl)
if [ ${#scenarios[@]} -eq 0 ]; then
    echo "regenerate.sh: no scenarios under $fixtures" >&2
    exit 1
fi
for scenario in "${scenarios[@]}"; do
    name="$(basename "$(dirname "$scenario")")"
    work="$(mktemp -d)"
    "$harness" "$scenario" "$work"
    mkdir -p "$out/$name"
    [ "$out" = "$fixtures" ] || cp "$scenario" "$out/$name/scenario.jsonl"
    rm -rf "$out/$name/segments" "$out/$name/closed.jsonl"
    mv "$work/segments" "$out/$name/segments"
    mv "$work/closed.jsonl" "$out/$name/closed.jsonl"
    rmdir "$work"
    echo "$name: $(ls "$out/$name/segments" | wc -l) segments"
done
