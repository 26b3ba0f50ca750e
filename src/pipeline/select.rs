//! Decode, select, filter: whole lines in, sightings out, with the counts
//! of what was read, selected and skipped.
//!
//! The hot path of every input and of `tjfwd replay` (benchmarked in
//! `benches/ingest.rs` against a floor): nothing here allocates per line,
//! and the answer for each line is [`crate::decode::decode`]'s, whichever
//! of the decoder's paths gives it.

use crate::decode::{cannot_select, decode, decode_fast, decode_serde};
use crate::filter::Rules;
use crate::stats::{escape_for_log, Stats};
use crate::store::{EnqueueOutcome, Sighting};

/// The longest line `select_lines` decodes before asking the prefilter.
const FAST_FIRST: usize = 1024;

/// Decodes, selects and filters lines into `out`.
pub fn select_lines<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    rules: &Rules,
    stats: &Stats,
    now: u64,
    out: &mut Vec<Sighting>,
) {
    // Counted once per call: an atomic add per line costs more than the
    // prefilter's verdict on a short line.
    let mut read = 0u64;
    for line in lines {
        read += 1;
        // A line of up to 1 KiB goes to the decoder's fast path first: it
        // takes as long as the prefilter on such a line, and selected lines
        // (mostly short) then need nothing else. Longer ones (the kex lines)
        // meet the prefilter first, which skips them in a third of the time.
        // Either way the answer is `decode`'s (the fast path answers as it
        // does, or defers), and a line the prefilter would have skipped is
        // one that is not selected: the same sightings and counts.
        let fast = if line.len() <= FAST_FIRST {
            decode_fast(line)
        } else {
            None
        };
        let event = match fast {
            Some(e) => e,
            None => {
                // Most lines cannot be selected: skip them before serde_json.
                if cannot_select(line, rules) {
                    continue;
                }
                let decoded = if line.len() <= FAST_FIRST {
                    decode_serde(line)
                } else {
                    decode(line)
                };
                match decoded {
                    Ok(e) => e,
                    Err(reason) => {
                        stats.skip(reason, || escape_for_log(line, 120));
                        continue;
                    }
                }
            }
        };
        if !rules.selects(&event.eventid) {
            continue;
        }
        Stats::add(&stats.events_selected, 1);
        match rules.address(&event.src_ip) {
            Ok(addr) => out.push(Sighting {
                addr,
                seen_ms: event.timestamp_ms.map_or(now, |t| t.min(now)),
            }),
            Err(reason) => stats.skip(reason, || escape_for_log(event.src_ip.as_bytes(), 80)),
        }
    }
    Stats::add(&stats.lines_read, read);
}

/// Adds what an enqueue did to the counters.
pub fn count_enqueued(stats: &Stats, out: &EnqueueOutcome) {
    Stats::add(&stats.queued_new, out.queued_new);
    Stats::add(&stats.queued_updates, out.updated);
    Stats::add(&stats.already_reported, out.already_reported);
    Stats::add(&stats.dead_lettered_seen, out.dead);
}
