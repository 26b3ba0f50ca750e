//! Opening the store as the configuration describes it: where
//! (`state_dir`), with how much cache (`[storage] cache_capacity`), and the
//! policy applied inside its transactions (the TTL, `rereport_after`).
//!
//! The one place that maps configuration onto [`Store::open`], for the
//! daemon and every command alike.

use super::{Policy, Store, StoreError};
use crate::config::Config;

impl Policy {
    /// The queue policy from the configuration.
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            ttl_ms: config.threatjammer.ttl.saturating_mul(1000),
            rereport_after_ms: config.schedule.rereport_after.as_millis() as u64,
        }
    }
}

impl Store {
    /// Opens the store described by the configuration.
    pub fn open_configured(config: &Config) -> Result<Store, StoreError> {
        Store::open(
            &config.state_dir,
            config.storage.cache_capacity,
            Policy::from_config(config),
        )
    }
}
