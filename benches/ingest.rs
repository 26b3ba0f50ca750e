//! Per-line cost of the ingest path, in lines/s, on Cowrie-shaped lines
//! from the benchmark generator (`support/cowrie_gen.rs`: 20,000 lines,
//! 2,000 addresses, the mix of the 2M-line replay log).
//!
//! As in tjfwd, the data goes through 256 KiB chunks: each chunk is copied
//! into a buffer (as the tailer does), split into lines, and every line is
//! handled. What is handled per line:
//!
//! - `floor_parse`: the floor program's work, serde_json into a borrowed
//!   struct of the three fields;
//! - `decode`: `tjfwd::decode::decode` (the fast path, else serde_json);
//! - `decode_fast`: `tjfwd::decode::decode_fast` alone (lines it defers
//!   cost only the attempt);
//! - `decode_serde`: `tjfwd::decode::decode_serde`, the serde_json decoder
//!   that `decode` was before the fast path;
//! - `prefilter`: `tjfwd::decode::cannot_select` alone;
//! - `select_lines_without_prefilter`: decode → select → filter as
//!   `select_lines` did before the prefilter and the fast path, with
//!   `decode_serde` (kept here as the baseline);
//! - `select_lines`: `tjfwd::pipeline::select_lines` (prefilter, decode,
//!   select, filter, counters); both with `track_login` only (`/login`)
//!   and with both tracks (`/login+session`);
//! - `lines_of+select_lines`: the same, split by `tjfwd::source::lines_of`
//!   instead of the bench's memchr split (what the daemon and replay do).
//!
//! Also on the `cowrie.client.kex` lines alone and the login lines alone.
//!
//! `cargo bench --bench ingest` (only `cargo bench` runs it).

#[path = "support/cowrie_gen.rs"]
mod cowrie_gen;

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tjfwd::decode::{cannot_select, decode, decode_fast, decode_serde};
use tjfwd::filter::Rules;
use tjfwd::pipeline::select_lines;
use tjfwd::stats::{escape_for_log, Stats};
use tjfwd::store::Sighting;

const CHUNK: usize = 256 * 1024;
const NOW: u64 = 1_900_000_000_000;

fn rules(track_session: bool) -> Rules {
    Rules {
        track_login: true,
        track_session,
        report_non_public: false,
        allowlist: vec!["192.0.2.0/24".parse().unwrap()],
    }
}

/// Whole lines (each with its newline) cut into chunks of at most 256 KiB.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK);
        if end < rest.len() {
            end = memchr::memrchr(b'\n', &rest[..end]).expect("a line under 256 KiB") + 1;
        }
        let (c, tail) = rest.split_at(end);
        out.push(c);
        rest = tail;
    }
    out
}

fn split(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', chunk).map(move |end| {
        let line = &chunk[start..end];
        start = end + 1;
        line
    })
}

#[derive(serde::Deserialize)]
struct FloorEvent<'a> {
    #[serde(borrow, default)]
    eventid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

/// `select_lines` as it was before the prefilter: the baseline.
fn select_lines_without_prefilter<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    rules: &Rules,
    stats: &Stats,
    now: u64,
    out: &mut Vec<Sighting>,
) {
    for line in lines {
        Stats::add(&stats.lines_read, 1);
        let event = match decode_serde(line) {
            Ok(e) => e,
            Err(reason) => {
                stats.skip(reason, || escape_for_log(line, 120));
                continue;
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
}

fn bench_set(c: &mut Criterion, name: &str, data: &[u8]) {
    let chunks = chunks(data);
    let n = split(data).count() as u64;
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    // Copies each chunk into `buf` (as the tailer does), then `f` on it.
    let mut run = |f: &mut dyn FnMut(&[u8]) -> usize| {
        let mut acc = 0;
        for chunk in &chunks {
            buf.clear();
            buf.extend_from_slice(chunk);
            acc += f(&buf);
        }
        black_box(acc)
    };
    g.bench_function("floor_parse", |b| {
        b.iter(|| {
            run(&mut |chunk| {
                split(chunk)
                    .filter_map(|l| serde_json::from_slice::<FloorEvent<'_>>(l).ok())
                    .map(|e| {
                        e.eventid.map_or(0, |s| s.len())
                            + e.src_ip.map_or(0, |s| s.len())
                            + e.timestamp.map_or(0, |s| s.len())
                    })
                    .sum()
            })
        })
    });
    // A macro, not a loop over function pointers: each decoder is inlined
    // into its loop, as in the daemon.
    macro_rules! bench_decoder {
        ($name:literal, $decoder:expr) => {
            g.bench_function($name, |b| {
                b.iter(|| {
                    run(&mut |chunk| {
                        split(chunk)
                            .filter_map($decoder)
                            .map(|e| e.eventid.len())
                            .sum()
                    })
                })
            })
        };
    }
    bench_decoder!("decode", |l| decode(l).ok());
    bench_decoder!("decode_fast", decode_fast);
    bench_decoder!("decode_serde", |l| decode_serde(l).ok());
    let login = rules(false);
    g.bench_function("prefilter", |b| {
        b.iter(|| run(&mut |chunk| split(chunk).filter(|l| cannot_select(l, &login)).count()))
    });
    let stats = Stats::default();
    let mut out = Vec::with_capacity(8192);
    for (label, rules) in [("login", rules(false)), ("login+session", rules(true))] {
        g.bench_function(format!("select_lines_without_prefilter/{label}"), |b| {
            b.iter(|| {
                run(&mut |chunk| {
                    out.clear();
                    select_lines_without_prefilter(split(chunk), &rules, &stats, NOW, &mut out);
                    out.len()
                })
            })
        });
        g.bench_function(format!("select_lines/{label}"), |b| {
            b.iter(|| {
                run(&mut |chunk| {
                    out.clear();
                    select_lines(split(chunk), &rules, &stats, NOW, &mut out);
                    out.len()
                })
            })
        });
    }
    g.bench_function("lines_of+select_lines", |b| {
        b.iter(|| {
            run(&mut |chunk| {
                out.clear();
                select_lines(
                    tjfwd::source::lines_of(chunk),
                    &login,
                    &stats,
                    NOW,
                    &mut out,
                );
                out.len()
            })
        })
    });
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let data = cowrie_gen::lines(20_000, 2_000, 7);
    bench_set(c, "ingest/mix", &data);
    let only = |needle: &[u8]| -> Vec<u8> {
        let finder = memchr::memmem::Finder::new(needle);
        let mut out = Vec::new();
        for line in split(&data) {
            if finder.find(line).is_some() {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        out
    };
    bench_set(
        c,
        "ingest/kex_only",
        &only(b"\"eventid\":\"cowrie.client.kex\""),
    );
    bench_set(
        c,
        "ingest/login_only",
        &only(b"\"eventid\":\"cowrie.login."),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = ingest
}
criterion_main!(benches);
