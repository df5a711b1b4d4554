//! The seed's `crate::wal` module: the seed's segment engine and the two modules it needs.

pub mod frame;
pub mod rotation;

/// The seed's `segment.rs`, verbatim but for build.rs's one-line clock patch.
#[allow(dead_code)]
pub mod segment {
    include!(concat!(env!("OUT_DIR"), "/segment.rs"));
}
