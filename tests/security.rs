//! Security of the real `tjfwd` binary:
//!
//! - TLS: verification is always on; `[targets.threatjammer] ca_file` trusts a
//!   private CA (a CA and a server certificate made at test time, the fake
//!   API served over TLS on loopback); without it, or with a certificate for
//!   another host, nothing is sent, nothing is dropped, and the log, `status`
//!   and the health verdict say why. Plain `http://` to a non-loopback host
//!   is refused.
//! - Permissions: the state directory is 0700 and the control socket 0600;
//!   a state directory others can write to is refused; a token file other
//!   users can read draws a warning.
//! - The token never appears in anything any command prints or writes.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::bin::{bin, output_of, set_mode, sigterm, spawn, text, wait_with_limit, Env, Running};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};
use support::pki::Ca;

/// Enough for every test here: the binary's and the fake's rate limits
/// (6 a minute, every TLS failure included) would otherwise stall them.
const LIMITS: &str = "max_requests_per_minute = 1000";

fn fake_config() -> FakeConfig {
    FakeConfig {
        max_requests_per_window: 1000,
        ..FakeConfig::default()
    }
}

/// `tjfwd ARGS...` to completion.
fn run(args: &[&str], cfg: &Path) -> Output {
    bin().args(args).arg("--config").arg(cfg).output().unwrap()
}

/// A config for `api` (see `Env::config`) with `[targets.threatjammer]` lines added.
fn config_with(env: &Env, api: &FakeApi, threatjammer: &str) -> PathBuf {
    let cfg = env.config(api, LIMITS);
    let t = std::fs::read_to_string(&cfg).unwrap().replace(
        "bearer_token_file = \"token\"\n",
        &format!("bearer_token_file = \"token\"\n{threatjammer}"),
    );
    std::fs::write(&cfg, t).unwrap();
    cfg
}

/// Starts `tjfwd run` and waits for its control socket.
fn daemon(env: &Env, cfg: &Path) -> Running {
    let mut d = spawn(bin().args(["run", "--config"]).arg(cfg));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.path("state/control.sock").exists() {
        assert!(Instant::now() < deadline, "{}", output_of(&mut d));
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn stop(mut d: Running) -> String {
    sigterm(&d);
    let s = wait_with_limit(&mut d, Duration::from_secs(10));
    let out = output_of(&mut d);
    assert_eq!(s.and_then(|s| s.code()), Some(0), "{out}");
    out
}

fn status_json(cfg: &Path) -> (Option<i32>, serde_json::Value) {
    let o = run(&["status", "--json"], cfg);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_default();
    (o.status.code(), v)
}

/// Polls `status --json` until `done` holds for it.
fn wait_status(
    cfg: &Path,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = status_json(cfg);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn queue_addresses(env: &Env, n: usize) -> Vec<String> {
    let addrs = cowrie::public_addresses(n);
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(&env.log(), &lines);
    addrs
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

// ===== TLS ===================================================================

#[test]
fn tls_with_ca_file_delivers_to_a_server_of_the_private_ca() {
    let ca = Ca::new("tjfwd test CA");
    let api = FakeApi::start_tls(fake_config(), &ca.server(&["127.0.0.1", "localhost"]));
    assert!(api.url().starts_with("https://127.0.0.1:"));
    let env = Env::new();
    std::fs::write(env.path("ca.pem"), ca.cert_pem()).unwrap();
    let cfg = config_with(&env, &api, "ca_file = \"ca.pem\"\n");
    let addrs = queue_addresses(&env, 5);

    let o = check_config(&cfg);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ca_file = "),
        "{}",
        text(&o)
    );
    let mut d = spawn(bin().args(["run", "--drain", "--config"]).arg(&cfg));
    let s = wait_with_limit(&mut d, Duration::from_secs(30));
    let out = output_of(&mut d);
    assert_eq!(s.and_then(|s| s.code()), Some(0), "{out}");
    assert_eq!(
        api.accepted_unique(),
        addrs.iter().cloned().collect(),
        "{out}"
    );
    assert_eq!(api.tls_handshake_failures(), 0);
}

fn check_config(cfg: &Path) -> Output {
    run(&["check-config"], cfg)
}

/// Without `ca_file` only the public roots are trusted: the private CA's
/// server is refused, every attempt fails before a request is sent, the
/// queue keeps everything, and the log, `status` and health say why. With
/// `ca_file` added, the same queue is delivered.
#[test]
fn tls_without_ca_file_refuses_the_server_keeps_the_queue_and_says_why() {
    let ca = Ca::new("tjfwd test CA");
    let api = FakeApi::start_tls(fake_config(), &ca.server(&["127.0.0.1", "localhost"]));
    let env = Env::new();
    let cfg = config_with(&env, &api, "");
    let addrs = queue_addresses(&env, 5);

    let d = daemon(&env, &cfg);
    let v = wait_status(&cfg, "degraded by the certificate error", |v| {
        v["health"] == "degraded" && v["pending"] == 5
    });
    let (code, _) = status_json(&cfg);
    assert_eq!(code, Some(1), "status exits 1 when degraded");
    for field in [&v["last_error"]["message"], &v["health_reason"]] {
        let m = field.as_str().unwrap_or_default();
        assert!(m.contains("TLS certificate not accepted"), "{v:#}");
        assert!(m.contains("ca_file"), "{v:#}");
        assert!(m.contains("UnknownIssuer"), "{v:#}");
    }
    let out = stop(d);
    assert!(out.contains("TLS certificate not accepted"), "{out}");
    assert!(api.tls_handshake_failures() >= 1);
    assert_eq!(api.request_count(), 0, "no request got through");
    let (_, v) = status_json(&cfg);
    assert_eq!(v["pending"], 5, "nothing was dropped: {v:#}");
    assert_eq!(v["dead_letter"], 0, "{v:#}");

    std::fs::write(env.path("ca.pem"), ca.cert_pem()).unwrap();
    let cfg = config_with(&env, &api, "ca_file = \"ca.pem\"\n");
    let mut d = spawn(bin().args(["run", "--drain", "--config"]).arg(&cfg));
    let s = wait_with_limit(&mut d, Duration::from_secs(30));
    let out = output_of(&mut d);
    assert_eq!(s.and_then(|s| s.code()), Some(0), "{out}");
    assert_eq!(
        api.accepted_unique(),
        addrs.iter().cloned().collect(),
        "{out}"
    );
}

/// With --cowrie-config, Threat Jammer's report keys come from cowrie.cfg,
/// which has no ca_file: tjfwd.toml may set that one of them beside it (and
/// the sending keys).
#[test]
fn tls_ca_file_beside_cowrie_config() {
    let ca = Ca::new("tjfwd test CA");
    let api = FakeApi::start_tls(fake_config(), &ca.server(&["127.0.0.1"]));
    let env = Env::new();
    std::fs::write(env.path("ca.pem"), ca.cert_pem()).unwrap();
    let addrs = queue_addresses(&env, 3);
    std::fs::create_dir_all(env.path("cowrie/etc")).unwrap();
    let cowrie_cfg = env.path("cowrie/etc/cowrie.cfg");
    std::fs::write(
        &cowrie_cfg,
        format!(
            "[output_threatjammer]\nenabled = false\napi_url = {}\nbearer_token = {}\n\
             [output_jsonlog]\nlogfile = {}\n",
            api.url(),
            api.token(),
            env.log().display()
        ),
    )
    .unwrap();
    set_mode(&cowrie_cfg, 0o600);
    let toml = env.path("extra.toml");
    let extra = format!(
        "state_dir = \"state\"\n\
         [input]\nstart_at = \"beginning\"\npoll_interval = \"20ms\"\n\
         [targets.threatjammer]\nca_file = \"ca.pem\"\nflush_interval = \"100ms\"\n{LIMITS}\n"
    );
    std::fs::write(&toml, &extra).unwrap();
    let args = |cmd: &[&str]| {
        let mut c = bin();
        c.args(cmd)
            .arg("--cowrie-config")
            .arg(&cowrie_cfg)
            .arg("--config")
            .arg(&toml);
        c
    };
    let o = args(&["check-config"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let shown = format!("ca_file = \"{}\"", env.path("ca.pem").display());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&shown),
        "{}",
        text(&o)
    );
    let mut d = spawn(&mut args(&["run", "--drain"]));
    let s = wait_with_limit(&mut d, Duration::from_secs(30));
    let out = output_of(&mut d);
    assert_eq!(s.and_then(|s| s.code()), Some(0), "{out}");
    assert_eq!(
        api.accepted_unique(),
        addrs.iter().cloned().collect(),
        "{out}"
    );
    // Any other report key there is still refused.
    std::fs::write(
        &toml,
        extra.replace(
            "[targets.threatjammer]\n",
            "[targets.threatjammer]\nttl = 5\n",
        ),
    )
    .unwrap();
    let o = args(&["check-config"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[targets.threatjammer] ttl is set here"),
        "{}",
        text(&o)
    );
}

/// A certificate of the trusted CA, but for another host: refused.
#[test]
fn tls_certificate_for_another_host_is_refused() {
    let ca = Ca::new("tjfwd test CA");
    let api = FakeApi::start_tls(fake_config(), &ca.server(&["api.tjfwd-test.invalid"]));
    let env = Env::new();
    std::fs::write(env.path("ca.pem"), ca.cert_pem()).unwrap();
    let cfg = config_with(&env, &api, "ca_file = \"ca.pem\"\n");
    queue_addresses(&env, 3);
    let d = daemon(&env, &cfg);
    let v = wait_status(&cfg, "a certificate error", |v| {
        v["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("TLS certificate not accepted"))
    });
    let out = stop(d);
    let m = v["last_error"]["message"].as_str().unwrap();
    assert!(
        m.contains("NotValidForName") || m.contains("not valid for name"),
        "{m}"
    );
    assert!(out.contains("TLS certificate not accepted"), "{out}");
    assert_eq!(api.request_count(), 0);
    assert!(api.accepted_addresses().is_empty());
    let (_, v) = status_json(&cfg);
    assert_eq!(v["pending"], 3, "{v:#}");
}

#[test]
fn a_bad_ca_file_is_a_configuration_error_naming_the_key_and_the_file() {
    let api = FakeApi::start(fake_config());
    let env = Env::new();
    std::fs::write(env.path("empty.pem"), "").unwrap();
    std::fs::write(env.path("text.pem"), "not a certificate\n").unwrap();
    for (file, why) in [
        ("missing.pem", "cannot read it"),
        ("empty.pem", "no PEM certificate"),
        ("text.pem", "no PEM certificate"),
    ] {
        let cfg = config_with(&env, &api, &format!("ca_file = \"{file}\"\n"));
        for args in [&["check-config"][..], &["run", "--dry-run", "--drain"]] {
            let o = run(args, &cfg);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?} {file}: {}", text(&o));
            assert!(
                err.contains("[targets.threatjammer] ca_file"),
                "{}",
                text(&o)
            );
            assert!(
                err.contains(&env.path(file).display().to_string()),
                "{}",
                text(&o)
            );
            assert!(err.contains("tjfwd.toml"), "{}", text(&o));
            assert!(err.contains(why), "{}", text(&o));
        }
    }
}

/// Plain http is for loopback only: through the binary, both `run` and
/// `check-config` refuse it for another host (the token would travel in
/// clear) unless `allow_insecure_http = true`, which draws a warning.
#[test]
fn plain_http_to_a_non_loopback_host_is_refused() {
    let env = Env::new();
    let token = env.path("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    set_mode(&token, 0o600);
    let cfg = env.path("tjfwd.toml");
    let base = "state_dir = \"state\"\n[targets.threatjammer]\nbearer_token_file = \"token\"\n\
                api_url = \"http://192.0.2.1/v1/ip\"\n";
    std::fs::write(&cfg, base).unwrap();
    for args in [&["check-config"][..], &["run", "--drain"]] {
        let o = run(args, &cfg);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            err.contains("[targets.threatjammer] api_url"),
            "{}",
            text(&o)
        );
        assert!(err.contains("allow_insecure_http"), "{}", text(&o));
        assert!(err.contains("unencrypted"), "{}", text(&o));
    }
    assert!(
        !env.path("state").exists(),
        "refused before anything was created"
    );
    std::fs::write(&cfg, format!("{base}allow_insecure_http = true\n")).unwrap();
    let o = run(&["check-config", "-q"], &cfg);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("travels unencrypted"),
        "{}",
        text(&o)
    );
}

// ===== permissions ===========================================================

#[test]
fn state_dir_is_0700_and_control_socket_0600() {
    let api = FakeApi::start(fake_config());
    let env = Env::new();
    let cfg = env.config(&api, LIMITS);
    let d = daemon(&env, &cfg);
    let sock = env.path("state/control.sock");
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode_of(&sock), 0o600);
    assert_eq!(mode_of(&env.path("state")), 0o700);
    stop(d);
}

#[test]
fn a_state_dir_others_can_write_is_refused_with_the_fix() {
    let api = FakeApi::start(fake_config());
    let env = Env::new();
    let cfg = env.config(&api, LIMITS);
    // Made by tjfwd (0700), then loosened by someone.
    let o = run(&["run", "--drain"], &cfg);
    assert!(o.status.success(), "{}", text(&o));
    for (path, mode, who) in [
        (env.path("state"), 0o770, "its group"),
        (env.path("state"), 0o777, "every user"),
        (env.path("state/db"), 0o757, "every user"),
    ] {
        set_mode(&path, mode);
        for args in [&["run", "--drain"][..], &["status"], &["export"]] {
            let o = run(args, &cfg);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
            assert!(err.contains(&path.display().to_string()), "{}", text(&o));
            assert!(err.contains(who), "{}", text(&o));
            assert!(
                err.contains(&format!("chmod go-w {}", path.display())),
                "{}",
                text(&o)
            );
        }
        set_mode(&path, 0o700);
    }
    // Not writable by others (e.g. 0755, as `mkdir` makes it): fine.
    set_mode(&env.path("state"), 0o755);
    let o = run(&["run", "--drain"], &cfg);
    assert!(o.status.success(), "{}", text(&o));
}

/// A state directory of another (non-root) user is refused. Needs root.
#[test]
fn a_state_dir_of_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to give the directory to another user");
        return;
    }
    let api = FakeApi::start(fake_config());
    let env = Env::new();
    let cfg = env.config(&api, LIMITS);
    std::fs::create_dir(env.path("state")).unwrap();
    set_mode(&env.path("state"), 0o700);
    std::os::unix::fs::chown(env.path("state"), Some(65534), Some(65534)).unwrap();
    let o = run(&["run", "--drain"], &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(err.contains("belongs to user 65534"), "{}", text(&o));
    assert!(err.contains("runuser -u"), "{}", text(&o));
    assert!(!env.path("state/db").exists(), "nothing was written there");
}

/// A token file (or a config file holding the token) other users can read
/// draws a warning naming it and `chmod 600`; 0600, and 0640 with the
/// group tjfwd runs as (the package's root:tjfwd 0640), do not.
#[test]
fn a_readable_token_file_draws_a_warning() {
    let api = FakeApi::start(fake_config());
    let env = Env::new();
    let cfg = env.config(&api, LIMITS);
    let token = env.path("token");
    // `check-config -q` with `file` at each mode: warned or not.
    let check = |cfg: &Path, file: &Path, modes: &[(u32, bool)]| {
        for &(mode, warned) in modes {
            set_mode(file, mode);
            let o = run(&["check-config", "-q"], cfg);
            assert!(o.status.success(), "{}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            let warning = format!("chmod 600 {}", file.display());
            assert_eq!(err.contains(&warning), warned, "{mode:o}: {}", text(&o));
            assert!(!err.contains(&api.token()), "{}", text(&o));
        }
    };
    check(
        &cfg,
        &token,
        &[(0o644, true), (0o604, true), (0o640, false), (0o600, false)],
    );
    // The same for a config file holding the token inline.
    let inline = env.path("inline.toml");
    std::fs::write(
        &inline,
        format!(
            "state_dir = \"state\"\n[targets.threatjammer]\napi_url = \"{}\"\nbearer_token = \"{}\"\n",
            api.url(),
            api.token()
        ),
    )
    .unwrap();
    check(
        &inline,
        &inline,
        &[(0o644, true), (0o640, false), (0o600, false)],
    );
}

// ===== the token =============================================================

/// A token no other text contains.
const TOKEN: &str = "tjfwd-SeCrEt-7f3a9c1e5b2d4068";

/// Standard base64 (the test needs it for one string: no crate for that).
fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What must never be found: the token, a part of it, `Bearer <token>`,
/// and base64 of both (as in a dumped header or a basic-auth mistake).
fn needles() -> Vec<String> {
    let bearer = format!("Bearer {TOKEN}");
    vec![
        TOKEN.to_string(),
        TOKEN[..16].to_string(),
        TOKEN[TOKEN.len() - 16..].to_string(),
        bearer.clone(),
        base64(TOKEN.as_bytes()),
        base64(bearer.as_bytes()),
        base64(format!(":{TOKEN}").as_bytes()),
    ]
}

/// Everything the commands printed, and the files they wrote, by name.
#[derive(Default)]
struct Seen {
    items: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn add(&mut self, label: String, bytes: Vec<u8>) {
        self.items.push((label, bytes));
    }

    fn output(&mut self, label: String, o: &Output) {
        self.add(format!("{label} (stdout)"), o.stdout.clone());
        self.add(format!("{label} (stderr)"), o.stderr.clone());
    }

    /// Every file under `dir`.
    fn files(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                self.files(&p);
            } else if meta.is_file() {
                self.add(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }

    fn assert_clean(&self) {
        for (label, bytes) in &self.items {
            for n in needles() {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{n:?} found in {label}:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for (_, b) in &self.items {
            s.push_str(&String::from_utf8_lossy(b));
        }
        s
    }
}

#[test]
fn base64_is_standard() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"Bearer x"), "QmVhcmVyIHg=");
}

/// Runs every command of the real binary, with and without a daemon, at
/// trace level in the human and the JSON log formats, through successes, a
/// 401 (wrong token), 503s, dry runs and broken configurations, with the
/// token in a file, inline, in the environment and in cowrie.cfg; then
/// scans every byte printed and every file in the state directory.
#[test]
fn the_token_never_appears_in_anything_any_command_prints_or_writes() {
    let api = FakeApi::start(FakeConfig {
        token: TOKEN.to_string(),
        ..fake_config()
    });
    let env = Env::new();
    let cfg = env.config(&api, LIMITS);
    let cfg_s = cfg.to_str().unwrap().to_string();
    let mut seen = Seen::default();
    let addrs = queue_addresses(&env, 4);

    // A log for replay, and Cowrie's own configuration holding the token.
    let old_log = env.path("old.json");
    let old: Vec<String> = cowrie::public_addresses(8)[4..]
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(&old_log, &old);
    let old_s = old_log.to_str().unwrap().to_string();
    std::fs::create_dir_all(env.path("cowrie/etc")).unwrap();
    let cowrie_cfg = env.path("cowrie/etc/cowrie.cfg");
    std::fs::write(
        &cowrie_cfg,
        format!(
            "[output_threatjammer]\nenabled = false\napi_url = {}\nbearer_token = {TOKEN}\n\
             [output_jsonlog]\nlogfile = {}\n",
            api.url(),
            env.log().display()
        ),
    )
    .unwrap();
    set_mode(&cowrie_cfg, 0o644); // readable: its warning must not quote the token
    let cowrie_s = cowrie_cfg.to_str().unwrap().to_string();
    let cowrie_state = env.path("cowrie-state").to_str().unwrap().to_string();
    // Broken configurations with the token inline (toml quotes the line at
    // fault in its errors), next to it, and in the environment.
    let broken: Vec<(PathBuf, String)> = [
        format!("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN}\" oops\n"),
        format!("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN}\"\nttl = 0\n"),
        format!("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN} x\"\n"),
        format!("bearer_token = \"{TOKEN}\"\n[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN}\"\n"),
        format!("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN}\"\nbearer_token_file = \"token\"\n"),
        format!("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = [\"{TOKEN}\"]\n"),
        format!("[targets.threatjammer]\nbearer_token = \"{TOKEN}\"\napi_url = \"http://192.0.2.1/\"\n"),
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbatch_size = 0\n".to_string(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, text)| {
        let p = env.path(&format!("broken-{i}.toml"));
        std::fs::write(&p, text).unwrap();
        set_mode(&p, 0o644);
        (p.clone(), p.to_str().unwrap().to_string())
    })
    .collect();

    // Trace for tjfwd and for every library (hyper, reqwest, rustls, sled:
    // they are at warn by default), where headers would show if anything
    // logged them: through RUST_LOG with -vv (human), and through
    // --log-level (JSON).
    let everything = "trace,sled=trace,hyper=trace,hyper_util=trace,reqwest=trace,rustls=trace";
    let levels: [&[&str]; 2] = [
        &["-vv"],
        &["--log-format", "json", "--log-level", everything],
    ];
    for (round, level) in levels.iter().enumerate() {
        let run_cmd = |seen: &mut Seen, args: &[&str], envs: &[(&str, &str)]| {
            let mut c = bin();
            c.args(*level).args(args).env("RUST_LOG", everything);
            for (k, v) in envs {
                c.env(k, v);
            }
            let o = c.output().unwrap();
            seen.output(format!("{level:?} {args:?}"), &o);
            o
        };
        let no_daemon_commands: Vec<Vec<&str>> = vec![
            vec!["status", "--config", &cfg_s],
            vec!["status", "--json", "--config", &cfg_s],
            vec!["replay", "--dry-run", &old_s, "--config", &cfg_s],
            vec!["replay", "--no-progress-bar", &old_s, "--config", &cfg_s],
            vec!["resend", "--active", "--config", &cfg_s],
            vec!["resend", "--dead-letter", "--config", &cfg_s],
            vec!["export", "--format", "json", "--config", &cfg_s],
            vec!["export", "--format", "nft", "--config", &cfg_s],
            vec!["flush", "--config", &cfg_s],
            vec!["check-config", "--config", &cfg_s],
            vec!["check-config", "--dry-run", "--config", &cfg_s],
            vec!["config", "import-cowrie", &cowrie_s],
            vec!["check-config", "--cowrie-config", &cowrie_s],
            vec![
                "run",
                "--dry-run",
                "--drain",
                "--cowrie-config",
                &cowrie_s,
                "--state-dir",
                &cowrie_state,
            ],
        ];

        // The API answers 401 (another token), then 503, then accepts: the
        // queue is sent with `run --drain`.
        api.set_token("not-our-token");
        api.push_failures([support::fake_api::Failure::Status(503)]);
        let mut d = spawn(
            bin()
                .args(*level)
                .args(["run", "--config", &cfg_s])
                .env("RUST_LOG", everything),
        );
        assert!(
            api.wait_for_requests(2 * round + 1, Duration::from_secs(20)),
            "{}",
            output_of(&mut d)
        );
        let code = {
            // With the daemon: the commands go through its control socket.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !env.path("state/control.sock").exists() {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut last = None;
            for args in &no_daemon_commands {
                last = run_cmd(&mut seen, args, &[]).status.code();
            }
            last
        };
        assert!(code.is_some());
        sigterm(&d);
        wait_with_limit(&mut d, Duration::from_secs(10));
        seen.add(
            format!("{level:?} run (daemon)"),
            output_of(&mut d).into_bytes(),
        );

        api.set_token(TOKEN);
        let o = run_cmd(&mut seen, &["run", "--drain", "--config", &cfg_s], &[]);
        assert!(o.status.success(), "{}", text(&o));
        // Without a daemon.
        for args in &no_daemon_commands {
            run_cmd(&mut seen, args, &[]);
        }
        // The token from the environment, and broken configurations.
        run_cmd(
            &mut seen,
            &["check-config", "--config", broken[7].1.as_str()],
            &[("TJFWD_BEARER_TOKEN", TOKEN)],
        );
        for (_, b) in &broken {
            for args in [
                vec!["check-config", "--config", b.as_str()],
                vec!["run", "--drain", "--config", b.as_str()],
                vec!["status", "--config", b.as_str()],
            ] {
                let o = run_cmd(&mut seen, &args, &[("TJFWD_BEARER_TOKEN", TOKEN)]);
                assert!(!o.status.success() || args[0] != "run", "{}", text(&o));
            }
        }
        // A broken cowrie.cfg holding the token.
        let bad_cowrie = env.path("cowrie/etc/bad.cfg");
        std::fs::write(
            &bad_cowrie,
            format!("[output_threatjammer]\nbearer_token = {TOKEN}\nttl = ${{nope}}\n{TOKEN}\n"),
        )
        .unwrap();
        for args in [
            vec!["config", "import-cowrie", bad_cowrie.to_str().unwrap()],
            vec![
                "check-config",
                "--cowrie-config",
                bad_cowrie.to_str().unwrap(),
            ],
        ] {
            let o = run_cmd(&mut seen, &args, &[]);
            assert!(!o.status.success(), "{}", text(&o));
        }
    }
    assert_eq!(api.accepted_unique().len(), 8, "everything was delivered");
    seen.files(&env.path("state"));
    seen.files(&env.path("cowrie-state"));

    let all = seen.text();
    assert!(all.contains("401"), "the 401 was logged");
    assert!(all.contains("HTTP 503"), "the 503 was logged");
    assert!(
        all.contains("<redacted>"),
        "check-config showed the token redacted"
    );
    assert!(
        all.contains("\"level\":\"TRACE\""),
        "JSON at trace level ran"
    );
    assert!(all.contains(" TRACE "), "human at trace level ran");
    assert!(addrs.iter().all(|a| all.contains(a.as_str())));
    seen.assert_clean();
}
