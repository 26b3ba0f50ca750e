//! Startup with a large queue, and the queue's bytes on disk, through the
//! library API (`tjfwd::queue::Queue`).
//!
//! ```sh
//! # Queue 1,000,000 distinct public addresses (chunks of 5,000 sightings,
//! # each with its checkpoint, as the ingest does), then report the space:
//! cargo run --release --example queue_startup -- fill /tmp/q1m 1000000
//! # In a new process: open it and get ready to send, timed step by step:
//! cargo run --release --example queue_startup -- open /tmp/q1m
//! # Space of an existing state directory, per pending address:
//! cargo run --release --example queue_startup -- space /tmp/q1m
//! ```
//!
//! "Ready to send" is what the daemon does before its first request: open
//! the database (lock, migrations), read the pending count, the age of the
//! oldest entry (the flush deadline) and the first batch of 1000.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use migrations::v1::{Checkpoint, FileId};
use tjfwd::queue::{Policy, Queue, Sighting};

/// The default `[storage] cache_capacity`.
const CACHE: u64 = 32 << 20;
const NOW: u64 = 1_900_000_000_000;

fn open(dir: &Path) -> Queue {
    Queue::open(
        dir,
        CACHE,
        Policy {
            ttl_ms: 86_400_000,
            rereport_after_ms: 0,
        },
    )
    .unwrap_or_else(|e| die(&e.to_string()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fill", dir, n] => fill(Path::new(dir), parse(n), 5_000),
        ["fill", dir, n, "--chunk", k] => fill(Path::new(dir), parse(n), parse(k)),
        ["open", dir] => open_ready(Path::new(dir)),
        ["space", dir] => {
            let q = open(Path::new(dir));
            let pending = q.pending_count().unwrap_or_else(|e| die(&e.to_string()));
            drop(q);
            space(Path::new(dir), pending);
        }
        _ => die("usage: queue_startup fill DIR N [--chunk K] | open DIR | space DIR"),
    }
}

/// The n-th distinct public IPv4 address from 11.0.0.0 on, skipping the
/// special-purpose ranges the filter would refuse.
fn address(mut n: u64) -> IpAddr {
    let mut a: u32 = 0x0b00_0000;
    loop {
        let ip = IpAddr::V4(Ipv4Addr::from(a));
        if tjfwd::filter::is_public(ip) {
            if n == 0 {
                return ip;
            }
            n -= 1;
            a += 1;
        } else {
            // Jump over the whole /16 at once.
            a = (a | 0xffff) + 1;
        }
    }
}

fn fill(dir: &Path, n: u64, chunk: usize) {
    let started = Instant::now();
    let q = open(dir);
    let id = FileId {
        dev: 1,
        ino: 2,
        fingerprint: 3,
    };
    let mut next = address(q.pending_count().unwrap_or(0));
    let mut done = 0u64;
    let mut offset = 0u64;
    let mut sightings = Vec::with_capacity(chunk);
    while done < n {
        sightings.clear();
        while sightings.len() < chunk && done < n {
            sightings.push(Sighting {
                addr: next,
                seen_ms: NOW - (n - done),
            });
            done += 1;
            next = successor(next);
        }
        offset += 256 * 1024;
        let c = Checkpoint {
            path: "/var/log/cowrie/cowrie.json".into(),
            offset,
            updated_at_ms: NOW,
        };
        q.enqueue(&sightings, Some((&id, &c)), NOW)
            .unwrap_or_else(|e| die(&e.to_string()));
    }
    q.flush().unwrap_or_else(|e| die(&e.to_string()));
    let pending = q.pending_count().unwrap_or_else(|e| die(&e.to_string()));
    drop(q);
    println!(
        "filled: pending={pending} seconds={:.2}",
        started.elapsed().as_secs_f64()
    );
    space(dir, pending);
}

fn successor(ip: IpAddr) -> IpAddr {
    let IpAddr::V4(v4) = ip else { unreachable!() };
    let mut a = u32::from(v4) + 1;
    while !tjfwd::filter::is_public(IpAddr::V4(Ipv4Addr::from(a))) {
        a = (a | 0xffff) + 1;
    }
    IpAddr::V4(Ipv4Addr::from(a))
}

fn open_ready(dir: &Path) {
    let t0 = Instant::now();
    let q = open(dir);
    let t_open = t0.elapsed();
    let pending = q.pending_count().unwrap_or_else(|e| die(&e.to_string()));
    let t_count = t0.elapsed();
    let oldest = q.oldest_queued_at().unwrap_or_else(|e| die(&e.to_string()));
    let t_oldest = t0.elapsed();
    let batch = q
        .peek_batch(1000, 0)
        .unwrap_or_else(|e| die(&e.to_string()));
    let t_batch = t0.elapsed();
    println!(
        "ready to send: pending={pending} oldest_queued_at={oldest:?} batch={} open_ms={:.1} pending_count_ms={:.1} oldest_queued_at_ms={:.1} peek_batch_ms={:.1} total_ms={:.1}",
        batch.len(),
        t_open.as_secs_f64() * 1e3,
        (t_count - t_open).as_secs_f64() * 1e3,
        (t_oldest - t_count).as_secs_f64() * 1e3,
        (t_batch - t_oldest).as_secs_f64() * 1e3,
        t_batch.as_secs_f64() * 1e3,
    );
}

fn space(dir: &Path, pending: u64) {
    let bytes = du(&dir.to_path_buf());
    println!(
        "on disk: bytes={bytes} pending={pending} bytes_per_pending={:.0}",
        bytes as f64 / pending.max(1) as f64
    );
}

/// Bytes of the files under `dir` (apparent sizes, as `du -sb`).
fn du(dir: &PathBuf) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| die(&e.to_string())) {
        let e = e.unwrap_or_else(|e| die(&e.to_string()));
        let m = e.metadata().unwrap_or_else(|e| die(&e.to_string()));
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.replace('_', "")
        .parse()
        .unwrap_or_else(|_| die(&format!("not a number: {s:?}")))
}

fn die(msg: &str) -> ! {
    eprintln!("queue_startup: {msg}");
    std::process::exit(1)
}
