//! Tests of the real `tjfwd` binary: crash safety (`kill -9`), signals, exit
//! codes and messages, and the state-directory lock. (That the token never
//! appears in anything it prints or writes: tests/security.rs.)

mod support;

use std::time::{Duration, Instant};

use support::bin::{
    bin, bound_address, output_of, sigterm, spawn, wait_with_limit, Env, EPHEMERAL_PORTS_ENV,
};
use support::cowrie;
use support::fake_api::{Failure, FakeApi, FakeConfig};

#[test]
fn pending_addresses_survive_kill_9_and_are_delivered_after_restart() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let addrs = cowrie::public_addresses(50);
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(&env.log(), &lines);
    let cfg = env.config(&api, "");

    // The API is down: the daemon queues everything and keeps failing.
    api.set_down(true);
    let mut child = spawn(bin().args(["run", "--config"]).arg(&cfg));
    assert!(
        api.wait_for_requests(1, Duration::from_secs(20)),
        "the daemon never tried to send"
    );
    child.child.kill().unwrap(); // SIGKILL
    child.child.wait().unwrap();
    assert!(api.accepted_addresses().is_empty());

    // Back up: a restart delivers every address from the on-disk queue.
    api.set_down(false);
    let mut child = spawn(bin().args(["run", "--drain", "--config"]).arg(&cfg));
    let status = wait_with_limit(&mut child, Duration::from_secs(30));
    let out = output_of(&mut child);
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{out}");
    assert_eq!(
        api.accepted_unique(),
        addrs.iter().cloned().collect(),
        "{out}"
    );
    // The input was not read twice: each address once.
    assert_eq!(api.accepted_addresses().len(), addrs.len());
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_quickly() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    cowrie::append(&env.log(), &[cowrie::login_failed("11.3.3.3", 0)]);
    // An in-flight request that hangs: shutdown must not wait for it.
    api.push_failure(Failure::Delay(Duration::from_secs(30)));
    let cfg = env.config(&api, "");
    let mut child = spawn(bin().args(["run", "--config"]).arg(&cfg));
    // The delayed request is recorded only when answered: wait until it
    // has taken its scripted delay, i.e. it is in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.pending_failures() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(api.pending_failures(), 0, "no request was sent");
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    sigterm(&child);
    let status = wait_with_limit(&mut child, Duration::from_secs(10)).expect("did not stop");
    let out = output_of(&mut child);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(out.contains("stopped; queue flushed to disk"), "{out}");
}

#[test]
fn a_second_process_on_the_same_state_dir_gets_a_clear_error() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    let mut first = spawn(bin().args(["run", "--config"]).arg(&cfg));
    // Wait until the first one holds the lock.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.path("state/db").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    sigterm(&first);
    wait_with_limit(&mut first, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another tjfwd process"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&env.path("state").display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Regression: an error whose message interpolated its cause and also
/// marked it as its source printed the cause twice ("cannot use state
/// directory …/file/sub: Not a directory (os error 20); check that it
/// exists and that this user may write to it: Not a directory (os error
/// 20)"). The cause is printed once, after the message and its hint.
#[test]
fn a_state_directory_error_prints_its_cause_once() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    std::fs::write(env.path("file"), "").unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("state_dir = \"state\"", "state_dir = \"file/sub\"");
    std::fs::write(&cfg, text).unwrap();
    for args in [&["run", "--dry-run"][..], &["status"]] {
        let out = bin().args(args).arg("--config").arg(&cfg).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.matches("Not a directory (os error 20)").count(),
            1,
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&env.path("file/sub").display().to_string()),
            "{args:?}: {stderr}"
        );
    }
    let out = bin()
        .args(["run", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "tjfwd: error: cannot use state directory {} (check that it exists and that this user \
             may write to it): Not a directory (os error 20)",
            env.path("file/sub").display()
        )),
        "{stderr}"
    );
}

#[test]
fn invalid_configuration_is_refused_naming_the_key_and_the_file() {
    let env = Env::new();
    let cfg = env.path("bad.toml");
    let tj = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\n";
    for (text, key) in [
        (format!("{tj}batch_size = 5000\n"), "batch_size"),
        (format!("{tj}ttl = 0\n"), "ttl"),
        (format!("{tj}tags = \"cowrie\"\n"), "tags"),
        (
            "[targets.threatjammer]\napi_url = \"http://example.com/v1/ip\"\n".to_string(),
            "api_url",
        ),
        (format!("{tj}[input]\nstart_from = \"end\"\n"), "start_from"),
        (
            "[targets.threatjammer]\napi_url = \"not a url\"\n".to_string(),
            "api_url",
        ),
        // No endpoint: the service is gone (in a dry run too).
        ("[targets.threatjammer]\n".to_string(), "shut down in 2024"),
        // No target at all.
        (
            "state_dir = \"s\"\n".to_string(),
            "no report target is enabled",
        ),
    ] {
        std::fs::write(
            &cfg,
            format!("{text}\n[threatjammer.x]\n").replace("\n[threatjammer.x]\n", ""),
        )
        .unwrap();
        let out = bin()
            .args(["run", "--dry-run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert!(stderr.contains("bad.toml"), "{text}: {stderr}");
    }
    // No token, not a dry run.
    std::fs::write(&cfg, format!("state_dir = \"s\"\n{tj}")).unwrap();
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("TJFWD_BEARER_TOKEN"), "{stderr}");
    // A usage error is exit code 2.
    let out = bin().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_database_from_a_newer_tjfwd_is_refused_untouched() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    {
        let db = sled::open(env.path("state/db")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &7u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("schema version 7"), "{stderr}");
    assert!(stderr.contains("newer tjfwd"), "{stderr}");
    let db = sled::open(env.path("state/db")).unwrap();
    let v = db
        .open_tree("meta")
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap();
    assert_eq!(v.as_ref(), &7u32.to_be_bytes());
}

/// Socket input has no file to re-read: what tjfwd read from a connection
/// is on disk before it reads more, so it survives `kill -9`.
#[test]
fn socket_input_survives_kill_9() {
    use std::io::Write;
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = env.config(&api, "");
    // The port is the kernel's pick (EPHEMERAL_PORTS_ENV), not this one.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "cowrie_json = \"cowrie.json\"",
        "listen_tcp = \"127.0.0.1:9000\"",
    );
    std::fs::write(&cfg, text).unwrap();
    api.set_down(true);
    let mut child = spawn(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env(EPHEMERAL_PORTS_ENV, "1"),
    );
    let listen = bound_address(&mut child, "[input] listen_tcp", Duration::from_secs(20));
    let mut stream = std::net::TcpStream::connect(listen)
        .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", output_of(&mut child)));
    let addrs = cowrie::public_addresses(20);
    for (i, a) in addrs.iter().enumerate() {
        writeln!(stream, "{}", cowrie::login_failed(a, i as u64)).unwrap();
    }
    // Wait until a (failing) request carried the last address: then every
    // address is in the queue, which only an ack or the disk can empty.
    let last = format!("\"{}\"", addrs[19]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !api.requests().iter().any(|r| r.body.contains(&last)) {
        assert!(Instant::now() < deadline, "{}", output_of(&mut child));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.child.kill().unwrap();
    child.child.wait().unwrap();
    api.set_down(false);
    let mut child = spawn(bin().args(["run", "--drain", "--config"]).arg(&cfg));
    let status = wait_with_limit(&mut child, Duration::from_secs(30));
    let out = output_of(&mut child);
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{out}");
    assert_eq!(
        api.accepted_unique(),
        addrs.iter().cloned().collect(),
        "{out}"
    );
}
