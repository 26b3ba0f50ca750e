//! Shared support code for tjfwd's integration tests.
//!
//! Each integration test crate that needs it declares `mod support;` and then
//! uses e.g. `support::fake_api::{FakeApi, FakeConfig, Failure}`. Not every
//! crate uses every helper, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod bin;
pub mod cowrie;
pub mod fake_abuseipdb;
pub mod fake_api;
pub mod fake_crowdsec;
pub mod fake_server;
#[cfg(target_os = "linux")]
pub mod lazyfs;
pub mod pki;
pub mod props;

/// Whether the tests run under CI (`CI` set and not empty): there, a test
/// whose prerequisites are missing fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Says on stderr (past the harness's capture) why `test` is skipped, or
/// fails under CI.
pub fn skip_or_fail(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why} (CI is set, so this is a failure, not a skip)");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}
