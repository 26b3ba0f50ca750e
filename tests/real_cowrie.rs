//! End-to-end test with the real Cowrie 3.1.4 (issue 3, "Tests"): Cowrie
//! runs on loopback ports, real SSH (paramiko) and Telnet login attempts come
//! from many source addresses, and every `src_ip` of a login event in the
//! `cowrie.json` that Cowrie wrote must reach the fake Report API through the
//! real `tjfwd run` binary: first with a TOML config, then with
//! `--cowrie-config` pointing at that Cowrie's `etc/cowrie.cfg`.
//!
//! `.ci/run` installs what this needs: a virtualenv with Cowrie and paramiko
//! (`TJFWD_COWRIE_VENV`) and a system user Cowrie runs as
//! (`TJFWD_COWRIE_USER`, default `tjfwd-cowrie`). The Python helpers are in
//! `tests/cowrie/`. Without them the tests say so and pass, unless `CI` is
//! set; they also need root (for `runuser` and the namespace below).
//!
//! The attackers' addresses. The Report API, and so the fake, refuses
//! non-public addresses with a 422 for the whole request, so loopback
//! sources (127.0.0.x) could never be accepted. Instead each scenario runs in
//! a private network namespace of its own (`unshare(CLONE_NEWNET)` on a
//! dedicated thread, which the fake API, Cowrie, the driver and tjfwd all
//! inherit), whose `lo` carries public test addresses (11.0.0.0/24 and a few
//! 2a00:0:0:1::/64 ones): nothing can leave that namespace, and tjfwd's
//! default filter (`report_non_public = false`) is exercised as in the field.
//! Cowrie still listens on 127.0.0.1 and ::1 only; its Telnet side sits on
//! an IPv6 socket bound to ::ffff:127.0.0.1, so it logs IPv4 peers as
//! `::ffff:a.b.c.d` while SSH logs them plainly, as in the field.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::fake_api::{FakeApi, FakeConfig};

/// One Cowrie at a time: the scenarios run one after the other.
static ONE_COWRIE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The attackers: 19 IPv4 and (when IPv6 works) 2 IPv6 addresses, all
/// public, all on `lo` of the scenario's private network namespace.
const V4_NET: &str = "11.0.0.1/24";
fn v4_sources() -> Vec<String> {
    (2..=20).map(|i| format!("11.0.0.{i}")).collect()
}
const V6_SOURCES: [&str; 2] = ["2a00:0:0:1::2", "2a00:0:0:1::3"];

/// Batches wait this long for more addresses. The Report API allows 6
/// requests a minute: with 2 s, the first 6 batches span the driver's first
/// ~10 s, and the driver makes every source's first attempt in its first
/// wave (a few seconds), so every distinct address normally goes out within
/// them; should one miss them, tjfwd waits for the rolling minute, which
/// the delivery timeout allows for.
const FLUSH_INTERVAL: &str = "2s";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// `tjfwd run --config tjfwd.toml`
    Toml,
    /// `tjfwd run --cowrie-config <cowrie>/etc/cowrie.cfg --config small.toml`
    CowrieConfig,
}

#[test]
fn real_cowrie_logins_reach_the_api_with_a_toml_config() {
    scenario(Variant::Toml);
}

#[test]
fn real_cowrie_logins_reach_the_api_with_cowrie_config() {
    scenario(Variant::CowrieConfig);
}

// ===== prerequisites =====================================================

struct Prereqs {
    python: PathBuf,
    venv: PathBuf,
    user: String,
}

/// Writes straight to the process's stderr, past the test harness's
/// capture, so a skip or the figures show in a normal `cargo test`.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "real_cowrie: {msg}");
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Says why the test is skipped, or fails under CI.
fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("{why} (CI is set, so this is a failure, not a skip)");
    }
    say(&format!("skipped: {why}"));
}

fn prerequisites() -> Option<Prereqs> {
    if !rustix::process::geteuid().is_root() {
        say("skipped: the real-Cowrie test must run as root (CI does)");
        return None;
    }
    let Some(venv) = std::env::var_os("TJFWD_COWRIE_VENV").filter(|v| !v.is_empty()) else {
        skip_or_fail("TJFWD_COWRIE_VENV is not set; run .ci/run to install Cowrie");
        return None;
    };
    let venv = PathBuf::from(venv);
    let python = venv.join("bin/python");
    if !python.exists() || !venv.join("bin/cowrie").exists() {
        skip_or_fail(&format!(
            "no Cowrie in TJFWD_COWRIE_VENV={}; run .ci/run to install Cowrie",
            venv.display()
        ));
        return None;
    }
    let user = std::env::var("TJFWD_COWRIE_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "tjfwd-cowrie".into());
    let known = Command::new("id")
        .args(["-u", &user])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !known {
        skip_or_fail(&format!(
            "the Cowrie user {user} does not exist; run .ci/run to install Cowrie"
        ));
        return None;
    }
    Some(Prereqs { python, venv, user })
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tjfwd"));
    c.env_remove("RUST_LOG")
        .env_remove("TJFWD_CONFIG")
        .env_remove("TJFWD_BEARER_TOKEN");
    // Cowrie's COWRIE_<SECTION>_<KEY> overrides, which --cowrie-config honours.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("COWRIE_") {
            c.env_remove(k);
        }
    }
    c
}

/// Whether this tjfwd has `run --cowrie-config`.
fn has_cowrie_config_flag() -> bool {
    let out = bin().args(["run", "--help"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--cowrie-config")
}

// ===== the private network namespace =====================================

fn find_tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Moves the calling thread (and whatever it starts from now on) into a new
/// network namespace with `lo` up and the attackers' addresses on it.
/// Returns the IPv6 sources that work (none if IPv6 does not).
// unshare(2) has no safe binding (rustix's is unsafe too, for CLONE_FILES).
#[allow(unsafe_code)]
fn enter_private_netns() -> Result<Vec<String>, String> {
    // SAFETY: unshare only changes the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET) failed: {} (the test needs CAP_SYS_ADMIN)",
            std::io::Error::last_os_error()
        ));
    }
    let ip = find_tool("ip");
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new(&ip).args(args).output().map_err(|e| {
            format!(
                "{} {}: {e} (install iproute2)",
                ip.display(),
                args.join(" ")
            )
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(&["link", "set", "lo", "up"])?;
    // On a loopback device the whole prefix becomes local.
    run(&["addr", "add", V4_NET, "dev", "lo"])?;
    let mut v6 = Vec::new();
    for a in V6_SOURCES {
        if run(&[
            "-6",
            "addr",
            "add",
            &format!("{a}/128"),
            "dev",
            "lo",
            "nodad",
        ])
        .is_ok()
        {
            v6.push(a.to_string());
        }
    }
    // IPv6 addresses (::1 included) can take a moment to become usable.
    let deadline = Instant::now() + Duration::from_secs(5);
    let bindable = |a: &str| TcpListener::bind((a.parse::<IpAddr>().unwrap(), 0)).is_ok();
    while Instant::now() < deadline
        && !(bindable("::1") && v6.iter().all(|a| bindable(a)) && bindable("11.0.0.20"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !bindable("11.0.0.20") {
        return Err("11.0.0.20 is not usable in the new namespace".into());
    }
    if !bindable("::1") {
        v6.clear();
    }
    v6.retain(|a| bindable(a));
    Ok(v6)
}

// ===== processes =========================================================

/// A child process whose output goes to a file; killed if still running
/// when dropped.
struct Running {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let out = tempfile::NamedTempFile::new().unwrap();
        // One open file for both: two would each write from their own
        // offset, the later writes over the earlier ones.
        let file = out.reopen().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Running { child, out }
    }

    /// Waits for the exit, killing the child after `limit` (then `None`).
    fn wait_with_limit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn output(&self) -> String {
        let mut s = String::new();
        self.out.reopen().unwrap().read_to_string(&mut s).unwrap();
        s
    }

    fn sigterm(&self) {
        use rustix::process::{kill_process, Pid, Signal};
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/cowrie/cowrie_instance.py"
);
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cowrie/drive_logins.py");

/// Runs a helper to its end (they bound their own time); its stdout.
fn helper(pre: &Prereqs, args: &[&str]) -> Result<String, String> {
    let out = Command::new(&pre.python)
        .arg("-B")
        .arg(HELPER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{HELPER}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{HELPER} {}: {}\n{stdout}{}",
            args.first().unwrap_or(&""),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Stops Cowrie (by the PID in its pid file) when dropped, unless stopped.
struct CowrieGuard<'a> {
    pre: &'a Prereqs,
    dir: PathBuf,
    stopped: bool,
}

impl CowrieGuard<'_> {
    fn stop(&mut self) -> Result<String, String> {
        self.stopped = true;
        helper(self.pre, &["stop", "--dir", self.dir.to_str().unwrap()])
    }
}

impl Drop for CowrieGuard<'_> {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = self.stop() {
                say(&format!("could not stop Cowrie: {e}"));
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn tail_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => tail(&String::from_utf8_lossy(&b), lines),
        Err(e) => format!("({}: {e})", path.display()),
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ===== the oracle ========================================================

/// `src_ip` as tjfwd must report it: `::ffff:a.b.c.d` is `a.b.c.d`.
fn normalize(src_ip: &str) -> String {
    match src_ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        Ok(ip) => ip.to_string(),
        Err(_) => panic!("Cowrie logged a src_ip that is no address: {src_ip:?}"),
    }
}

/// What Cowrie wrote, from every `cowrie.json*` file of its log directory
/// (a rotation at midnight would have renamed the live file).
#[derive(Default, Debug)]
struct CowrieLog {
    events: usize,
    by_eventid: BTreeMap<String, usize>,
    /// Login events (success or failure) by protocol.
    logins_by_protocol: BTreeMap<String, usize>,
    /// Normalized `src_ip` of every login event.
    login_addresses: BTreeSet<String>,
    /// Raw `src_ip` forms seen in login events (to show both forms occur).
    raw_forms: BTreeSet<String>,
}

fn read_cowrie_log(log_dir: &Path) -> CowrieLog {
    let mut log = CowrieLog::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cowrie.json"))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "Cowrie wrote no cowrie.json in {}",
        log_dir.display()
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", f.display()));
            log.events += 1;
            let eventid = v["eventid"].as_str().unwrap_or("").to_string();
            *log.by_eventid.entry(eventid.clone()).or_default() += 1;
            if eventid == "cowrie.login.success" || eventid == "cowrie.login.failed" {
                let src = v["src_ip"].as_str().expect("login event without src_ip");
                let proto = v["protocol"].as_str().unwrap_or("?").to_string();
                *log.logins_by_protocol.entry(proto).or_default() += 1;
                log.login_addresses.insert(normalize(src));
                log.raw_forms.insert(src.to_string());
            }
        }
    }
    log
}

/// An address as sent, in canonical text form (for IPv6).
fn canonical(address: &str) -> String {
    address
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| address.to_string())
}

// ===== the scenario ======================================================

fn scenario(variant: Variant) {
    let _one = ONE_COWRIE_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let Some(pre) = prerequisites() else { return };
    if variant == Variant::CowrieConfig && !has_cowrie_config_flag() {
        panic!(
            "`tjfwd run --help` shows no --cowrie-config option yet (issue 3, \
             \"Reading the operator's cowrie.cfg\"): this test runs once it exists"
        );
    }
    // Everything runs on one thread moved into a private network namespace;
    // what it starts (the fake API's thread, Cowrie, the driver, tjfwd)
    // inherits that namespace.
    let thread = std::thread::Builder::new()
        .name(format!("real-cowrie-{variant:?}"))
        .spawn(move || {
            let v6 = match enter_private_netns() {
                Ok(v6) => v6,
                Err(why) => {
                    skip_or_fail(&format!("no private network namespace: {why}"));
                    return;
                }
            };
            run_in_netns(&pre, variant, &v6);
        })
        .unwrap();
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn run_in_netns(pre: &Prereqs, variant: Variant, v6_sources: &[String]) {
    let started = Instant::now();
    let api = FakeApi::start(FakeConfig::default());
    let token = api.token();
    let work = tempfile::tempdir().unwrap();
    let cowrie_dir = tempfile::Builder::new()
        .prefix("tjfwd-cowrie-")
        .tempdir()
        .unwrap();
    let dir = cowrie_dir.path().to_str().unwrap().to_string();
    let venv = pre.venv.to_str().unwrap();

    // Prepare and start Cowrie.
    let url = api.url();
    let mut prepare = vec![
        "prepare",
        "--dir",
        &dir,
        "--user",
        &pre.user,
        "--venv",
        venv,
        "--api-url",
        &url,
        "--token",
        &token,
    ];
    if !v6_sources.is_empty() {
        prepare.push("--ipv6");
    }
    let info = helper(pre, &prepare).unwrap_or_else(|e| panic!("{e}"));
    let info: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    let ipv6 = info["ipv6"].as_bool().unwrap();
    let ssh_port = info["ssh_port"].as_u64().unwrap().to_string();
    let telnet_port = info["telnet_port"].as_u64().unwrap().to_string();
    let json_log = PathBuf::from(info["json_log"].as_str().unwrap());
    let cowrie_log = PathBuf::from(info["cowrie_log"].as_str().unwrap());
    let cowrie_cfg = PathBuf::from(info["cowrie_cfg"].as_str().unwrap());

    let mut cowrie = CowrieGuard {
        pre,
        dir: cowrie_dir.path().to_path_buf(),
        stopped: false,
    };
    let t = Instant::now();
    helper(
        pre,
        &["start", "--dir", &dir, "--user", &pre.user, "--venv", venv],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cowrie_start = t.elapsed();

    // Start tjfwd.
    let state_dir = work.path().join("state");
    let mut cmd = bin();
    cmd.current_dir(work.path());
    match variant {
        Variant::Toml => {
            let token_file = work.path().join("token");
            std::fs::write(&token_file, format!("{token}\n")).unwrap();
            set_mode(&token_file, 0o600);
            let cfg = work.path().join("tjfwd.toml");
            std::fs::write(
                &cfg,
                format!(
                    r#"state_dir = {state:?}

[input]
cowrie_json = {json_log:?}
start_at = "beginning"
poll_interval = "50ms"

[targets.threatjammer]
api_url = {url:?}
bearer_token_file = {token_file:?}
flush_interval = "{FLUSH_INTERVAL}"
"#,
                    state = state_dir.to_str().unwrap(),
                    token_file = token_file.to_str().unwrap(),
                    json_log = json_log.to_str().unwrap(),
                ),
            )
            .unwrap();
            set_mode(&cfg, 0o600);
            cmd.args(["run", "--config"]).arg(&cfg);
        }
        Variant::CowrieConfig => {
            // API URL, token and log path come from cowrie.cfg; what it
            // cannot say (where to start on a first run, the tests'
            // shorter intervals) from a small TOML beside it.
            let cfg = work.path().join("extra.toml");
            std::fs::write(
                &cfg,
                format!(
                    r#"[input]
start_at = "beginning"
poll_interval = "50ms"

[targets.threatjammer]
flush_interval = "{FLUSH_INTERVAL}"
"#
                ),
            )
            .unwrap();
            cmd.args(["run", "--cowrie-config"])
                .arg(&cowrie_cfg)
                .arg("--state-dir")
                .arg(&state_dir)
                .arg("--config")
                .arg(&cfg);
        }
    }
    let mut tjfwd = Running::spawn(&mut cmd);

    // The attacks.
    let mut sources = v4_sources();
    if ipv6 {
        sources.extend(v6_sources.iter().cloned());
    }
    let t = Instant::now();
    let mut driver = Running::spawn(
        Command::new(&pre.python)
            .arg("-B")
            .arg(DRIVER)
            .args(["--ssh-port", &ssh_port, "--telnet-port", &telnet_port])
            .args(["--sources", &sources.join(",")])
            .args(["--deadline", "90"]),
    );
    let driver_status = driver.wait_with_limit(Duration::from_secs(120));
    let driver_time = t.elapsed();
    let driver_out = driver.output();
    let stopped = cowrie.stop();
    let cowrie_end = Instant::now();

    let diagnostics_with = |what: &str, tjfwd_out: &str| -> String {
        format!(
            "{what}\n--- driver ---\n{}\n--- tjfwd (end) ---\n{}\n--- cowrie.log (end) ---\n{}\n--- API requests ---\n{:?}",
            tail(&driver_out, 30),
            tail(tjfwd_out, 40),
            tail_file(&cowrie_log, 30),
            api.requests()
                .iter()
                .map(|r| (r.status, r.addresses.len()))
                .collect::<Vec<_>>(),
        )
    };
    let diagnostics = |what: &str| diagnostics_with(what, &tjfwd.output());
    assert_eq!(
        driver_status.map(|s| s.success()),
        Some(true),
        "{}",
        diagnostics("the login driver failed or timed out")
    );
    let summary: serde_json::Value = driver_out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{}", diagnostics("no summary from the driver")));
    let stopped = stopped.unwrap_or_else(|e| panic!("{}", diagnostics(&e)));
    assert!(stopped.contains("stopped"), "{stopped}");

    // The oracle: what Cowrie wrote.
    let log = read_cowrie_log(json_log.parent().unwrap());
    let expected = log.login_addresses.clone();
    let mut driven: BTreeSet<String> = BTreeSet::new();
    for s in summary["sources"].as_array().unwrap() {
        driven.insert(normalize(s.as_str().unwrap()));
    }
    assert!(!expected.is_empty(), "{}", diagnostics("no login events"));
    assert_eq!(
        expected, driven,
        "Cowrie logged logins from exactly the driven sources"
    );
    assert!(expected.len() >= 10, "{expected:?}");
    for proto in ["ssh", "telnet"] {
        assert!(
            log.logins_by_protocol.get(proto).copied().unwrap_or(0) > 0,
            "no {proto} login in cowrie.json: {log:?}"
        );
    }
    for id in ["cowrie.login.success", "cowrie.login.failed"] {
        assert!(
            log.by_eventid.get(id).copied().unwrap_or(0) > 0,
            "no {id}: {log:?}"
        );
    }

    // Everything reaches the API.
    let accepted =
        || -> BTreeSet<String> { api.accepted_unique().iter().map(|a| canonical(a)).collect() };
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while !expected.is_subset(&accepted()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let delivered_after = cowrie_end.elapsed();
    tjfwd.sigterm();
    let status = tjfwd.wait_with_limit(Duration::from_secs(15));
    let out = tjfwd.output();
    let got = accepted();
    assert_eq!(
        got,
        expected,
        "{}",
        diagnostics_with(
            &format!(
                "accepted by the API (left) vs login addresses in cowrie.json (right); \
                 missing: {:?}",
                expected.difference(&got).collect::<Vec<_>>()
            ),
            &out
        )
    );
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{out}");

    // The API's contract was kept: no 429, no 422, nothing but 202s.
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| r.status == 202 && r.authorized),
        "{}",
        diagnostics_with("a request was not answered 202", &out)
    );
    assert!(!requests.iter().any(|r| r.status == 429));
    assert!(!out.contains(&token), "the token leaked:\n{out}");
    assert!(
        !out.contains(&token[..12]),
        "part of the token leaked:\n{out}"
    );

    say(&format!(
        "{variant:?}: {} login attempts ({} ssh, {} telnet; {} succeeded, {} failed) \
         from {} sources in {:.1}s; cowrie.json: {} events, {} logins ({:?}), \
         {} distinct addresses ({} raw forms); the API accepted them in {} requests \
         ({} addresses), all {:.1}s after Cowrie stopped; Cowrie up in {:.1}s; \
         scenario {:.1}s",
        summary["attempts"],
        summary["ssh"],
        summary["telnet"],
        summary["succeeded"],
        summary["failed"],
        sources.len(),
        driver_time.as_secs_f64(),
        log.events,
        log.logins_by_protocol.values().sum::<usize>(),
        log.logins_by_protocol,
        expected.len(),
        log.raw_forms.len(),
        requests.len(),
        api.accepted_addresses().len(),
        delivered_after.as_secs_f64(),
        cowrie_start.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    ));
}
