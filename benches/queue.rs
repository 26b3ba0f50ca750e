//! Queue operations through the library API (`tjfwd::store::Store`), on a
//! sled database in a temporary directory with 50,000 addresses pending:
//!
//! - `enqueue_chunk`: one 256 KiB chunk's sightings (what the tailer hands
//!   over per transaction, ~580 generated lines) and its checkpoint, in one
//!   transaction; chunks of the generated log in turn, so most addresses are
//!   already pending (updates) and some are new;
//! - `enqueue_chunk_new`: the same number of sightings, all new addresses;
//! - `take_batch`: `peek_batch(1000)`, the oldest 1000 pending;
//! - `ack_batch`: acknowledging the oldest 1000 (they move from
//!   pending/order to reported/expiry in one transaction).
//!
//! `cargo bench --bench queue` (only `cargo bench` runs it).

#[path = "support/cowrie_gen.rs"]
mod cowrie_gen;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use migrations::v1::{Checkpoint, FileId};
use tjfwd::filter::Rules;
use tjfwd::pipeline::select_lines;
use tjfwd::stats::Stats;
use tjfwd::store::{Policy, Sighting, Store, TargetSpec};

const NOW: u64 = 1_900_000_000_000;

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        32 << 20, // the default [storage] cache_capacity
        &[TargetSpec {
            name: "threatjammer".into(),
            policy: Policy {
                ttl_ms: 86_400_000,
                rereport_after_ms: 0,
            },
        }],
    )
    .expect("opening the queue")
}

/// The sightings of each 256 KiB chunk of a generated log.
fn chunks() -> Vec<Vec<Sighting>> {
    let data = cowrie_gen::lines(600_000, 50_000, 3);
    let rules = Rules {
        track_login: true,
        track_session: false,
        report_non_public: false,
        allowlist: vec![],
    };
    let stats = Stats::default();
    let mut out = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let mut end = rest.len().min(256 * 1024);
        if end < rest.len() {
            end = rest[..end].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        let mut s = Vec::new();
        let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
        select_lines(body.split(|&b| b == b'\n'), &rules, &stats, NOW, &mut s);
        out.push(s);
    }
    out
}

fn fresh(n: u32) -> IpAddr {
    // 11.0.0.0/8 onwards: public, and never in the generated pool's way
    // (a collision would only make it an update).
    IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n))
}

fn queue_ops(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let chunks = chunks();
    // 50,000 pending: the whole log once.
    let id = FileId {
        dev: 1,
        ino: 2,
        fingerprint: 3,
    };
    let mut offset = 0u64;
    for s in &chunks {
        offset += 256 * 1024;
        let c = Checkpoint {
            path: "/var/log/cowrie/cowrie.json".into(),
            offset,
            updated_at_ms: NOW,
        };
        q.enqueue(s, Some((&id, &c)), NOW).unwrap();
    }
    q.flush().unwrap();
    let per_chunk = chunks.iter().map(Vec::len).sum::<usize>() / chunks.len();
    eprintln!(
        "queue bench: {} pending, {} chunks, {} sightings a chunk on average",
        q.pending_count().unwrap(),
        chunks.len(),
        per_chunk
    );

    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("enqueue_chunk", |b| {
        b.iter(|| {
            i = (i + 1) % chunks.len();
            offset += 256 * 1024;
            let c = Checkpoint {
                path: "/var/log/cowrie/cowrie.json".into(),
                offset,
                updated_at_ms: NOW,
            };
            black_box(q.enqueue(&chunks[i], Some((&id, &c)), NOW).unwrap())
        })
    });
    let mut next = 0u32;
    g.bench_function("enqueue_chunk_new", |b| {
        b.iter_batched(
            || {
                (0..per_chunk)
                    .map(|_| {
                        next += 1;
                        Sighting {
                            addr: fresh(next),
                            seen_ms: NOW,
                        }
                    })
                    .collect::<Vec<_>>()
            },
            |s| {
                offset += 256 * 1024;
                let c = Checkpoint {
                    path: "/var/log/cowrie/cowrie.json".into(),
                    offset,
                    updated_at_ms: NOW,
                };
                black_box(q.enqueue(&s, Some((&id, &c)), NOW).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("take_batch_1000", |b| {
        b.iter(|| black_box(q.peek_batch(0, 1000).unwrap().len()))
    });
    // As the scheduler does: acknowledge the oldest 1000. The setup (not
    // timed) queues 1000 new addresses first, so the pending set keeps its size.
    g.bench_function("ack_batch_1000", |b| {
        b.iter_batched(
            || {
                let s: Vec<Sighting> = (0..1000)
                    .map(|_| {
                        next += 1;
                        Sighting {
                            addr: fresh(next),
                            seen_ms: NOW,
                        }
                    })
                    .collect();
                q.enqueue(&s, None, NOW).unwrap();
                q.peek_batch(0, 1000).unwrap()
            },
            |items| q.ack(0, &items, NOW, NOW).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = queue_ops
}
criterion_main!(benches);
