//! Fuzzes the line path an attacker can reach: decode, select, filter, and
//! the line splitter with a small cap. Nothing may panic, and the decoder
//! answers as serde_json alone does: its fast path (in both its modes)
//! gives the same event or defers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tjfwd::decode::{decode, decode_fast, decode_fast_general, decode_serde};
use tjfwd::filter::Rules;
use tjfwd::source::LineSplitter;
use tjfwd::stats::Stats;

/// `decode` is `decode_serde`; the fast path agrees with it or defers.
fn check_decoders(line: &[u8]) {
    let want = decode_serde(line);
    assert_eq!(decode(line), want);
    let fast = decode_fast(line);
    let general = decode_fast_general(line);
    for e in [&fast, &general].into_iter().flatten() {
        assert_eq!(Ok(e), want.as_ref());
    }
    if !line.contains(&b'\\') {
        assert_eq!(fast, general);
    }
}

fuzz_target!(|data: &[u8]| {
    let rules = Rules {
        track_login: true,
        track_session: true,
        report_non_public: false,
        allowlist: vec!["192.0.2.0/24".parse().unwrap()],
    };
    check_decoders(data);
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
        check_decoders(line);
    }
});
