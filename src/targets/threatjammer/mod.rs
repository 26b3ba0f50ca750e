//! The Threat Jammer Report API (v1), tjfwd's first target: the contract is
//! in DESIGN.md. `POST {api_url}` with a JSON list of addresses, a TTL, a
//! dataset and tags; 202 is the only success; at most
//! `max_requests_per_minute` requests in any rolling minute.
//!
//! - `client.rs`: the HTTP request (token, TLS, timeouts, body).
//! - `classify.rs`: the pure answer → [`Action`](crate::targets::Action)
//!   table.
//! - `config.rs`: its section, `[threatjammer]` (endpoint, token, contents
//!   of a report); `schedule.rs`: its sending policy, `[schedule]` (batch
//!   size, flush interval, rate limit, timeouts, backoff). Both tables sit at
//!   the top level of the file, where tjfwd has always read them:
//!   [`crate::config`] places them there, and [`crate::targets::start_enabled`]
//!   builds the target from them with [`ThreatJammer::new`].

pub mod classify;
pub mod client;
pub mod config;
pub mod schedule;

use std::time::SystemTime;

pub use client::{Reply, Reporter, ReporterError, USER_AGENT};
use schedule::Schedule;

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
    /// The target as configured by `[threatjammer]` and `[schedule]`; with
    /// `dry_run`, without an HTTP client (so without the token it would need).
    pub fn new(
        tj: &config::ThreatJammer,
        schedule: &Schedule,
        dry_run: bool,
    ) -> Result<ThreatJammer, ReporterError> {
        let client = if dry_run {
            None
        } else {
            Some(Reporter::new(tj, schedule.request_timeout)?)
        };
        Ok(ThreatJammer {
            client,
            policy: policy(schedule),
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
pub fn policy(s: &Schedule) -> Policy {
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
pub fn store_spec(section: &config::ThreatJammer, schedule: &Schedule) -> TargetSpec {
    TargetSpec {
        name: NAME.into(),
        policy: StorePolicy {
            ttl_ms: section.ttl.saturating_mul(1000),
            rereport_after_ms: schedule.rereport_after.as_millis() as u64,
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
