//! The floor of the end-to-end benchmark: the least any ingest of a Cowrie
//! log must do. It reads the file, splits it into lines and parses each one
//! with serde_json into a borrowed struct of the three fields tjfwd reads —
//! no selection, no address parsing, no queue, no disk writes.
//!
//! ```sh
//! cargo run --release --example floor -- /tmp/cowrie.json
//! ```
//!
//! Prints the lines read, the lines parsed and the elapsed time.

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::time::Instant;

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    eventid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: floor FILE");
        std::process::exit(2);
    };
    let started = Instant::now();
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        eprintln!("floor: {path}: {e}");
        std::process::exit(1);
    });
    // The same read size as tjfwd's tailer (256 KiB).
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::with_capacity(4096);
    let (mut lines, mut parsed, mut fields) = (0u64, 0u64, 0usize);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("floor: {path}: {e}");
                std::process::exit(1);
            }
        }
        lines += 1;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Ok(e) = serde_json::from_slice::<Event<'_>>(body) {
            parsed += 1;
            // Use the fields, so that nothing is optimised away.
            fields += e.eventid.map_or(0, |s| s.len())
                + e.src_ip.map_or(0, |s| s.len())
                + e.timestamp.map_or(0, |s| s.len());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "lines={lines} parsed={parsed} field_bytes={fields} seconds={secs:.3} lines_per_s={:.0}",
        lines as f64 / secs
    );
}
