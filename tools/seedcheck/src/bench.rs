//! `seedcheck bench-batch`: time the seed's own batch append, for the benchmark suite's
//! `seed_batch_100B` case (benchmarks/cases/seed.py).
//!
//! ```text
//! seedcheck bench-batch DIR BATCHES FRAMES PAYLOAD_BYTES ROUNDS MAX_SEGMENT_BYTES
//! ```
//!
//! Every round makes a fresh `SegmentManager` in `DIR/round-N` (which must not exist yet), opens
//! segment 1 and appends `BATCHES` batches of `FRAMES` frames, each batch one
//! `append_frames_with_sync(.., false)` call (no sync, as walship's durability `none`) followed
//! by the caller's rotation check (`should_rotate`, then `rotate` when due), the way a caller of
//! the seed drives it. Every frame carries the same random payload of `PAYLOAD_BYTES` bytes
//! (as walship's side of the case appends one payload `FRAMES` times), consecutive seqs from 1
//! and one timestamp per batch (walship stamps once per batch too).
//!
//! Only the appends are timed (this process's own clock): making the manager, opening the first
//! segment, the final `close_active` and the checks after it are outside. The round's bytes are
//! checked against the frame format, then `DIR/round-N` is removed. One JSON line per round on
//! stdout: `round`, `seconds`, `frames`, `frames_per_s`, `bytes` (frame bytes, headers not
//! counted), `segments`.

use crate::clock::SystemTime;
use crate::wal::segment::{PendingFrame, SegmentConfig, SegmentManager, SEGMENT_HEADER_SIZE};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

/// Fixed bytes of a frame around its payload: length, seq, timestamp, type, CRC.
const FRAME_OVERHEAD: u64 = 4 + 8 + 8 + 1 + 4;

/// The command line after `bench-batch`.
struct Args {
    dir: PathBuf,
    batches: u64,
    frames: u64,
    payload_bytes: usize,
    rounds: u64,
    max_segment_bytes: u64,
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name} must be a number, not {text:?}"))
}

fn parse(args: &[String]) -> Result<Args, String> {
    let [dir, batches, frames, payload_bytes, rounds, max_segment_bytes] = args else {
        return Err(
            "usage: seedcheck bench-batch DIR BATCHES FRAMES PAYLOAD_BYTES ROUNDS MAX_SEGMENT_BYTES"
                .into(),
        );
    };
    let parsed = Args {
        dir: PathBuf::from(dir),
        batches: number("BATCHES", batches)?,
        frames: number("FRAMES", frames)?,
        payload_bytes: number("PAYLOAD_BYTES", payload_bytes)?,
        rounds: number("ROUNDS", rounds)?,
        max_segment_bytes: number("MAX_SEGMENT_BYTES", max_segment_bytes)?,
    };
    if parsed.batches == 0 || parsed.frames == 0 || parsed.rounds == 0 {
        return Err("BATCHES, FRAMES and ROUNDS must be at least 1".into());
    }
    Ok(parsed)
}

fn random_payload(len: usize) -> Result<Vec<u8>, String> {
    let mut payload = vec![0u8; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut payload))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(payload)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// One round's outcome.
struct Round {
    seconds: f64,
    frames: u64,
    bytes: u64,
    segments: u64,
}

/// Append every batch into a fresh manager in `dir`; time the appends only.
fn append_round(dir: &Path, args: &Args, payload: &[u8]) -> Result<Round, String> {
    let config = SegmentConfig {
        max_segment_bytes: args.max_segment_bytes,
        ..SegmentConfig::default()
    };
    let mut manager = SegmentManager::new(dir, config, 1);
    manager
        .open_active(1)
        .map_err(|e| format!("open_active: {e}"))?;
    let mut pending: Vec<PendingFrame<'_>> = Vec::with_capacity(args.frames as usize);
    let mut seq = 1u64;
    let mut segments = 1u64;
    let start = Instant::now();
    for _ in 0..args.batches {
        let ts = now_micros();
        pending.clear();
        pending.extend((seq..seq + args.frames).map(|s| PendingFrame {
            seq: s,
            timestamp_micros: ts,
            payload_type: 0,
            payload,
        }));
        seq += args.frames;
        manager
            .append_frames_with_sync(&pending, false)
            .map_err(|e| format!("append: {e}"))?;
        if manager.should_rotate().is_some() {
            manager.rotate().map_err(|e| format!("rotate: {e}"))?;
            segments += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    manager
        .close_active()
        .map_err(|e| format!("close_active: {e}"))?;
    let frames = args.batches * args.frames;
    Ok(Round {
        seconds,
        frames,
        bytes: frames * (FRAME_OVERHEAD + payload.len() as u64),
        segments,
    })
}

/// The segment files' sizes add up to the frames' bytes plus one header per segment.
fn check_sizes(dir: &Path, round: &Round) -> Result<(), String> {
    let mut total = 0u64;
    let mut count = 0u64;
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let meta = entry
            .and_then(|e| e.metadata())
            .map_err(|e| e.to_string())?;
        total += meta.len();
        count += 1;
    }
    let expected = round.bytes + round.segments * SEGMENT_HEADER_SIZE as u64;
    if count != round.segments || total != expected {
        return Err(format!(
            "{}: {count} segments of {total} bytes, expected {} of {expected}",
            dir.display(),
            round.segments
        ));
    }
    Ok(())
}

fn bench(args: &Args) -> Result<(), String> {
    fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let payload = random_payload(args.payload_bytes)?;
    for n in 1..=args.rounds {
        let dir = args.dir.join(format!("round-{n}"));
        if dir.exists() {
            return Err(format!("{} exists already", dir.display()));
        }
        let round = append_round(&dir, args, &payload)?;
        check_sizes(&dir, &round)?;
        fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        println!(
            "{}",
            serde_json::json!({
                "round": n,
                "seconds": round.seconds,
                "frames": round.frames,
                "frames_per_s": round.frames as f64 / round.seconds,
                "bytes": round.bytes,
                "segments": round.segments,
            })
        );
    }
    Ok(())
}

/// `seedcheck bench-batch ...` with the arguments after the subcommand.
pub fn main(args: &[String]) -> Result<(), String> {
    bench(&parse(args)?)
}

#[cfg(test)]
mod tests {
    use super::{append_round, check_sizes, parse};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_round_writes_every_frame_and_rotates_on_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seg = dir.path().join("round-1");
        let a = parse(&args(&["x", "5", "3", "10", "1", "100"])).expect("parse");
        let round = append_round(&seg, &a, &[7u8; 10]).expect("round");
        // 3 frames of 35 bytes per batch: every batch passes 100 bytes with its header.
        assert_eq!((round.frames, round.bytes, round.segments), (15, 525, 6));
        check_sizes(&seg, &round).expect("sizes");
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&args(&["x", "1", "1", "1", "1"])).is_err());
        assert!(parse(&args(&["x", "0", "1", "1", "1", "9"])).is_err());
        assert!(parse(&args(&["x", "1", "many", "1", "1", "9"])).is_err());
    }
}
