//! The Threat Jammer Report API (v1), tjfwd's first target: the contract is
//! in DESIGN.md. `POST {api_url}` with a JSON list of addresses, a TTL, a
//! dataset and tags; 202 is the only success; at most
//! `max_requests_per_minute` requests in any rolling minute.
//!
//! - `client.rs`: the HTTP request (token, TLS, timeouts, body).
//! - `classify.rs`: the pure answer → [`Action`](crate::targets::Action)
//!   table.
//! - `config.rs` and `schedule.rs`: its section, `[targets.threatjammer]`
//!   ([`Section`]): the keys of `config.rs` (endpoint, token, contents of a
//!   report) and of `schedule.rs` (its sending policy: batch size, flush
//!   interval, rate limit, timeouts, backoff) in one table. It is a target
//!   of the `registry!` like any other ([`Configured`]).
//!
//! Two ways in are its own, and `crate::config` handles them by name: the
//! deprecated top-level tables `[threatjammer]` and `[schedule]`, which
//! the loader turns into this section (`RawSection::from_alias`: messages
//! then name the old tables), and cowrie.cfg's `[output_threatjammer]`
//! (`crate::cowrie_cfg`), whose keys are the report part.
//!
//! `api_url` has no default (the service shut down in 2024: see
//! [`config::SHUT_DOWN`]), so the target runs only where its section says
//! where to send.

pub mod classify;
pub mod client;
pub mod config;
pub mod schedule;

use std::time::SystemTime;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use client::{Reply, Reporter, ReporterError, USER_AGENT};
use config::RawThreatJammer;
use schedule::{RawSchedule, Schedule};

use crate::config_kit::{ConfigError, Ctx, Secret};
use crate::ratelimit::Limit;
use crate::store::{BatchItem, Policy as StorePolicy};
use crate::targets::{Answer, Configured, Policy, SetupError, Target};

/// `[targets.threatjammer]` checked: what a report holds and where it goes,
/// and when and how fast reports are sent. Serializes to the table's keys
/// (the token as `<redacted>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Endpoint, token, contents of a report.
    #[serde(flatten)]
    pub report: config::ThreatJammer,
    /// Batching, rate limit, retries.
    #[serde(flatten)]
    pub schedule: Schedule,
}

impl Section {
    /// Every default, with `api_url` (which has none) and no token: for
    /// configurations built in code.
    pub fn with_api_url(api_url: url::Url) -> Section {
        Section {
            report: config::ThreatJammer::with_api_url(api_url),
            schedule: Schedule::default(),
        }
    }
}

/// `[targets.threatjammer]` as written: the keys of `[threatjammer]` and
/// of `[schedule]` (see their raw structs in `config.rs` and `schedule.rs`
/// for what each holds).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    api_url: Option<String>,
    bearer_token: Option<Secret>,
    bearer_token_file: Option<PathBuf>,
    track_login: Option<bool>,
    track_session: Option<bool>,
    ttl: Option<i64>,
    category: Option<String>,
    tags: Option<toml::Value>,
    allow_insecure_http: Option<bool>,
    ca_file: Option<PathBuf>,
    batch_size: Option<i64>,
    flush_interval: Option<toml::Value>,
    max_requests_per_minute: Option<i64>,
    request_timeout: Option<toml::Value>,
    max_backoff: Option<toml::Value>,
    rereport_after: Option<toml::Value>,
    /// Made by the loader from the deprecated `[threatjammer]` and
    /// `[schedule]`: messages name those tables.
    #[serde(skip)]
    alias: bool,
}

impl RawSection {
    /// The section the deprecated top-level tables stand for.
    pub(crate) fn from_alias(tj: RawThreatJammer, s: RawSchedule) -> RawSection {
        RawSection {
            api_url: tj.api_url,
            bearer_token: tj.bearer_token,
            bearer_token_file: tj.bearer_token_file,
            track_login: tj.track_login,
            track_session: tj.track_session,
            ttl: tj.ttl,
            category: tj.category,
            tags: tj.tags,
            allow_insecure_http: tj.allow_insecure_http,
            ca_file: tj.ca_file,
            batch_size: s.batch_size,
            flush_interval: s.flush_interval,
            max_requests_per_minute: s.max_requests_per_minute,
            request_timeout: s.request_timeout,
            max_backoff: s.max_backoff,
            rereport_after: s.rereport_after,
            alias: true,
        }
    }

    /// How messages name the report keys and the sending keys: `table`,
    /// or the old tables for the alias.
    pub(crate) fn tables<'a>(&self, table: &'a str) -> (&'a str, &'a str) {
        if self.alias {
            ("[threatjammer]", "[schedule]")
        } else {
            (table, table)
        }
    }

    /// The report keys and the sending keys.
    pub(crate) fn split(self) -> (RawThreatJammer, RawSchedule) {
        (
            RawThreatJammer {
                api_url: self.api_url,
                bearer_token: self.bearer_token,
                bearer_token_file: self.bearer_token_file,
                track_login: self.track_login,
                track_session: self.track_session,
                ttl: self.ttl,
                category: self.category,
                tags: self.tags,
                allow_insecure_http: self.allow_insecure_http,
                ca_file: self.ca_file,
            },
            RawSchedule {
                batch_size: self.batch_size,
                flush_interval: self.flush_interval,
                max_requests_per_minute: self.max_requests_per_minute,
                request_timeout: self.request_timeout,
                max_backoff: self.max_backoff,
                rereport_after: self.rereport_after,
            },
        )
    }
}

/// The Threat Jammer target.
#[derive(Debug)]
pub struct ThreatJammer {
    /// The HTTP client; None in a dry run (no token needed: nothing is sent).
    client: Option<Reporter>,
    policy: Policy,
    /// The endpoint and the body's fixed fields (ttl, type, tags), for
    /// dry-run logs.
    preview: (url::Url, u64, String, Vec<String>),
    /// `type=… ttl=… tags=…`, for dry-run logs.
    describe: String,
}

impl ThreatJammer {
    /// The target as configured by its section's two parts; with
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
            preview: (
                tj.api_url.clone(),
                tj.ttl,
                tj.category.clone(),
                tj.tags.clone(),
            ),
            describe: format!(
                "type={} ttl={} tags={}",
                tj.category,
                tj.ttl,
                tj.tags.join(",")
            ),
        })
    }
}

/// The target's policy from its sending keys.
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

impl Configured for ThreatJammer {
    type Raw = RawSection;
    type Section = Section;

    fn validate(ctx: &mut Ctx, table: &str, raw: RawSection) -> Result<Section, ConfigError> {
        let (report_sec, schedule_sec) = raw.tables(table);
        let (mut report, schedule) = raw.split();
        let ca_file = config::ca_file(ctx, report_sec, report.ca_file.take())?;
        let mut report = config::validate(ctx, report_sec, report)?;
        report.ca_file = ca_file;
        let schedule = schedule::validate(ctx, schedule_sec, schedule)?;
        Ok(Section { report, schedule })
    }

    fn build(section: &Section, dry_run: bool) -> Result<ThreatJammer, SetupError> {
        ThreatJammer::new(&section.report, &section.schedule, dry_run).map_err(SetupError::new)
    }

    /// Reporting an address again resets its TTL in the private denylist
    /// (`ttl`), unless within `rereport_after` of the last report.
    fn store_policy(section: &Section) -> StorePolicy {
        StorePolicy {
            ttl_ms: section.report.ttl.saturating_mul(1000),
            rereport_after_ms: section.schedule.rereport_after.as_millis() as u64,
        }
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

    fn preview(&self, batch: &[BatchItem], _now_ms: u64) -> String {
        let (url, ttl, dataset, tags) = &self.preview;
        let addrs: Vec<_> = batch.iter().map(|b| b.addr).collect();
        format!(
            "POST {url} {}",
            String::from_utf8_lossy(&client::body(&addrs, *ttl, dataset, tags))
        )
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
        "check [targets.threatjammer] category, tags and ttl"
    }
}
