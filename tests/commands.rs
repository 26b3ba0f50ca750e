//! The operator commands against the real binary, with a daemon running
//! (through its control socket) and without (the database opened directly):
//! they must behave the same either way.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::bin::{bin, output_of, sigterm, spawn, text, wait_with_limit, Env, Running};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};

/// Runs a command to completion (with stdin from `input`).
fn run(cfg: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = bin();
    cmd.args(args).arg("--config").arg(cfg);
    if input.is_none() {
        return cmd.stdin(Stdio::null()).output().unwrap();
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = input.unwrap().to_vec();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn status_json(cfg: &Path) -> (i32, serde_json::Value) {
    let o = run(cfg, &["status", "--json"], None);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (o.status.code().unwrap(), v)
}

/// A log of `n` distinct public addresses (each seen twice), plus noise.
fn write_log(path: &Path, addrs: &[String]) {
    let mut lines = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        lines.push(cowrie::connect(a, i as u64));
        lines.push(cowrie::login_failed(a, i as u64 * 1000));
        lines.push(cowrie::login_failed(a, i as u64 * 1000 + 1));
    }
    lines.push(cowrie::login_failed("10.0.0.1", 5));
    lines.push("garbage".into());
    cowrie::append(path, &lines);
}

/// A config without a file input (commands feed it), flush interval long so
/// only `flush` or a full batch sends.
fn config(env: &Env, api: &FakeApi, flush: &str) -> PathBuf {
    let cfg = env.config(api, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("cowrie_json = \"cowrie.json\"\n", "")
        .replace(
            "flush_interval = \"100ms\"",
            &format!("flush_interval = \"{flush}\""),
        );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn start_daemon(cfg: &Path) -> Running {
    let mut d = spawn(bin().args(["run", "--config"]).arg(cfg));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(cfg, &["status", "--json"], None);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["daemon_running"] == true {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            output_of(&mut d)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_daemon(mut d: Running) -> String {
    sigterm(&d);
    let s = wait_with_limit(&mut d, Duration::from_secs(10));
    let out = output_of(&mut d);
    assert_eq!(s.and_then(|s| s.code()), Some(0), "{out}");
    out
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn status_without_a_daemon_says_so_and_exits_2() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    // No database at all yet: a clear error.
    let o = run(&cfg, &["status"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has `tjfwd run` ever run"),
        "{}",
        text(&o)
    );
    // After a run: not running.
    let d = start_daemon(&cfg);
    stop_daemon(d);
    let o = run(&cfg, &["status"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not running"),
        "{}",
        text(&o)
    );
    let (code, v) = status_json(&cfg);
    assert_eq!(code, 2);
    assert_eq!(v["daemon_running"], false);
    assert_eq!(v["pending"], 0);
    assert!(v["counters"].is_null());
}

#[test]
fn replay_queues_once_with_and_without_a_daemon_and_the_daemon_sends() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let addrs = cowrie::public_addresses(120);
    let plain = env.path("old.json");
    write_log(&plain, &addrs[..60]);
    let gzipped = env.path("older.json.gz");
    let mut other = Vec::new();
    {
        let p = env.path("tmp.json");
        write_log(&p, &addrs[60..]);
        other = std::fs::read(&p).unwrap_or(other);
    }
    std::fs::write(&gzipped, gz(&other)).unwrap();
    // The database exists once a daemon has run.
    stop_daemon(start_daemon(&cfg));

    // Without a daemon: plain file and gzip from stdin.
    let o = run(&cfg, &["replay", plain.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("60 addresses newly queued"),
        "{}",
        text(&o)
    );
    let o = run(
        &cfg,
        &["replay", "-"],
        Some(&std::fs::read(&gzipped).unwrap()),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status_json(&cfg).1["pending"], 120);
    // Again: nothing new.
    let o = run(
        &cfg,
        &["replay", plain.to_str().unwrap(), gzipped.to_str().unwrap()],
        None,
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(" 0 addresses newly queued"),
        "{}",
        text(&o)
    );

    // With a daemon: the same through the socket; flush sends it all.
    let d = start_daemon(&cfg);
    let extra = env.path("extra.json");
    write_log(&extra, &cowrie::public_addresses(130)[120..]);
    let o = run(
        &cfg,
        &["replay", "--no-progress-bar", extra.to_str().unwrap()],
        None,
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("10 addresses newly queued"),
        "{}",
        text(&o)
    );
    let (code, v) = status_json(&cfg);
    assert_eq!((code, v["pending"].as_u64()), (0, Some(130)), "{v}");
    assert_eq!(v["counters"]["queued_new"], 10);
    let o = run(&cfg, &["flush"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("130 pending"),
        "{}",
        text(&o)
    );
    assert!(api.wait_for_accepted(130, Duration::from_secs(20)));
    let all: BTreeSet<String> = cowrie::public_addresses(130).into_iter().collect();
    assert_eq!(api.accepted_unique(), all);
    // Replaying after the report: the sightings are older, nothing is due.
    let o = run(&cfg, &["replay", plain.to_str().unwrap()], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("60 reported since"),
        "{}",
        text(&o)
    );
    stop_daemon(d);
}

/// The reading thread's errors reach the operator: a file that cannot be
/// opened after one that was read, and a gzip file cut short. What was
/// read before the error stays queued (a replay again queues nothing twice).
#[test]
fn replay_reports_a_file_it_cannot_read_after_queueing_the_ones_before() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let addrs = cowrie::public_addresses(40);
    let good = env.path("good.json");
    write_log(&good, &addrs[..20]);
    stop_daemon(start_daemon(&cfg));
    let missing = env.path("missing.json");
    let o = run(
        &cfg,
        &["replay", good.to_str().unwrap(), missing.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot read") && err.contains("missing.json"),
        "{}",
        text(&o)
    );
    assert_eq!(status_json(&cfg).1["pending"], 20);
    let cut = env.path("cut.json.gz");
    let whole = {
        let p = env.path("tmp.json");
        write_log(&p, &addrs[20..]);
        gz(&std::fs::read(&p).unwrap())
    };
    std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
    let o = run(&cfg, &["replay", cut.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cut.json.gz"),
        "{}",
        text(&o)
    );
}

#[test]
fn replay_dry_run_and_time_window() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let addrs = cowrie::public_addresses(5);
    let log = env.path("old.json");
    write_log(&log, &addrs);
    let o = run(&cfg, &["replay", "--dry-run", log.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.lines().all(|l| l.ends_with(" 2")), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was queued"));
    assert!(!env.path("state").exists(), "a dry run touches no state");
    // Events at 0, 1, 2, 3, 4 s after 2026-11-22T00:00:00Z: keep [1 s, 3 s).
    let o = run(
        &cfg,
        &[
            "replay",
            "--dry-run",
            "--since",
            "2026-11-22T00:00:01Z",
            "--until",
            "2026-11-22T00:00:03Z",
            log.to_str().unwrap(),
        ],
        None,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 2, "{}", text(&o));
    // A bad time is a usage error.
    let o = run(
        &cfg,
        &["replay", "--since", "yesterday-ish", log.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Regression: `tjfwd replay` refused a state directory in which `tjfwd
/// run` never ran ("no tjfwd database in …"). It creates the state
/// directory and the database as `run` does (same code, same checks), and
/// the daemon's first start sends what it queued. The commands that only
/// read or act on what is there still say there is no database, and
/// create nothing.
#[test]
fn replay_before_the_first_run_creates_the_database() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let state = env.path("state");
    for args in [&["status"][..], &["export"], &["resend"], &["flush"]] {
        let o = run(&cfg, args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("no tjfwd database in"),
            "{args:?}: {}",
            text(&o)
        );
        assert!(!state.exists(), "{args:?} created the state directory");
    }
    let addrs = cowrie::public_addresses(12);
    let log = env.path("old.json");
    write_log(&log, &addrs);
    let o = run(&cfg, &["replay", log.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("12 addresses newly queued"),
        "{}",
        text(&o)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert_eq!(status_json(&cfg).1["pending"], 12);
    let mut d = spawn(bin().args(["run", "--drain", "--config"]).arg(&cfg));
    let code = wait_with_limit(&mut d, Duration::from_secs(30));
    assert_eq!(
        code.and_then(|c| c.code()),
        Some(0),
        "{}",
        output_of(&mut d)
    );
    let want: BTreeSet<String> = addrs.iter().cloned().collect();
    assert_eq!(api.accepted_unique(), want);
}

/// The state directory a replay would create is checked as `run` checks
/// it: one others may write to is refused with the same message.
#[test]
fn replay_refuses_an_unsafe_state_directory_as_run_does() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    std::fs::create_dir(env.path("state")).unwrap();
    support::bin::set_mode(&env.path("state"), 0o777);
    let log = env.path("old.json");
    write_log(&log, &cowrie::public_addresses(3));
    let replay = run(&cfg, &["replay", log.to_str().unwrap()], None);
    let daemon = bin()
        .args(["run", "--drain", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    for o in [&replay, &daemon] {
        assert_eq!(o.status.code(), Some(1), "{}", text(o));
    }
    let refusal = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| l.starts_with("tjfwd: error:"))
            .map(str::to_string)
    };
    let said = refusal(&replay).unwrap_or_else(|| panic!("{}", text(&replay)));
    assert!(said.contains("refusing the state directory"), "{said}");
    assert_eq!(Some(said), refusal(&daemon), "{}", text(&daemon));
    assert!(!env.path("state/db").exists());
}

#[test]
fn replay_send_without_a_daemon_delivers_and_exits() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    stop_daemon(start_daemon(&cfg));
    let addrs = cowrie::public_addresses(25);
    let log = env.path("old.json");
    write_log(&log, &addrs);
    let o = run(&cfg, &["replay", "--send", log.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("sent 25 addresses"),
        "{}",
        text(&o)
    );
    assert_eq!(api.accepted_unique().len(), 25);
    assert_eq!(status_json(&cfg).1["pending"], 0);
}

#[test]
fn resend_export_and_flush_without_and_with_a_daemon() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    stop_daemon(start_daemon(&cfg));
    let addrs = cowrie::public_addresses(8);
    let log = env.path("old.json");
    write_log(&log, &addrs);
    run(&cfg, &["replay", log.to_str().unwrap()], None);
    // Queued: on tjfwd's denylist at once (export's default), not yet in
    // Threat Jammer's mirror.
    let o = run(&cfg, &["export"], None);
    let plain: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(plain, addrs.iter().cloned().collect::<BTreeSet<_>>());
    let o = run(&cfg, &["export", "--format", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 8);
    assert_eq!(v["entries"][0]["pending"], true, "{v}");
    let o = run(&cfg, &["export", "--target", "threatjammer"], None);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    // flush without a daemon sends it itself.
    let o = run(&cfg, &["flush"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("sent 8 addresses"),
        "{}",
        text(&o)
    );
    assert_eq!(api.accepted_addresses().len(), 8);

    // Reported now: off the denylist (the log's sightings are older than
    // [feed] ttl, a day, and no target owes them any more), in Threat
    // Jammer's mirror until its TTL there. The mirror, every format.
    let o = run(&cfg, &["export"], None);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    let mirror = |args: &[&str]| {
        let mut all = vec!["export", "--target", "threatjammer"];
        all.extend_from_slice(args);
        run(&cfg, &all, None)
    };
    let o = mirror(&[]);
    let plain: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(plain, addrs.iter().cloned().collect::<BTreeSet<_>>());
    let o = mirror(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 8);
    let ttl = v["entries"][0]["remaining_ttl_s"].as_u64().unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "{ttl}");
    assert_eq!(v["entries"][0]["reports"], 1, "{v}");
    let o = mirror(&["--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 9);
    let o = mirror(&["--format", "nft"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("add element inet tjfwd tjfwd4 {"));
    let o = mirror(&["--format", "ipset", "--name", "cowrie"]);
    // Filled under cowrie4-next, then swapped with cowrie4 (a load
    // replaces the set the firewall's rules use).
    let ipset = String::from_utf8_lossy(&o.stdout);
    assert!(
        ipset.contains(&format!("add cowrie4-next {} timeout ", addrs[0])),
        "{ipset}"
    );
    assert!(ipset.contains("swap cowrie4-next cowrie4\n"), "{ipset}");
    let o = run(&cfg, &["export", "--name", "bad name"], None);
    assert_eq!(o.status.code(), Some(1));
    // An unknown target: the same exit status, and the configured ones.
    let o = run(&cfg, &["export", "--target", "nosuch"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--target \"nosuch\" is not a configured target (configured: threatjammer)"),
        "{}",
        text(&o)
    );

    // resend without a daemon: one address, then a network.
    let o = run(&cfg, &["resend", "--ip", &addrs[0]], None);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("1 addresses of the reported set matched: 1 queued again"),
        "{}",
        text(&o)
    );
    let d = start_daemon(&cfg);
    // The same with a daemon (through the socket): the mirror; and the
    // denylist, which lists the address resent (pending again).
    let o = run(&cfg, &["export", "--target", "threatjammer"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 8);
    let o = run(&cfg, &["export"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", addrs[0])
    );
    let o = run(
        &cfg,
        &["resend", "--cidr", "11.0.0.0/24", "--since", "1h"],
        None,
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "8 addresses of the reported set matched: 7 queued again, 1 were already pending"
        ),
        "{}",
        text(&o)
    );
    let o = run(&cfg, &["flush"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(api.wait_for_requests(2, Duration::from_secs(20)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.accepted_addresses().len() < 16 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        api.accepted_addresses().len(),
        16,
        "each address reported twice"
    );
    stop_daemon(d);
}

#[test]
fn resend_dead_letter_after_the_cause_is_fixed() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig {
        detail_indices: true,
        ..FakeConfig::default()
    });
    let cfg = config(&env, &api, "1h");
    let addrs = cowrie::public_addresses(4);
    api.reject_address(&addrs[2]);
    stop_daemon(start_daemon(&cfg));
    let log = env.path("old.json");
    write_log(&log, &addrs);
    let o = run(&cfg, &["replay", "--send", log.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let (_, v) = status_json(&cfg);
    assert_eq!(v["dead_letter"], 1, "{v}");
    assert_eq!(v["dead_letter_by_reason"].as_object().unwrap().len(), 1);
    api.unreject_address(&addrs[2]);
    let o = run(&cfg, &["resend", "--dead-letter"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("1 addresses of the dead-letter set matched: 1 queued again"),
        "{}",
        text(&o)
    );
    run(&cfg, &["flush"], None);
    assert!(api.accepted_unique().contains(&addrs[2]));
    assert_eq!(status_json(&cfg).1["dead_letter"], 0);
}

#[test]
fn status_turns_degraded_on_a_refused_token_and_back() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "100ms");
    let d = start_daemon(&cfg);
    let (code, v) = status_json(&cfg);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["health"], "healthy");
    api.set_token("not-ours");
    let log = env.path("old.json");
    write_log(&log, &cowrie::public_addresses(3));
    run(&cfg, &["replay", log.to_str().unwrap()], None);
    assert!(api.wait_for_requests(1, Duration::from_secs(20)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = status_json(&cfg);
        if code == 1 {
            assert_eq!(v["health"], "degraded");
            assert!(v["health_reason"].as_str().unwrap().contains("401"), "{v}");
            assert_eq!(v["last_error"]["status"], 401);
            let human = String::from_utf8_lossy(&run(&cfg, &["status"], None).stdout).into_owned();
            assert!(
                human.contains("degraded") && human.contains("401"),
                "{human}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_daemon(d);
}

#[test]
fn check_config_prints_the_effective_config_without_the_token() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let o = run(&cfg, &["check-config"], None);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("flush_interval = \"1h\""), "{out}");
    assert!(!out.contains(&api.token()), "{out}");
    let o = run(&cfg, &["check-config", "-q"], None);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    // No token: refused, unless --dry-run.
    let bare = env.path("bare.toml");
    std::fs::write(
        &bare,
        "state_dir = \"s\"\n[targets.threatjammer]\napi_url = \"http://127.0.0.1:9/v1/ip\"\n",
    )
    .unwrap();
    let check = |args: &[&str], cfg: &Path| {
        bin()
            .arg("check-config")
            .args(args)
            .arg("--config")
            .arg(cfg)
            .output()
            .unwrap()
    };
    let o = check(&[], &bare);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = check(&["--dry-run"], &bare);
    assert!(o.status.success(), "{}", text(&o));
    // No target: refused, --dry-run or not.
    std::fs::write(&bare, "state_dir = \"s\"\n").unwrap();
    for args in [&[][..], &["--dry-run"]] {
        let o = check(args, &bare);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("no report target is enabled"), "{err}");
    }
}

/// The deprecated `[threatjammer]` and `[schedule]`: `check-config` notes
/// it and prints the new form, which checks the same without the note.
#[test]
fn check_config_writes_the_deprecated_tables_in_the_new_form() {
    let env = Env::new();
    let old = env.path("old.toml");
    std::fs::write(
        &old,
        "state_dir = \"s\"\n[threatjammer]\napi_url = \"http://127.0.0.1:9/v1/ip\"\nttl = 60\n\
         [schedule]\nbatch_size = 5\n",
    )
    .unwrap();
    let check = |cfg: &Path| {
        bin()
            .args(["check-config", "--dry-run", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    let o = check(&old);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning"), "{err}");
    assert!(
        err.contains("[threatjammer] and [schedule] are deprecated"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("\n[targets.threatjammer]\n"), "{out}");
    assert!(!out.contains("[schedule]"), "{out}");
    let new = env.path("new.toml");
    std::fs::write(&new, &out).unwrap();
    let o = check(&new);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("deprecated"),
        "{}",
        text(&o)
    );
    // The same configuration, but for the file it came from.
    let again = String::from_utf8_lossy(&o.stdout).to_string();
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&out));
}

#[test]
fn completions_and_man_page() {
    let o = bin().args(["completions", "bash"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("replay"));
    let o = bin().args(["man"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(".TH tjfwd"));
}

/// Only the daemon's user (and root) may use the control socket.
#[test]
fn control_requests_from_another_user_are_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run a command as another user");
        return;
    }
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let d = start_daemon(&cfg);
    // Let the other user reach the socket at all (the directory is 0700 and
    // the socket 0600): the daemon's own check must still refuse.
    for (p, mode) in [
        (env.dir.path().to_path_buf(), 0o755),
        (env.path("state"), 0o755),
        (env.path("state/control.sock"), 0o777),
        (cfg.clone(), 0o644),
        (env.path("token"), 0o644),
    ] {
        support::bin::set_mode(&p, mode);
    }
    let nobody = 65534;
    let o = Command::new(env!("CARGO_BIN_EXE_tjfwd"))
        .args(["status", "--config"])
        .arg(&cfg)
        .env_remove("TJFWD_CONFIG")
        .uid(nobody)
        .gid(nobody)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("only the daemon's user and root"),
        "{}",
        text(&o)
    );
    let out = stop_daemon(d);
    assert!(out.contains("refused a request from another user"), "{out}");
}

/// Runs the binary with `args` and its standard output a pipe whose reader
/// is already gone (`| head -0`), so that its first write meets EPIPE.
fn run_into_a_closed_pipe(args: &[&std::ffi::OsStr]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Regression: `tjfwd replay --dry-run FILE | head -3` panicked ("failed
/// printing to stdout: Broken pipe", exit 101). Every command that prints
/// ends quietly, as it would have with a reader, when its reader has gone
/// away — and still does its work: a replay queues, a flush sends.
#[test]
fn printing_into_a_closed_pipe_panicked_with_broken_pipe() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    stop_daemon(start_daemon(&cfg));
    let addrs = cowrie::public_addresses(300);
    let log = env.path("old.json");
    write_log(&log, &addrs);
    let cowrie_cfg =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cowrie/sensor/etc/cowrie.cfg");
    let with_config = |args: &[&str]| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        v.extend(["--config".into(), cfg.clone().into_os_string()]);
        v
    };
    let log_arg = log.to_str().unwrap();
    // Each command, and its exit code with a reader.
    let cases: Vec<(Vec<std::ffi::OsString>, i32)> = vec![
        (with_config(&["replay", "--dry-run", log_arg]), 0),
        (with_config(&["replay", log_arg]), 0),
        (with_config(&["status"]), 2),
        (with_config(&["status", "--json"]), 2),
        (with_config(&["export", "--format", "nft"]), 0),
        (with_config(&["export", "--format", "ipset"]), 0),
        (with_config(&["resend"]), 0),
        (with_config(&["check-config"]), 0),
        (with_config(&["recover", "--check"]), 0),
        (with_config(&["flush"]), 0),
        (vec!["completions".into(), "bash".into()], 0),
        (vec!["man".into()], 0),
        (
            vec![
                "config".into(),
                "import-cowrie".into(),
                cowrie_cfg.into_os_string(),
            ],
            0,
        ),
        (vec!["--help".into()], 0),
        (vec!["--version".into()], 0),
    ];
    for (args, code) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let o = run_into_a_closed_pipe(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
            "{args:?}: {}",
            text(&o)
        );
    }
    // The replay queued, and the flush sent, all the same.
    assert_eq!(api.accepted_unique().len(), 300);
    assert_eq!(status_json(&cfg).1["pending"], 0);
}

/// A write error other than a closed pipe is still an error.
#[test]
fn a_full_disk_behind_standard_output_is_an_error() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let o = bin()
        .args(["completions", "bash"])
        .stdout(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tjfwd: error: cannot write the completion script: No space left on device"),
        "{}",
        text(&o)
    );
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config(&env, &api, "1h");
    let o = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .stdout(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tjfwd: error: cannot write to standard output: No space left on device"),
        "{}",
        text(&o)
    );
}
