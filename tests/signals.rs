//! Signals and limits, with the real `tjfwd` binary: SIGTERM stops the
//! daemon within seconds whatever the input does (a line of gigabytes
//! without a newline included); SIGHUP reloads the configuration and the
//! token file, and no other signal an operator may send ends it; what
//! clients of the control socket can make the daemon hold is bounded, and
//! the operator's commands are still answered while they try.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::bin::{bin, output_of, sigterm, spawn, wait_with_limit, Env, Running};
use support::cowrie;
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

fn signal(d: &Running, sig: rustix::process::Signal) {
    use rustix::process::{kill_process, Pid};
    kill_process(Pid::from_child(&d.child), sig).unwrap();
}

fn write_logins(path: &Path, addrs: &[String]) {
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(path, &lines);
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

/// `tjfwd ARGS... --config CFG` to completion.
fn command(cfg: &Path, args: &[&str]) -> Output {
    bin().args(args).arg("--config").arg(cfg).output().unwrap()
}

/// Starts `tjfwd run` and waits until its control socket answers.
fn daemon(env: &Env, cfg: &Path) -> Running {
    let mut d = spawn(bin().args(["run", "--config"]).arg(cfg));
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(control_socket(env)).is_err() {
        assert!(Instant::now() < deadline, "{}", output_of(&mut d));
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn control_socket(env: &Env) -> PathBuf {
    env.path("state/control.sock")
}

/// A line of /proc/PID/status, in bytes (`VmHWM`: the peak resident size).
fn proc_status_bytes(d: &Running, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Ten clients of the control socket each send 63 MiB without a newline
/// (they took the daemon to 654 MB): each is answered that its request is
/// too large and closed after 1 MiB, the daemon's peak memory stays within
/// a bound far below what they sent, and `tjfwd status` is answered while
/// they are connected.
#[test]
fn control_requests_too_large_are_refused_without_being_held() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let mut d = daemon(&env, &cfg);
    assert!(command(&cfg, &["status", "--json"]).status.code() != Some(2));
    let before = proc_status_bytes(&d, "VmHWM:");

    let sent_each: usize = 63 << 20;
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let path = control_socket(&env);
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(path).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let piece = vec![b'x'; 1 << 20];
                let mut sent = 0;
                while sent < sent_each {
                    match s.write(&piece) {
                        Ok(n) => sent += n,
                        Err(_) => break, // closed by the daemon
                    }
                }
                let mut answer = String::new();
                let _ = BufReader::new(&s).read_line(&mut answer);
                (s, sent, answer)
            })
        })
        .collect();
    let clients: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    // Still connected (the daemon closed their connections, they did not):
    // the operator is answered.
    let o = command(&cfg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["daemon_running"], true, "{v:#}");
    let grown = proc_status_bytes(&d, "VmHWM:").saturating_sub(before);
    for (_, sent, answer) in &clients {
        assert!(
            answer.contains("request too large: a request is at most 1 MiB"),
            "{answer:?} after {sent} bytes"
        );
        assert!(*sent < sent_each, "the daemon read all of it");
    }
    // Ten requests of at most 1 MiB each, read through a buffer that may
    // double: far below the 630 MiB they sent.
    assert!(
        grown < 100 << 20,
        "the daemon's peak memory grew by {} MiB",
        grown >> 20
    );
    drop(clients);
    sigterm(&d);
    assert!(wait_with_limit(&mut d, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let log = output_of(&mut d);
    assert!(log.contains("a request too large was refused"), "{log}");
}

/// More clients than the daemon serves at once: the one over the limit is
/// answered that the daemon is busy (and logged), at once; once they are
/// gone, commands are answered again.
#[test]
fn control_connections_over_the_limit_are_refused_with_a_clear_answer() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let mut d = daemon(&env, &cfg);
    // Connected, sending nothing: each holds a connection of the daemon,
    // until one more is answered that it is busy.
    let mut idle: Vec<UnixStream> = Vec::new();
    loop {
        assert!(idle.len() < 100, "no connection was ever refused");
        let s = UnixStream::connect(control_socket(&env)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut answer = String::new();
        match BufReader::new(&s).read_line(&mut answer) {
            Ok(_) if answer.contains("the daemon is busy") => break,
            Ok(n) => panic!("unexpected answer ({n} bytes): {answer:?}"),
            Err(_) => idle.push(s), // no answer: it holds a connection
        }
    }
    assert!(idle.len() >= 16, "{} connections held", idle.len());
    // The operator's command is told so, at once.
    let o = command(&cfg, &["status"]);
    let refused = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        refused.contains("the daemon is busy"),
        "{}",
        support::bin::text(&o)
    );
    assert!(
        refused.contains("16 control connections are open"),
        "{refused}"
    );
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = command(&cfg, &["status", "--json"]);
        if o.status.code() != Some(2) && o.stdout.starts_with(b"{") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", support::bin::text(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&d);
    assert!(wait_with_limit(&mut d, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let log = output_of(&mut d);
    assert!(log.contains("too many control connections"), "{log}");
}

/// The operator's signals, on a running daemon:
///
/// - SIGUSR1 and SIGUSR2 are logged and ignored (they used to kill it: exit
///   138, no flush, a stale control socket);
/// - SIGHUP reads the configuration and the token file again: a rotated
///   token is used at once (sending paused by the refused one resumes, the
///   pause would last a minute), a changed key that needs a restart is
///   named in the log; a configuration that does not load is logged and
///   changes nothing (it used to kill it: exit 129);
/// - SIGTERM then stops it in order.
#[test]
fn sighup_reloads_the_token_and_other_signals_do_not_kill_the_daemon() {
    use rustix::process::Signal;
    let env = Env::new();
    let api = FakeApi::start(FakeConfig {
        max_requests_per_window: 1000,
        ..FakeConfig::default()
    });
    let cfg = env.config(&api, "max_requests_per_minute = 1000");
    // A refused token pauses sending for min(1 min, max_backoff).
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_backoff = \"500ms\"", "max_backoff = \"60s\"");
    std::fs::write(&cfg, &text).unwrap();
    let addrs = cowrie::public_addresses(30);
    write_logins(&env.log(), &addrs[..10]);
    let mut d = daemon(&env, &cfg);
    assert!(
        api.wait_for_accepted(10, Duration::from_secs(20)),
        "{}",
        output_of(&mut d)
    );

    for sig in [Signal::USR1, Signal::USR2] {
        signal(&d, sig);
    }
    wait_for_log(&mut d, "SIGUSR2 received: ignored", Duration::from_secs(10));
    wait_for_log(&mut d, "SIGUSR1 received: ignored", Duration::from_secs(10));

    // The token is rotated: the old one is refused and sending pauses.
    let token = "rotated-token-0123456789";
    api.set_token(token);
    let before = api.request_count();
    write_logins(&env.log(), &addrs[10..20]);
    assert!(api.wait_for_requests(before + 1, Duration::from_secs(10)));
    assert_eq!(api.accepted_unique().len(), 10);
    // The operator writes the new token, changes a key that needs a
    // restart, and sends SIGHUP.
    std::fs::write(env.path("token"), format!("{token}\n")).unwrap();
    std::fs::write(
        &cfg,
        text.replace("poll_interval = \"20ms\"", "poll_interval = \"30ms\""),
    )
    .unwrap();
    let t = Instant::now();
    signal(&d, Signal::HUP);
    assert!(
        api.wait_for_accepted(20, Duration::from_secs(10)),
        "the new token was not used:\n{}",
        output_of(&mut d)
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let log = wait_for_log(&mut d, "configuration reloaded", Duration::from_secs(5));
    assert!(
        log.contains("[input] poll_interval changed in the configuration: it takes effect at the next restart"),
        "{log}"
    );
    assert!(
        log.contains("applied=[targets.threatjammer] bearer_token"),
        "{log}"
    );

    // A configuration that does not load: logged, nothing changes.
    std::fs::write(&cfg, format!("{text}\n[queue]\nmax_pending = 1\n")).unwrap();
    signal(&d, Signal::HUP);
    wait_for_log(
        &mut d,
        "the configuration was not reloaded",
        Duration::from_secs(10),
    );
    write_logins(&env.log(), &addrs[20..]);
    assert!(
        api.wait_for_accepted(30, Duration::from_secs(10)),
        "{}",
        output_of(&mut d)
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "{}",
        output_of(&mut d)
    );

    sigterm(&d);
    let status = wait_with_limit(&mut d, Duration::from_secs(10));
    let out = output_of(&mut d);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    assert!(out.contains("stopped; queue flushed to disk"), "{out}");
    assert!(!control_socket(&env).exists(), "a stale control socket");
}
