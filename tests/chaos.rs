//! Crash chaos: the real `tjfwd run` binary is killed with SIGKILL at random
//! moments and restarted, over and over, while a writer appends a
//! Cowrie-shaped log (rotating it now and then, like Cowrie's daily
//! rotation) and the fake Report API answers some requests with 5xx, 429 or
//! a dropped connection. Then one clean `tjfwd run --drain`, and the oracle:
//!
//! - every address written in a login event was accepted by the server at
//!   least once (nothing lost);
//! - every accepted address was written in a login event (nothing invented:
//!   addresses seen only in other events are decoys that must never arrive);
//! - no request held more than 1000 addresses, none was refused as invalid
//!   (no 4xx but 429), and no rolling window ever held more than 6 requests,
//!   counted from the server's own arrival times, every request included.
//!
//! Kill moments, in turn: at a random time (startup included); while reading
//! and enqueuing (right after a large burst was appended); while a request
//! is in flight (the fake holds it: `Failure::Delay`); and just after the
//! fake accepted a batch, before tjfwd can have stored the acknowledgement
//! (`FakeApi::subscribe`). The binary runs with the test-only
//! `TJFWD_TEST_RATE_WINDOW_MS` so the API's 60 s window becomes 1 s (the
//! other durations are TOML settings).
//!
//! CI runs 60 kills; `TJFWD_CHAOS_KILLS=500` runs longer. The random
//! choices come from a fixed seed, as in every randomised test of the suite;
//! `TJFWD_CHAOS_SEED=N` takes another, `TJFWD_CHAOS_SEED=random` a new one
//! each run (printed; the timing is real, so a seed repeats the choices of
//! a run, not exactly the run).
//! The figures are printed (`cargo test --test chaos -- --nocapture`) and
//! written to `target/chaos-figures.json`.
//!
//! A second run does the same with three targets enabled, Threat Jammer,
//! AbuseIPDB (bulk) and CrowdSec, while CrowdSec is down for a long stretch
//! and AbuseIPDB out of quota for another (they overlap): every address
//! must reach every target, none exceed its limit, none be invented, and
//! the targets that can deliver must keep delivering (see
//! [`three_targets_one_down_one_out_of_quota_each_gets_every_address_within_its_limits`]).
//! It also runs with the test-only `TJFWD_TEST_ABUSEIPDB_DAY_SECS`, which
//! makes AbuseIPDB's quota day 5 s; its figures go to
//! `target/chaos-figures-three-targets.json`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::bin::{bin, output_of, spawn, wait_with_limit, Env, Running};
use support::cowrie;
use support::fake_api::{Failure, FakeApi, FakeConfig, RequestRecord, REPORT_PATH};

/// The shortened rate window (the API's is 60 s).
const WINDOW: Duration = Duration::from_secs(1);
/// The API's limit per window.
const MAX_PER_WINDOW: usize = 6;
const WINDOW_ENV: &str = "TJFWD_TEST_RATE_WINDOW_MS";

/// When a kill happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// At a random time after the start (0-1.5 s): startup, idle, sending...
    Random,
    /// 0-60 ms after a burst of 1000-3000 attackers was appended: reading,
    /// deciding, enqueuing (one transaction with the checkpoint).
    Ingesting,
    /// While the fake holds a request (100-400 ms) before answering it.
    InFlight,
    /// 0-5 ms after the fake decided to accept a batch, before or while its
    /// 202 is written and tjfwd stores the acknowledgement.
    AfterAccept,
}

impl Moment {
    const ALL: [Moment; 4] = [
        Moment::Random,
        Moment::Ingesting,
        Moment::InFlight,
        Moment::AfterAccept,
    ];
}

/// Appends Cowrie-shaped events, remembering what it wrote.
struct Writer {
    dir: PathBuf,
    log: PathBuf,
    rng: StdRng,
    /// Attackers created so far (the next one's number).
    attackers: u32,
    /// Decoys (addresses only ever in non-login events) created so far.
    decoys: u32,
    /// Normalized addresses of every login event written (whole lines).
    written: BTreeSet<IpAddr>,
    /// Addresses written only in events that are not selected.
    decoy_set: BTreeSet<IpAddr>,
    lines: u64,
    bytes: u64,
    rotations: u32,
    partial_writes: u32,
    /// Cowrie's clock (ms since the epoch): from 2025-01-01, a day further
    /// at each rotation, so always in the past (a sighting read again after
    /// a crash is then not a new sighting to report again).
    ts_ms: u64,
    /// A rotation comes before one burst in this many.
    rotate_one_in: u32,
    /// No rotation moves Cowrie's clock to or past this (ms since the
    /// epoch): such a rotation is skipped.
    rotate_before_ms: u64,
}

impl Writer {
    fn new(dir: &Path, seed: u64) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            log: dir.join("cowrie.json"),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            attackers: 0,
            decoys: 0,
            written: BTreeSet::new(),
            decoy_set: BTreeSet::new(),
            lines: 0,
            bytes: 0,
            rotations: 0,
            partial_writes: 0,
            ts_ms: 1_735_689_600_000, // 2025-01-01T00:00:00Z
            rotate_one_in: 12,
            rotate_before_ms: u64::MAX,
        }
    }

    /// Cowrie's clock starts at `start_ms` instead, and rotations, one
    /// burst in `one_in`, never move it to `before_ms` (AbuseIPDB takes
    /// attacks of the last 60 days only: its sightings must be recent, and
    /// still in the past).
    fn with_clock(mut self, start_ms: u64, one_in: u32, before_ms: u64) -> Writer {
        self.ts_ms = start_ms;
        self.rotate_one_in = one_in;
        self.rotate_before_ms = before_ms;
        self
    }

    /// A new attacker: (address as Cowrie writes it, normalized address).
    /// Mostly IPv4, some IPv6; a Telnet peer shows IPv4 as `::ffff:a.b.c.d`.
    fn attacker(&mut self) -> (String, IpAddr, bool) {
        self.attackers += 1;
        let i = self.attackers;
        if i.is_multiple_of(7) {
            let a = format!("2a01:4f8:{:x}:{:x}::1", i >> 16, i & 0xffff);
            let ip = a.parse().unwrap();
            return (a, ip, false);
        }
        let v4 = format!("11.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        let ip = v4.parse().unwrap();
        if i.is_multiple_of(5) {
            (format!("::ffff:{v4}"), ip, true)
        } else {
            (v4, ip, false)
        }
    }

    fn decoy(&mut self) -> String {
        self.decoys += 1;
        let i = self.decoys;
        let a = format!("12.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        self.decoy_set.insert(a.parse().unwrap());
        a
    }

    fn ev(&self, eventid: &str, src: &str, own: &str) -> String {
        let ts = cowrie::timestamp_at(self.ts_ms);
        cowrie::event_with_timestamp(eventid, src, own, &ts)
    }

    fn telnet(line: String) -> String {
        line.replacen("\"protocol\":\"ssh\"", "\"protocol\":\"telnet\"", 1)
            .replacen("\"dst_port\":2222", "\"dst_port\":2223", 1)
    }

    /// Appends the events of `n` new attackers (connect, client version and
    /// kex, 1-3 logins, close; interleaved as concurrent sessions are), some
    /// decoys, and sometimes a rotation first. Written with one `write()`,
    /// or two with a pause between (a reader then sees half a line).
    fn burst(&mut self, n: usize) {
        let next_day_ms = (self.ts_ms / 86_400_000 + 1) * 86_400_000;
        if self.rng.gen_ratio(1, self.rotate_one_in)
            && self.log.exists()
            && next_day_ms < self.rotate_before_ms
        {
            // Cowrie: the first event after midnight renames the live file
            // to cowrie.json.YYYY-MM-DD and opens a new one.
            self.rotations += 1;
            let rotated = format!("cowrie.json.{}", cowrie::date_at(self.ts_ms));
            std::fs::rename(&self.log, self.dir.join(rotated)).unwrap();
            self.ts_ms = next_day_ms;
        }
        let mut sessions: Vec<Vec<String>> = Vec::new();
        let mut new_ips = Vec::new();
        for _ in 0..n {
            let (shown, ip, telnet) = self.attacker();
            new_ips.push(ip);
            let mut ev = vec![self.ev("cowrie.session.connect", &shown, "")];
            if !telnet {
                ev.push(self.ev("cowrie.client.version", &shown, r#""version":"SSH-2.0-Go""#));
                ev.push(self.ev("cowrie.client.kex", &shown, &kex_fields()));
            }
            for _ in 0..self.rng.gen_range(1..=3) {
                self.ts_ms += self.rng.gen_range(0..50);
                ev.push(if self.rng.gen_ratio(1, 10) {
                    self.ev(
                        "cowrie.login.success",
                        &shown,
                        r#""username":"root","password":"123456""#,
                    )
                } else {
                    // Attacker-controlled text that looks like JSON keys.
                    self.ev(
                        "cowrie.login.failed",
                        &shown,
                        r#""username":"root","password":"\"src_ip\":\"12.9.9.9\"""#,
                    )
                });
            }
            ev.push(self.ev("cowrie.session.closed", &shown, r#""duration":"1.2""#));
            if telnet {
                ev = ev.into_iter().map(Writer::telnet).collect();
            }
            sessions.push(ev);
        }
        for _ in 0..self.rng.gen_range(0..=n / 4 + 1) {
            let d = self.decoy();
            sessions.push(vec![
                self.ev("cowrie.session.connect", &d, ""),
                self.ev(
                    "cowrie.session.file_download.failed",
                    &d,
                    r#""url":"http://12.0.0.1/x""#,
                ),
            ]);
        }
        // Interleave the sessions' events, each session in its own order.
        let mut buf = String::new();
        let mut cursors = vec![0usize; sessions.len()];
        let mut open: Vec<usize> = (0..sessions.len()).collect();
        while !open.is_empty() {
            let k = self.rng.gen_range(0..open.len());
            let s = open[k];
            buf.push_str(&sessions[s][cursors[s]]);
            buf.push('\n');
            self.lines += 1;
            cursors[s] += 1;
            if cursors[s] == sessions[s].len() {
                open.swap_remove(k);
            }
        }
        let bytes = buf.as_bytes();
        if bytes.len() > 2 && self.rng.gen_ratio(1, 5) {
            self.partial_writes += 1;
            let cut = self.rng.gen_range(1..bytes.len());
            cowrie::append_raw(&self.log, &bytes[..cut]);
            std::thread::sleep(Duration::from_millis(self.rng.gen_range(0..30)));
            cowrie::append_raw(&self.log, &bytes[cut..]);
        } else {
            cowrie::append_raw(&self.log, bytes);
        }
        self.bytes += bytes.len() as u64;
        self.written.extend(new_ips);
    }
}

/// The fields of a `cowrie.client.kex` event (the line is ~1.9 KB, the
/// largest common one).
fn kex_fields() -> String {
    let algs = |prefix: &str, n: usize| {
        (0..n)
            .map(|i| format!("\"{prefix}-{i}@openssh.com\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#""hassh":"ec7378c1a92f5a8dde7e8b7a1ddf33d1","hasshAlgorithms":"curve25519-sha256;aes128-ctr;hmac-sha2-256;none","kexAlgs":[{}],"keyAlgs":[{}],"encCS":[{}],"macCS":[{}],"compCS":["none","zlib@openssh.com"],"langCS":[""]"#,
        algs("curve25519-sha256", 12),
        algs("ssh-ed25519-cert-v01", 10),
        algs("chacha20-poly1305", 8),
        algs("hmac-sha2-256-etm", 8),
    )
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn sigkill(r: &mut Running) {
    use rustix::process::{kill_process, Pid, Signal};
    let _ = kill_process(Pid::from_child(&r.child), Signal::KILL);
    r.child.wait().unwrap();
}

/// Largest number of requests within any rolling `window` (arrival times
/// closer than `window`), every request counted, whatever its path, token
/// or answer.
fn max_in_window(records: &[RequestRecord], window: Duration) -> (usize, usize) {
    max_in_rolling(
        records.iter().map(|r| r.at).collect(),
        window,
        MAX_PER_WINDOW,
    )
}

/// Largest number of `times` within any rolling `window`, and how many of
/// them end a window holding `limit` or more.
fn max_in_rolling(mut times: Vec<Instant>, window: Duration, limit: usize) -> (usize, usize) {
    times.sort();
    let (mut best, mut full, mut start) = (0, 0, 0);
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        let n = end - start + 1;
        best = best.max(n);
        if n >= limit {
            full += 1;
        }
    }
    (best, full)
}

/// The shortest time spanned by `MAX_PER_WINDOW + 1` consecutive requests:
/// at least the window when the limit held (how close it came).
fn tightest_span(records: &[RequestRecord]) -> Option<Duration> {
    let mut times: Vec<Instant> = records.iter().map(|r| r.at).collect();
    times.sort();
    times
        .windows(MAX_PER_WINDOW + 1)
        .map(|w| w[MAX_PER_WINDOW].duration_since(w[0]))
        .min()
}

/// Where the figures go: `target/chaos-figures.json`.
fn figures_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("chaos-figures.json")
}

#[test]
fn kill_9_at_random_moments_loses_nothing_invents_nothing_and_keeps_the_rate_limit() {
    let started = Instant::now();
    let kills = env_u64("TJFWD_CHAOS_KILLS").unwrap_or(60) as usize;
    let seed = match std::env::var("TJFWD_CHAOS_SEED").as_deref().map(str::trim) {
        Err(_) | Ok("") => 15,
        Ok("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        Ok(n) => n
            .parse()
            .expect("TJFWD_CHAOS_SEED: a number, or \"random\""),
    };
    eprintln!("chaos: {kills} kills, seed {seed} (TJFWD_CHAOS_SEED={seed} repeats the choices)");
    let mut rng = StdRng::seed_from_u64(seed);

    let env = Env::new();
    let api = FakeApi::start(FakeConfig {
        window: WINDOW,
        ..FakeConfig::default()
    });
    let cfg = env.config(&api, "request_timeout = \"2s\"\n");
    let window_ms = WINDOW.as_millis().to_string();
    let run = |extra: &[&str]| {
        let mut c = bin();
        c.arg("run").args(extra).arg("--config").arg(&cfg);
        c.env(WINDOW_ENV, &window_ms);
        c
    };
    let accepted_rx = api.subscribe();

    let writer = Arc::new(Mutex::new(Writer::new(env.dir.path(), seed)));
    writer.lock().unwrap().burst(10);
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = None;

    let mut done: BTreeMap<Moment, usize> = BTreeMap::new();
    let mut missed: BTreeMap<Moment, usize> = BTreeMap::new();
    let mut failures_pushed = 0usize;
    // Every run's output, kept with the files when the oracle fails.
    let mut runs_log = String::new();
    for k in 0..kills {
        // Faults the server will answer with, FIFO, to whatever comes next.
        if rng.gen_ratio(1, 2) {
            let f = match rng.gen_range(0..6) {
                0 => Failure::Status(500),
                1 => Failure::Status(502),
                2 => Failure::Status(503),
                3 => Failure::TooMany { retry_after: None },
                4 => Failure::TooMany {
                    retry_after: Some("1".into()),
                },
                _ => Failure::Drop,
            };
            api.push_failure(f);
            failures_pushed += 1;
        }
        let moment = Moment::ALL[(k + rng.gen_range(0..2) * 2) % Moment::ALL.len()];
        let mut child = spawn(&mut run(&[]));
        if background.is_none() {
            // The very first start reads the live file only (older files
            // are for `tjfwd replay`): write on once it has opened it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !output_of(&mut child).contains("reading input file") {
                assert!(Instant::now() < deadline, "{}", output_of(&mut child));
                std::thread::sleep(Duration::from_millis(5));
            }
            // The background writer: small bursts every 10-100 ms.
            let (writer, stop) = (writer.clone(), stop.clone());
            let mut rng = StdRng::seed_from_u64(seed ^ 0xb6);
            background = Some(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    writer.lock().unwrap().burst(rng.gen_range(1..=60));
                    std::thread::sleep(Duration::from_millis(rng.gen_range(10..100)));
                }
            }));
        }
        let hit = match moment {
            Moment::Random => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..1500)));
                true
            }
            Moment::Ingesting => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(100..600)));
                let n = rng.gen_range(1000..3000);
                writer.lock().unwrap().burst(n);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
                true
            }
            Moment::InFlight => {
                api.clear_failures();
                let hold = Duration::from_millis(rng.gen_range(100..400));
                api.push_failure(Failure::Delay(hold));
                failures_pushed += 1;
                // Consumed at the request's arrival: it is then being held.
                let deadline = Instant::now() + Duration::from_secs(5);
                while api.pending_failures() > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let hit = api.pending_failures() == 0;
                if hit {
                    std::thread::sleep(hold.mul_f64(rng.gen_range(0.0..0.9)));
                } else {
                    api.clear_failures();
                }
                hit
            }
            Moment::AfterAccept => {
                while accepted_rx.try_recv().is_ok() {}
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut hit = false;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    match accepted_rx.recv_timeout(left) {
                        Ok(a) if a.accepted && a.path == REPORT_PATH => {
                            hit = true;
                            break;
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
                if hit {
                    std::thread::sleep(Duration::from_micros(rng.gen_range(0..5000)));
                }
                hit
            }
        };
        if let Some(status) = child.child.try_wait().unwrap() {
            let out = output_of(&mut child);
            runs_log.push_str(&format!("=== run {k}: exited by itself ({status})\n{out}"));
            std::fs::write(env.path("tjfwd-runs.log"), &runs_log).unwrap();
            stop.store(true, Ordering::Relaxed);
            let kept = env.dir.keep();
            panic!(
                "kill {k}: tjfwd exited by itself ({status}) before the kill (files kept in {}):\n{out}",
                kept.display()
            );
        }
        sigkill(&mut child);
        *done.entry(moment).or_default() += 1;
        if !hit {
            *missed.entry(moment).or_default() += 1;
        }
        let out = output_of(&mut child);
        runs_log.push_str(&format!(
            "=== run {k}: killed at {moment:?} (hit: {hit})\n{out}"
        ));
        assert!(
            !out.contains("panicked"),
            "kill {k}: tjfwd panicked:\n{out}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    background.expect("the writer ran").join().unwrap();

    // One clean run: read everything, send everything, exit 0.
    let drain_started = Instant::now();
    let mut child = spawn(&mut run(&["--drain"]));
    let status = wait_with_limit(&mut child, Duration::from_secs(240));
    let out = output_of(&mut child);
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "the final --drain run failed:\n{out}"
    );
    assert!(
        out.contains(WINDOW_ENV) && out.contains("WARN"),
        "the test-only window is not announced:\n{out}"
    );
    let drain_time = drain_started.elapsed();
    runs_log.push_str(&format!("=== final --drain run\n{out}"));

    // The oracle.
    let w = writer.lock().unwrap();
    let records = api.requests();
    let accepted_batches = api.accepted_batches();
    let mut accepted: BTreeSet<IpAddr> = BTreeSet::new();
    let mut accepted_total = 0usize;
    for b in &accepted_batches {
        for a in b {
            accepted.insert(a.parse().expect("the server accepted a valid address"));
            accepted_total += 1;
        }
    }
    let missing: Vec<&IpAddr> = w.written.difference(&accepted).collect();
    let invented: Vec<&IpAddr> = accepted.difference(&w.written).collect();
    let (max_window, full_windows) = max_in_window(&records, WINDOW);
    let tightest = tightest_span(&records).map(|d| d.as_secs_f64() * 1000.0);
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &records {
        *by_status.entry(r.status).or_default() += 1;
    }
    let largest_batch = records.iter().map(|r| r.addresses.len()).max().unwrap_or(0);
    let invalid: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| (400..500).contains(&r.status) && r.status != 429)
        .collect();
    let duplicates = accepted_total - accepted.len();
    let moments = |m: &BTreeMap<Moment, usize>| {
        m.iter()
            .map(|(k, v)| (format!("{k:?}"), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    let figures = serde_json::json!({
        "seed": seed,
        "kills": kills,
        "kills_by_moment": moments(&done),
        "kills_that_missed_their_moment": moments(&missed),
        "lines_written": w.lines,
        "bytes_written": w.bytes,
        "rotations": w.rotations,
        "partial_writes": w.partial_writes,
        "addresses_written": w.written.len(),
        "decoy_addresses": w.decoy_set.len(),
        "failures_scripted": failures_pushed,
        "requests": records.len(),
        "requests_by_status": by_status.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "accepted_batches": accepted_batches.len(),
        "addresses_accepted_total": accepted_total,
        "addresses_accepted_unique": accepted.len(),
        "duplicates_delivered": duplicates,
        "missing": missing.len(),
        "invented": invented.len(),
        "largest_batch": largest_batch,
        "rate_window_ms": WINDOW.as_millis() as u64,
        "max_requests_in_any_window": max_window,
        "requests_ending_a_full_window": full_windows,
        "tightest_7_request_span_ms": tightest,
        "final_drain_s": drain_time.as_secs_f64(),
        "run_time_s": started.elapsed().as_secs_f64(),
    });
    let text = serde_json::to_string_pretty(&figures).unwrap();
    eprintln!("chaos figures:\n{text}");
    let _ = std::fs::write(figures_path(), format!("{text}\n"));
    let failed = !missing.is_empty() || !invented.is_empty() || max_window > MAX_PER_WINDOW;
    if failed {
        std::fs::write(env.path("tjfwd-runs.log"), &runs_log).unwrap();
        let kept = env.dir.keep();
        eprintln!(
            "the files (logs, state, tjfwd-runs.log) are kept in {}",
            kept.display()
        );
    }

    assert!(
        missing.is_empty(),
        "{} of {} written addresses never accepted, e.g. {:?}\n(seed {seed})",
        missing.len(),
        w.written.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        invented.is_empty(),
        "{} accepted addresses were never written in a login event, e.g. {:?}",
        invented.len(),
        &invented[..invented.len().min(10)]
    );
    assert!(
        max_window <= MAX_PER_WINDOW,
        "{max_window} requests within one {WINDOW:?} window (limit {MAX_PER_WINDOW}) (seed {seed})"
    );
    assert!(
        largest_batch <= 1000,
        "a batch of {largest_batch} addresses"
    );
    assert!(
        invalid.is_empty(),
        "the server refused requests as invalid: {:?}",
        invalid
            .iter()
            .map(|r| (r.status, &r.body[..r.body.len().min(200)]))
            .collect::<Vec<_>>()
    );
    // The run did exercise what it claims to.
    assert!(w.rotations > 0, "no rotation happened");
    for m in Moment::ALL {
        let n = done.get(&m).copied().unwrap_or(0);
        let miss = missed.get(&m).copied().unwrap_or(0);
        assert!(
            n >= kills / 8 && miss * 2 <= n,
            "{m:?}: {n} kills, {miss} missed"
        );
    }
    assert!(
        by_status.get(&0).is_some_and(|n| *n > 0) && by_status.keys().any(|s| *s >= 500),
        "no scripted failure was answered: {by_status:?}"
    );
}

#[test]
fn the_test_rate_window_is_shown_by_check_config_and_refused_when_invalid() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let out = bin()
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .env(WINDOW_ENV, "300")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("# rate window (not settable in TOML): 300ms"),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning") && stderr.contains(WINDOW_ENV),
        "{stderr}"
    );

    // Without it: the API's 60 s, nothing said.
    let out = bin()
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("rate window"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(WINDOW_ENV));

    // Not a number of milliseconds: refused, naming the variable.
    let out = bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .env(WINDOW_ENV, "5s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(WINDOW_ENV), "{stderr}");
}

/// A crash soon after the very first start, then a rotation while tjfwd is
/// down: the next start must not take itself for a first start again (which
/// reads the live file only), or the rotated file's addresses are lost. The
/// first start's state (when the input was first watched, the first
/// checkpoint) must be on disk by then.
#[test]
fn a_kill_right_after_the_very_first_start_loses_no_rotated_file() {
    for round in 0..3 {
        let env = Env::new();
        let api = FakeApi::start(FakeConfig::default());
        // No request before the kill: a request's record would flush everything.
        let cfg = env.config(&api, "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            text.replace("flush_interval = \"100ms\"", "flush_interval = \"1h\""),
        )
        .unwrap();
        let before = cowrie::public_addresses(20);
        let after: Vec<String> = (1..=20).map(|i| format!("12.0.0.{i}")).collect();
        let lines = |addrs: &[String]| -> Vec<String> {
            addrs
                .iter()
                .enumerate()
                .map(|(i, a)| cowrie::login_failed(a, i as u64))
                .collect()
        };
        cowrie::append(&env.log(), &lines(&before));
        let mut child = spawn(bin().args(["run", "--config"]).arg(&cfg));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !output_of(&mut child).contains("reading input file") {
            assert!(Instant::now() < deadline, "{}", output_of(&mut child));
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        sigkill(&mut child);
        // Cowrie rotates while tjfwd is down.
        std::fs::rename(env.log(), env.path("cowrie.json.2026-11-22")).unwrap();
        cowrie::append(&env.log(), &lines(&after));
        let mut child = spawn(bin().args(["run", "--drain", "--config"]).arg(&cfg));
        let status = wait_with_limit(&mut child, Duration::from_secs(30));
        let out = output_of(&mut child);
        assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{out}");
        let want: BTreeSet<String> = before.iter().chain(&after).cloned().collect();
        assert_eq!(api.accepted_unique(), want, "round {round}:\n{out}");
    }
}

#[test]
fn cowrie_timestamps_and_rotation_dates_are_real_dates() {
    assert_eq!(cowrie::timestamp(0), "2026-11-22T00:00:00.000000Z");
    assert_eq!(cowrie::timestamp(3_723_004), "2026-11-22T01:02:03.004000Z");
    assert_eq!(
        cowrie::timestamp_at(1_735_689_600_000 + 59 * 86_400_000 + 1),
        "2025-03-01T00:00:00.001000Z"
    );
    assert_eq!(cowrie::date_at(1_709_164_800_000), "2024-02-29");
    assert_eq!(cowrie::date_at(1_798_761_600_000 - 1), "2026-12-31");
}

/// Regression: tjfwd records each request before sending it and moves the
/// record to the time of the answer, so that the server, which counts a
/// request when it arrives, never sees more than the limit. A request cut
/// off by a crash kept its *send* time: when it reached the server later
/// (a slow network) and the window was then filled after the restart, the
/// server saw 7 requests in one window (and answered 429).
#[test]
fn a_request_cut_off_by_a_crash_counts_in_the_window_from_the_restart() {
    let env = Env::new();
    let window = Duration::from_secs(3);
    let api = FakeApi::start(FakeConfig {
        window,
        ..FakeConfig::default()
    });
    let addrs = cowrie::public_addresses(9000); // nine full batches
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(&env.log(), &lines);
    let cfg = env.config(&api, "");
    let run = |extra: &[&str]| {
        let mut c = bin();
        c.arg("run").args(extra).arg("--config").arg(&cfg);
        c.env(WINDOW_ENV, window.as_millis().to_string());
        c
    };
    // The first request reaches the server 800 ms after it was sent.
    api.push_failure(Failure::Late(Duration::from_millis(800)));
    let mut child = spawn(&mut run(&[]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.pending_failures() > 0 {
        assert!(Instant::now() < deadline, "{}", output_of(&mut child));
        std::thread::sleep(Duration::from_millis(1));
    }
    // On its way: the daemon dies. It is restarted once the request has
    // arrived (systemd waits RestartSec=10s).
    sigkill(&mut child);
    assert!(api.wait_for_requests(1, Duration::from_secs(5)));
    let mut child = spawn(&mut run(&["--drain"]));
    let status = wait_with_limit(&mut child, Duration::from_secs(60));
    let out = output_of(&mut child);
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{out}");
    assert_eq!(
        api.accepted_unique(),
        addrs.iter().cloned().collect::<BTreeSet<_>>()
    );
    let records = api.requests();
    let (max, _) = max_in_window(&records, window);
    let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
    assert!(
        max <= MAX_PER_WINDOW,
        "{max} requests in one {window:?} window: {statuses:?}"
    );
    assert!(!statuses.contains(&429), "{statuses:?}");
}

// ===== three targets, one down, one out of quota ==========================

/// AbuseIPDB's quota day in the three-target run: the binary's, through the
/// test-only `TJFWD_TEST_ABUSEIPDB_DAY_SECS`, and the fake's.
const AB_DAY: Duration = Duration::from_secs(5);
/// AbuseIPDB's bulk requests a (shortened) day: tjfwd's `daily_limit` and
/// the fake's quota.
const AB_DAILY_LIMIT: u32 = 3;
const DAY_ENV: &str = "TJFWD_TEST_ABUSEIPDB_DAY_SECS";
/// Longest time Threat Jammer may go without a delivery while another
/// target is down or out of quota (its own kills, restarts, scripted
/// failures and rate window included): the stretches last at least twice
/// as long.
const STALL: Duration = Duration::from_secs(10);

/// A target of the three-target run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Which {
    ThreatJammer,
    AbuseIpdb,
    CrowdSec,
}

/// The longest time without a delivery within `[from, to]` (from `from` to
/// the first delivery, between deliveries, from the last to `to`), and how
/// many deliveries fell in it.
fn longest_gap(deliveries: &[Instant], from: Instant, to: Instant) -> (Duration, usize) {
    let mut inside: Vec<Instant> = deliveries
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside.sort();
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in inside.iter().copied().chain(std::iter::once(to)) {
        gap = gap.max(t.duration_since(last));
        last = t;
    }
    (gap, inside.len())
}

/// Seconds from `origin` to `t`, for the figures.
fn secs_since(origin: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(origin).as_secs_f64()
}

/// The three-target variant: Threat Jammer (the fake Report API, as in the
/// test above), AbuseIPDB (bulk mode, the fake AbuseIPDB) and CrowdSec (the
/// fake LAPI) all enabled, while the binary is killed and restarted as
/// above. Over the run, in five equal parts of the kills:
///
/// 1. everything up;
/// 2. CrowdSec down: its LAPI answers 503 to everything, logins included;
/// 3. CrowdSec still down, now dropping every connection unanswered, and
///    AbuseIPDB out of quota: another client of the same key spends each
///    (shortened) day's quota as soon as the day begins, so tjfwd's
///    requests get the quota's 429 with `Retry-After` and
///    `X-RateLimit-Reset` (tjfwd's own `daily_limit` holds all along);
/// 4. CrowdSec back (a restarted LAPI: the old tokens are refused, tjfwd
///    must log in again), AbuseIPDB still out of quota;
/// 5. everything up.
///
/// Kills aim at the same moments as above; "in flight" and "just accepted"
/// take each target in turn among those that can answer. Each fake also
/// answers some requests with 5xx, 429 or a dropped connection.
///
/// Oracle, per target, from each fake's own records, after a final
/// `--drain`: every address written in a login event reached it at least
/// once, nothing else did; Threat Jammer: at most 6 requests in any rolling
/// window, 1000 addresses a request; AbuseIPDB: at most `daily_limit`
/// requests of tjfwd's in any rolling (shortened) day, and in any day of
/// the fake's clock, 10,000 CSV lines a file, no row refused but as a
/// duplicate; CrowdSec: at most 1000 decisions an alert; no request refused
/// as invalid; and while one target was down or out of quota, the others
/// kept delivering (no gap over [`STALL`] between their deliveries, from
/// the fakes' arrival times).
///
/// CI runs 40 kills (`TJFWD_CHAOS_KILLS` and `TJFWD_CHAOS_SEED` as above).
/// The figures go to `target/chaos-figures-three-targets.json`.
#[test]
fn three_targets_one_down_one_out_of_quota_each_gets_every_address_within_its_limits() {
    use support::fake_abuseipdb::{
        self as fab, AbuseConfig, Endpoint, FakeAbuseIpdb, BULK_PATH, MAX_CSV_LINES,
    };
    use support::fake_crowdsec::{self as fcs, FakeLapi, LapiConfig, ALERTS_PATH};

    let started = Instant::now();
    let kills = env_u64("TJFWD_CHAOS_KILLS").unwrap_or(40).max(10) as usize;
    let seed = match std::env::var("TJFWD_CHAOS_SEED").as_deref().map(str::trim) {
        Err(_) | Ok("") => 17,
        Ok("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        Ok(n) => n
            .parse()
            .expect("TJFWD_CHAOS_SEED: a number, or \"random\""),
    };
    eprintln!(
        "chaos, three targets: {kills} kills, seed {seed} (TJFWD_CHAOS_SEED={seed} repeats the choices)"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let env = Env::new();
    let api = FakeApi::start(FakeConfig {
        window: WINDOW,
        ..FakeConfig::default()
    });
    let ab = Arc::new(FakeAbuseIpdb::start(AbuseConfig {
        bulk_daily_limit: AB_DAILY_LIMIT,
        day: AB_DAY,
        ..AbuseConfig::default()
    }));
    let lapi = Arc::new(FakeLapi::start(LapiConfig::default()));
    std::fs::write(env.path("abuseipdb.key"), format!("{}\n", fab::DEFAULT_KEY)).unwrap();
    support::bin::set_mode(&env.path("abuseipdb.key"), 0o600);
    std::fs::write(
        env.path("crowdsec-password"),
        format!("{}\n", fcs::DEFAULT_PASSWORD),
    )
    .unwrap();
    support::bin::set_mode(&env.path("crowdsec-password"), 0o600);
    // CrowdSec's own limit, 120 requests in any rolling minute (not
    // shortened), must not be what keeps it from delivering once back:
    // alerts every second at most, retries every 2 s at most.
    let cfg = env.config(
        &api,
        &format!(
            r#"request_timeout = "2s"

[targets.abuseipdb]
api_url = "{ab_url}"
api_key_file = "abuseipdb.key"
mode = "bulk"
daily_limit = {AB_DAILY_LIMIT}
flush_interval = "500ms"
request_timeout = "5s"
max_backoff = "500ms"

[targets.crowdsec]
lapi_url = "{lapi_url}"
machine_id = "{machine}"
password_file = "crowdsec-password"
flush_interval = "1s"
request_timeout = "2s"
max_backoff = "2s"
"#,
            ab_url = ab.base_url(),
            lapi_url = lapi.url(),
            machine = fcs::DEFAULT_MACHINE,
        ),
    );
    let window_ms = WINDOW.as_millis().to_string();
    let day_s = AB_DAY.as_secs().to_string();
    let run = |extra: &[&str]| {
        let mut c = bin();
        c.arg("run").args(extra).arg("--config").arg(&cfg);
        c.env(WINDOW_ENV, &window_ms).env(DAY_ENV, &day_s);
        c
    };
    let accepted_rx = api.subscribe();

    // Cowrie's clock: from 45 days ago, rotations never reaching the last
    // two days (AbuseIPDB's 60-day rule; sightings stay in the past).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start_ms = (now_ms / 86_400_000 - 45) * 86_400_000;
    let writer = Arc::new(Mutex::new(Writer::new(env.dir.path(), seed).with_clock(
        start_ms,
        40,
        now_ms - 2 * 86_400_000,
    )));
    writer.lock().unwrap().burst(10);
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = None;

    // Another client of the same AbuseIPDB key: while on, it spends each
    // day's quota as soon as the day begins.
    let thief_on = Arc::new(AtomicBool::new(false));
    let spent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let thief = {
        let (ab, on, stop, spent) = (ab.clone(), thief_on.clone(), stop.clone(), spent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if on.load(Ordering::Relaxed) {
                    let left = ab.remaining(Endpoint::Bulk);
                    if left > 0 {
                        ab.spend(Endpoint::Bulk, left);
                        spent.fetch_add(u64::from(left), Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // The stretches: each part lasts a fifth of the kills, and at least
    // STALL (so CrowdSec is down and AbuseIPDB out of quota for at least
    // twice STALL each, overlapping for one part): kills go on until then.
    let crowd_down_at = kills / 5;
    let crowd_drops_at = 2 * kills / 5;
    let crowd_up_at = 3 * kills / 5;
    let quota_back_at = 4 * kills / 5;
    let mut crowd_down = (started, started);
    let mut quota_out = (started, started);
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Stretch {
        Before,
        Refusing,
        Dropping,
        After,
    }
    let (mut crowd, mut quota) = (Stretch::Before, Stretch::Before);

    let mut done: BTreeMap<Moment, usize> = BTreeMap::new();
    let mut missed: BTreeMap<Moment, usize> = BTreeMap::new();
    let mut aimed_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut aimed = 0usize;
    let mut failures_pushed: BTreeMap<Which, usize> = BTreeMap::new();
    let mut runs_log = String::new();
    let mut revokers = Vec::new();
    let mut k = 0;
    while k < kills || quota != Stretch::After {
        // The stretches.
        if crowd == Stretch::Before && k >= crowd_down_at {
            lapi.set_down(true);
            crowd = Stretch::Refusing;
            crowd_down.0 = Instant::now();
        }
        if crowd == Stretch::Refusing && k >= crowd_drops_at && crowd_down.0.elapsed() >= STALL {
            lapi.set_down(false);
            lapi.clear_failures();
            lapi.push_failures(std::iter::repeat_n(fcs::Failure::Drop, 100_000));
            crowd = Stretch::Dropping;
            thief_on.store(true, Ordering::Relaxed);
            quota = Stretch::Dropping;
            quota_out.0 = Instant::now();
        }
        if crowd == Stretch::Dropping && k >= crowd_up_at && crowd_down.0.elapsed() >= 2 * STALL {
            lapi.clear_failures();
            lapi.revoke_tokens();
            crowd = Stretch::After;
            crowd_down.1 = Instant::now();
        }
        if quota == Stretch::Dropping
            && crowd == Stretch::After
            && k >= quota_back_at
            && crowd_down.1.elapsed() >= STALL
            && quota_out.0.elapsed() >= 2 * STALL
        {
            thief_on.store(false, Ordering::Relaxed);
            quota = Stretch::After;
            quota_out.1 = Instant::now();
        }
        let crowd_is_down = matches!(crowd, Stretch::Refusing | Stretch::Dropping);
        let quota_is_out = quota == Stretch::Dropping;

        // Faults each server will answer with, FIFO, to whatever comes next.
        if rng.gen_ratio(1, 2) {
            api.push_failure(match rng.gen_range(0..6) {
                0 => Failure::Status(500),
                1 => Failure::Status(502),
                2 => Failure::Status(503),
                3 => Failure::TooMany { retry_after: None },
                4 => Failure::TooMany {
                    retry_after: Some("1".into()),
                },
                _ => Failure::Drop,
            });
            *failures_pushed.entry(Which::ThreatJammer).or_default() += 1;
        }
        // (Not while out of quota: a scripted answer comes before the
        // quota's, which is what that stretch is for.)
        if rng.gen_ratio(1, 4) && !quota_is_out {
            ab.push_failure(match rng.gen_range(0..4) {
                0 => fab::Failure::Status(500),
                1 => fab::Failure::Status(503),
                2 => fab::Failure::TooMany {
                    retry_after: Some("1".into()),
                },
                _ => fab::Failure::Drop,
            });
            *failures_pushed.entry(Which::AbuseIpdb).or_default() += 1;
        }
        if rng.gen_ratio(1, 4) && !crowd_is_down {
            lapi.push_failure(match rng.gen_range(0..3) {
                0 => fcs::Failure::Status(500),
                1 => fcs::Failure::Status(502),
                _ => fcs::Failure::Drop,
            });
            *failures_pushed.entry(Which::CrowdSec).or_default() += 1;
        }

        let moment = Moment::ALL[(k + rng.gen_range(0..2) * 2) % Moment::ALL.len()];
        // The target an aimed kill aims at: each in turn, among those that
        // can answer now (AbuseIPDB out of quota answers, with its 429: a
        // request held in flight then ends in it, which also lets tjfwd,
        // killed often, live long enough to try).
        let mut can_answer = vec![Which::ThreatJammer];
        if !quota_is_out || moment == Moment::InFlight {
            can_answer.push(Which::AbuseIpdb);
        }
        if !crowd_is_down {
            can_answer.push(Which::CrowdSec);
        }
        let aim = can_answer[aimed % can_answer.len()];
        let mut child = spawn(&mut run(&[]));
        if k >= crowd_up_at && rng.gen_ratio(1, 3) {
            // The LAPI restarts with a new secret while tjfwd runs: its
            // token is refused (401) and it must log in again.
            let (lapi, after) = (
                lapi.clone(),
                Duration::from_millis(rng.gen_range(300..1200)),
            );
            revokers.push(std::thread::spawn(move || {
                std::thread::sleep(after);
                lapi.revoke_tokens();
            }));
        }
        if background.is_none() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !output_of(&mut child).contains("reading input file") {
                assert!(Instant::now() < deadline, "{}", output_of(&mut child));
                std::thread::sleep(Duration::from_millis(5));
            }
            let (writer, stop) = (writer.clone(), stop.clone());
            let mut rng = StdRng::seed_from_u64(seed ^ 0xb6);
            background = Some(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    writer.lock().unwrap().burst(rng.gen_range(1..=60));
                    std::thread::sleep(Duration::from_millis(rng.gen_range(10..100)));
                }
            }));
        }
        // AbuseIPDB may wait for its own daily limit: a longer look.
        let patience = match aim {
            Which::AbuseIpdb => AB_DAY + Duration::from_secs(1),
            _ => Duration::from_secs(5),
        };
        let hit = match moment {
            Moment::Random => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..1500)));
                true
            }
            Moment::Ingesting => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(100..600)));
                let n = rng.gen_range(1000..3000);
                writer.lock().unwrap().burst(n);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
                true
            }
            Moment::InFlight => {
                aimed += 1;
                *aimed_at.entry(format!("InFlight {aim:?}")).or_default() += 1;
                let hold = Duration::from_millis(rng.gen_range(100..400));
                let pending = || match aim {
                    Which::ThreatJammer => api.pending_failures(),
                    Which::AbuseIpdb => ab.pending_failures(),
                    Which::CrowdSec => lapi.pending_failures(),
                };
                match aim {
                    Which::ThreatJammer => {
                        api.clear_failures();
                        api.push_failure(Failure::Delay(hold));
                    }
                    Which::AbuseIpdb => {
                        ab.clear_failures();
                        ab.push_failure(fab::Failure::Delay(hold));
                    }
                    Which::CrowdSec => {
                        lapi.clear_failures();
                        lapi.push_failure(fcs::Failure::Delay(hold));
                    }
                }
                *failures_pushed.entry(aim).or_default() += 1;
                // Consumed at the request's arrival: it is then being held.
                let deadline = Instant::now() + patience;
                while pending() > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let hit = pending() == 0;
                if hit {
                    std::thread::sleep(hold.mul_f64(rng.gen_range(0.0..0.9)));
                } else {
                    match aim {
                        Which::ThreatJammer => api.clear_failures(),
                        Which::AbuseIpdb => ab.clear_failures(),
                        Which::CrowdSec => lapi.clear_failures(),
                    }
                }
                hit
            }
            Moment::AfterAccept => {
                aimed += 1;
                *aimed_at.entry(format!("AfterAccept {aim:?}")).or_default() += 1;
                let deadline = Instant::now() + patience;
                let hit = match aim {
                    Which::ThreatJammer => {
                        while accepted_rx.try_recv().is_ok() {}
                        let mut hit = false;
                        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                            match accepted_rx.recv_timeout(left) {
                                Ok(a) if a.accepted && a.path == REPORT_PATH => {
                                    hit = true;
                                    break;
                                }
                                Ok(_) => continue,
                                Err(_) => break,
                            }
                        }
                        hit
                    }
                    Which::AbuseIpdb | Which::CrowdSec => {
                        let count = || match aim {
                            Which::AbuseIpdb => ab.report_count(),
                            _ => lapi.decision_count(),
                        };
                        let before = count();
                        while count() == before && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        count() > before
                    }
                };
                if hit {
                    std::thread::sleep(Duration::from_micros(rng.gen_range(0..5000)));
                }
                hit
            }
        };
        if let Some(status) = child.child.try_wait().unwrap() {
            let out = output_of(&mut child);
            runs_log.push_str(&format!("=== run {k}: exited by itself ({status})\n{out}"));
            std::fs::write(env.path("tjfwd-runs.log"), &runs_log).unwrap();
            stop.store(true, Ordering::Relaxed);
            let kept = env.dir.keep();
            panic!(
                "kill {k}: tjfwd exited by itself ({status}) before the kill (files kept in {}):\n{out}",
                kept.display()
            );
        }
        sigkill(&mut child);
        *done.entry(moment).or_default() += 1;
        if !hit {
            *missed.entry(moment).or_default() += 1;
        }
        let out = output_of(&mut child);
        runs_log.push_str(&format!(
            "=== run {k}: killed at {moment:?} (aim {aim:?}, hit: {hit}, crowdsec down: \
             {crowd_is_down}, abuseipdb out of quota: {quota_is_out})\n{out}"
        ));
        assert!(
            !out.contains("panicked"),
            "kill {k}: tjfwd panicked:\n{out}"
        );
        k += 1;
    }
    let kills = k;
    let kills_done = Instant::now();
    stop.store(true, Ordering::Relaxed);
    background.expect("the writer ran").join().unwrap();
    thief.join().unwrap();
    for r in revokers {
        r.join().unwrap();
    }

    // One clean run: read everything, send everything, exit 0.
    let drain_started = Instant::now();
    let mut child = spawn(&mut run(&["--drain"]));
    let status = wait_with_limit(&mut child, Duration::from_secs(240));
    let out = output_of(&mut child);
    runs_log.push_str(&format!("=== final --drain run\n{out}"));
    if status.map(|s| s.code()) != Some(Some(0)) {
        std::fs::write(env.path("tjfwd-runs.log"), &runs_log).unwrap();
        let kept = env.dir.keep();
        panic!(
            "the final --drain run failed (files kept in {}):\n{out}",
            kept.display()
        );
    }
    assert!(
        out.contains(WINDOW_ENV) && out.contains(DAY_ENV) && out.contains("WARN"),
        "the test-only window and day are not announced:\n{out}"
    );
    let drain_time = drain_started.elapsed();

    // ---- the oracle, per target, from each fake's own records.
    let w = writer.lock().unwrap();
    let json_map = |m: BTreeMap<String, usize>| {
        m.into_iter()
            .map(|(k, v)| (k, serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    let statuses = |s: &mut dyn Iterator<Item = u16>| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for st in s {
            *m.entry(st.to_string()).or_default() += 1;
        }
        json_map(m)
    };
    let parse = |a: &str| -> IpAddr { a.parse().expect("the fake took a valid address") };
    let mut problems: Vec<String> = Vec::new();
    let mut check_set = |name: &str, delivered: &[IpAddr]| {
        let set: BTreeSet<IpAddr> = delivered.iter().copied().collect();
        let missing: Vec<&IpAddr> = w.written.difference(&set).collect();
        let invented: Vec<&IpAddr> = set.difference(&w.written).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{name}: {} of {} written addresses never delivered, e.g. {:?}",
                missing.len(),
                w.written.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        if !invented.is_empty() {
            problems.push(format!(
                "{name}: {} delivered addresses never written in a login event, e.g. {:?}",
                invented.len(),
                &invented[..invented.len().min(10)]
            ));
        }
        serde_json::json!({
            "addresses_delivered_total": delivered.len(),
            "addresses_delivered_unique": set.len(),
            "duplicates_delivered": delivered.len() - set.len(),
            "missing": missing.len(),
            "invented": invented.len(),
        })
    };

    // Threat Jammer.
    let tj_records = api.requests();
    let tj_delivered: Vec<IpAddr> = api
        .accepted_batches()
        .iter()
        .flatten()
        .map(|a| parse(a))
        .collect();
    let mut tj_fig = check_set("Threat Jammer", &tj_delivered);
    let (tj_max_window, _) = max_in_window(&tj_records, WINDOW);
    let tj_largest = tj_records
        .iter()
        .map(|r| r.addresses.len())
        .max()
        .unwrap_or(0);
    let tj_invalid: Vec<(u16, String)> = tj_records
        .iter()
        .filter(|r| (400..500).contains(&r.status) && r.status != 429)
        .map(|r| (r.status, r.body.chars().take(200).collect()))
        .collect();
    let tj_ok: Vec<Instant> = tj_records
        .iter()
        .filter(|r| r.accepted && r.path == REPORT_PATH)
        .map(|r| r.at)
        .collect();

    // AbuseIPDB.
    let ab_records = ab.requests();
    let ab_reports = ab.reports();
    let ab_delivered: Vec<IpAddr> = ab_reports.iter().map(|r| parse(&r.ip)).collect();
    let mut ab_fig = check_set("AbuseIPDB", &ab_delivered);
    let (ab_max_rolling, _) = max_in_rolling(
        ab_records.iter().map(|r| r.instant).collect(),
        AB_DAY,
        AB_DAILY_LIMIT as usize,
    );
    let mut per_day: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &ab_records {
        *per_day
            .entry(r.at.div_euclid(AB_DAY.as_secs() as i64))
            .or_default() += 1;
    }
    let ab_max_day = per_day.values().copied().max().unwrap_or(0);
    let ab_csv_lines = ab_records
        .iter()
        .filter_map(|r| r.csv.as_deref())
        .map(|csv| fab::parse_csv(csv).map_or(usize::MAX, |rows| rows.len()))
        .max()
        .unwrap_or(0);
    let ab_quota_429 = ab_records
        .iter()
        .filter(|r| r.status == 429 && r.remaining == Some(0) && r.retry_after.is_some())
        .count();
    let ab_invalid: Vec<(u16, String)> = ab_records
        .iter()
        .filter(|r| (400..500).contains(&r.status) && r.status != 429)
        .map(|r| (r.status, r.answer.chars().take(200).collect()))
        .collect();
    let ab_bad_rows: Vec<_> = ab_records
        .iter()
        .flat_map(|r| r.invalid.iter())
        .filter(|i| i.error != "Duplicate IP")
        .take(10)
        .cloned()
        .collect();
    let ab_duplicate_rows = ab_records
        .iter()
        .flat_map(|r| r.invalid.iter())
        .filter(|i| i.error == "Duplicate IP")
        .count();
    let ab_wrong_path = ab_records.iter().filter(|r| r.path != BULK_PATH).count();
    let ab_ok: Vec<Instant> = ab_records
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.instant)
        .collect();

    // CrowdSec.
    let cs_records = lapi.requests();
    let cs_decisions = lapi.decisions();
    let cs_delivered: Vec<IpAddr> = cs_decisions.iter().map(|d| parse(&d.value)).collect();
    let mut cs_fig = check_set("CrowdSec", &cs_delivered);
    let cs_largest_alert = cs_records
        .iter()
        .filter(|r| r.path == ALERTS_PATH)
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .map(|a| a["decisions"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let cs_not_ban_ip = cs_decisions
        .iter()
        .filter(|d| d.kind != "ban" || d.scope != "Ip")
        .count();
    let cs_invalid: Vec<(u16, String)> = cs_records
        .iter()
        .filter(|r| {
            matches!(r.status, 400 | 403 | 404 | 405 | 422)
                || (r.status == 500
                    && (r.answer.contains("validation failure")
                        || r.answer.contains("unable to create alerts")))
        })
        .map(|r| (r.status, r.answer.chars().take(200).collect()))
        .collect();
    let cs_ok: Vec<Instant> = cs_records
        .iter()
        .filter(|r| r.path == ALERTS_PATH && r.status == 201)
        .map(|r| r.instant)
        .collect();

    // While one was down or out of quota, the others kept delivering.
    let (tj_gap_crowd_down, tj_n_crowd_down) = longest_gap(&tj_ok, crowd_down.0, crowd_down.1);
    let (tj_gap_quota_out, tj_n_quota_out) = longest_gap(&tj_ok, quota_out.0, quota_out.1);
    let (ab_gap_crowd_down, ab_n_crowd_down) = longest_gap(&ab_ok, crowd_down.0, quota_out.0);
    let (cs_gap_quota_out, cs_n_quota_out) = longest_gap(&cs_ok, crowd_down.1, quota_out.1);
    let (_, cs_n_down) = longest_gap(&cs_ok, crowd_down.0, crowd_down.1);
    let (_, ab_n_out) = longest_gap(&ab_ok, quota_out.0, quota_out.1);

    let moments = |m: &BTreeMap<Moment, usize>| {
        m.iter()
            .map(|(k, v)| (format!("{k:?}"), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    tj_fig["requests"] = serde_json::json!(tj_records.len());
    tj_fig["requests_by_status"] =
        serde_json::json!(statuses(&mut tj_records.iter().map(|r| r.status)));
    tj_fig["accepted_requests"] = serde_json::json!(tj_ok.len());
    tj_fig["largest_batch"] = serde_json::json!(tj_largest);
    tj_fig["rate_window_ms"] = serde_json::json!(WINDOW.as_millis() as u64);
    tj_fig["max_requests_in_any_window"] = serde_json::json!(tj_max_window);
    tj_fig["while_crowdsec_down"] = serde_json::json!({
        "accepted_requests": tj_n_crowd_down, "longest_gap_ms": ms(tj_gap_crowd_down) });
    // Threat Jammer's requests that arrived within 20 ms of one of
    // AbuseIPDB's: a sign that one target's work held the other's up.
    let together = tj_records
        .iter()
        .filter(|r| {
            ab_records.iter().any(|a| {
                a.instant.max(r.at).duration_since(a.instant.min(r.at)) < Duration::from_millis(20)
            })
        })
        .count();
    tj_fig["requests_within_20ms_of_an_abuseipdb_request"] = serde_json::json!(together);
    tj_fig["while_abuseipdb_out_of_quota"] = serde_json::json!({
        "accepted_requests": tj_n_quota_out, "longest_gap_ms": ms(tj_gap_quota_out) });
    ab_fig["requests"] = serde_json::json!(ab_records.len());
    ab_fig["requests_by_status"] =
        serde_json::json!(statuses(&mut ab_records.iter().map(|r| r.status)));
    ab_fig["accepted_requests"] = serde_json::json!(ab_ok.len());
    ab_fig["quota_429s"] = serde_json::json!(ab_quota_429);
    ab_fig["quota_spent_by_the_other_client"] = serde_json::json!(spent.load(Ordering::Relaxed));
    ab_fig["duplicate_ip_rows"] = serde_json::json!(ab_duplicate_rows);
    ab_fig["largest_csv_lines"] = serde_json::json!(ab_csv_lines);
    ab_fig["day_s"] = serde_json::json!(AB_DAY.as_secs());
    ab_fig["daily_limit"] = serde_json::json!(AB_DAILY_LIMIT);
    ab_fig["max_requests_in_any_rolling_day"] = serde_json::json!(ab_max_rolling);
    ab_fig["max_requests_in_a_day_of_the_fake"] = serde_json::json!(ab_max_day);
    ab_fig["accepted_while_out_of_quota"] = serde_json::json!(ab_n_out);
    ab_fig["while_crowdsec_down_before_its_quota_went"] = serde_json::json!({
        "accepted_requests": ab_n_crowd_down, "longest_gap_ms": ms(ab_gap_crowd_down) });
    cs_fig["requests"] = serde_json::json!(cs_records.len());
    cs_fig["requests_by_status"] =
        serde_json::json!(statuses(&mut cs_records.iter().map(|r| r.status)));
    cs_fig["logins"] = serde_json::json!(lapi.logins());
    cs_fig["refused_tokens_401"] =
        serde_json::json!(cs_records.iter().filter(|r| r.status == 401).count());
    cs_fig["alerts_accepted"] = serde_json::json!(cs_ok.len());
    cs_fig["largest_alert_decisions"] = serde_json::json!(cs_largest_alert);
    cs_fig["accepted_while_down"] = serde_json::json!(cs_n_down);
    cs_fig["while_abuseipdb_out_of_quota_after_coming_back"] = serde_json::json!({
        "accepted_requests": cs_n_quota_out, "longest_gap_ms": ms(cs_gap_quota_out) });
    let figures = serde_json::json!({
        "seed": seed,
        "kills": kills,
        "kills_by_moment": moments(&done),
        "kills_that_missed_their_moment": moments(&missed),
        "aimed_kills": json_map(aimed_at),
        "failures_scripted": failures_pushed.iter().map(|(k, v)| (format!("{k:?}"), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "crowdsec_down_s": [secs_since(started, crowd_down.0), secs_since(started, crowd_down.1)],
        "abuseipdb_out_of_quota_s": [secs_since(started, quota_out.0), secs_since(started, quota_out.1)],
        "kills_done_s": secs_since(started, kills_done),
        "lines_written": w.lines,
        "bytes_written": w.bytes,
        "rotations": w.rotations,
        "partial_writes": w.partial_writes,
        "addresses_written": w.written.len(),
        "decoy_addresses": w.decoy_set.len(),
        "threatjammer": tj_fig,
        "abuseipdb": ab_fig,
        "crowdsec": cs_fig,
        "final_drain_s": drain_time.as_secs_f64(),
        "run_time_s": started.elapsed().as_secs_f64(),
    });
    let text = serde_json::to_string_pretty(&figures).unwrap();
    eprintln!("chaos figures, three targets:\n{text}");
    let _ = std::fs::write(
        figures_path().with_file_name("chaos-figures-three-targets.json"),
        format!("{text}\n"),
    );
    // Every request's arrival (s from the start) and answer, per target,
    // for a closer look: target/chaos-timeline-three-targets.json.
    let round = |t: Instant| (secs_since(started, t) * 1000.0).round() / 1000.0;
    let timeline = serde_json::json!({
        "crowdsec_down_s": figures["crowdsec_down_s"],
        "abuseipdb_out_of_quota_s": figures["abuseipdb_out_of_quota_s"],
        "kills_done_s": figures["kills_done_s"],
        "drain_started_s": round(drain_started),
        "threatjammer": tj_records.iter().map(|r| (round(r.at), r.status, r.addresses.len())).collect::<Vec<_>>(),
        "abuseipdb": ab_records.iter().map(|r| (round(r.instant), r.status, r.saved)).collect::<Vec<_>>(),
        "crowdsec": cs_records.iter().map(|r| (round(r.instant), r.status, r.path.clone())).collect::<Vec<_>>(),
    });
    let _ = std::fs::write(
        figures_path().with_file_name("chaos-timeline-three-targets.json"),
        format!("{timeline}\n"),
    );

    // Limits.
    if tj_max_window > MAX_PER_WINDOW {
        problems.push(format!(
            "Threat Jammer: {tj_max_window} requests within one {WINDOW:?} window (limit {MAX_PER_WINDOW})"
        ));
    }
    if tj_largest > 1000 {
        problems.push(format!("Threat Jammer: a batch of {tj_largest} addresses"));
    }
    if ab_max_rolling > AB_DAILY_LIMIT as usize || ab_max_day > AB_DAILY_LIMIT as usize {
        problems.push(format!(
            "AbuseIPDB: {ab_max_rolling} requests in a rolling {AB_DAY:?} day, {ab_max_day} in \
             one day of the fake (daily_limit {AB_DAILY_LIMIT})"
        ));
    }
    if ab_csv_lines > MAX_CSV_LINES {
        problems.push(format!("AbuseIPDB: a CSV of {ab_csv_lines} lines"));
    }
    if cs_largest_alert > 1000 {
        problems.push(format!(
            "CrowdSec: an alert of {cs_largest_alert} decisions"
        ));
    }
    // Nothing refused as invalid.
    for (name, invalid) in [
        ("Threat Jammer", &tj_invalid),
        ("AbuseIPDB", &ab_invalid),
        ("CrowdSec", &cs_invalid),
    ] {
        if !invalid.is_empty() {
            problems.push(format!("{name} refused requests as invalid: {invalid:?}"));
        }
    }
    if !ab_bad_rows.is_empty() || ab_wrong_path > 0 {
        problems.push(format!(
            "AbuseIPDB refused rows: {ab_bad_rows:?}; {ab_wrong_path} requests not to {BULK_PATH}"
        ));
    }
    if cs_not_ban_ip > 0 {
        problems.push(format!(
            "CrowdSec: {cs_not_ban_ip} decisions not a ban of scope Ip"
        ));
    }
    // The others kept delivering.
    for (what, gap, n) in [
        (
            "Threat Jammer while CrowdSec was down",
            tj_gap_crowd_down,
            tj_n_crowd_down,
        ),
        (
            "Threat Jammer while AbuseIPDB was out of quota",
            tj_gap_quota_out,
            tj_n_quota_out,
        ),
        (
            "CrowdSec, back, while AbuseIPDB was out of quota",
            cs_gap_quota_out,
            cs_n_quota_out,
        ),
    ] {
        if gap > STALL || n == 0 {
            problems.push(format!(
                "{what}: {n} deliveries, {gap:?} without one (at most {STALL:?})"
            ));
        }
    }
    if ab_n_crowd_down == 0 {
        problems.push("AbuseIPDB delivered nothing while CrowdSec was down".into());
    }
    if !problems.is_empty() {
        std::fs::write(env.path("tjfwd-runs.log"), &runs_log).unwrap();
        let kept = env.dir.keep();
        panic!(
            "(seed {seed}; files kept in {})\n{}",
            kept.display(),
            problems.join("\n")
        );
    }

    // The run did exercise what it claims to.
    assert!(w.rotations > 0, "no rotation happened");
    for m in Moment::ALL {
        let n = done.get(&m).copied().unwrap_or(0);
        let miss = missed.get(&m).copied().unwrap_or(0);
        assert!(
            n >= kills / 8 && miss * 2 <= n,
            "{m:?}: {n} kills, {miss} missed"
        );
    }
    assert!(
        ab_quota_429 > 0,
        "AbuseIPDB never answered its quota's 429: {}",
        figures["abuseipdb"]["requests_by_status"]
    );
    assert_eq!(
        ab_max_rolling, AB_DAILY_LIMIT as usize,
        "tjfwd never used its whole daily limit: the limit was not exercised"
    );
    assert_eq!(cs_n_down, 0, "CrowdSec took alerts while down");
    assert!(
        cs_records.iter().any(|r| r.status == 503) && cs_records.iter().any(|r| r.dropped),
        "CrowdSec's outage (503, then dropped connections) was not seen: {}",
        figures["crowdsec"]["requests_by_status"]
    );
}
