//! `crate::wal::frame`, which the seed uses but does not include, written from DESIGN.md's
//! frame format (all integers big-endian):
//!
//! ```text
//! u32 frame_length = 8 + 8 + 1 + len(payload) + 4   (everything after itself, the CRC included)
//! u64 commit_seq
//! u64 timestamp_micros
//! u8  payload_type
//!     payload
//! u32 CRC-32C (Castagnoli) of every byte before it, frame_length included
//! ```
//!
//! `MIN_FRAME_LENGTH <= frame_length <= MAX_FRAME_LENGTH`; a reader checks the length before it
//! allocates anything.

use std::io::{self, Read};
use thiserror::Error;

/// An empty payload: seq, timestamp, type and CRC.
pub const MIN_FRAME_LENGTH: u32 = 8 + 8 + 1 + 4;
/// 64 MiB.
pub const MAX_FRAME_LENGTH: u32 = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("io error: {0}")]
    Io(#[from] io::Error),
    #[error("payload of {0} bytes does not fit in a frame of at most {MAX_FRAME_LENGTH} bytes")]
    PayloadTooLarge(usize),
    #[error("frame length {0} is outside {MIN_FRAME_LENGTH}..={MAX_FRAME_LENGTH}")]
    InvalidLength(u32),
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    #[error("frame CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub commit_seq: u64,
    pub timestamp_micros: u64,
    pub payload_type: u8,
    pub payload: Vec<u8>,
}

fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_update(0, bytes)
}

/// CRC-32C of `first` followed by `second`.
fn crc32c_2(first: &[u8], second: &[u8]) -> u32 {
    crc32c_update(crc32c_update(0, first), second)
}

/// The CRC-32C of the bytes behind `crc` (the CRC of nothing is 0) followed by `bytes`.
///
/// With the CPU's CRC-32C instruction (SSE4.2) where there is one, as a Rust WAL would use it
/// (the `crc32c` crate does) and as walship's C codec does; else the `crc` crate's table, one
/// byte at a time (several times slower: it would make the seed a weak baseline in the
/// benchmark suite's `seed_batch_100B`). Both give the same CRC.
fn crc32c_update(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, checked just above.
        return unsafe { crc32c_sse42(crc, bytes) };
    }
    crc32c_table(crc, bytes)
}

fn crc32c_table(crc: u32, bytes: &[u8]) -> u32 {
    crc::crc32::update(crc, &crc::crc32::CASTAGNOLI_TABLE, bytes)
}

/// `crc32c_update` with the SSE4.2 instruction, 8 bytes at a time.
///
/// # Safety
/// The CPU must have SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut words = bytes.chunks_exact(8);
    let mut c = u64::from(!crc);
    for word in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

/// Append one encoded frame to `out`; on error `out` is unchanged.
pub fn append_frame_bytes(
    out: &mut Vec<u8>,
    commit_seq: u64,
    timestamp_micros: u64,
    payload_type: u8,
    payload: &[u8],
) -> Result<(), FrameError> {
    let frame_length = (MIN_FRAME_LENGTH as usize)
        .checked_add(payload.len())
        .filter(|n| *n <= MAX_FRAME_LENGTH as usize)
        .ok_or(FrameError::PayloadTooLarge(payload.len()))?;
    let start = out.len();
    out.reserve(4 + frame_length);
    out.extend_from_slice(&(frame_length as u32).to_be_bytes());
    out.extend_from_slice(&commit_seq.to_be_bytes());
    out.extend_from_slice(&timestamp_micros.to_be_bytes());
    out.push(payload_type);
    out.extend_from_slice(payload);
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Reads frames one by one from a byte stream.
pub struct FrameReader<R> {
    inner: R,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// Reads up to `buf.len()` bytes; returns how many were read (short only at end of data).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, FrameError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(got)
    }

    /// The next frame; `Ok(None)` at a clean end (end of data at a frame boundary).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let mut len_bytes = [0u8; 4];
        match self.fill(&mut len_bytes)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(FrameError::Truncated("end of data inside the frame length")),
        }
        let frame_length = u32::from_be_bytes(len_bytes);
        if !(MIN_FRAME_LENGTH..=MAX_FRAME_LENGTH).contains(&frame_length) {
            return Err(FrameError::InvalidLength(frame_length));
        }
        let mut body = vec![0u8; frame_length as usize];
        if self.fill(&mut body)? < body.len() {
            return Err(FrameError::Truncated("end of data inside the frame"));
        }
        let crc_at = body.len() - 4;
        let stored = u32::from_be_bytes(body[crc_at..].try_into().expect("4 bytes"));
        let computed = crc32c_2(&len_bytes, &body[..crc_at]);
        if computed != stored {
            return Err(FrameError::CrcMismatch { stored, computed });
        }
        Ok(Some(Frame {
            commit_seq: u64::from_be_bytes(body[0..8].try_into().expect("8 bytes")),
            timestamp_micros: u64::from_be_bytes(body[8..16].try_into().expect("8 bytes")),
            payload_type: body[16],
            payload: body[17..crc_at].to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn encode(seq: u64, ts: u64, ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        append_frame_bytes(&mut out, seq, ts, ty, payload).expect("encode");
        out
    }

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn every_crc32c_path_agrees_with_the_table() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for end in start..data.len() {
                let (a, b) = data[start..end].split_at((end - start) / 3);
                let want = crc32c_table(crc32c_table(0, a), b);
                assert_eq!(crc32c_2(a, b), want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn layout_matches_the_design() {
        let bytes = encode(0x0102, 0x0304, 7, b"ab");
        assert_eq!(bytes.len(), 4 + 21 + 2);
        assert_eq!(&bytes[0..4], &23u32.to_be_bytes());
        assert_eq!(&bytes[4..12], &0x0102u64.to_be_bytes());
        assert_eq!(&bytes[12..20], &0x0304u64.to_be_bytes());
        assert_eq!(bytes[20], 7);
        assert_eq!(&bytes[21..23], b"ab");
        assert_eq!(&bytes[23..], &crc32c(&bytes[..23]).to_be_bytes());
    }

    #[test]
    fn round_trip_and_clean_end() {
        let mut data = encode(1, 10, 1, b"");
        data.extend(encode(2, 20, 255, &[0xab; 300]));
        let mut r = FrameReader::new(Cursor::new(data));
        let a = r.next_frame().expect("a").expect("frame a");
        assert_eq!(
            (a.commit_seq, a.timestamp_micros, a.payload_type),
            (1, 10, 1)
        );
        assert!(a.payload.is_empty());
        let b = r.next_frame().expect("b").expect("frame b");
        assert_eq!(b.payload, vec![0xab; 300]);
        assert!(r.next_frame().expect("end").is_none());
    }

    #[test]
    fn truncation_at_every_cut_point() {
        let data = encode(5, 6, 7, b"payload");
        for cut in 1..data.len() {
            let err = FrameReader::new(Cursor::new(&data[..cut])).next_frame();
            assert!(
                matches!(err, Err(FrameError::Truncated(_))),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn flipped_byte_is_a_crc_mismatch() {
        let mut data = encode(5, 6, 7, b"payload");
        data[10] ^= 0x40;
        let err = FrameReader::new(Cursor::new(data)).next_frame();
        assert!(
            matches!(err, Err(FrameError::CrcMismatch { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn lengths_out_of_range_are_rejected_before_reading() {
        for bad in [0u32, 20, MAX_FRAME_LENGTH + 1, u32::MAX] {
            let err = FrameReader::new(Cursor::new(bad.to_be_bytes())).next_frame();
            assert!(
                matches!(err, Err(FrameError::InvalidLength(n)) if n == bad),
                "{err:?}"
            );
        }
    }

    #[test]
    fn oversized_payload_is_refused_and_nothing_written() {
        let mut out = vec![1, 2, 3];
        let big = vec![0u8; (MAX_FRAME_LENGTH - MIN_FRAME_LENGTH + 1) as usize];
        assert!(matches!(
            append_frame_bytes(&mut out, 1, 1, 1, &big),
            Err(FrameError::PayloadTooLarge(_))
        ));
        assert_eq!(out, vec![1, 2, 3]);
        let max = vec![0u8; (MAX_FRAME_LENGTH - MIN_FRAME_LENGTH) as usize];
        append_frame_bytes(&mut out, 1, 1, 1, &max).expect("largest frame");
        assert_eq!(out.len(), 3 + 4 + MAX_FRAME_LENGTH as usize);
    }
}
