//! Damaged databases, with the real binary: tjfwd refuses to use them with a
//! message that says what happened and what to do, never changes or wipes
//! them, and `tjfwd recover` moves them aside and rebuilds the queue from
//! what they still hold and from the Cowrie logs on disk.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::bin::{bin, spawn, text, wait_with_limit, Env};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};

/// Runs a command to completion (killed after a minute: a daemon that
/// should have refused to start must fail the test, not hang it).
fn run(cfg: &Path, args: &[&str]) -> Output {
    let child = bin()
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(o) => o,
        Err(_) => {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let o = rx.recv().unwrap();
            panic!("{args:?} still running after 60 s:\n{}", text(&o));
        }
    }
}

fn pending(cfg: &Path) -> u64 {
    let o = run(cfg, &["status", "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    v["pending"].as_u64().unwrap()
}

/// Every file under `dir` with its contents (to show nothing changed).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            out.insert(e.path(), std::fs::read(e.path()).unwrap());
        }
    }
    out
}

fn login_lines(addrs: &[String], t0: u64) -> Vec<String> {
    addrs
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            let t = t0 + i as u64;
            [cowrie::connect(a, t), cowrie::login_failed(a, t)]
        })
        .collect()
}

fn set_mtime(p: &Path, secs_ago: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs_ago);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A live log and two rotated ones (plain and gzip), older than tjfwd's
/// first start, `per_file` distinct addresses each. Returns all addresses.
fn logs_with_rotations(env: &Env, per_file: usize) -> Vec<String> {
    let all = cowrie::public_addresses(per_file * 3);
    let day = 86_400_000;
    let t0 = 0; // ms after 2026-11-22 (see support::cowrie::timestamp)
                // cowrie.json.2.gz: the oldest.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in login_lines(&all[..per_file], t0) {
        gz.write_all(l.as_bytes()).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    let gz_path = env.path("cowrie.json.2.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    set_mtime(&gz_path, 2 * 86_400);
    let one = env.path("cowrie.json.1");
    cowrie::append(&one, &login_lines(&all[per_file..2 * per_file], t0 + day));
    set_mtime(&one, 86_400);
    cowrie::append(&env.log(), &login_lines(&all[2 * per_file..], t0 + 2 * day));
    all
}

fn state(env: &Env) -> PathBuf {
    env.path("state")
}

#[test]
fn a_truncated_database_is_refused_untouched_and_recover_rebuilds_it_from_every_retained_log() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let all = logs_with_rotations(&env, 1000);
    // First start: the live file only (the rotated ones predate tjfwd).
    let o = run(&cfg, &["run", "--dry-run", "--drain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pending(&cfg), 1000);

    // Cut the log short (sled reads a cut-off log as a torn write and would
    // quietly open what precedes the cut: the seal must notice).
    let db_file = state(&env).join("db").join("db");
    std::fs::File::options()
        .write(true)
        .open(&db_file)
        .unwrap()
        .set_len(4096)
        .unwrap();
    for args in [&["run", "--dry-run"][..], &["status"], &["export"]] {
        let o = run(&cfg, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("is damaged")
                && err.contains("tjfwd recover")
                && err.contains("deleted nothing"),
            "{args:?}: {}",
            text(&o)
        );
        assert!(!err.contains("panicked"), "{}", text(&o));
    }
    // `recover --check` examines a copy: the database stays as it is.
    let before = snapshot(&state(&env).join("db"));
    let o = run(&cfg, &["recover", "--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("older than its last save")
            || String::from_utf8_lossy(&o.stdout).contains("cannot be opened"),
        "{}",
        text(&o)
    );
    assert_eq!(
        snapshot(&state(&env).join("db")),
        before,
        "nothing may change"
    );

    let o = run(&cfg, &["recover"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("moved the old database aside"), "{out}");
    assert!(
        out.contains("first send waits a whole rate window"),
        "{out}"
    );
    // The damaged database is kept, byte for byte, under its new name.
    let aside: Vec<PathBuf> = std::fs::read_dir(state(&env))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("db.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // (with the seal that shows what it had lost)
    assert!(aside[0].join("tjfwd.seal").exists());
    let kept: BTreeMap<PathBuf, Vec<u8>> = snapshot(&aside[0])
        .into_iter()
        .filter(|(p, _)| !p.ends_with("tjfwd.seal"))
        .map(|(p, b)| {
            (
                state(&env)
                    .join("db")
                    .join(p.strip_prefix(&aside[0]).unwrap()),
                b,
            )
        })
        .collect();
    assert_eq!(kept, before);
    assert!(!state(&env).join("recover.scratch").exists());

    // Every address of every retained log is pending again; the database is sound.
    assert_eq!(pending(&cfg), all.len() as u64);
    let o = run(&cfg, &["recover", "--check"]);
    assert!(o.status.success(), "{}", text(&o));
    // The rate window counts as full (the request log was lost with the
    // database): nothing may be sent for a whole window.
    let o = run(&cfg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rate_limit"]["requests_in_window"], 6, "{}", text(&o));

    // The rebuilt checkpoints are at the end of the input: a restarted
    // daemon goes on from there.
    assert_eq!(v["input"]["bytes_behind"], 0, "{}", text(&o));
}

/// Overwrites 64 KiB of the database file at `at` with a fixed pattern.
fn scribble(db_file: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::options().write(true).open(db_file).unwrap();
    f.write_all_at(&[0xA5; 64 * 1024], at).unwrap();
}

#[test]
fn damage_sled_does_not_notice_at_open_stops_the_daemon_which_then_refuses_until_recover() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let addrs = cowrie::public_addresses(20_000);
    cowrie::append(&env.log(), &login_lines(&addrs, 0));
    let o = run(&cfg, &["run", "--dry-run", "--drain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pending(&cfg), 20_000);

    // Find a place where garbage leaves a database that opens but whose
    // records do not read back (sled checks a page when it reads it).
    let db_file = state(&env).join("db").join("db");
    let len = std::fs::metadata(&db_file).unwrap().len();
    let pristine = std::fs::read(&db_file).unwrap();
    let mut found = None;
    for tenth in 1..10 {
        let at = len * tenth / 10;
        scribble(&db_file, at);
        let o = run(&cfg, &["recover", "--check"]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        if o.status.code() == Some(1) && out.contains("is damaged:") {
            found = Some(at);
            break;
        }
        std::fs::write(&db_file, &pristine).unwrap();
    }
    let at = found.expect("no offset gave a database that opens with unreadable records");
    eprintln!("garbage at offset {at} of {len}");

    let o = run(&cfg, &["run", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tjfwd recover"),
        "{}",
        text(&o)
    );
    let marker = state(&env).join("DAMAGED");
    assert!(marker.exists(), "{}", text(&o));
    // Later starts refuse at once, even if the damage is not read again.
    let o = run(&cfg, &["run", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("found by an earlier check"),
        "{}",
        text(&o)
    );

    let o = run(&cfg, &["recover"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("found it damaged while running"), "{out}");
    assert!(!marker.exists());
    assert_eq!(pending(&cfg), 20_000);
    let o = run(&cfg, &["run", "--dry-run", "--drain"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn recover_of_a_sound_database_needs_force_and_keeps_reports_and_the_rate_window() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let addrs = cowrie::public_addresses(1500);
    cowrie::append(&env.log(), &login_lines(&addrs, 0));
    let o = run(&cfg, &["run", "--drain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(api.accepted_unique().len(), 1500);
    let requests = api.request_count();
    assert!(requests <= 6, "{requests}");

    let before = snapshot(&state(&env).join("db"));
    let o = run(&cfg, &["recover"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing to recover"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&state(&env).join("db")), before);

    let o = run(&cfg, &["recover", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("salvaged 1500 reported"), "{out}");
    assert!(out.contains("and the request log"), "{out}");
    // The log re-read: every address is already reported after its sightings.
    assert_eq!(pending(&cfg), 0, "{out}");
    let o = run(&cfg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reported"], 1500);
    assert_eq!(v["rate_limit"]["requests_in_window"], requests);
    let o = run(
        &cfg,
        &["export", "--format", "plain", "--target", "threatjammer"],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1500,
        "{}",
        text(&o)
    );
    // tjfwd's denylist (export's default) is rebuilt too: with a TTL that
    // reaches back to the log's (old) sightings, every address is on it.
    let o = run(&cfg, &["export", "--format", "plain"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{}", text(&o));
    let mut long = std::fs::read_to_string(&cfg).unwrap();
    long.push_str("\n[feed]\nttl = \"3650d\"\n");
    std::fs::write(&cfg, long).unwrap();
    let o = run(&cfg, &["export", "--format", "plain"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1500,
        "{}",
        text(&o)
    );
}

#[test]
fn recover_refuses_while_a_daemon_runs() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    cowrie::append(&env.log(), &login_lines(&cowrie::public_addresses(10), 0));
    let mut daemon = spawn(bin().args(["run", "--config"]).arg(&cfg));
    assert!(api.wait_for_accepted(10, Duration::from_secs(20)));
    let o = run(&cfg, &["recover", "--force"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("stop it first"),
        "{}",
        text(&o)
    );
    assert!(state(&env).join("db").exists());
    support::bin::sigterm(&daemon);
    assert!(wait_with_limit(&mut daemon, Duration::from_secs(10)).is_some());
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `recover --force` killed (SIGKILL) at moments spread over its run: at
/// fractions of its uninterrupted duration, as soon as the new database
/// appears, and as soon as its journal does. Whatever the moment, the
/// interrupted recover is finished or undone by the next command, every
/// pending address is still there (they come from a replayed archive, so
/// re-reading the live log cannot bring them back), and nothing left half
/// done is called sound.
#[test]
fn a_recover_killed_at_any_moment_is_finished_or_undone_and_loses_nothing() {
    const N: usize = 20_000;
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    // The live log holds nothing: recover's re-reading of it brings back
    // nothing that the database lost.
    std::fs::write(env.log(), "").unwrap();
    let archive = env.path("archive.json");
    let addrs: Vec<String> = (0..N)
        .map(|i| format!("9.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    cowrie::append(&archive, &login_lines(&addrs, 0));
    let o = run(
        &cfg,
        &["replay", "--no-progress-bar", archive.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pending(&cfg), N as u64);
    let template = env.path("state.template");
    copy_tree(&state(&env), &template);

    let fresh = || {
        std::fs::remove_dir_all(state(&env)).unwrap();
        copy_tree(&template, &state(&env));
    };
    // The uninterrupted duration, and the replaced copy's name.
    fresh();
    let started = std::time::Instant::now();
    let o = run(&cfg, &["recover", "--force"]);
    let full = started.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("db.replaced-"), "{out}");
    assert!(!out.contains("db.damaged-"), "{out}");
    assert_eq!(pending(&cfg), N as u64);

    enum When {
        After(Duration),
        Appears(&'static str),
    }
    let mut moments: Vec<When> = (1..10).map(|k| When::After(full * k / 10)).collect();
    moments.push(When::Appears("recover.new/db"));
    moments.push(When::Appears("recover.journal"));
    let mut outcomes = Vec::new();
    for when in moments {
        fresh();
        let mut child = bin()
            .args(["recover", "--force", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        match when {
            When::After(d) => std::thread::sleep(d),
            When::Appears(p) => {
                let p = state(&env).join(p);
                while !p.exists()
                    && child.try_wait().unwrap().is_none()
                    && std::time::Instant::now() < deadline
                {
                    std::hint::spin_loop();
                }
            }
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let left: Vec<String> = ["recover.new", "recover.journal", "db"]
            .iter()
            .filter(|p| state(&env).join(p).exists())
            .map(|p| p.to_string())
            .collect();
        outcomes.push(format!("{status} with {left:?}"));
        // The next recover --check finishes or undoes it, then finds the
        // database sound and whole.
        let o = run(&cfg, &["recover", "--check"]);
        let text_out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{text_out}\n{outcomes:?}");
        assert!(
            text_out.contains(&format!("{N} pending")),
            "{text_out}\n{outcomes:?}"
        );
        assert!(!state(&env).join("recover.new").exists(), "{outcomes:?}");
        assert!(
            !state(&env).join("recover.journal").exists(),
            "{outcomes:?}"
        );
        assert_eq!(pending(&cfg), N as u64, "{outcomes:?}");
    }
    eprintln!("recover --force ({full:?} uninterrupted) killed: {outcomes:#?}");
    // At least one kill landed during the build and one before it.
    assert!(
        outcomes.iter().any(|o| o.contains("\"recover.new\"")),
        "{outcomes:#?}"
    );
}

/// An interrupted recover is also finished by the daemon's next start (the
/// journal written, the renames not done): not only by `recover`.
#[test]
fn the_daemon_finishes_a_recover_interrupted_after_its_decision() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let archive = env.path("archive.json");
    let addrs = cowrie::public_addresses(300);
    cowrie::append(&archive, &login_lines(&addrs, 0));
    let o = run(
        &cfg,
        &["replay", "--no-progress-bar", archive.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    // What recover leaves just after its decision: the new database built
    // (a copy of the old one here) and the journal.
    let s = state(&env);
    copy_tree(&s.join("db"), &s.join("recover.new/db"));
    std::fs::copy(s.join("tjfwd.seal"), s.join("recover.new/tjfwd.seal")).unwrap();
    std::fs::write(
        s.join("recover.journal"),
        "tjfwd recover journal 1\naside db.damaged-20261206T000000Z\n",
    )
    .unwrap();
    let o = run(&cfg, &["run", "--drain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("the replacement was completed"),
        "{}",
        text(&o)
    );
    assert!(s.join("db.damaged-20261206T000000Z/db").exists());
    assert!(!s.join("recover.new").exists());
    assert!(!s.join("recover.journal").exists());
    assert_eq!(api.accepted_unique().len(), 300);
}
