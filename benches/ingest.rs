//! Per-line cost of the ingest path: decode → select → filter
//! (`tjfwd::daemon::select_lines`), in lines/s, on Cowrie-shaped lines from
//! the benchmark generator; beside it the floor's per-line parse (serde_json
//! into a borrowed struct of the three fields) and the decoder alone.
//!
//! `cargo bench --bench ingest` (only `cargo bench` runs it).

#[path = "support/cowrie_gen.rs"]
mod cowrie_gen;

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tjfwd::daemon::select_lines;
use tjfwd::decode::decode;
use tjfwd::filter::Rules;
use tjfwd::stats::Stats;

/// 20,000 lines, 2,000 addresses: the mix of the 2M-line replay log.
fn corpus() -> Vec<u8> {
    cowrie_gen::lines(20_000, 2_000, 7)
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    data.strip_suffix(b"\n")
        .unwrap_or(data)
        .split(|&b| b == b'\n')
        .collect()
}

fn rules(track_session: bool) -> Rules {
    Rules {
        track_login: true,
        track_session,
        report_non_public: false,
        allowlist: vec!["192.0.2.0/24".parse().unwrap()],
    }
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

fn bench_lines(c: &mut Criterion, name: &str, lines: &[&[u8]]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("floor_parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in lines {
                if let Ok(e) = serde_json::from_slice::<FloorEvent<'_>>(line) {
                    n += e.eventid.map_or(0, |s| s.len())
                        + e.src_ip.map_or(0, |s| s.len())
                        + e.timestamp.map_or(0, |s| s.len());
                }
            }
            black_box(n)
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in lines {
                if let Ok(e) = decode(line) {
                    n += e.eventid.len();
                }
            }
            black_box(n)
        })
    });
    let stats = Stats::default();
    let mut out = Vec::with_capacity(lines.len());
    for (label, rules) in [
        ("select_lines/login", rules(false)),
        ("select_lines/login+session", rules(true)),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                select_lines(
                    lines.iter().copied(),
                    &rules,
                    &stats,
                    1_900_000_000_000,
                    &mut out,
                );
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let data = corpus();
    let all = split(&data);
    bench_lines(c, "ingest/mix", &all);
    let kex: Vec<&[u8]> = all
        .iter()
        .copied()
        .filter(|l| contains(l, b"\"cowrie.client.kex\""))
        .collect();
    bench_lines(c, "ingest/kex_only", &kex);
    let login: Vec<&[u8]> = all
        .iter()
        .copied()
        .filter(|l| contains(l, b"\"eventid\":\"cowrie.login."))
        .collect();
    bench_lines(c, "ingest/login_only", &login);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
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
