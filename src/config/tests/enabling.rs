//! Which targets a file enables: Threat Jammer by `[targets.threatjammer]`
//! or by its deprecated tables, `[threatjammer]` and `[schedule]` (the
//! same section, with a warning, written back in the new form); never
//! both; never without `api_url`, nor with the old domain; and a file that
//! enables no target is refused.

use crate::config::tests::{dry, invalid_key, opts, tj, API_URL, FILE, TJ, TOKEN};
use crate::config::{Config, ConfigError, SHUT_DOWN};
use crate::targets::TARGET_NAMES;
use std::path::Path;

fn load(text: &str, opts: &crate::config::LoadOptions) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Some(Path::new(FILE)), opts, None)
}

/// Every key of Threat Jammer's section, in the new form.
const NEW: &str = r#"
[targets.threatjammer]
api_url = "https://report.example.net/v1/ip"
bearer_token = "s3cr3t-T0KEN-value-42"
track_login = false
track_session = true
ttl = 3600
category = "MY_SET"
tags = ["COWRIE", "SSH"]
allow_insecure_http = false
batch_size = 500
flush_interval = "5m"
max_requests_per_minute = 3
request_timeout = "10s"
max_backoff = "2m"
rereport_after = "1h"
"#;

/// The same in the deprecated form.
const OLD: &str = r#"
[threatjammer]
api_url = "https://report.example.net/v1/ip"
bearer_token = "s3cr3t-T0KEN-value-42"
track_login = false
track_session = true
ttl = 3600
category = "MY_SET"
tags = ["COWRIE", "SSH"]
allow_insecure_http = false

[schedule]
batch_size = 500
flush_interval = "5m"
max_requests_per_minute = 3
request_timeout = "10s"
max_backoff = "2m"
rereport_after = "1h"
"#;

#[test]
fn the_old_tables_are_an_alias_with_a_deprecation_warning() {
    let new = load(NEW, &opts()).unwrap();
    let old = load(OLD, &opts()).unwrap();
    assert!(new.warnings.is_empty(), "{:?}", new.warnings);
    // The same effective configuration...
    assert_eq!(old.targets, new.targets);
    assert_eq!(tj(&old).token.as_ref().unwrap().expose(), TOKEN);
    // ...and one warning, naming both tables and the new one.
    assert_eq!(old.warnings.len(), 1, "{:?}", old.warnings);
    let w = &old.warnings[0];
    assert!(w.starts_with(FILE), "{w}");
    assert!(
        w.contains("[threatjammer] and [schedule] are deprecated"),
        "{w}"
    );
    assert!(w.contains("[targets.threatjammer]"), "{w}");
    assert!(w.contains("check-config"), "{w}");
    assert!(!w.contains('\n'), "one line: {w}");
    // Either old table alone is the alias too.
    let c = load(
        "[schedule]\nbatch_size = 7\n[threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\n",
        &dry(),
    )
    .unwrap();
    assert_eq!(c.schedule().batch_size, 7);
    let c = load(
        "[threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\n",
        &dry(),
    )
    .unwrap();
    assert!(
        c.warnings[0].contains("[threatjammer] is deprecated"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_alias_names_its_own_tables_in_messages() {
    let base = "[threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\n";
    let err = load(&format!("{base}ttl = 0\n"), &dry()).unwrap_err();
    assert_eq!(invalid_key(&err), "[threatjammer] ttl");
    let err = load(&format!("{base}[schedule]\nbatch_size = 0\n"), &dry()).unwrap_err();
    assert_eq!(invalid_key(&err), "[schedule] batch_size");
    let err = load(base, &opts()).unwrap_err();
    assert_eq!(invalid_key(&err), "[threatjammer] bearer_token");
    let err = load("[schedule]\nbatch_size = 5\n", &dry()).unwrap_err();
    assert_eq!(invalid_key(&err), "[threatjammer] api_url");
}

/// `check-config` writes the alias back in the new form, which loads to
/// the same configuration without the warning.
#[test]
fn check_config_writes_the_alias_back_in_the_new_form() {
    let old = load(OLD, &opts()).unwrap();
    let out = old.redacted_toml();
    assert!(out.contains("\n[targets.threatjammer]\n"), "{out}");
    assert!(!out.contains("\n[threatjammer]"), "{out}");
    assert!(!out.contains("[schedule]"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    let back = load(&out, &opts()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    let mut expected = old.clone();
    expected.threatjammer_mut().report.token = tj(&back).token.clone();
    expected.warnings.clear();
    assert_eq!(back, expected, "{out}");
}

#[test]
fn both_forms_at_once_are_refused() {
    for old in [
        "[threatjammer]\nttl = 60\n",
        "[schedule]\nbatch_size = 5\n",
        "[threatjammer]\n[schedule]\n",
    ] {
        let err = load(&format!("{TJ}{old}"), &dry()).unwrap_err();
        assert_eq!(invalid_key(&err), "[targets.threatjammer]", "{old}");
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(msg.contains("both set"), "{msg}");
        assert!(msg.contains("same target"), "{msg}");
        assert!(msg.contains("Move the keys"), "{msg}");
    }
}

#[test]
fn a_missing_api_url_is_refused_with_the_reason_even_in_a_dry_run() {
    for text in [
        "[targets.threatjammer]\n".to_string(),
        format!("[targets.threatjammer]\nbearer_token = \"{TOKEN}\"\n"),
    ] {
        for opts in [opts(), dry()] {
            let err = load(&text, &opts).unwrap_err();
            assert_eq!(invalid_key(&err), "[targets.threatjammer] api_url");
            let msg = err.to_string();
            assert!(msg.starts_with(FILE), "{msg}");
            assert!(msg.contains(SHUT_DOWN), "{msg}");
            assert!(msg.contains("no default"), "{msg}");
            assert!(msg.contains("compatible deployment"), "{msg}");
            assert!(msg.contains("another target"), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
        }
    }
    // The explanation says what matters.
    assert!(SHUT_DOWN.contains("shut down in 2024"));
    assert!(SHUT_DOWN.contains("threatjammer.com"));
    assert!(SHUT_DOWN.contains("someone else"));
    assert!(SHUT_DOWN.contains("token"));
}

/// The old domain is someone else's now: a token is not sent there, even
/// when `api_url` names it explicitly (as the example configuration of
/// earlier versions did).
#[test]
fn the_old_domain_is_refused() {
    for url in [
        "https://dublin.report.threatjammer.com/v1/ip",
        "https://LONDON.report.ThreatJammer.com./v1/ip",
        "https://threatjammer.com/",
    ] {
        let text = format!("[targets.threatjammer]\napi_url = \"{url}\"\n");
        let err = load(&text, &dry()).unwrap_err();
        assert_eq!(invalid_key(&err), "[targets.threatjammer] api_url", "{url}");
        assert!(err.to_string().contains(SHUT_DOWN), "{err}");
    }
    // A look-alike elsewhere is not it.
    let text = "[targets.threatjammer]\napi_url = \"https://notthreatjammer.com/v1/ip\"\n";
    assert!(load(text, &dry()).is_ok());
}

#[test]
fn a_file_that_enables_no_target_is_refused() {
    for text in [
        "",
        "state_dir = \"/tmp/x\"\n[input]\ncowrie_json = \"/x.json\"\n",
    ] {
        for opts in [opts(), dry()] {
            let err = load(text, &opts).unwrap_err();
            assert_eq!(invalid_key(&err), "[targets]");
            let msg = err.to_string();
            assert!(msg.starts_with(FILE), "{msg}");
            assert!(msg.contains("no report target is enabled"), "{msg}");
            for name in TARGET_NAMES {
                assert!(msg.contains(name), "{name}: {msg}");
            }
            assert!(msg.contains("[targets.<name>]"), "{msg}");
            assert!(msg.contains("shut down"), "{msg}");
        }
    }
    // A token alone (the environment's) enables nothing either: the
    // section says where to send.
    let err = Config::from_toml_str("", None, &opts(), Some(TOKEN.into())).unwrap_err();
    assert_eq!(invalid_key(&err), "[targets]");
    assert!(!err.to_string().contains(TOKEN));
    // Threat Jammer's section is enough.
    let c = load(TJ, &dry()).unwrap();
    assert_eq!(tj(&c).api_url.as_str(), API_URL);
}
