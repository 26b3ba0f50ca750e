//! Fuzzes the TOML configuration loader the binary uses (`Config::load`
//! and `from_toml_str` share `build`): arbitrary text must give a
//! configuration or an error, never a panic; no message may show the
//! token; and a configuration that loads must survive its own
//! `check-config` output (`redacted_toml`) unchanged but for the token,
//! the file-read warnings and notes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tjfwd::config::{Config, LoadOptions};

/// The token the fuzzer's environment supplies (the text may hold others).
const ENV_TOKEN: &str = "fuzz-env-token-5c1d";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As `--dry-run` (no token needed), and with the token from the environment.
    check(text, true, None);
    check(text, false, Some(ENV_TOKEN.to_string()));
});

fn check(text: &str, dry_run: bool, env_token: Option<String>) {
    let opts = LoadOptions { dry_run };
    let config = match Config::from_toml_str(text, None, &opts, env_token) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().contains(ENV_TOKEN), "{e}");
            return;
        }
    };
    let out = config.redacted_toml();
    assert!(!out.contains(ENV_TOKEN), "{out}");
    for w in config.warnings.iter().chain(&config.notes) {
        assert!(!w.contains(ENV_TOKEN), "{w}");
    }
    let back = Config::from_toml_str(&out, None, &LoadOptions { dry_run: true }, None)
        .unwrap_or_else(|e| panic!("the effective configuration does not load: {e}\n{out}"));
    let mut expected = config.clone();
    if let (Some(e), Some(b)) = (expected.targets.threatjammer.as_mut(), back.threatjammer()) {
        e.report.token = b.report.token.clone();
    }
    expected.warnings = back.warnings.clone();
    expected.notes = back.notes.clone();
    assert_eq!(back, expected, "{out}");
}
