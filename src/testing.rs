//! Helpers for the library's unit tests (compiled only for them).
//!
//! [`proptest_config`] is the one configuration of every property test in
//! the library, so that `cargo test` gives the same answer on every run
//! and every machine: a fixed seed, unless random exploration is asked
//! for. Failures found either way are kept in `proptest-regressions/` and
//! run first every time. The integration tests have the same helper in
//! `tests/support/props.rs`; README "Development" documents the variables.

use proptest::test_runner::{Config, RngSeed};

/// The seed of every property test by default.
pub const SEED: u64 = 0x7466_7764_5eed_0015;

/// `cases` cases from [`SEED`]; `TJFWD_PROPTEST_CASES=N` runs `N` instead,
/// and `TJFWD_PROPTEST_RANDOM=1` draws a new seed each run.
pub fn proptest_config(cases: u32) -> Config {
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    let random = var("TJFWD_PROPTEST_RANDOM").is_some_and(|v| v != "0");
    Config {
        cases: var("TJFWD_PROPTEST_CASES")
            .map(|v| {
                v.trim()
                    .parse()
                    .expect("TJFWD_PROPTEST_CASES: a number of cases")
            })
            .unwrap_or(cases),
        rng_seed: if random {
            RngSeed::Random
        } else {
            RngSeed::Fixed(SEED)
        },
        ..Config::default()
    }
}
