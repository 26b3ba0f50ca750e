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
        }
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
        if self.rng.gen_ratio(1, 12) && self.log.exists() {
            // Cowrie: the first event after midnight renames the live file
            // to cowrie.json.YYYY-MM-DD and opens a new one.
            self.rotations += 1;
            let rotated = format!("cowrie.json.{}", cowrie::date_at(self.ts_ms));
            std::fs::rename(&self.log, self.dir.join(rotated)).unwrap();
            self.ts_ms = (self.ts_ms / 86_400_000 + 1) * 86_400_000;
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
    let mut times: Vec<Instant> = records.iter().map(|r| r.at).collect();
    times.sort();
    let (mut best, mut full, mut start) = (0, 0, 0);
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        let n = end - start + 1;
        best = best.max(n);
        if n >= MAX_PER_WINDOW {
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
