//! Tests of the whole loader, and the helpers the tests of every section use.
//! The sections whose code lives outside this module have their tests here,
//! as they go through the loader: `threatjammer` and `schedule` (Threat
//! Jammer's section, in `crate::targets::threatjammer`), `enabling` (which
//! targets a file enables: the deprecated `[threatjammer]`/`[schedule]`,
//! none), `kit` (the shared checks of `crate::config_kit`) and `targets`
//! (the `[targets]` table).

mod abuseipdb;
mod enabling;
mod kit;
mod schedule;
mod targets;
mod threatjammer;

use super::*;
use crate::config_kit::MIB;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) const TOKEN: &str = "s3cr3t-T0KEN-value-42";
pub(super) const FILE: &str = "/etc/tjfwd/tjfwd.toml";

pub(super) fn opts() -> LoadOptions {
    LoadOptions::default()
}

pub(super) fn dry() -> LoadOptions {
    LoadOptions { dry_run: true }
}

/// A Threat Jammer-compatible endpoint for the tests (nothing is sent).
pub(super) const API_URL: &str = "https://report.example.net/v1/ip";

/// A file enabling Threat Jammer at [`API_URL`], with no token.
pub(super) const TJ: &str =
    "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\n";

/// Threat Jammer's report keys in `c` (which must enable it).
pub(super) fn tj(c: &Config) -> &ThreatJammer {
    &c.threatjammer().expect("Threat Jammer is enabled").report
}

/// Parses `text` as if loaded from FILE, with Threat Jammer enabled with
/// the inline test token (and [`API_URL`] unless `text` sets `api_url`).
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    let text = format!("{text}\n");
    let table = "[targets.threatjammer]\n";
    let mut keys = format!("bearer_token = \"{TOKEN}\"\n");
    if !text.contains("api_url") {
        keys.push_str(&format!("api_url = \"{API_URL}\"\n"));
    }
    // At the end of the table, so that the lines of the keys written stay
    // where they are.
    let with_token = match text.find(table) {
        Some(at) => {
            let body = at + table.len();
            let end = text[body..]
                .find("\n[")
                .map_or(text.len(), |i| body + i + 1);
            format!("{}{keys}{}", &text[..end], &text[end..])
        }
        None => format!("{text}\n{table}{keys}"),
    };
    Config::from_toml_str(&with_token, Some(Path::new(FILE)), &opts(), None)
}

pub(super) fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Asserts that `text` is refused with a message naming FILE and `key`,
/// and not containing the token. Returns the message.
pub(super) fn refused(text: &str, key: &str) -> String {
    let err = parse(text).expect_err("the configuration should be refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with(FILE),
        "message does not name the file: {msg}"
    );
    assert!(msg.contains(key), "message does not name {key:?}: {msg}");
    assert!(!msg.contains(TOKEN), "message leaks the token: {msg}");
    msg
}

pub(super) fn invalid_key(err: &ConfigError) -> &str {
    match err {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

pub(super) fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn defaults() {
    let c = Config::from_toml_str(TJ, None, &dry(), None).unwrap();
    let mut expected = Config::default();
    expected.targets.threatjammer = Some(ThreatJammerSection::with_api_url(
        url::Url::parse(API_URL).unwrap(),
    ));
    assert_eq!(c, expected);
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/tjfwd"));
    let tj = tj(&c);
    assert_eq!(tj.api_url.as_str(), API_URL);
    assert!(tj.token.is_none());
    assert!(tj.track_login);
    assert!(!tj.track_session);
    assert_eq!(tj.ttl, 86_400);
    assert_eq!(tj.category, "ABUSE");
    assert_eq!(tj.tags, ["COWRIE", "LOGIN", "SESSION"]);
    assert!(!tj.allow_insecure_http);
    assert_eq!(c.input.cowrie_json, None);
    assert_eq!(c.input.start_at, StartAt::End);
    assert_eq!(c.input.poll_interval, Duration::from_millis(500));
    assert_eq!(c.input.max_line_bytes, 1024 * 1024);
    assert_eq!(c.input.listen_tcp, None);
    assert_eq!(c.input.max_connections, 8);
    assert!(c.notes.is_empty());
    let s = c.schedule();
    assert_eq!(s.batch_size, 1000);
    assert_eq!(s.flush_interval, Duration::from_secs(60));
    assert_eq!(s.max_requests_per_minute, 6);
    assert_eq!(s.request_timeout, Duration::from_secs(30));
    assert_eq!(s.max_backoff, Duration::from_secs(600));
    assert_eq!(s.rereport_after, Duration::ZERO);
    assert_eq!(s.rate_window, Duration::from_secs(60));
    assert!(!c.filter.report_non_public);
    assert!(c.filter.allowlist.is_empty());
    assert_eq!(c.storage.cache_capacity, 32 * 1024 * 1024);
    assert!(c.warnings.is_empty());
    assert_eq!(c.path, None);
}

#[test]
fn empty_sections_are_defaults() {
    let text = "[input]\n[filter]\n[storage]\n[queue]\n[admin]\n";
    let c = Config::from_toml_str(&format!("{text}{TJ}"), None, &dry(), None).unwrap();
    assert_eq!(c, Config::from_toml_str(TJ, None, &dry(), None).unwrap());
}

#[test]
fn default_for_tests_has_defaults_and_no_token() {
    let c = Config::default_for_tests(PathBuf::from("/tmp/x"));
    assert_eq!(c.state_dir, PathBuf::from("/tmp/x"));
    assert!(tj(&c).token.is_none());
    assert_eq!(tj(&c).api_url.as_str(), TEST_API_URL);
    assert_eq!(c.schedule(), &Schedule::default());
    assert_eq!(c.path, None);
}

pub(super) const FULL: &str = r#"
state_dir = "/srv/tjfwd"

[targets.threatjammer]
api_url = "https://london.report.example.net/v1/ip"
bearer_token = "s3cr3t-T0KEN-value-42"
track_login = false
track_session = true
ttl = 3600
category = "MY_SET_2"
tags = "COWRIE, SSH"
allow_insecure_http = false
batch_size = 500
flush_interval = "1h 30m"
max_requests_per_minute = 3
request_timeout = "10s"
max_backoff = "5m"
rereport_after = "1h"

[input]
cowrie_json = "/home/cowrie/cowrie/var/log/cowrie/cowrie.json"
start_at = "beginning"
poll_interval = "250ms"
max_line_bytes = "2MiB"
listen_tcp = "127.0.0.1:9000"
max_connections = 16

[filter]
report_non_public = true
allowlist = ["192.0.2.0/24", "198.51.100.7", "2001:db8::/32", "2001:db8::1", "::ffff:203.0.113.0/120"]

[storage]
cache_capacity = "64MiB"
"#;

#[test]
fn full_valid_file() {
    let c = Config::from_toml_str(FULL, Some(Path::new(FILE)), &opts(), None).unwrap();
    assert_eq!(c.path.as_deref(), Some(Path::new(FILE)));
    assert_eq!(c.state_dir, PathBuf::from("/srv/tjfwd"));
    let tj = tj(&c);
    assert_eq!(
        tj.api_url.as_str(),
        "https://london.report.example.net/v1/ip"
    );
    assert_eq!(tj.token.as_ref().unwrap().expose(), TOKEN);
    assert!(!tj.track_login);
    assert!(tj.track_session);
    assert_eq!(tj.ttl, 3600);
    assert_eq!(tj.category, "MY_SET_2");
    assert_eq!(tj.tags, ["COWRIE", "SSH"]);
    assert_eq!(
        c.input.cowrie_json.as_deref(),
        Some(Path::new("/home/cowrie/cowrie/var/log/cowrie/cowrie.json"))
    );
    assert_eq!(c.input.start_at, StartAt::Beginning);
    assert_eq!(c.input.poll_interval, Duration::from_millis(250));
    assert_eq!(c.input.max_line_bytes, 2 * 1024 * 1024);
    assert_eq!(
        c.input.listen_tcp,
        Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
    );
    assert_eq!(c.input.max_connections, 16);
    let s = c.schedule();
    assert_eq!(s.batch_size, 500);
    assert_eq!(s.flush_interval, Duration::from_secs(5400));
    assert_eq!(s.max_requests_per_minute, 3);
    assert_eq!(s.request_timeout, Duration::from_secs(10));
    assert_eq!(s.max_backoff, Duration::from_secs(300));
    assert_eq!(s.rereport_after, Duration::from_secs(3600));
    assert_eq!(s.rate_window, Duration::from_secs(60));
    assert!(c.filter.report_non_public);
    let nets: Vec<String> = c.filter.allowlist.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        nets,
        [
            "192.0.2.0/24",
            "198.51.100.7/32",
            "2001:db8::/32",
            "2001:db8::1/128",
            "203.0.113.0/24"
        ]
    );
    assert_eq!(c.storage.cache_capacity, 64 * 1024 * 1024);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn refuses_unknown_key() {
    let msg = refused("[targets.threatjammer]\nbatchsize = 10", "batchsize");
    assert!(
        msg.contains("batch_size"),
        "toml lists expected keys: {msg}"
    );
    assert!(msg.contains("line 2"), "{msg}");
    refused("statedir = \"/x\"", "statedir");
    refused("[inputs]\ncowrie_json = \"/x\"", "inputs");
}

#[test]
fn error_message_format() {
    let err = parse("[targets.threatjammer]\nbatch_size = 5000").unwrap_err();
    assert_eq!(invalid_key(&err), "[targets.threatjammer] batch_size");
    assert_eq!(
        err.to_string(),
        "/etc/tjfwd/tjfwd.toml: [targets.threatjammer] batch_size = 5000 is out of range: it \
         must be between 1 and 1000 (the API takes at most 1000 addresses a request)"
    );
    // Without a file, the configuration is named `<config>`.
    let text = format!("{TJ}batch_size = 0");
    let err = Config::from_toml_str(&text, None, &dry(), None).unwrap_err();
    assert!(err.to_string().starts_with("<config>: "), "{err}");
}

#[test]
fn refuses_empty_paths() {
    refused("state_dir = \"\"", "state_dir");
    refused("[input]\ncowrie_json = \"\"", "[input] cowrie_json");
}

#[test]
fn type_errors_are_parse_errors_naming_the_file() {
    let err = parse("[targets.threatjammer]\ntrack_login = \"yes\"").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(FILE), "{msg}");
    assert!(msg.contains("track_login"), "{msg}");
}

#[test]
fn load_reads_the_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "tjfwd.toml",
        &format!("state_dir = \"s\"\n{TJ}bearer_token = \"{TOKEN}\"\n"),
        0o600,
    );
    let c = Config::load(&path, &opts()).unwrap();
    assert_eq!(c.path.as_deref(), Some(path.as_path()));
    assert_eq!(c.state_dir, dir.path().join("s"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let missing = dir.path().join("nope.toml");
    let err = Config::load(&missing, &opts()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with(&missing.display().to_string()));
}

#[test]
fn redacted_toml_hides_the_token_and_round_trips() {
    let c = Config::from_toml_str(FULL, Some(Path::new(FILE)), &opts(), None).unwrap();
    let out = c.redacted_toml();
    assert!(!out.contains(TOKEN), "{out}");
    assert!(out.contains("bearer_token = \"<redacted>\""), "{out}");
    let back = Config::from_toml_str(&out, Some(Path::new(FILE)), &opts(), None)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(tj(&back).token.as_ref().unwrap().expose(), "<redacted>");
    let mut expected = c.clone();
    expected.threatjammer_mut().report.token = tj(&back).token.clone();
    assert_eq!(back, expected, "{out}");
    // Threat Jammer's keys, in one table.
    assert_eq!(out.matches("[targets.threatjammer]\n").count(), 1, "{out}");
    assert!(!out.contains("[schedule]"), "{out}");

    assert!(out.contains("listen_tcp = \"127.0.0.1:9000\""), "{out}");
    assert!(out.contains("max_line_bytes = \"2MiB\""), "{out}");
    assert!(out.contains("max_connections = 16"), "{out}");

    // Defaults, no token, odd sizes, IPv6.
    let mut c = Config::default_for_tests(PathBuf::from("/tmp/state"));
    c.storage.cache_capacity = MIB + 1;
    c.input.max_line_bytes = 1500;
    c.input.listen_tcp = Some("[::1]:9100".parse().unwrap());
    let out = c.redacted_toml();
    assert!(!out.contains("bearer_token ="), "{out}");
    let back =
        Config::from_toml_str(&out, None, &dry(), None).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(back, c, "{out}");
}

#[test]
fn the_test_rate_window_knob_shortens_the_window_and_says_so() {
    let mut c = Config::default_for_tests(PathBuf::from("/tmp/state"));
    c.apply_test_rate_window(None).unwrap();
    assert_eq!(c.schedule().rate_window, API_RATE_WINDOW);
    assert!(c.warnings.is_empty());
    assert!(!c.redacted_toml().contains("rate window"));

    c.apply_test_rate_window(Some("1500")).unwrap();
    assert_eq!(c.schedule().rate_window, Duration::from_millis(1500));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains(TEST_RATE_WINDOW_ENV),
        "{:?}",
        c.warnings
    );
    assert!(c.warnings[0].contains("1s 500ms"), "{:?}", c.warnings);
    assert!(c
        .redacted_toml()
        .contains("# rate window (not settable in TOML): 1s 500ms"));

    for bad in ["", "0", "-5", "1.5", "60001", "1s", "abc"] {
        let mut c = Config::default_for_tests(PathBuf::from("/tmp/state"));
        let e = c.apply_test_rate_window(Some(bad)).unwrap_err().to_string();
        assert!(e.contains(TEST_RATE_WINDOW_ENV), "{bad}: {e}");
        assert!(e.contains("unset it"), "{bad}: {e}");
        assert_eq!(c.schedule().rate_window, API_RATE_WINDOW);
    }
}
