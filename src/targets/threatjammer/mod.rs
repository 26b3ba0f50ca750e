//! The Threat Jammer Report API (v1), tjfwd's first target: the contract is
//! in DESIGN.md. `POST {api_url}` with a JSON list of addresses, a TTL, a
//! dataset and tags; 202 is the only success; at most
//! `max_requests_per_minute` requests in any rolling minute.
//!
//! - `client.rs`: the HTTP request (token, TLS, timeouts, body).
//! - `classify.rs`: the pure answer → [`Action`](crate::targets::Action)
//!   table.
//!
//! Its configuration section is `[threatjammer]` (with the shared
//! `[schedule]` settings), read by [`crate::config`].

pub mod classify;
pub mod client;

use std::time::SystemTime;

pub use client::{Reply, Reporter, ReporterError, USER_AGENT};

use crate::config::Config;
use crate::ratelimit::Limit;
use crate::store::{BatchItem, Policy as StorePolicy, TargetSpec};
use crate::targets::{Answer, Policy, Target};

/// The Threat Jammer target.
#[derive(Debug)]
pub struct ThreatJammer {
    /// The HTTP client; None in a dry run (no token needed: nothing is sent).
    client: Option<Reporter>,
    policy: Policy,
    /// `type=… ttl=… tags=…`, for dry-run logs.
    describe: String,
}

impl ThreatJammer {
    /// The target as configured; with `dry_run`, without an HTTP client (so
    /// without the token it would need).
    pub fn from_config(config: &Config, dry_run: bool) -> Result<ThreatJammer, ReporterError> {
        let client = if dry_run {
            None
        } else {
            Some(Reporter::new(config)?)
        };
        let tj = &config.threatjammer;
        Ok(ThreatJammer {
            client,
            policy: policy(config),
            describe: format!(
                "type={} ttl={} tags={}",
                tj.category,
                tj.ttl,
                tj.tags.join(",")
            ),
        })
    }
}

/// The target's policy from `[schedule]`.
pub fn policy(config: &Config) -> Policy {
    let s = &config.schedule;
    Policy {
        batch_size: s.batch_size,
        flush_interval: s.flush_interval,
        limit: Limit {
            max: s.max_requests_per_minute,
            window_ms: s.rate_window.as_millis() as u64,
        },
        max_backoff: s.max_backoff,
        rereport_after: s.rereport_after,
    }
}

/// Its name, in the configuration and in the store.
pub const NAME: &str = "threatjammer";

/// What the store needs: reporting an address again resets its TTL in the
/// private denylist (`ttl`), unless within `rereport_after` of the last
/// report.
pub fn store_spec(config: &Config) -> TargetSpec {
    TargetSpec {
        name: NAME.into(),
        policy: StorePolicy {
            ttl_ms: config.threatjammer.ttl.saturating_mul(1000),
            rereport_after_ms: config.schedule.rereport_after.as_millis() as u64,
        },
    }
}

impl Target for ThreatJammer {
    type Reply = Reply;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> Policy {
        self.policy.clone()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn send(&self, batch: &[BatchItem]) -> Reply {
        let addrs: Vec<_> = batch.iter().map(|b| b.addr).collect();
        match &self.client {
            Some(c) => c.send(&addrs).await,
            None => Reply {
                status: None,
                retry_after: None,
                body: "dry run: nothing is sent".into(),
            },
        }
    }

    fn classify(&self, reply: &Reply, now: SystemTime) -> Answer {
        classify::classify(reply, now)
    }

    fn rejects_everything_hint(&self) -> &'static str {
        "check [threatjammer] category, tags and ttl"
    }
}
