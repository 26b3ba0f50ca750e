//! The log output of the real binary: `--log-format json`, journald
//! priority prefixes when stderr is the journal (`JOURNAL_STREAM`),
//! `--log-level` over `RUST_LOG`, and a closed stderr that must not stop
//! the daemon.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sample_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample/tjfwd.toml")
}

/// `tjfwd ARGS... run --dry-run --drain` on the bundled sample, stderr to a
/// file; returns that file's text.
fn drain_sample(args: &[&str], env: &[(&str, &str)], journal_stream_of_stderr: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tjfwd"));
    cmd.args(args)
        .arg("run")
        .arg("--config")
        .arg(sample_config())
        .args(["--dry-run", "--drain", "--state-dir"])
        .arg(dir.path().join("state"))
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("TJFWD_LOG_FORMAT")
        .env_remove("TJFWD_LOG_LEVEL")
        .stdout(Stdio::null());
    if journal_stream_of_stderr {
        let m = err.metadata().unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.stderr(err).status().unwrap();
    let text = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{status}: {text}");
    text
}

#[test]
fn json_format_writes_one_object_a_line() {
    let out = drain_sample(&["--log-format", "json"], &[], false);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{out}");
    for l in &lines {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(l["level"].is_string(), "{l}");
        assert!(l["message"].is_string(), "{l}");
    }
    let started = lines
        .iter()
        .find(|l| l["message"] == "started")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(started["dry_run"], true);
    // The bad line of the sample is reported with its reason as a field.
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["reason"] == "not_json"),
        "{out}"
    );
    // The same through the environment (for containers).
    let out = drain_sample(&[], &[("TJFWD_LOG_FORMAT", "json")], false);
    assert!(out.lines().all(|l| l.starts_with('{')), "{out}");
}

#[test]
fn under_journald_lines_carry_priorities_and_no_timestamps() {
    let out = drain_sample(&[], &[], true);
    for line in out.lines() {
        let prio = &line[..3];
        assert!(["<3>", "<4>", "<6>", "<7>"].contains(&prio), "{line}");
        assert!(
            line[3..].starts_with(" INFO ")
                || line[3..].starts_with(" WARN ")
                || line[3..].starts_with("ERROR ")
                || line[3..].starts_with("DEBUG "),
            "a timestamp or no level: {line}"
        );
    }
    assert!(out.contains("<6> INFO tjfwd::daemon: started"), "{out}");
    assert!(out.contains("<4> WARN"), "{out}");
    assert!(!out.contains('\x1b'), "{out}");

    // JOURNAL_STREAM naming another stream (inherited by a child whose
    // stderr was redirected): ordinary lines.
    let out = drain_sample(&[], &[("JOURNAL_STREAM", "1:1")], false);
    assert!(!out.starts_with('<'), "{out}");
    assert!(
        out.lines().all(|l| l.starts_with(char::is_numeric)),
        "{out}"
    );
}

#[test]
fn log_level_wins_over_rust_log_and_quiet() {
    let out = drain_sample(&[], &[("RUST_LOG", "error")], false);
    assert!(!out.contains("started"), "{out}");
    let out = drain_sample(
        &["--log-level", "info", "-q"],
        &[("RUST_LOG", "error")],
        false,
    );
    assert!(out.contains("started"), "{out}");
    let out = drain_sample(&["-q"], &[], false);
    assert!(!out.contains("started") && out.contains("WARN"), "{out}");
    let out = drain_sample(&["--log-level", "tjfwd::source=debug"], &[], false);
    assert!(!out.is_empty(), "{out}");
    assert!(out.lines().all(|l| l.contains("tjfwd::source")), "{out}");
    let out = drain_sample(&[], &[("TJFWD_LOG_LEVEL", "warn")], false);
    assert!(!out.contains("started"), "{out}");
}

#[test]
fn a_bad_log_level_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tjfwd"))
        .args(["--log-level", "tjfwd=loud", "check-config", "--config"])
        .arg(sample_config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-level"), "{err}");
    assert!(err.contains("tjfwd=debug,sled=info"), "{err}");
}

/// Regression: a write to a closed stderr made tracing report the failure
/// with eprintln!, which panicked in the logging thread (the ingest
/// thread), and `--drain` then waited for it forever.
#[test]
fn a_closed_stderr_does_not_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tjfwd"))
        .arg("run")
        .arg("--config")
        .arg(sample_config())
        .args(["--dry-run", "--drain", "-v", "--state-dir"])
        .arg(dir.path().join("state"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take()); // the reader goes away
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tjfwd --drain did not finish with a closed stderr");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
