//! Signals and limits, with the real `tjfwd` binary: SIGTERM stops the
//! daemon within seconds whatever the input does (a line of gigabytes
//! without a newline included).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::bin::{bin, output_of, sigterm, spawn, wait_with_limit, Env, Running};
use support::fake_api::{FakeApi, FakeConfig};

/// Waits until the daemon's output contains `needle`, at most `limit`.
fn wait_for_log(d: &mut Running, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = output_of(d);
        if out.contains(needle) {
            return out;
        }
        if let Some(status) = d.child.try_wait().unwrap() {
            panic!("tjfwd exited ({status}) before logging {needle:?}:\n{out}");
        }
        assert!(
            Instant::now() < deadline,
            "tjfwd never logged {needle:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sparse file of `size` bytes (zeros, no newline) after `head`.
fn sparse_log(path: &Path, head: &str, size: u64) {
    std::fs::write(path, head).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(size).unwrap();
}

/// The daemon reads a 64 GiB line (a sparse file without a newline: it
/// takes no disk space, and reading it takes much longer than the test);
/// SIGTERM still stops it at once, cleanly. (It used to read on to the
/// end of the line before looking at the stop request: the stop timed out
/// and the reading went on, a core busy.)
#[test]
fn sigterm_stops_the_daemon_while_it_skips_an_endless_line() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    sparse_log(
        &env.log(),
        &support::cowrie::login_failed("11.3.3.3", 0),
        64 << 30,
    );
    let mut d = spawn(bin().args(["run", "--dry-run", "--config"]).arg(&cfg));
    // The warning comes when the skipping begins.
    wait_for_log(&mut d, "reason=too_long", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    sigterm(&d);
    let status = wait_with_limit(&mut d, Duration::from_secs(15));
    let out = output_of(&mut d);
    let status = status.unwrap_or_else(|| panic!("did not stop:\n{out}"));
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{:?}\n{out}",
        t.elapsed()
    );
    assert!(out.contains("stopped; queue flushed to disk"), "{out}");
}
