//! The real `tjfwd` binary reading an operator's cowrie.cfg:
//! `tjfwd config import-cowrie` and `tjfwd run --cowrie-config`, on the
//! fixtures in tests/fixtures/cowrie/ (a git-install layout with
//! etc/cowrie.cfg.dist and etc/cowrie.cfg).
//!
//! The fixtures are copied to a temporary directory (the Cowrie directory is
//! derived from where cowrie.cfg is, and the log is written under it).
//! Children's output goes to files, never to pipes nobody reads.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The token in tests/fixtures/cowrie/sensor/etc/cowrie.cfg.
const FIXTURE_TOKEN: &str = "TJ-fixture-0f9e8d7c6b5a49382716";
/// A token given by the environment.
const ENV_TOKEN: &str = "TJ-env-token-5a4b3c2d1e";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cowrie")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
            // As an operator would keep a file holding a token.
            fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        }
    }
}

/// A copy of one fixture tree in a temporary directory.
struct Sensor {
    dir: tempfile::TempDir,
}

impl Sensor {
    fn new(fixture: &str) -> Sensor {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixtures().join(fixture), dir.path());
        Sensor { dir }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
    fn cowrie_cfg(&self) -> PathBuf {
        self.path("etc/cowrie.cfg")
    }
    /// Where the sensor fixture's cowrie.cfg puts the JSON log:
    /// `${data_root}/log/honeypot` with `[DEFAULT] data_root = var`.
    fn json_log(&self) -> PathBuf {
        self.path("var/log/honeypot/cowrie.json")
    }
    fn append_log(&self, lines: &[&str]) {
        use std::io::Write;
        let log = self.json_log();
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    }
}

/// What a finished child printed.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
    /// Neither stream holds a token.
    fn assert_no_token(&self) {
        for token in [FIXTURE_TOKEN, ENV_TOKEN] {
            assert!(!self.all().contains(token), "token leaked:\n{}", self.all());
        }
    }
}

/// Runs the binary with `args` in `cwd`, its output in files under `cwd`.
fn tjfwd(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = cwd.join("child.stdout");
    let err = cwd.join("child.stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tjfwd"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TJFWD_CONFIG")
        .env_remove("TJFWD_BEARER_TOKEN")
        .env_remove("TJFWD_ABUSEIPDB_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("COWRIE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap();
    Output {
        code: status.code(),
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    }
}

/// Events of the JSON log: two public sources, one of them only through a
/// session event (Telnet's `::ffff:` form), one documentation address that
/// is never reported, and an event that is not selected.
const EVENTS: [&str; 5] = [
    r#"{"eventid":"cowrie.session.connect","src_ip":"::ffff:80.82.77.33","src_port":40112,"protocol":"telnet","session":"b1","timestamp":"2026-11-22T12:00:01.000000Z","message":"New connection"}"#,
    r#"{"eventid":"cowrie.login.failed","src_ip":"45.33.32.156","username":"root","password":"123456","session":"a1","timestamp":"2026-11-22T12:00:02.000000Z","message":"login attempt [root/123456] failed"}"#,
    r#"{"eventid":"cowrie.client.version","src_ip":"185.220.101.4","version":"SSH-2.0-Go","session":"c1","timestamp":"2026-11-22T12:00:03.000000Z","message":"Remote SSH version"}"#,
    r#"{"eventid":"cowrie.login.success","src_ip":"203.0.113.9","username":"root","password":"root","session":"d1","timestamp":"2026-11-22T12:00:04.000000Z","message":"login attempt [root/root] succeeded"}"#,
    r#"{"eventid":"cowrie.login.failed","src_ip":"45.33.32.156","username":"admin","password":"admin","session":"a2","timestamp":"2026-11-22T12:00:05.000000Z","message":"login attempt [admin/admin] failed"}"#,
];

/// The dry-run batch line of a run's log, if any.
fn batch_line(o: &Output) -> Option<String> {
    o.stderr
        .lines()
        .find(|l| l.contains("would send a batch"))
        .map(str::to_string)
}

/// Runs `args` (a `run --dry-run --drain` command line) twice around
/// appending EVENTS to the log: the first run finds the log empty and
/// records where it ends (start_at = "end" skips what a log holds when
/// tjfwd first sees it), the second reads what was appended.
fn drain_twice(s: &Sensor, args: &[&str], env: &[(&str, &str)]) -> Output {
    s.append_log(&[]);
    let first = tjfwd(s.root(), args, env);
    first.assert_code(0);
    first.assert_no_token();
    assert_eq!(batch_line(&first), None, "{}", first.stderr);
    s.append_log(&EVENTS);
    let second = tjfwd(s.root(), args, env);
    second.assert_code(0);
    second.assert_no_token();
    second
}

fn assert_reports_the_events(o: &Output, tags: &str, ttl: u64) {
    let batch = batch_line(o).unwrap_or_else(|| panic!("no batch logged:\n{}", o.stderr));
    assert!(batch.contains("count=2"), "{batch}");
    assert!(
        batch.contains("addresses=80.82.77.33,45.33.32.156"),
        "{batch}"
    );
    assert!(batch.contains(&format!("ttl={ttl}")), "{batch}");
    assert!(batch.contains(&format!("tags={tags}")), "{batch}");
    // The request as it would go: the endpoint and the JSON body.
    assert!(
        batch.contains(&format!("\"ttl\":{ttl},"))
            && batch.contains("request=POST https://")
            && batch.contains("{\"addresses\":[\"80.82.77.33\",\"45.33.32.156\"],\"tags\":"),
        "{batch}"
    );
    assert!(!batch.contains("185.220.101.4"), "{batch}");
    assert!(!batch.contains("203.0.113.9"), "{batch}");
}

#[test]
fn import_cowrie_prints_a_commented_config_without_the_token() {
    let s = Sensor::new("sensor");
    let o = tjfwd(
        s.root(),
        &["config", "import-cowrie", "etc/cowrie.cfg"],
        &[],
    );
    o.assert_code(0);
    o.assert_no_token();
    let toml = &o.stdout;
    let root = s.root().display().to_string();
    // [output_threatjammer], key by key, `key: value` lines included.
    for line in [
        "api_url = \"https://london.report.example.net/v1/ip\"",
        "bearer_token_file = \"/etc/tjfwd/token\"",
        "track_login = true",
        "track_session = true",
        "ttl = 3600",
        "category = \"ABUSE\"",
        "tags = \"COWRIE,SSH,TELNET\"",
        "allow_insecure_http = false",
    ] {
        assert!(
            toml.lines().any(|l| l.starts_with(line)),
            "{line:?} missing:\n{toml}"
        );
    }
    // The JSON log: ${honeypot:log_path} -> ${data_root}/log/honeypot from
    // [DEFAULT], relative to the Cowrie directory (the parent of etc/).
    let log = format!("cowrie_json = \"{root}/var/log/honeypot/cowrie.json\"");
    assert!(toml.contains(&log), "{log:?} missing:\n{toml}");
    // The other sections, with tjfwd's defaults, and the token instructions.
    for section in ["[targets.threatjammer]", "[input]", "[filter]", "[storage]"] {
        assert!(toml.contains(section), "{section} missing:\n{toml}");
    }
    // Threat Jammer's keys, in one table (not the deprecated ones).
    assert!(toml.contains("\nbatch_size = 1000"), "{toml}");
    assert!(!toml.contains("[schedule]"), "{toml}");
    assert!(!toml.contains("\n[threatjammer]"), "{toml}");
    assert!(toml.contains("install -m 600"), "{toml}");
    assert!(toml.contains("etc/cowrie.cfg.dist"), "{toml}");
    // The plugin is enabled in this cowrie.cfg: said on stderr and in the file.
    assert!(o.stderr.contains("enabled = true"), "{}", o.stderr);
    assert!(o.stderr.contains("6 requests a minute"), "{}", o.stderr);
    assert!(toml.contains("# WARNING:"), "{toml}");
    assert!(toml.contains("enabled = false"), "{toml}");
}

#[test]
fn run_with_cowrie_config_reads_the_log_cowrie_cfg_names() {
    let s = Sensor::new("sensor");
    let state = s.path("state");
    let args = [
        "run",
        "--dry-run",
        "--drain",
        "--cowrie-config",
        "etc/cowrie.cfg",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let o = drain_twice(&s, &args, &[]);
    assert_reports_the_events(&o, "COWRIE,SSH,TELNET", 3600);
    let log = s.json_log().display().to_string();
    assert!(o.stderr.contains(&log), "{}", o.stderr);
    assert!(
        o.stderr.contains("london.report.example.net"),
        "{}",
        o.stderr
    );
    // Cowrie's plugin is enabled in this cowrie.cfg: a warning, not a refusal.
    assert!(o.stderr.contains("WARN"), "{}", o.stderr);
    assert!(o.stderr.contains("enabled = true"), "{}", o.stderr);
}

#[test]
fn run_with_both_files_takes_the_rest_from_the_toml_file() {
    let s = Sensor::new("sensor");
    fs::write(
        s.path("tjfwd.toml"),
        "state_dir = \"state\"\n[input]\nstart_at = \"beginning\"\npoll_interval = \"20ms\"\n\
         [targets.threatjammer]\nbatch_size = 1\n",
    )
    .unwrap();
    s.append_log(&EVENTS);
    let o = tjfwd(
        s.root(),
        &[
            "run",
            "--dry-run",
            "--drain",
            "--config",
            "tjfwd.toml",
            "--cowrie-config",
            "etc/cowrie.cfg",
        ],
        &[],
    );
    o.assert_code(0);
    o.assert_no_token();
    // batch_size = 1 from the TOML file: one batch per address, read from
    // the beginning of the log; the state directory from the TOML file.
    let batches: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("would send a batch"))
        .collect();
    assert_eq!(batches.len(), 2, "{}", o.stderr);
    assert!(batches.iter().all(|b| b.contains("count=1")), "{batches:?}");
    assert!(s.path("state").is_dir());
}

#[test]
fn the_imported_config_runs_like_cowrie_cfg() {
    let s = Sensor::new("sensor");
    let o = tjfwd(
        s.root(),
        &["config", "import-cowrie", "etc/cowrie.cfg"],
        &[],
    );
    o.assert_code(0);
    // The operator's step: the token goes into the file the comment names.
    let token = s.path("token");
    fs::write(&token, format!("{FIXTURE_TOKEN}\n")).unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let toml = o
        .stdout
        .replace("/etc/tjfwd/token", token.to_str().unwrap());
    fs::write(s.path("imported.toml"), &toml).unwrap();

    let state = s.path("state");
    let args = [
        "run",
        "--dry-run",
        "--drain",
        "--config",
        "imported.toml",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let o = drain_twice(&s, &args, &[]);
    assert_reports_the_events(&o, "COWRIE,SSH,TELNET", 3600);
    assert!(
        o.stderr.contains("london.report.example.net"),
        "{}",
        o.stderr
    );

    // The same without --dry-run: the token file is read (nothing is pending
    // in a fresh state directory with an empty log, so nothing is sent).
    let fresh = s.path("state2");
    fs::write(s.json_log(), "").unwrap();
    let o = tjfwd(
        s.root(),
        &[
            "run",
            "--drain",
            "--config",
            "imported.toml",
            "--state-dir",
            fresh.to_str().unwrap(),
        ],
        &[],
    );
    o.assert_code(0);
    o.assert_no_token();
}

#[test]
fn cowrie_environment_overrides_apply() {
    let s = Sensor::new("sensor");
    let o = tjfwd(
        s.root(),
        &["config", "import-cowrie", "etc/cowrie.cfg"],
        &[
            ("COWRIE_OUTPUT_THREATJAMMER_TTL", "120"),
            ("COWRIE_HONEYPOT_LOG_PATH", "/var/log/elsewhere"),
            ("COWRIE_OUTPUT_THREATJAMMER_ENABLED", "false"),
        ],
    );
    o.assert_code(0);
    assert!(o.stdout.contains("ttl = 120"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("cowrie_json = \"/var/log/elsewhere/cowrie.json\""),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("COWRIE_OUTPUT_THREATJAMMER_TTL"),
        "{}",
        o.stdout
    );
    assert!(!o.stderr.contains("enabled = true"), "{}", o.stderr);
}

#[test]
fn the_placeholder_enables_nothing_and_the_token_falls_back_to_tjfwd_bearer_token() {
    let s = Sensor::new("sensor");
    // Cowrie's placeholder only: no token.
    let cfg = fs::read_to_string(s.cowrie_cfg())
        .unwrap()
        .replace(FIXTURE_TOKEN, "THREATJAMMER_API_TOKEN");
    fs::write(s.cowrie_cfg(), cfg).unwrap();
    s.append_log(&[]);
    let state = s.path("state");
    let args = [
        "run",
        "--drain",
        "--cowrie-config",
        "etc/cowrie.cfg",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    // It does not enable Threat Jammer, and nothing else is enabled:
    // refused, as a configuration error, saying how to enable a target.
    let o = tjfwd(s.root(), &args, &[]);
    o.assert_code(1);
    assert!(
        o.stderr.contains("no report target is enabled"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("THREATJAMMER_API_TOKEN"), "{}", o.stderr);
    assert!(o.stderr.contains("TJFWD_BEARER_TOKEN"), "{}", o.stderr);
    assert!(o.stderr.contains("etc/cowrie.cfg"), "{}", o.stderr);
    // In a dry run too, and for import-cowrie.
    let mut dry = args.to_vec();
    dry.insert(1, "--dry-run");
    tjfwd(s.root(), &dry, &[]).assert_code(1);
    let o = tjfwd(
        s.root(),
        &["config", "import-cowrie", "etc/cowrie.cfg"],
        &[],
    );
    o.assert_code(1);
    assert!(o.stderr.contains("no report target"), "{}", o.stderr);

    let o = tjfwd(s.root(), &args, &[("TJFWD_BEARER_TOKEN", ENV_TOKEN)]);
    o.assert_code(0);
    o.assert_no_token();

    // import-cowrie leaves the token file line commented out.
    let o = tjfwd(
        s.root(),
        &["config", "import-cowrie", "etc/cowrie.cfg"],
        &[("TJFWD_BEARER_TOKEN", ENV_TOKEN)],
    );
    o.assert_code(0);
    o.assert_no_token();
    assert!(
        o.stdout
            .contains("# bearer_token_file = \"/etc/tjfwd/token\""),
        "{}",
        o.stdout
    );
}

#[test]
fn a_bad_interpolation_is_refused_with_file_line_and_key() {
    let s = Sensor::new("bad-interpolation");
    for args in [
        vec!["config", "import-cowrie", "etc/cowrie.cfg"],
        vec![
            "run",
            "--dry-run",
            "--drain",
            "--cowrie-config",
            "etc/cowrie.cfg",
            "--state-dir",
            "state",
        ],
    ] {
        let o = tjfwd(s.root(), &args, &[]);
        o.assert_code(1);
        assert_eq!(o.stdout, "", "{args:?}");
        let e = &o.stderr;
        assert!(e.contains("etc/cowrie.cfg"), "{e}");
        assert!(e.contains("[output_jsonlog] logfile"), "{e}");
        assert!(e.contains("in [honeypot] log_path"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("${honeypot:data_root} refers to nothing"), "{e}");
    }
    assert!(!s.path("state").exists());
}

#[test]
fn a_cowrie_cfg_without_the_json_log_is_refused() {
    let s = Sensor::new("no-jsonlog");
    let o = tjfwd(s.root(), &["config", "import-cowrie", "cowrie.cfg"], &[]);
    o.assert_code(1);
    let e = &o.stderr;
    assert!(e.contains("cowrie.cfg"), "{e}");
    assert!(e.contains("[output_jsonlog]"), "{e}");
    assert!(e.contains("JSON log"), "{e}");
    // Its socket output is enabled: the message names the address to listen on.
    assert!(e.contains("listen_tcp = \"127.0.0.1:9100\""), "{e}");

    let o = tjfwd(
        s.root(),
        &[
            "run",
            "--dry-run",
            "--drain",
            "--cowrie-config",
            "cowrie.cfg",
            "--state-dir",
            "state",
        ],
        &[],
    );
    o.assert_code(1);
    assert!(o.stderr.contains("[output_jsonlog]"), "{}", o.stderr);
}

#[test]
fn a_toml_file_that_sets_api_url_too_is_refused() {
    let s = Sensor::new("sensor");
    fs::copy(fixtures().join("sets-api-url.toml"), s.path("tjfwd.toml")).unwrap();
    let o = tjfwd(
        s.root(),
        &[
            "run",
            "--dry-run",
            "--drain",
            "--config",
            "tjfwd.toml",
            "--cowrie-config",
            "etc/cowrie.cfg",
            "--state-dir",
            "state",
        ],
        &[],
    );
    o.assert_code(1);
    o.assert_no_token();
    let e = &o.stderr;
    assert!(e.contains("tjfwd.toml"), "{e}");
    assert!(e.contains("etc/cowrie.cfg"), "{e}");
    assert!(e.contains("[threatjammer] api_url"), "{e}");
    assert!(e.contains("[output_threatjammer]"), "{e}");
    assert!(!s.path("state").exists());

    // The same through TJFWD_CONFIG.
    let o = tjfwd(
        s.root(),
        &[
            "run",
            "--dry-run",
            "--drain",
            "--cowrie-config",
            "etc/cowrie.cfg",
        ],
        &[("TJFWD_CONFIG", "tjfwd.toml")],
    );
    o.assert_code(1);
    assert!(o.stderr.contains("[threatjammer] api_url"), "{}", o.stderr);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["run", "--dry-run"],
        vec!["run", "--config", "x.toml", "--cowrie-dir", "/tmp"],
        vec!["config", "import-cowrie"],
        vec!["config"],
    ] {
        let o = tjfwd(dir.path(), &args, &[]);
        o.assert_code(2);
    }
    // A missing cowrie.cfg is a failure, not a usage error.
    let o = tjfwd(dir.path(), &["config", "import-cowrie", "nope.cfg"], &[]);
    o.assert_code(1);
    assert!(o.stderr.contains("nope.cfg"), "{}", o.stderr);
}

#[test]
fn an_explicit_cowrie_dir_is_used_for_relative_paths() {
    let s = Sensor::new("sensor");
    let other = tempfile::tempdir().unwrap();
    let o = tjfwd(
        s.root(),
        &[
            "config",
            "import-cowrie",
            "etc/cowrie.cfg",
            "--cowrie-dir",
            other.path().to_str().unwrap(),
        ],
        &[],
    );
    o.assert_code(0);
    let log = format!(
        "cowrie_json = \"{}/var/log/honeypot/cowrie.json\"",
        other.path().display()
    );
    assert!(o.stdout.contains(&log), "{}", o.stdout);
}

#[test]
fn a_malformed_cowrie_cfg_is_refused_without_showing_the_token() {
    let s = Sensor::new("sensor");
    // The token pasted on a line of its own, and a token with a space.
    for broken in [
        format!("[output_threatjammer]\nbearer_token =\n{FIXTURE_TOKEN}\n"),
        format!("[output_threatjammer]\nbearer_token = {FIXTURE_TOKEN} {FIXTURE_TOKEN}\n"),
    ] {
        let cfg = s.path("broken.cfg");
        fs::write(&cfg, &broken).unwrap();
        for args in [
            vec!["config", "import-cowrie", "broken.cfg"],
            vec![
                "run",
                "--cowrie-config",
                "broken.cfg",
                "--state-dir",
                "state",
            ],
            vec![
                "-vv",
                "run",
                "--dry-run",
                "--cowrie-config",
                "broken.cfg",
                "--state-dir",
                "state",
            ],
        ] {
            let o = tjfwd(s.root(), &args, &[]);
            o.assert_code(1);
            o.assert_no_token();
            assert!(o.stderr.contains("broken.cfg"), "{}", o.stderr);
        }
    }
}

/// An AbuseIPDB API key, in cowrie.cfg or the environment.
const AIPDB_KEY: &str = "aipdb-fixture-key-1a2b3c4d5e6f7788";

/// The `[targets.abuseipdb]` table of `check-config`'s output, if any.
fn abuseipdb_table(out: &str) -> Option<String> {
    let mut lines = out.lines().skip_while(|l| *l != "[targets.abuseipdb]");
    let head = lines.next()?;
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with('[')).collect();
    Some(format!("{head}\n{}", body.join("\n").trim_end()))
}

/// `[output_abuseipdb]` of cowrie.cfg, disabled there: `check-config
/// --cowrie-config` and the imported file give the same AbuseIPDB table;
/// the key is printed by neither, nor written to the imported file.
#[test]
fn abuseipdb_from_cowrie_cfg_round_trips_through_check_config() {
    let s = Sensor::new("sensor");
    let mut cfg = fs::read_to_string(s.cowrie_cfg()).unwrap();
    cfg.push_str(&format!(
        "\n[output_abuseipdb]\nenabled = false\napi_key = {AIPDB_KEY}\ntolerance_attempts = 3\n\
         tolerance_window = 60\ndump_path = var/lib/cowrie/abuseipdb\n"
    ));
    fs::write(s.cowrie_cfg(), cfg).unwrap();
    let no_key = |o: &Output| {
        o.assert_no_token();
        assert!(!o.all().contains(AIPDB_KEY), "key leaked:\n{}", o.all());
    };

    let direct = tjfwd(
        s.root(),
        &["check-config", "--cowrie-config", "etc/cowrie.cfg"],
        &[],
    );
    direct.assert_code(0);
    no_key(&direct);
    let table = abuseipdb_table(&direct.stdout).expect("[targets.abuseipdb] printed");
    for line in [
        "api_key = \"<redacted>\"",
        "min_attempts = 3",
        "attempts_window = \"1h\"",
        "rereport_after = \"1day\"",
        "categories = \"18,22\"",
    ] {
        assert!(
            table.lines().any(|l| l == line),
            "{line:?} missing:\n{table}"
        );
    }

    let imported = tjfwd(
        s.root(),
        &["config", "import-cowrie", "etc/cowrie.cfg"],
        &[],
    );
    imported.assert_code(0);
    no_key(&imported);
    assert!(imported.stderr.contains("dump_path"), "{}", imported.stderr);
    // The operator's steps: the token and the key go into the files named.
    let token = s.path("token");
    fs::write(&token, format!("{FIXTURE_TOKEN}\n")).unwrap();
    let key = s.path("abuseipdb_key");
    fs::write(&key, format!("{AIPDB_KEY}\n")).unwrap();
    for f in [&token, &key] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let toml = imported
        .stdout
        .replace("/etc/tjfwd/token", token.to_str().unwrap())
        .replace("/etc/tjfwd/abuseipdb_key", key.to_str().unwrap());
    fs::write(s.path("imported.toml"), &toml).unwrap();
    let back = tjfwd(
        s.root(),
        &["check-config", "--config", "imported.toml"],
        &[],
    );
    back.assert_code(0);
    no_key(&back);
    assert_eq!(
        abuseipdb_table(&back.stdout).as_deref(),
        Some(table.as_str())
    );
}

/// No key in cowrie.cfg: AbuseIPDB is enabled by TJFWD_ABUSEIPDB_KEY only;
/// `enabled = true` warns that Cowrie's plugin would report too.
#[test]
fn abuseipdb_is_enabled_by_the_environments_key_and_an_enabled_plugin_warns() {
    let s = Sensor::new("sensor");
    let mut cfg = fs::read_to_string(s.cowrie_cfg()).unwrap();
    cfg.push_str("\n[output_abuseipdb]\nenabled = true\n");
    fs::write(s.cowrie_cfg(), cfg).unwrap();
    let args = ["check-config", "--cowrie-config", "etc/cowrie.cfg"];
    let o = tjfwd(s.root(), &args, &[]);
    o.assert_code(0);
    assert_eq!(abuseipdb_table(&o.stdout), None, "{}", o.stdout);
    assert!(
        o.stderr.contains("[output_abuseipdb] enabled = true"),
        "{}",
        o.stderr
    );
    let o = tjfwd(s.root(), &args, &[("TJFWD_ABUSEIPDB_KEY", AIPDB_KEY)]);
    o.assert_code(0);
    assert!(!o.all().contains(AIPDB_KEY), "key leaked:\n{}", o.all());
    let table = abuseipdb_table(&o.stdout).expect("[targets.abuseipdb] printed");
    assert!(table.contains("min_attempts = 10"), "{table}");
    assert!(o.stderr.contains("both report"), "{}", o.stderr);
}
