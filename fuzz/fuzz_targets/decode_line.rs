//! Fuzzes the line path an attacker can reach: decode, select, filter, and
//! the line splitter with a small cap. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tjfwd::decode::decode;
use tjfwd::filter::Rules;
use tjfwd::source::LineSplitter;
use tjfwd::stats::Stats;

fuzz_target!(|data: &[u8]| {
    let rules = Rules {
        track_login: true,
        track_session: true,
        report_non_public: false,
        allowlist: vec!["192.0.2.0/24".parse().unwrap()],
    };
    if let Ok(event) = decode(data) {
        let _ = rules.selects(&event.eventid);
        let _ = rules.address(&event.src_ip);
    }
    // The same bytes as a stream, cut where they are: whole lines only.
    let stats = Stats::default();
    let mut splitter = LineSplitter::default();
    let mut out = Vec::new();
    let half = data.len() / 2;
    splitter.push(&data[..half], 64, &stats, &mut out);
    splitter.push(&data[half..], 64, &stats, &mut out);
    assert!(out.is_empty() || out.ends_with(b"\n"));
    for line in tjfwd::source::lines_of(&out) {
        assert!(line.len() <= 64);
        let _ = decode(line);
    }
});
