//! `[targets.abuseipdb]` through the whole loader: defaults, refusals and
//! their messages, the key from its file and never shown, a dry run
//! without a key.

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, LoadOptions};
use crate::config_kit::ConfigError;
use crate::targets::abuseipdb::config::{Mode, Section, CREDENTIAL_NAME, DEFAULT_API_URL, KEY_ENV};
use crate::targets::abuseipdb::AbuseIpdb;
use crate::targets::{Configured, Target};

const FILE: &str = "/etc/tjfwd/tjfwd.toml";
const KEY: &str = "k3y-0f-abuseipdb-0123456789";

fn load(text: &str, dry_run: bool) -> Result<Config, ConfigError> {
    let text = format!("{text}\n");
    Config::from_toml_str(&text, Some(Path::new(FILE)), &LoadOptions { dry_run }, None)
}

fn section(text: &str) -> Section {
    match load(text, false) {
        Ok(c) => c.targets.abuseipdb.expect("the table is present"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The refusal of `text`: names the file and `key`, never the key's value.
fn refused(text: &str, key: &str) -> String {
    let err = load(text, false).expect_err("should be refused");
    let msg = err.to_string();
    match &err {
        ConfigError::Invalid { key: k, .. } => assert_eq!(k, key, "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(msg.starts_with(FILE), "{msg}");
    assert!(!msg.contains(KEY), "{msg}");
    msg
}

#[test]
fn defaults_are_the_free_plans_and_cowries() {
    let s = section(&format!("[targets.abuseipdb]\napi_key = \"{KEY}\""));
    assert_eq!(s.api_url.as_str(), DEFAULT_API_URL);
    assert_eq!(s.api_key.as_ref().unwrap().expose(), KEY);
    assert_eq!(s.mode, Mode::Bulk);
    assert_eq!(s.categories, [18, 22]);
    assert_eq!(s.daily_limit, 5);
    assert_eq!(s.rereport_after, Duration::from_secs(86_400));
    assert_eq!(
        (s.min_attempts, s.attempts_window),
        (1, Duration::from_secs(7200))
    );
    // A day spread over the day's requests.
    assert_eq!(s.flush_interval, Duration::from_secs(86_400 / 5));
    assert_eq!(s.request_timeout, Duration::from_secs(30));
    assert_eq!(s.max_backoff, Duration::from_secs(600));
    let p = crate::targets::abuseipdb::policy(&s);
    assert_eq!(p.batch_size, 9_999);
    assert_eq!((p.limit.max, p.limit.window_ms), (5, 86_400_000));

    let s = section(&format!(
        "[targets.abuseipdb]\napi_key = \"{KEY}\"\nmode = \"single\"\ncategories = [18, 22, 23]"
    ));
    assert_eq!((s.mode, s.daily_limit), (Mode::Single, 1000));
    assert_eq!(s.flush_interval, Duration::from_millis(86_400));
    assert_eq!(s.categories, [18, 22, 23]);
    let p = crate::targets::abuseipdb::policy(&s);
    assert_eq!((p.batch_size, p.limit.max), (1, 1000));

    // Written back by check-config: the key redacted, read back the same.
    let c = load(
        &format!("[targets.abuseipdb]\napi_key = \"{KEY}\"\ncategories = \"22, 18\"\nrereport_after = \"15m\""),
        false,
    )
    .unwrap();
    let out = c.redacted_toml();
    assert!(!out.contains(KEY), "{out}");
    assert!(out.contains("[targets.abuseipdb]"), "{out}");
    assert!(out.contains("api_key = \"<redacted>\""), "{out}");
    assert!(out.contains("categories = \"22,18\""), "{out}");
    assert!(out.contains("mode = \"bulk\""), "{out}");
    assert!(out.contains("rereport_after = \"15m\""), "{out}");
}

#[test]
fn refusals_say_what_to_write() {
    let t = |rest: &str| format!("[targets.abuseipdb]\napi_key = \"{KEY}\"\n{rest}");
    let msg = refused(
        &t("rereport_after = \"14m 59s\""),
        "[targets.abuseipdb] rereport_after",
    );
    assert!(
        msg.contains("15 minutes") && msg.contains("\"15m\""),
        "{msg}"
    );
    for bad in ["\"18,99\"", "\"18;22\"", "\"\"", "[0]", "[18, \"x\"]", "18"] {
        let msg = refused(
            &t(&format!("categories = {bad}")),
            "[targets.abuseipdb] categories",
        );
        assert!(msg.contains("1 to 23"), "{bad}: {msg}");
    }
    let msg = refused(&t("mode = \"batch\""), "[targets.abuseipdb] mode");
    assert!(
        msg.contains("\"bulk\"") && msg.contains("\"single\""),
        "{msg}"
    );
    let msg = refused(&t("daily_limit = 0"), "[targets.abuseipdb] daily_limit");
    assert!(msg.contains("at least 1") && msg.contains("5"), "{msg}");
    refused(&t("min_attempts = 0"), "[targets.abuseipdb] min_attempts");
    refused(
        &t("attempts_window = \"0s\""),
        "[targets.abuseipdb] attempts_window",
    );
    refused(
        &t("flush_interval = \"0s\""),
        "[targets.abuseipdb] flush_interval",
    );
    let msg = refused(
        &t("api_url = \"http://api.example.com/api/v2\""),
        "[targets.abuseipdb] api_url",
    );
    assert!(msg.contains("allow_insecure_http"), "{msg}");
    refused(
        &t("api_url = \"https://user:pw@api.example.com/api/v2\""),
        "[targets.abuseipdb] api_url",
    );
    let err = load("[targets.abuseipdb]\nbogus = 1", false).unwrap_err();
    assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
}

#[test]
fn without_a_key_only_a_dry_run_starts() {
    let msg = refused("[targets.abuseipdb]", "[targets.abuseipdb] api_key");
    for part in [
        "no AbuseIPDB API key",
        "api_key_file",
        KEY_ENV,
        CREDENTIAL_NAME,
        "--dry-run",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let c = load(
        "[targets.abuseipdb]\nmode = \"single\"\ncategories = \"23\"",
        true,
    )
    .unwrap();
    let s = c.targets.abuseipdb.unwrap();
    assert!(s.api_key.is_none());
    let t = AbuseIpdb::build(&s, true).unwrap();
    let d = t.describe();
    assert!(
        d.contains("mode=single") && d.contains("categories=23"),
        "{d}"
    );
    assert!(AbuseIpdb::build(&s, false).is_err());
}

#[test]
fn the_key_comes_from_its_file_and_a_readable_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("abuseipdb.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = load(
        &format!(
            "[targets.abuseipdb]\napi_key_file = \"{}\"",
            key_file.display()
        ),
        false,
    )
    .unwrap();
    let s = c.targets.abuseipdb.as_ref().unwrap();
    assert_eq!(s.api_key.as_ref().unwrap().expose(), KEY);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("chmod 600") && w.contains("api_key_file")),
        "{:?}",
        c.warnings
    );
    assert!(!format!("{c:?}").contains(KEY));
    assert!(c.warnings.iter().all(|w| !w.contains(KEY)));
}

#[test]
fn the_test_day_knob_shortens_the_quota_day_and_says_so() {
    use crate::targets::abuseipdb::config::{DAY, TEST_DAY_ENV};
    let text = format!("[targets.abuseipdb]\napi_key = \"{KEY}\"\ndaily_limit = 3");
    let mut c = load(&text, false).unwrap();
    let warnings = c.warnings.len();
    c.apply_test_abuseipdb_day(None).unwrap();
    assert_eq!(c.targets.abuseipdb.as_ref().unwrap().day, DAY);
    assert_eq!(c.warnings.len(), warnings);
    assert!(!c.redacted_toml().contains("AbuseIPDB day"));

    c.apply_test_abuseipdb_day(Some("6")).unwrap();
    let s = c.targets.abuseipdb.as_ref().unwrap();
    assert_eq!(s.day, Duration::from_secs(6));
    let p = crate::targets::abuseipdb::policy(s);
    assert_eq!((p.limit.max, p.limit.window_ms), (3, 6_000));
    assert_eq!(c.warnings.len(), warnings + 1);
    let w = c.warnings.last().unwrap();
    assert!(w.contains(TEST_DAY_ENV) && w.contains("6s"), "{w}");
    let shown = c.redacted_toml();
    assert!(
        shown.contains("# AbuseIPDB day (not settable in TOML): 6s"),
        "{shown}"
    );
    // Written back, the file has the real day.
    let back = load(&shown, false).unwrap();
    assert_eq!(back.targets.abuseipdb.unwrap().day, DAY);

    for bad in ["", "0", "-5", "1.5", "86401", "6s", "abc"] {
        let mut c = load(&text, false).unwrap();
        let e = c
            .apply_test_abuseipdb_day(Some(bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains(TEST_DAY_ENV), "{bad}: {e}");
        assert!(e.contains("unset it"), "{bad}: {e}");
        assert_eq!(c.targets.abuseipdb.as_ref().unwrap().day, DAY);
    }
}
