//! Startup with a large queue, and the queue's bytes on disk, through the
//! library API (`tjfwd::store::Store`).
//!
//! ```sh
//! # Queue 1,000,000 distinct public addresses (chunks of 5,000 sightings,
//! # each with its checkpoint, as the ingest does), then report the space:
//! cargo run --release --example queue_startup -- fill /tmp/q1m 1000000
//! # In a new process: open it and get ready to send, timed step by step:
//! cargo run --release --example queue_startup -- open /tmp/q1m
//! # Space of an existing state directory, per pending address:
//! cargo run --release --example queue_startup -- space /tmp/q1m
//! # What sled needs for the same data written once: every tree copied
//! # into a fresh database with tjfwd's settings (state dir not in use):
//! cargo run --release --example queue_startup -- copy /tmp/q1m /tmp/q1m-copy
//! ```
//!
//! "Ready to send" is what the daemon does before its first request: open
//! the database (lock, migrations), read the pending count, the age of the
//! oldest entry (the flush deadline) and the first batch of 1000.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use migrations::v1::{Checkpoint, FileId};
use tjfwd::store::{Policy, Sighting, Store, TargetSpec};

/// The default `[storage] cache_capacity`.
const CACHE: u64 = 32 << 20;
const NOW: u64 = 1_900_000_000_000;

fn open(dir: &Path) -> Store {
    Store::open(
        dir,
        CACHE,
        &[TargetSpec {
            name: "threatjammer".into(),
            policy: Policy {
                ttl_ms: 86_400_000,
                rereport_after_ms: 0,
            },
        }],
    )
    .unwrap_or_else(|e| die(&e.to_string()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fill", dir, n] => fill(Path::new(dir), parse(n), 5_000),
        ["fill", dir, n, "--chunk", k] => fill(Path::new(dir), parse(n), parse(k)),
        ["open", dir] => open_ready(Path::new(dir)),
        ["copy", dir, dest] => copy(Path::new(dir), Path::new(dest)),
        ["space", dir] => {
            // Measured before opening: opening makes sled write a little.
            let bytes = du(&PathBuf::from(dir));
            let q = open(Path::new(dir));
            let pending = q.pending_count().unwrap_or_else(|e| die(&e.to_string()));
            report_space(bytes, pending);
        }
        _ => die(
            "usage: queue_startup fill DIR N [--chunk K] | open DIR | space DIR | copy DIR DEST",
        ),
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
    let oldest = q
        .oldest_queued_at(0)
        .unwrap_or_else(|e| die(&e.to_string()));
    let t_oldest = t0.elapsed();
    let batch = q
        .peek_batch(0, 1000)
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

/// Copies the trees of `dir`'s database into a new one at `dest` (sled
/// directly, with the settings `Store::open` uses), and reports the payload
/// (keys and values) and the copy's size on disk.
fn copy(dir: &Path, dest: &Path) {
    let sled_open = |p: PathBuf| {
        sled::Config::new()
            .path(p)
            .cache_capacity(CACHE)
            .mode(sled::Mode::LowSpace)
            .open()
            .unwrap_or_else(|e| die(&e.to_string()))
    };
    let pending = {
        let q = open(dir);
        q.pending_count().unwrap_or_else(|e| die(&e.to_string()))
    };
    if dest.exists() {
        die(&format!("{} exists", dest.display()));
    }
    let src = sled_open(dir.join("db"));
    let dst = sled_open(dest.join("db"));
    let mut payload = 0u64;
    for name in src.tree_names() {
        let (from, to) = (
            src.open_tree(&name).unwrap_or_else(|e| die(&e.to_string())),
            dst.open_tree(&name).unwrap_or_else(|e| die(&e.to_string())),
        );
        for kv in from.iter() {
            let (k, v) = kv.unwrap_or_else(|e| die(&e.to_string()));
            payload += (k.len() + v.len()) as u64;
            to.insert(k, v).unwrap_or_else(|e| die(&e.to_string()));
        }
    }
    dst.flush().unwrap_or_else(|e| die(&e.to_string()));
    drop(dst);
    println!(
        "payload: bytes={payload} bytes_per_pending={:.0}",
        payload as f64 / pending.max(1) as f64
    );
    print!("fresh copy ");
    space(dest, pending);
}

fn space(dir: &Path, pending: u64) {
    report_space(du(&dir.to_path_buf()), pending);
}

fn report_space(bytes: u64, pending: u64) {
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
