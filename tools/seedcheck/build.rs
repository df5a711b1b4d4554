//! Applies the harness's one-line clock patch to the verbatim seed.
//!
//! `src/wal/segment.rs` is a byte-for-byte copy of `shared/seed/segment.rs`. The seed takes the
//! header's `created_at_micros` from `SystemTime::now()`, which a test cannot fix. The only change
//! made here is to the seed's `use std::time::{...}` line: `SystemTime` is imported from
//! `crate::clock` (whose `SystemTime::now()` returns the scenario's wall clock) instead of from
//! `std::time`. The seed's logic is untouched, and the line count stays the same. The patched
//! file goes to `$OUT_DIR/segment.rs`, which `src/wal/mod.rs` includes. The build fails if the
//! seed's import line is not there exactly once (a new seed needs a look at this patch).

use std::env;
use std::fs;
use std::path::Path;

const SEED: &str = "src/wal/segment.rs";
const ORIGINAL: &str = "use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};";
const PATCHED: &str = "use std::time::{Duration, Instant, UNIX_EPOCH}; \
use crate::clock::SystemTime; // seedcheck clock patch (build.rs)";

fn main() {
    println!("cargo:rerun-if-changed={SEED}");
    println!("cargo:rerun-if-changed=build.rs");
    let seed = fs::read_to_string(SEED).expect("read the seed copy");
    let hits = seed.matches(ORIGINAL).count();
    assert_eq!(
        hits, 1,
        "{SEED}: expected the import line `{ORIGINAL}` exactly once, found {hits}"
    );
    let patched = seed.replacen(ORIGINAL, PATCHED, 1);
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("segment.rs");
    fs::write(out, patched).expect("write the patched seed");
}
