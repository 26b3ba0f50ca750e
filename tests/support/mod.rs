//! Shared support code for tjfwd's integration tests.
//!
//! Each integration test crate that needs it declares `mod support;` and then
//! uses e.g. `support::fake_api::{FakeApi, FakeConfig, Failure}`. Not every
//! crate uses every helper, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod bin;
pub mod cowrie;
pub mod fake_api;
pub mod pki;
pub mod props;
