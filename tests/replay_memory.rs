//! `tjfwd replay` streams: memory does not grow with the size of the log.
//! A log of ~192 MiB is piped through standard input; the child's peak RSS
//! must stay well below it (it is sled's cache and buffers, ~60-100 MiB in a
//! debug build, whatever the log size). (A multi-GB
//! replay is measured in the README's benchmarks; this is its regression
//! test, sized for CI.) Alone in its test binary: the peak RSS of waited-for
//! children is per process.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::bin::{bin, Env};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};

#[test]
fn replay_memory_is_bounded_whatever_the_log_size() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "flush_interval = \"1h\"");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("cowrie_json = \"cowrie.json\"\n", "")
        .replace("flush_interval = \"100ms\"\n", "")
        + "\n[storage]\ncache_capacity = \"8MiB\"\n";
    std::fs::write(&cfg, text).unwrap();
    // Create the database (as `tjfwd run` would) without running a daemon.
    let o = bin()
        .args(["run", "--drain", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let addrs = cowrie::public_addresses(20_000);
    let mut child = bin()
        .args(["replay", "--no-progress-bar", "--config"])
        .arg(&cfg)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // ~100 MiB: each line carries an attacker's long password.
        let pad = "p".repeat(500);
        let mut written = 0usize;
        let mut i = 0u64;
        let mut buf = String::new();
        while written < 192 << 20 {
            buf.clear();
            for _ in 0..1000 {
                let a = &addrs[(i % addrs.len() as u64) as usize];
                buf.push_str(&cowrie::event(
                    "cowrie.login.failed",
                    a,
                    &format!(r#""username":"root","password":"{pad}""#),
                    i,
                ));
                buf.push('\n');
                i += 1;
            }
            written += buf.len();
            stdin.write_all(buf.as_bytes()).unwrap();
        }
        written
    });
    let status = child.wait().unwrap();
    let written = writer.join().unwrap();
    assert!(status.success());
    let peak_kib = children_peak_rss_kib();
    eprintln!(
        "replayed {} MiB: peak RSS {} MiB",
        written >> 20,
        peak_kib >> 10
    );
    assert!(peak_kib < 128 << 10, "peak RSS {peak_kib} KiB");
}

/// The peak RSS of the waited-for children, in KiB (getrusage).
// getrusage(2) has no safe binding here (rustix has none).
#[allow(unsafe_code)]
fn children_peak_rss_kib() -> usize {
    // SAFETY: getrusage writes a `rusage` (plain integers, zeroed first)
    // through a valid pointer to it, and nothing else.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss as usize
    }
}
