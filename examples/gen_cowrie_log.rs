//! Writes a Cowrie-shaped JSON log for the benchmarks (see
//! `benches/support/cowrie_gen.rs` for what it imitates).
//!
//! ```sh
//! cargo run --release --example gen_cowrie_log -- --lines 2000000 --addresses 50000 --seed 1 --out /tmp/cowrie.json
//! # Append at a steady rate, one write() per line as Cowrie does:
//! cargo run --release --example gen_cowrie_log -- --lines 300000 --rate 5000 --append --out cowrie.json
//! ```
//!
//! A summary (lines, bytes, average line, event mix, addresses seen in login
//! events) goes to stderr.

#[path = "../benches/support/cowrie_gen.rs"]
mod cowrie_gen;

use std::io::Write;
use std::time::{Duration, Instant};

use cowrie_gen::{Generator, Params};

const USAGE: &str = "usage: gen_cowrie_log [--lines N] [--addresses U] [--seed S] [--out FILE [--append]] [--rate LINES_PER_S]";

fn main() {
    let mut lines = 2_000_000u64;
    let mut addresses = 50_000usize;
    let mut seed = 1u64;
    let mut out_path: Option<String> = None;
    let mut append = false;
    let mut rate: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--lines" => lines = parse(&value("--lines")),
            "--addresses" => addresses = parse(&value("--addresses")),
            "--seed" => seed = parse(&value("--seed")),
            "--out" => out_path = Some(value("--out")),
            "--append" => append = true,
            "--rate" => rate = Some(parse(&value("--rate"))),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    let mut gen = Generator::new(Params::new(lines, addresses, seed));
    let started = Instant::now();
    match rate {
        None => {
            let sink: Box<dyn Write> = match &out_path {
                Some(p) => Box::new(open(p, append)),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
            let mut buf = Vec::with_capacity(1 << 16);
            while gen.next_line(&mut buf) {
                if buf.len() >= 1 << 16 {
                    w.write_all(&buf).unwrap_or_else(|e| die(&e.to_string()));
                    buf.clear();
                }
            }
            w.write_all(&buf).unwrap_or_else(|e| die(&e.to_string()));
            w.flush().unwrap_or_else(|e| die(&e.to_string()));
        }
        Some(rate) => {
            // One write() per line, like Cowrie, paced in 10 ms ticks.
            let mut f: Box<dyn Write> = match &out_path {
                Some(p) => Box::new(open(p, append)),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut buf = Vec::with_capacity(4096);
            let mut written = 0u64;
            loop {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                let mut more = true;
                while written < due {
                    buf.clear();
                    more = gen.next_line(&mut buf);
                    if !more {
                        break;
                    }
                    f.write_all(&buf).unwrap_or_else(|e| die(&e.to_string()));
                    written += 1;
                }
                if !more {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let s = &gen.stats;
    eprintln!(
        "lines={} bytes={} avg_line={:.0} max_line={} login_lines={} session_lines={} kex_lines={} login_addresses={} seconds={:.2}",
        s.lines,
        s.bytes,
        s.bytes as f64 / s.lines.max(1) as f64,
        s.max_line,
        s.login_lines,
        s.session_lines,
        s.kex_lines,
        gen.login_addresses(),
        started.elapsed().as_secs_f64()
    );
}

fn open(path: &str, append: bool) -> std::fs::File {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
        .unwrap_or_else(|e| die(&format!("{path}: {e}")))
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.replace('_', "")
        .parse()
        .unwrap_or_else(|_| die(&format!("not a number: {s:?}")))
}

fn die(msg: &str) -> ! {
    eprintln!("gen_cowrie_log: {msg}\n{USAGE}");
    std::process::exit(2)
}
