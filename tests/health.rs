//! Health tells the truth about the input, with the real binary: what
//! cannot be tailed is refused at start, what cannot be read makes `status`
//! degraded with the reason (never blocking it), until it reads again.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::bin::{bin, sigterm, spawn, text, wait_with_limit, Env};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};

/// Runs a command to completion; a command still running after 20 s fails
/// the test (a status blocked on a FIFO would hang it).
fn run(cfg: &Path, args: &[&str]) -> Output {
    let mut child = spawn(bin().args(args).arg("--config").arg(cfg));
    let status = wait_with_limit(&mut child, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{args:?} still running after 20 s"));
    let out = std::fs::read(child.out.path()).unwrap();
    Output {
        status,
        stdout: out,
        stderr: Vec::new(),
    }
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn what_cannot_be_tailed_is_refused_at_start_and_status_does_not_block_on_it() {
    for (what, make) in [
        ("a FIFO (named pipe)", mkfifo as fn(&Path)),
        ("a directory", |p: &Path| std::fs::create_dir(p).unwrap()),
    ] {
        let env = Env::new();
        let api = FakeApi::start(FakeConfig::default());
        let cfg = env.config(&api, "");
        make(&env.log());
        let o = run(&cfg, &["run", "--drain"]);
        assert!(!o.status.success(), "{what}: {}", text(&o));
        let out = text(&o);
        assert!(
            out.contains(&format!("it is {what}")) && out.contains("listen_tcp"),
            "{what}: {out}"
        );
        // status, without a daemon (exit 2), looks at it without opening
        // a FIFO for good: it answers, degraded, with the reason.
        let started = Instant::now();
        let o = run(&cfg, &["status"]);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        assert!(
            text(&o).contains("the input cannot be read") && text(&o).contains(what),
            "{what}: {}",
            text(&o)
        );
    }
}

#[test]
fn an_input_that_cannot_be_read_makes_the_daemon_degraded_until_it_reads_again() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    // A symlink loop (root reads through any permission, so not a mode).
    let log = env.log();
    let other = env.path("loop");
    std::os::unix::fs::symlink(&other, &log).unwrap();
    std::os::unix::fs::symlink(&log, &other).unwrap();
    // The same configuration with another state directory, for a drain
    // beside the daemon.
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        cfg.with_file_name("drain.toml"),
        text_cfg.replace("state_dir = \"state\"", "state_dir = \"state2\""),
    )
    .unwrap();
    support::bin::set_mode(&cfg.with_file_name("drain.toml"), 0o600);
    let mut daemon = spawn(bin().args(["run", "--config"]).arg(&cfg));
    let deadline = Instant::now() + Duration::from_secs(30);
    let degraded = loop {
        let o = run(&cfg, &["status"]);
        if o.status.code() == Some(1) && text(&o).contains("the input cannot be read") {
            break text(&o);
        }
        assert!(Instant::now() < deadline, "never degraded: {}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        degraded.contains("symbolic links") || degraded.contains("os error 40"),
        "{degraded}"
    );
    // run --drain on it ends (after a few retries), and says why it failed.
    let o = run(&cfg.with_file_name("drain.toml"), &["run", "--drain"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("could not be read to its end"),
        "{}",
        text(&o)
    );
    // Fixed: a real file; it is read, sent, and health is back.
    std::fs::remove_file(&log).unwrap();
    let addrs = cowrie::public_addresses(5);
    let lines: Vec<String> = addrs.iter().map(|a| cowrie::login_failed(a, 0)).collect();
    cowrie::append(&log, &lines);
    assert!(api.wait_for_accepted(5, Duration::from_secs(30)));
    let o = run(&cfg, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    sigterm(&daemon);
    assert!(wait_with_limit(&mut daemon, Duration::from_secs(10)).is_some());
}

#[test]
fn a_fifo_put_in_place_of_the_input_while_running_blocks_nothing() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let addrs = cowrie::public_addresses(3);
    let lines: Vec<String> = addrs.iter().map(|a| cowrie::login_failed(a, 0)).collect();
    cowrie::append(&env.log(), &lines);
    let mut daemon = spawn(bin().args(["run", "--config"]).arg(&cfg));
    assert!(api.wait_for_accepted(3, Duration::from_secs(30)));
    std::fs::remove_file(env.log()).unwrap();
    mkfifo(&env.log());
    // Each status answers (none leaves a daemon thread blocked on the
    // FIFO), degraded once the input has looked at it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = run(&cfg, &["status"]);
        if o.status.code() == Some(1) && text(&o).contains("FIFO") {
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..5 {
        assert_eq!(run(&cfg, &["status"]).status.code(), Some(1));
    }
    sigterm(&daemon);
    assert!(wait_with_limit(&mut daemon, Duration::from_secs(10)).is_some());
}
