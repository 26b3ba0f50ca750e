//! The tests of the shared checks (`crate::config_kit`) through the whole
//! loader: durations, toml's parse errors without the secrets they quote,
//! and the bearer token's `Debug`.

use crate::config::tests::{opts, parse_ok, refused, FILE, FULL, TOKEN};
use crate::config::{Config, ConfigError};
use crate::config_kit::Secret;

use std::path::Path;
use std::time::Duration;

#[test]
fn refuses_bad_durations() {
    let msg = refused(
        "[targets.threatjammer]\nflush_interval = \"soon\"",
        "[targets.threatjammer] flush_interval",
    );
    assert!(msg.contains("\"soon\""), "{msg}");
    assert!(msg.contains("60s"), "{msg}");
    let msg = refused(
        "[targets.threatjammer]\nmax_backoff = 600",
        "[targets.threatjammer] max_backoff",
    );
    assert!(msg.contains("\"600s\""), "{msg}");
    refused(
        "[targets.threatjammer]\nrequest_timeout = \"0s\"",
        "[targets.threatjammer] request_timeout",
    );
    refused(
        "[targets.threatjammer]\nflush_interval = \"0s\"",
        "[targets.threatjammer] flush_interval",
    );
    refused(
        "[targets.threatjammer]\nrereport_after = true",
        "[targets.threatjammer] rereport_after",
    );
    refused("[input]\npoll_interval = \"0ms\"", "[input] poll_interval");
    let msg = refused("[input]\npoll_interval = \"61s\"", "[input] poll_interval");
    assert!(msg.contains("60s"), "{msg}");
    assert_eq!(
        parse_ok("[input]\npoll_interval = \"60s\"")
            .input
            .poll_interval,
        Duration::from_secs(60)
    );
}

/// Parse errors on lines holding a secret must not quote it.
#[test]
fn parse_errors_redact_the_token() {
    let cases = [
        // Unquoted value: the error points at the token itself.
        format!("[targets.threatjammer]\nbearer_token = {TOKEN}\n"),
        // Unterminated string.
        format!("[targets.threatjammer]\nbearer_token = \"{TOKEN}\n"),
        // Key in the wrong table: unknown field.
        format!("bearer_token = \"{TOKEN}\"\n"),
        // Misspelt key: unknown field, quoted line.
        format!("[targets.threatjammer]\nbearer_tokn = \"{TOKEN}\"\n"),
        // Duplicate key.
        format!("[targets.threatjammer]\nbearer_token = \"{TOKEN}\"\nbearer_token = \"{TOKEN}\"\n"),
        // Inline table.
        format!("[targets]\nthreatjammer = {{ bearer_token = \"{TOKEN}\", bogus = 1 }}\n"),
        // Missing `=`.
        format!("[targets.threatjammer]\nbearer_token \"{TOKEN}\"\n"),
        // Wrong type: serde quotes the value.
        "[targets.threatjammer]\nbearer_token = 987654321\n".to_string(),
        // Multi-line string in an unknown key.
        format!("[targets.threatjammer]\napi_token = \"\"\"\n{TOKEN}\n\"\"\"\n"),
    ];
    for text in &cases {
        let err =
            Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None).expect_err(text);
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {msg}");
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(!msg.contains(TOKEN), "token leaked for {text:?}:\n{msg}");
        assert!(!msg.contains("987654321"), "value leaked:\n{msg}");
        assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
    }
    // The redacted snippet still points at the line.
    let text = format!("[targets.threatjammer]\nbearer_token = {TOKEN}\n");
    let msg = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 2"), "{msg}");
    assert!(msg.contains("bearer_token = \"<redacted>\""), "{msg}");
}

#[test]
fn parse_errors_keep_the_snippet_of_other_lines() {
    let text = format!("[targets.threatjammer]\nbearer_token = \"{TOKEN}\"\nttl = \"long\"\n");
    let msg = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("3 | ttl = \"long\""), "{msg}");
    assert!(msg.contains('^'), "{msg}");
    assert!(!msg.contains(TOKEN), "{msg}");
    // A bearer_token_file path is not a secret and stays visible.
    let text = "[targets.threatjammer]\nbearer_token_file = /etc/tjfwd/token\n";
    let msg = Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/etc/tjfwd/token"), "{msg}");
}

#[test]
fn debug_never_shows_the_token() {
    let c = Config::from_toml_str(FULL, Some(Path::new(FILE)), &opts(), None).unwrap();
    assert_eq!(
        c.threatjammer()
            .unwrap()
            .report
            .token
            .as_ref()
            .unwrap()
            .expose(),
        TOKEN
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let pretty = format!("{c:#?}");
    assert!(!pretty.contains(TOKEN));
    let secret = Secret::new(TOKEN.to_string());
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert!(!format!("{:?}", c.clone()).contains(TOKEN));
}
