//! Scenario files: JSON lines, one step per line, run against the seed's `SegmentManager` the way
//! a caller of the seed drives it (append a batch, then ask `should_rotate` and rotate).
//!
//! Steps (`"op"`):
//!
//! - `open`: `instance_id`, `max_segment_bytes`, `max_segment_age_micros`, `wall_micros` (the
//!   wall clock from now on), optional `walship_log` (read only by the Python side). Makes the
//!   manager and opens segment 1. Must come first, once.
//! - `append`: `frames` (each `seq`, `type`, optional `ts` defaulting to the wall clock, and one
//!   of `payload` (text), `payload_hex`, `payload_fill` ([byte, count])); optional `sync`
//!   (default true). One `append_frames_with_sync` call, then the rotation check.
//! - `advance`: `micros`: moves the wall clock and the segment age forward.
//! - `force`: `force_rotate()` only; the next rotation check answers "forced".
//! - `rotate`: `force_rotate()` and a rotation check now.
//! - `tick`: a rotation check without an append (what an idle timer would do).
//! - `restart`: closes the active segment, drops the manager, makes a new one (zero prev hash, as
//!   the seed does after a restart) and opens the last segment again (`new_segment: false`, the
//!   default) or the next one (`new_segment: true`).
//! - `close`: `close_active()`. Nothing may follow.
//!
//! Every closed segment is written to `closed.jsonl` with the reason it was closed for.

use crate::clock;
use crate::wal::frame::Frame;
use crate::wal::segment::{ClosedSegment, PendingFrame, SegmentConfig, SegmentManager};
use serde_derive::Deserialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Open {
        instance_id: u64,
        max_segment_bytes: u64,
        max_segment_age_micros: u64,
        wall_micros: u64,
        /// Read only by the Python side: the scenario can also be replayed through walship's Log.
        #[serde(default)]
        #[allow(dead_code)]
        walship_log: bool,
    },
    Append {
        frames: Vec<FrameSpec>,
        #[serde(default = "default_sync")]
        sync: bool,
    },
    Advance {
        micros: u64,
    },
    Force,
    Rotate,
    Tick,
    Restart {
        #[serde(default)]
        new_segment: bool,
    },
    Close,
}

fn default_sync() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSpec {
    pub seq: u64,
    #[serde(default)]
    pub ts: Option<u64>,
    #[serde(rename = "type")]
    pub payload_type: u8,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub payload_hex: Option<String>,
    #[serde(default)]
    pub payload_fill: Option<(u8, usize)>,
}

impl FrameSpec {
    fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.payload, &self.payload_hex, &self.payload_fill) {
            (Some(text), None, None) => Ok(text.as_bytes().to_vec()),
            (None, Some(hex), None) => decode_hex(hex),
            (None, None, Some((byte, count))) => Ok(vec![*byte; *count]),
            _ => Err(format!(
                "frame seq {}: give exactly one of payload, payload_hex, payload_fill",
                self.seq
            )),
        }
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    if hex.len() & 1 == 1 {
        return Err(format!("payload_hex has an odd length: {hex:?}"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .map_err(|_| format!("payload_hex is not hex: {hex:?}"))
        })
        .collect()
}

/// Parse a scenario file's text; the error names the line.
pub fn parse(text: &str) -> Result<Vec<Step>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Runs scenarios against the seed, writing segments into `dir`.
pub struct Runner {
    dir: PathBuf,
    instance_id: u64,
    config: Option<SegmentConfig>,
    manager: Option<SegmentManager>,
    segment_seq: u64,
    wall_micros: u64,
    mono_micros: u64,
    /// When the active segment was opened: a real `Instant` taken just after `open_active`
    /// returned (so never before the seed's own `opened_at`) and the scenario's age clock then.
    opened: Option<(Instant, u64)>,
    closed: Vec<String>,
    appended: Vec<Frame>,
}

impl Runner {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            instance_id: 0,
            config: None,
            manager: None,
            segment_seq: 0,
            wall_micros: 0,
            mono_micros: 0,
            opened: None,
            closed: Vec::new(),
            appended: Vec::new(),
        }
    }

    /// One line of `closed.jsonl` per closed segment, in order.
    pub fn closed_records(&self) -> &[String] {
        &self.closed
    }

    /// Every frame handed to the seed, in order.
    pub fn appended(&self) -> &[Frame] {
        &self.appended
    }

    fn manager(&mut self) -> Result<&mut SegmentManager, String> {
        self.manager
            .as_mut()
            .ok_or_else(|| "no open segment manager (open first; nothing after close)".into())
    }

    fn open_segment(&mut self, segment_seq: u64) -> Result<(), String> {
        let manager = self.manager()?;
        manager
            .open_active(segment_seq)
            .map_err(|e| format!("open_active({segment_seq}): {e}"))?;
        self.segment_seq = segment_seq;
        self.opened = Some((Instant::now(), self.mono_micros));
        Ok(())
    }

    fn record(&mut self, closed: &ClosedSegment, reason: &str) {
        self.closed.push(format!(
            "{{\"segment_seq\":{},\"reason\":\"{}\",\"size_bytes\":{},\"blake3\":\"{}\"}}",
            closed.segment_seq,
            reason,
            closed.size_bytes,
            hex(&closed.hash)
        ));
    }

    /// The caller's rotation check: ask the seed, with the segment's scenario age, and rotate.
    fn check_rotation(&mut self) -> Result<(), String> {
        let (opened_instant, opened_mono) = self.opened.ok_or("no active segment")?;
        let age = Duration::from_micros(self.mono_micros - opened_mono);
        let manager = self.manager()?;
        if let Some(reason) = manager.should_rotate_at(opened_instant + age) {
            let closed = manager.rotate().map_err(|e| format!("rotate: {e}"))?;
            self.record(&closed, reason.as_str());
            self.segment_seq = closed.segment_seq + 1;
            self.opened = Some((Instant::now(), self.mono_micros));
        }
        Ok(())
    }

    pub fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Open {
                instance_id,
                max_segment_bytes,
                max_segment_age_micros,
                wall_micros,
                walship_log: _,
            } => {
                if self.config.is_some() {
                    return Err("open may come only once".into());
                }
                let config = SegmentConfig {
                    max_segment_bytes: *max_segment_bytes,
                    max_segment_age: Duration::from_micros(*max_segment_age_micros),
                };
                self.wall_micros = *wall_micros;
                clock::set_wall_micros(self.wall_micros);
                self.instance_id = *instance_id;
                self.manager = Some(SegmentManager::new(&self.dir, config.clone(), *instance_id));
                self.config = Some(config);
                self.open_segment(1)
            }
            Step::Append { frames, sync } => {
                let payloads = frames
                    .iter()
                    .map(FrameSpec::payload_bytes)
                    .collect::<Result<Vec<_>, _>>()?;
                let wall = self.wall_micros;
                let pending: Vec<PendingFrame<'_>> = frames
                    .iter()
                    .zip(&payloads)
                    .map(|(f, p)| PendingFrame {
                        seq: f.seq,
                        timestamp_micros: f.ts.unwrap_or(wall),
                        payload_type: f.payload_type,
                        payload: p,
                    })
                    .collect();
                self.manager()?
                    .append_frames_with_sync(&pending, *sync)
                    .map_err(|e| format!("append: {e}"))?;
                self.appended.extend(pending.iter().map(|f| Frame {
                    commit_seq: f.seq,
                    timestamp_micros: f.timestamp_micros,
                    payload_type: f.payload_type,
                    payload: f.payload.to_vec(),
                }));
                self.check_rotation()
            }
            Step::Advance { micros } => {
                self.wall_micros += micros;
                self.mono_micros += micros;
                clock::set_wall_micros(self.wall_micros);
                Ok(())
            }
            Step::Force => {
                self.manager()?.force_rotate();
                Ok(())
            }
            Step::Rotate => {
                self.manager()?.force_rotate();
                self.check_rotation()
            }
            Step::Tick => self.check_rotation(),
            Step::Restart { new_segment } => {
                let closed = self
                    .manager()?
                    .close_active()
                    .map_err(|e| format!("close_active: {e}"))?;
                self.record(&closed, "restart");
                let config = self.config.clone().ok_or("open first")?;
                self.manager = Some(SegmentManager::new(&self.dir, config, self.instance_id));
                let seq = if *new_segment {
                    closed.segment_seq + 1
                } else {
                    closed.segment_seq
                };
                self.open_segment(seq)
            }
            Step::Close => {
                let closed = self
                    .manager()?
                    .close_active()
                    .map_err(|e| format!("close_active: {e}"))?;
                self.record(&closed, "close");
                self.manager = None;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Runner};
    use crate::wal::segment::{SegmentHeader, SEGMENT_HEADER_SIZE};
    use std::fs;

    #[test]
    fn parse_names_the_bad_line() {
        let ok = r#"{"op": "open", "instance_id": 1, "max_segment_bytes": 9, "max_segment_age_micros": 9, "wall_micros": 5}"#;
        assert_eq!(
            parse(&format!("{ok}\n\n{{\"op\": \"close\"}}\n"))
                .expect("parse")
                .len(),
            2
        );
        let typo = format!("{ok}\n{{\"op\": \"append\", \"frame\": []}}");
        assert!(parse(&typo).expect_err("typo").starts_with("line 2:"));
        assert!(parse(r#"{"op": "explode"}"#)
            .expect_err("op")
            .starts_with("line 1:"));
    }

    #[test]
    fn headers_carry_the_scenario_wall_clock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = [
            r#"{"op": "open", "instance_id": 4, "max_segment_bytes": 100, "max_segment_age_micros": 1000000, "wall_micros": 1700000000000001}"#,
            r#"{"op": "advance", "micros": 250}"#,
            r#"{"op": "append", "frames": [{"seq": 1, "type": 1, "payload_fill": [1, 20]}]}"#,
            r#"{"op": "append", "frames": [{"seq": 2, "type": 1, "payload_hex": "00ff"}]}"#,
            r#"{"op": "close"}"#,
        ]
        .join("\n");
        let mut runner = Runner::new(dir.path().to_path_buf());
        for step in parse(&text).expect("parse") {
            runner.step(&step).expect("step");
        }
        let created: Vec<u64> = [
            "segment_0000000000000001.aedbwal",
            "segment_0000000000000002.aedbwal",
        ]
        .iter()
        .map(|name| {
            let data = fs::read(dir.path().join(name)).expect("segment");
            let header: [u8; SEGMENT_HEADER_SIZE] =
                data[..SEGMENT_HEADER_SIZE].try_into().expect("header");
            SegmentHeader::from_bytes(&header)
                .expect("parse")
                .created_at_micros
        })
        .collect();
        // Segment 1 was opened at the start, segment 2 when the first append rotated it on size.
        assert_eq!(created, vec![1_700_000_000_000_001, 1_700_000_000_000_251]);
        assert_eq!(runner.closed_records().len(), 2);
        assert_eq!(runner.appended()[1].timestamp_micros, 1_700_000_000_000_251);
        assert_eq!(runner.appended()[1].payload, vec![0, 0xff]);
    }
}
