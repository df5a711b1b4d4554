//! The wall clock the (patched) seed reads for `created_at_micros`.
//!
//! build.rs makes the seed's `SystemTime` this type. `SystemTime::now()` returns the time set with
//! [`set_wall_micros`], or the real time when none was set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

const UNSET: u64 = u64::MAX;
static WALL_MICROS: AtomicU64 = AtomicU64::new(UNSET);

/// Fix the wall clock at `micros` since the Unix epoch.
pub fn set_wall_micros(micros: u64) {
    assert_ne!(micros, UNSET, "wall clock {micros} is reserved");
    WALL_MICROS.store(micros, Ordering::SeqCst);
}

/// Stand-in for `std::time::SystemTime` in the seed: only `now()` is needed.
pub struct SystemTime;

impl SystemTime {
    /// The fixed wall clock if one is set, else the real one.
    pub fn now() -> std::time::SystemTime {
        match WALL_MICROS.load(Ordering::SeqCst) {
            UNSET => std::time::SystemTime::now(),
            micros => UNIX_EPOCH + Duration::from_micros(micros),
        }
    }
}
