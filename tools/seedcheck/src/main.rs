//! seedcheck: run a scenario file against the seed's segment engine.
//!
//! ```text
//! seedcheck SCENARIO.jsonl OUT_DIR
//! seedcheck bench-batch DIR BATCHES FRAMES PAYLOAD_BYTES ROUNDS MAX_SEGMENT_BYTES
//! ```
//!
//! Writes the segments the seed produces to `OUT_DIR/segments/` and one JSON line per closed
//! segment (seq, reason, size, BLAKE3) to `OUT_DIR/closed.jsonl`. `OUT_DIR/segments` must not
//! exist yet. See `scenario.rs` for the scenario format. `bench-batch` times the seed's batch
//! appends for the benchmark suite (see `bench.rs`).

mod bench;
mod clock;
mod scenario;
mod wal;

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::ExitCode;
use wal::frame::{Frame, FrameReader};
use wal::segment::{SegmentHeader, SEGMENT_HEADER_SIZE};

/// Read back what the seed wrote: every header parses, its seq matches the file name, and the
/// frames of all segments, in order, are exactly the frames appended.
fn read_back(segments: &Path, expected: &[Frame]) -> Result<(), String> {
    let mut names: Vec<String> = fs::read_dir(segments)
        .map_err(|e| format!("{}: {e}", segments.display()))?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    names.sort();
    let mut frames = Vec::new();
    for name in &names {
        let data = fs::read(segments.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let header: [u8; SEGMENT_HEADER_SIZE] = data
            .get(..SEGMENT_HEADER_SIZE)
            .and_then(|h| h.try_into().ok())
            .ok_or(format!("{name}: shorter than a header"))?;
        let header = SegmentHeader::from_bytes(&header).map_err(|e| format!("{name}: {e}"))?;
        if name != &format!("segment_{:016}.aedbwal", header.segment_seq) {
            return Err(format!(
                "{name}: header says segment {}",
                header.segment_seq
            ));
        }
        let mut reader = FrameReader::new(Cursor::new(&data[SEGMENT_HEADER_SIZE..]));
        while let Some(frame) = reader.next_frame().map_err(|e| format!("{name}: {e}"))? {
            frames.push(frame);
        }
    }
    if frames != expected {
        return Err(format!(
            "read back {} frames that differ from the {} appended",
            frames.len(),
            expected.len()
        ));
    }
    Ok(())
}

fn run(scenario_path: &Path, out_dir: &Path) -> Result<(), String> {
    let text = fs::read_to_string(scenario_path)
        .map_err(|e| format!("{}: {e}", scenario_path.display()))?;
    let steps = scenario::parse(&text).map_err(|e| format!("{}: {e}", scenario_path.display()))?;
    let segments = out_dir.join("segments");
    if segments.exists() {
        return Err(format!("{} exists already", segments.display()));
    }
    let mut runner = scenario::Runner::new(segments.clone());
    for (i, step) in steps.iter().enumerate() {
        runner
            .step(step)
            .map_err(|e| format!("{} step {}: {e}", scenario_path.display(), i + 1))?;
    }
    read_back(&segments, runner.appended())?;
    let mut closed = runner.closed_records().join("\n");
    if !closed.is_empty() {
        closed.push('\n');
    }
    fs::write(out_dir.join("closed.jsonl"), closed).map_err(|e| format!("closed.jsonl: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let outcome = if args.get(1).map(String::as_str) == Some("bench-batch") {
        bench::main(&args[2..])
    } else if args.len() == 3 {
        run(Path::new(&args[1]), Path::new(&args[2]))
    } else {
        eprintln!("usage: seedcheck SCENARIO.jsonl OUT_DIR");
        eprintln!("       seedcheck bench-batch DIR BATCHES FRAMES PAYLOAD_BYTES ROUNDS MAX_SEGMENT_BYTES");
        return ExitCode::from(2);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seedcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
