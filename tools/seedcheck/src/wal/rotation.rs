//! `crate::wal::rotation::RotationReason`, which the seed uses but does not include.
//!
//! The seed's `should_rotate_at` checks them in this order: forced, size, time.

/// Why the seed's `SegmentManager::should_rotate` asks for a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationReason {
    /// `force_rotate()` was called.
    Forced,
    /// The segment (header included) reached `max_segment_bytes`.
    Size,
    /// The segment has been open for `max_segment_age`.
    Time,
}

impl RotationReason {
    /// The name written to `closed.jsonl`.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationReason::Forced => "forced",
            RotationReason::Size => "size",
            RotationReason::Time => "time",
        }
    }
}
