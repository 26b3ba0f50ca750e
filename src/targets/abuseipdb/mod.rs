//! AbuseIPDB (API v2), read from `[targets.abuseipdb]`: the shared
//! database of abusive addresses that Cowrie's own `output_abuseipdb`
//! reports to. Facts and sources: `TARGETS.md`; the operator's reference:
//! `docs/targets/abuseipdb.md`.
//!
//! - `config.rs`: the section (endpoint, key, mode, categories, daily
//!   limit, `rereport_after`, `min_attempts` in `attempts_window`...).
//! - `client.rs`: the requests: bulk (`POST /bulk-report`, a CSV of up to
//!   9,999 reports) or single (`POST /report`), and what a report says
//!   (tjfwd's own counts, the last sighting's date).
//! - `classify.rs`: the pure answer → [`Action`](crate::targets::Action)
//!   table (the 15-minute 429 is a success; a bulk answer's
//!   `invalidReports` are dead-lettered, the rest acknowledged).
//! - `select.rs`: which addresses go first when the quota is short (the
//!   most active attackers; a /64 is one attacker), the 60-day rule and the
//!   `min_attempts` gate.
//!
//! # The daily limit
//!
//! `daily_limit` (requests a UTC day on the mode's endpoint) is the
//! scheduler's rolling-window [`Limit`] with a 24-hour window: at most
//! `daily_limit` requests in any 24 hours, retries included, each recorded
//! on disk before it is sent on the scheduler's monotonic timeline, so
//! neither a restart nor a step of the wall clock can reset it. Any UTC
//! day lies within one 24-hour window, so the rolling limit never lets
//! more than `daily_limit` requests fall in one UTC day of the service's
//! clock (it may let fewer: the price of not trusting a wall clock). A 429
//! all the same (the quota shared with another client of the same key)
//! waits for `Retry-After`, else `X-RateLimit-Reset`, else the next UTC
//! midnight.
//!
//! # The service's quota, for `status`
//!
//! The last `X-RateLimit-Limit` and `X-RateLimit-Remaining` seen are
//! [`Target::quota`]: the scheduler keeps them in
//! [`crate::stats::TargetStats::quota`] of `abuseipdb` (in memory; None until an
//! answer carried them in this run).

pub mod classify;
pub mod client;
pub mod config;
pub mod select;

use std::sync::Mutex;
use std::time::SystemTime;

pub use client::{Client, ClientError, Reply};
pub use config::{Mode, Section};

use crate::config_kit::{ConfigError, Ctx};
use crate::ratelimit::Limit;
use crate::stats::Quota;
use crate::store::{BatchItem, Store, StoreError, TargetId};
use crate::targets::{Answer, Configured, Policy, Selection, SetupError, Target};

/// Its name, in the configuration (`[targets.abuseipdb]`) and the store.
pub const NAME: &str = "abuseipdb";

/// The AbuseIPDB target.
#[derive(Debug)]
pub struct AbuseIpdb {
    /// The HTTP client; None in a dry run (no key needed: nothing is sent).
    client: Option<Client>,
    mode: Mode,
    policy: Policy,
    rules: select::Rules,
    /// `mode=… categories=…`, for dry-run logs.
    describe: String,
    /// The API's base URL and the categories, for dry-run logs.
    preview: (url::Url, String),
    /// The attackers selected lately (the round-robin's memory).
    served: Mutex<select::Served>,
    /// The quota's day ([`config::DAY`] but in tests of the binary).
    day: std::time::Duration,
}

impl AbuseIpdb {
    /// The target as `[targets.abuseipdb]` says; with `dry_run`, without
    /// an HTTP client (so without the key it would need).
    pub fn new(s: &Section, dry_run: bool) -> Result<AbuseIpdb, ClientError> {
        let client = if dry_run { None } else { Some(Client::new(s)?) };
        Ok(AbuseIpdb {
            client,
            mode: s.mode,
            policy: policy(s),
            rules: select::Rules {
                min_attempts: s.min_attempts,
                window_ms: s.attempts_window.as_millis() as u64,
            },
            describe: format!(
                "mode={} categories={} daily_limit={} min_attempts={} attempts_window={}",
                s.mode.as_str(),
                config::categories_text(&s.categories),
                s.daily_limit,
                s.min_attempts,
                humantime::format_duration(s.attempts_window)
            ),
            served: Mutex::default(),
            preview: (s.api_url.clone(), config::categories_text(&s.categories)),
            day: s.day,
        })
    }
}

/// The sending policy of a section: a batch is a bulk file of 9,999 rows
/// (or one address in single mode); `daily_limit` requests in any 24 hours
/// (the section's `day`, shorter only under the test-only
/// [`config::TEST_DAY_ENV`]).
pub fn policy(s: &Section) -> Policy {
    Policy {
        batch_size: match s.mode {
            Mode::Bulk => client::MAX_ROWS,
            Mode::Single => 1,
        },
        flush_interval: s.flush_interval,
        limit: Limit {
            max: s.daily_limit,
            window_ms: s.day.as_millis() as u64,
        },
        max_backoff: s.max_backoff,
        rereport_after: s.rereport_after,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Target for AbuseIpdb {
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

    fn preview(&self, batch: &[BatchItem], now_ms: u64) -> String {
        let (url, categories) = &self.preview;
        let base = url.as_str().trim_end_matches('/');
        match (self.mode, batch.first()) {
            (Mode::Single, Some(item)) => format!(
                "POST {base}/report {}",
                client::single_form(item, categories, now_ms)
            ),
            _ => {
                let (csv, _) = client::bulk_csv(batch, categories, now_ms);
                // One log line: the file's line breaks written as \n.
                format!("POST {base}/bulk-report csv={}", csv.replace('\n', "\\n"))
            }
        }
    }

    fn select(
        &self,
        queue: &Store,
        t: TargetId,
        n: usize,
        now_ms: u64,
    ) -> Result<Selection, StoreError> {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        select::select(queue, t, n, now_ms, self.rules, &mut served)
    }

    fn quota(&self, reply: &Reply, now_ms: u64) -> Option<Quota> {
        let remaining = reply.remaining.as_deref()?.trim().parse::<u64>().ok()?;
        Some(Quota {
            limit: reply.limit.as_deref().and_then(|l| l.trim().parse().ok()),
            remaining: Some(remaining),
            reset_ms: reply
                .reset
                .as_deref()
                .and_then(|r| r.trim().parse::<u64>().ok())
                .map(|s| s.saturating_mul(1000)),
            at_ms: now_ms,
        })
    }

    async fn send(&self, batch: &[BatchItem]) -> Reply {
        match &self.client {
            Some(c) => c.send(batch, now_ms()).await,
            None => Reply::none(self.mode, "dry run: nothing is sent".into()),
        }
    }

    fn classify(&self, reply: &Reply, now: SystemTime) -> Answer {
        classify::classify_in_day(reply, now, self.day)
    }

    fn rejects_everything_hint(&self) -> &'static str {
        "check [targets.abuseipdb] categories"
    }
}

impl Configured for AbuseIpdb {
    type Raw = config::Raw;
    type Section = Section;

    fn validate(ctx: &mut Ctx, table: &str, raw: config::Raw) -> Result<Section, ConfigError> {
        config::validate(ctx, table, raw)
    }

    fn build(section: &Section, dry_run: bool) -> Result<AbuseIpdb, SetupError> {
        AbuseIpdb::new(section, dry_run).map_err(SetupError::new)
    }

    /// A report stays "held" a day at least, and `rereport_after` if
    /// longer: a new sighting queues the address again once
    /// `rereport_after` has passed since its report.
    fn store_policy(section: &Section) -> crate::store::Policy {
        let rereport_after_ms = section.rereport_after.as_millis() as u64;
        crate::store::Policy {
            ttl_ms: rereport_after_ms.max(config::DAY.as_millis() as u64),
            rereport_after_ms,
        }
    }
}
