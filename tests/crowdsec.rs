//! The CrowdSec target, end to end through the real `tjfwd` binary:
//!
//! - against the **real** CrowdSec Local API from Debian's `crowdsec`
//!   package (`.ci/run` installs it): the test starts `crowdsec -no-cs`
//!   (the LAPI alone, no agent, no Central API) with its own configuration,
//!   database and loopback port in a temporary directory, registers a
//!   machine with `cscli machines add`, runs tjfwd, and reads back what
//!   bouncers would enforce with `cscli decisions list -a -o json`. Without
//!   crowdsec it says it is skipped, and fails when `CI` is set;
//! - against the fake LAPI (`tests/support/fake_crowdsec.rs`): the
//!   1000-decision cap, the token renewed before it expires and after a
//!   401, an outage, and no address lost or invented.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::bin::{bin, output_of, set_mode, sigterm, spawn, wait_with_limit, Env, Running};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};
use support::fake_crowdsec::{
    FakeLapi, LapiConfig, ALERTS_PATH, DEFAULT_MACHINE, DEFAULT_PASSWORD, LOGIN_PATH,
};
use support::fake_server::parse_go_duration;

const PASSWORD_ENV: &str = "TJFWD_CROWDSEC_PASSWORD";

/// A tjfwd configuration (Threat Jammer on `api`, which tjfwd always
/// reports to, and the CrowdSec target on `lapi_url`), the password in a
/// 0600 file.
fn config(
    env: &Env,
    api: &FakeApi,
    lapi_url: &str,
    machine: &str,
    password: &str,
    extra: &str,
) -> PathBuf {
    let cfg = env.config(api, "");
    let pw = env.path("crowdsec-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    set_mode(&pw, 0o600);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[targets.crowdsec]\nlapi_url = \"{lapi_url}\"\nmachine_id = \"{machine}\"\n\
         password_file = \"crowdsec-password\"\n{extra}\n"
    ));
    // Short test timings, unless `extra` sets them.
    for (key, value) in [
        ("flush_interval", "100ms"),
        ("max_backoff", "500ms"),
        ("request_timeout", "10s"),
    ] {
        if !extra.contains(key) {
            text.push_str(&format!("{key} = \"{value}\"\n"));
        }
    }
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn tjfwd() -> Command {
    let mut c = bin();
    c.env_remove(PASSWORD_ENV)
        .env_remove("CREDENTIALS_DIRECTORY");
    c
}

fn write_logins(path: &Path, addrs: &[String]) {
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(path, &lines);
}

fn v6_addresses(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("2a00:1450:4001::{i:x}")).collect()
}

// ===== the real CrowdSec ===================================================

/// `crowdsec` and `cscli`, when installed.
fn crowdsec_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    Some((find("crowdsec")?, find("cscli")?))
}

/// A LAPI of the real CrowdSec, in a directory of its own; stopped (and
/// waited for) when dropped.
struct RealLapi {
    dir: tempfile::TempDir,
    cscli: PathBuf,
    child: Child,
    addr: SocketAddr,
}

impl Drop for RealLapi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealLapi {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("crowdsec.log")).unwrap_or_default()
    }

    fn cscli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.cscli)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Writes its configuration, registers `machine` (and a reader for
    /// cscli itself), starts the LAPI on a free loopback port and waits
    /// until it answers.
    fn start(crowdsec: &Path, cscli: &Path, machine: &str, password: &str) -> RealLapi {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A free port, chosen by the kernel; the LAPI binds it right after.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::write(
            d.join("profiles.yaml"),
            "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\n\
             decisions:\n - type: ban\n   duration: 4h\non_success: break\n",
        )
        .unwrap();
        std::fs::write(d.join("simulation.yaml"), "simulation: off\n").unwrap();
        let p = |name: &str| d.join(name).display().to_string();
        std::fs::write(
            d.join("config.yaml"),
            format!(
                "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\n\
                 config_paths:\n  config_dir: {dir}/\n  data_dir: {data}/\n  simulation_path: {sim}\n\
                 \x20 hub_dir: {dir}/hub/\n  index_path: {dir}/hub/.index.json\n\
                 \x20 notification_dir: {dir}/notifications/\n  plugin_dir: {dir}/plugins/\n\
                 crowdsec_service:\n  acquisition_path: {dir}/acquis.yaml\n\
                 cscli:\n  output: human\n  color: no\n\
                 db_config:\n  log_level: info\n  type: sqlite\n  db_path: {data}/crowdsec.db\n  use_wal: true\n\
                 api:\n  client:\n    credentials_path: {creds}\n\
                 \x20 server:\n    log_level: info\n    listen_uri: {addr}\n    profiles_path: {profiles}\n\
                 \x20   trusted_ips:\n      - 127.0.0.1\n\
                 prometheus:\n  enabled: false\n",
                dir = d.display(),
                data = p("data"),
                sim = p("simulation.yaml"),
                creds = p("reader-credentials.yaml"),
                profiles = p("profiles.yaml"),
            ),
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = Command::new(cscli)
                .arg("-c")
                .arg(d.join("config.yaml"))
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cscli {args:?}: {}",
                support::bin::text(&out)
            );
        };
        let unused = p("unused-credentials.yaml");
        run(&[
            "machines",
            "add",
            machine,
            "--password",
            password,
            "-f",
            &unused,
        ]);
        let reader = p("reader-credentials.yaml");
        run(&["machines", "add", "cscli-reader", "--auto", "-f", &reader]);

        let log = std::fs::File::create(d.join("crowdsec.log")).unwrap();
        let child = Command::new(crowdsec)
            .arg("-c")
            .arg(d.join("config.yaml"))
            .args(["-no-cs", "-no-capi"])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lapi = RealLapi {
            dir,
            cscli: cscli.to_path_buf(),
            child,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = lapi.child.try_wait().unwrap() {
                panic!("crowdsec exited ({status}):\n{}", lapi.log());
            }
            assert!(
                Instant::now() < deadline,
                "the LAPI never listened:\n{}",
                lapi.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        lapi
    }

    /// Every active decision as `cscli decisions list -a -o json` shows
    /// it (what bouncers receive): value → (type, scope, origin, remaining
    /// seconds); the longest when a value has several.
    fn decisions(&self) -> BTreeMap<String, (String, String, String, f64)> {
        let out = self.cscli(&["decisions", "list", "-a", "-l", "0", "-o", "json"]);
        assert!(out.status.success(), "{}", support::bin::text(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let alerts: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
        let mut found = BTreeMap::new();
        for alert in alerts.as_array().into_iter().flatten() {
            for d in alert["decisions"].as_array().into_iter().flatten() {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
                let secs = parse_go_duration(&s("duration")).unwrap_or(-1.0);
                let e =
                    found
                        .entry(s("value"))
                        .or_insert((s("type"), s("scope"), s("origin"), secs));
                if secs > e.3 {
                    e.3 = secs;
                }
            }
        }
        found
    }
}

#[test]
fn the_real_crowdsec_lapi_bans_every_address_for_the_configured_duration() {
    const TEST: &str = "the_real_crowdsec_lapi_bans_every_address_for_the_configured_duration";
    let Some((crowdsec, cscli)) = crowdsec_tools() else {
        support::skip_or_fail(
            TEST,
            "crowdsec is not installed (.ci/run installs Debian's crowdsec)",
        );
        return;
    };
    let password = "tjfwd-Real-LAPI-password-0123456789";
    let lapi = RealLapi::start(&crowdsec, &cscli, "tjfwd-honeypot", password);

    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    // 1200 IPv4 addresses (two alerts: at most 1000 decisions each) and
    // some IPv6 ones, one of them IPv4-mapped.
    let mut addrs = cowrie::public_addresses(1200);
    addrs.extend(v6_addresses(20));
    let mut lines_addrs = addrs.clone();
    lines_addrs.push("::ffff:11.200.0.1".into());
    write_logins(&env.log(), &lines_addrs);
    addrs.push("11.200.0.1".into());
    let cfg = config(
        &env,
        &api,
        &format!("http://{}", lapi.addr),
        "tjfwd-honeypot",
        password,
        "duration = \"2h\"",
    );
    let started = Instant::now();
    let mut run = spawn(tjfwd().args(["run", "--drain", "--config"]).arg(&cfg));
    let status = wait_with_limit(&mut run, Duration::from_secs(120));
    let out = output_of(&mut run);
    assert!(
        status.is_some_and(|s| s.success()),
        "tjfwd: {status:?}\n{out}\n--- crowdsec\n{}",
        lapi.log()
    );
    let took = started.elapsed();

    let found = lapi.decisions();
    let want: BTreeSet<String> = addrs.iter().cloned().collect();
    let missing: Vec<&String> = want.iter().filter(|a| !found.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let invented: Vec<&String> = found.keys().filter(|a| !want.contains(*a)).collect();
    assert!(invented.is_empty(), "not sent: {invented:?}");
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for (value, (kind, scope, origin, secs)) in &found {
        assert_eq!(
            (kind.as_str(), scope.as_str(), origin.as_str()),
            ("ban", "Ip", "tjfwd"),
            "{value}"
        );
        lo = lo.min(*secs);
        hi = hi.max(*secs);
    }
    let configured = 7200.0;
    let elapsed = took.as_secs_f64() + 10.0;
    assert!(
        lo >= configured - elapsed && hi <= configured,
        "remaining durations {lo}..{hi} s, configured {configured} s"
    );
    // The alerts: at most 1000 decisions each, tjfwd's own text.
    let out = lapi.cscli(&["alerts", "list", "-a", "-l", "0", "-o", "json"]);
    let alerts: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let alerts = alerts.as_array().cloned().unwrap_or_default();
    assert!(alerts.len() >= 2, "{alerts:?}");
    for a in &alerts {
        assert_eq!(a["scenario"], "tjfwd/cowrie-login");
        assert_eq!(a["machine_id"], "tjfwd-honeypot");
    }
    eprintln!(
        "{TEST}: {} addresses banned by the real LAPI ({} alerts) in {:.1} s; remaining {:.0}..{:.0} s of {configured} s",
        found.len(),
        alerts.len(),
        took.as_secs_f64(),
        lo,
        hi
    );

    // A wrong password: the login is refused, tjfwd says what to check and
    // keeps the addresses (it does not exit, it retries slowly).
    let env = Env::new();
    write_logins(&env.log(), &cowrie::public_addresses(3));
    let cfg = config(
        &env,
        &api,
        &format!("http://{}", lapi.addr),
        "tjfwd-honeypot",
        "not-the-password",
        "",
    );
    let mut run = spawn(tjfwd().args(["run", "--config"]).arg(&cfg));
    let out = wait_for_output(&mut run, "refused the login", Duration::from_secs(30));
    assert!(out.contains("machine_id"), "{out}");
    assert!(
        !out.contains("not-the-password"),
        "the password was printed:\n{out}"
    );
    sigterm(&run);
    wait_with_limit(&mut run, Duration::from_secs(20)).expect("tjfwd stops on SIGTERM");
}

/// Waits until `r`'s output contains `needle`, at most `limit`.
fn wait_for_output(r: &mut Running, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = output_of(r);
        if out.contains(needle) {
            return out;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{out}");
        if let Some(s) = r.child.try_wait().unwrap() {
            panic!("tjfwd exited ({s}) before {needle:?}:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ===== the fake LAPI =======================================================

/// Decisions per value in the fake, and the size of each alert.
fn by_value(lapi: &FakeLapi) -> (BTreeSet<String>, Vec<usize>) {
    let values = lapi.decisions().into_iter().map(|d| d.value).collect();
    let sizes = lapi.alerts().iter().map(|a| a.decision_ids.len()).collect();
    (values, sizes)
}

#[test]
fn a_batch_is_one_alert_of_at_most_1000_ban_decisions() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let lapi = FakeLapi::start(LapiConfig::default());
    let addrs = cowrie::public_addresses(2500);
    write_logins(&env.log(), &addrs);
    let cfg = config(
        &env,
        &api,
        &lapi.url(),
        DEFAULT_MACHINE,
        DEFAULT_PASSWORD,
        "duration = \"90m\"\nflush_interval = \"10m\"",
    );
    let mut run = spawn(tjfwd().args(["run", "--drain", "--config"]).arg(&cfg));
    let status = wait_with_limit(&mut run, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        output_of(&mut run)
    );

    let (values, sizes) = by_value(&lapi);
    assert_eq!(values, addrs.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(lapi.decisions().len(), 2500, "each address once");
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(lapi.logins(), 1, "one login for the whole run");
    for d in lapi.decisions() {
        assert_eq!(
            (d.kind.as_str(), d.scope.as_str(), d.duration.as_str()),
            ("ban", "Ip", "1h30m")
        );
        assert_eq!(
            (d.origin.as_str(), d.scenario.as_str()),
            ("tjfwd", "tjfwd/cowrie-login")
        );
    }
    for a in lapi.alerts() {
        // Only tjfwd's counts in the message, no address.
        assert!(
            !addrs.iter().any(|x| a.message.contains(x.as_str())),
            "{}",
            a.message
        );
    }
    // The login named the scenario and came with a name/version agent.
    let login = lapi
        .requests()
        .into_iter()
        .find(|r| r.path == LOGIN_PATH)
        .unwrap();
    assert!(login.body.contains("tjfwd/cowrie-login"), "{}", login.body);
    assert!(login
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("tjfwd/")));
}

#[test]
fn the_token_is_renewed_before_it_expires_and_after_a_401_and_an_outage_loses_nothing() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let lapi = FakeLapi::start(LapiConfig {
        token_lifetime: Duration::from_secs(3),
        ..LapiConfig::default()
    });
    let cfg = config(
        &env,
        &api,
        &lapi.url(),
        DEFAULT_MACHINE,
        DEFAULT_PASSWORD,
        "",
    );
    std::fs::write(env.log(), "").unwrap();
    let mut run = spawn(tjfwd().args(["run", "--config"]).arg(&cfg));
    let all = cowrie::public_addresses(1600);
    let waves: Vec<&[String]> = all.chunks(400).collect();
    let wait = |n: usize, what: &str, run: &mut Running| {
        assert!(
            lapi.wait_for_decisions(n, Duration::from_secs(30)),
            "{what}: {} of {n} decisions\n{:?}\n{}",
            lapi.decisions().len(),
            lapi.requests()
                .iter()
                .map(|r| (r.path.clone(), r.status, r.answer.clone()))
                .collect::<Vec<_>>(),
            output_of(run)
        );
    };

    // 1: a login, then the alert.
    write_logins(&env.log(), waves[0]);
    wait(400, "first wave", &mut run);
    // 2: past the token's life: a new login first, no 401.
    std::thread::sleep(Duration::from_millis(3500));
    write_logins(&env.log(), waves[1]);
    wait(800, "after the token's expiry", &mut run);
    // 3: the LAPI forgets its tokens (a restart): a 401, a login, the
    // alert again.
    lapi.revoke_tokens();
    write_logins(&env.log(), waves[2]);
    wait(1200, "after the tokens were revoked", &mut run);
    // 4: an outage: 503s, then back.
    lapi.set_down(true);
    write_logins(&env.log(), waves[3]);
    assert!(lapi.wait_for_requests(lapi.request_count() + 3, Duration::from_secs(10)));
    lapi.set_down(false);
    wait(1600, "after the outage", &mut run);
    sigterm(&run);
    wait_with_limit(&mut run, Duration::from_secs(20)).expect("tjfwd stops on SIGTERM");

    let (values, sizes) = by_value(&lapi);
    assert_eq!(
        values,
        all.iter().cloned().collect::<BTreeSet<_>>(),
        "none lost, none invented"
    );
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    let recs = lapi.requests();
    let seq: Vec<(&str, u16)> = recs
        .iter()
        .map(|r| {
            (
                if r.path == LOGIN_PATH {
                    "login"
                } else if r.path == ALERTS_PATH {
                    "alert"
                } else {
                    "other"
                },
                r.status,
            )
        })
        .collect();
    // Renewed before expiry: a login right after a delivered alert.
    let proactive = seq
        .windows(2)
        .any(|w| w[0] == ("alert", 201) && w[1] == ("login", 200));
    assert!(proactive, "{seq:?}");
    // The revoked token: a 401 to an alert, then a login and the alert again.
    let renewed = seq
        .windows(3)
        .any(|w| w[0] == ("alert", 401) && w[1] == ("login", 200) && w[2] == ("alert", 201));
    assert!(renewed, "{seq:?}");
    assert!(seq.iter().any(|&(_, s)| s == 503), "{seq:?}");
    // Every 401 was followed by a login: never a loop of refused alerts.
    for w in seq.windows(2) {
        if w[0] == ("alert", 401) {
            assert_eq!(w[1].0, "login", "{seq:?}");
        }
    }
    // Each address delivered once: no decision made twice for one sighting.
    assert_eq!(lapi.decisions().len(), 1600);
}
