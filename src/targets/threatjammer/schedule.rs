//! The sending part of `[targets.threatjammer]` (the deprecated top-level
//! `[schedule]` table has the same keys): when Threat Jammer is sent
//! batches, how fast, and how long a request and a retry may take.
//!
//! It is the target's sending policy ([`super::policy`]): every limit and
//! default here is the Report API's (1000 addresses a request, 6 requests in
//! any rolling minute) and `request_timeout` is its client's.
//!
//! Invariants of a [`Schedule`] from `validate`: `1 <= batch_size <= 1000`,
//! `max_requests_per_minute >= 1` (a warning above 6), `flush_interval`,
//! `request_timeout` and `max_backoff` non-zero, `rate_window` 60 s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_kit::{ser, ConfigError, Ctx};

/// The Report API accepts at most this many addresses in one request.
pub const MAX_BATCH_SIZE: usize = 1000;

/// The Report API's documented request limit per token and per minute.
pub const API_REQUESTS_PER_MINUTE: u32 = 6;

/// The window of the API's rate limit (`Schedule::rate_window` from a file).
pub const API_RATE_WINDOW: Duration = Duration::from_secs(60);

/// Test-only environment variable shortening the rate window of the binary
/// (milliseconds); see
/// [`Config::apply_test_rate_window`](crate::config::Config::apply_test_rate_window).
pub const TEST_RATE_WINDOW_ENV: &str = "TJFWD_TEST_RATE_WINDOW_MS";

const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Threat Jammer's batching, rate limit, retries. Serializes to the
/// section's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Most addresses in one request; a full batch is sent at once (API limit 1000).
    #[serde(serialize_with = "ser::saturating_i64")]
    pub batch_size: usize,
    /// Longest time the oldest pending address waits before a partial batch is sent.
    #[serde(serialize_with = "ser::duration")]
    pub flush_interval: Duration,
    /// Most requests (retries included) in any rolling `rate_window` (API limit 6/min).
    pub max_requests_per_minute: u32,
    /// Time limit of one HTTP request, connection included.
    #[serde(serialize_with = "ser::duration")]
    pub request_timeout: Duration,
    /// Upper bound of the exponential backoff after transient failures.
    #[serde(serialize_with = "ser::duration")]
    pub max_backoff: Duration,
    /// An address reported less than this long ago is not queued again (0 = always).
    #[serde(serialize_with = "ser::duration")]
    pub rereport_after: Duration,
    /// Length of the rate-limit window: not a TOML key, always 60 s from a file
    /// (the API's window); tests built in code shorten it, tests of the binary
    /// through the test-only `TJFWD_TEST_RATE_WINDOW_MS`.
    #[serde(skip)]
    pub rate_window: Duration,
}

impl Schedule {
    /// Every default.
    pub const DEFAULT: Schedule = Schedule {
        batch_size: MAX_BATCH_SIZE,
        flush_interval: DEFAULT_FLUSH_INTERVAL,
        max_requests_per_minute: API_REQUESTS_PER_MINUTE,
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
        max_backoff: DEFAULT_MAX_BACKOFF,
        rereport_after: Duration::ZERO,
        rate_window: API_RATE_WINDOW,
    };
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::DEFAULT
    }
}

/// The sending keys as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    /// Addresses per request, 1..=1000.
    pub(crate) batch_size: Option<i64>,
    /// humantime duration string.
    pub(crate) flush_interval: Option<toml::Value>,
    /// Requests per rolling minute, >= 1.
    pub(crate) max_requests_per_minute: Option<i64>,
    /// humantime duration string.
    pub(crate) request_timeout: Option<toml::Value>,
    /// humantime duration string.
    pub(crate) max_backoff: Option<toml::Value>,
    /// humantime duration string.
    pub(crate) rereport_after: Option<toml::Value>,
}

/// Checks the sending keys as written and applies their defaults. `sec`
/// is how their table is named in messages: `[targets.threatjammer]`, or
/// the deprecated `[schedule]`.
pub(crate) fn validate(
    ctx: &mut Ctx,
    sec: &str,
    raw: RawSchedule,
) -> Result<Schedule, ConfigError> {
    let batch_size = match raw.batch_size {
        None => MAX_BATCH_SIZE,
        Some(n) if (1..=MAX_BATCH_SIZE as i64).contains(&n) => n as usize,
        Some(n) => {
            let key = &format!("{sec} batch_size");
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is out of range: it must be between 1 and {MAX_BATCH_SIZE} \
                     (the API takes at most {MAX_BATCH_SIZE} addresses a request)"
                ),
            ));
        }
    };
    let key = &format!("{sec} max_requests_per_minute");
    let max_requests_per_minute = match raw.max_requests_per_minute {
        None => API_REQUESTS_PER_MINUTE,
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
        Some(n) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is out of range: it must be at least 1 (the API allows \
                     {API_REQUESTS_PER_MINUTE} requests a minute)"
                ),
            ))
        }
    };
    if max_requests_per_minute > API_REQUESTS_PER_MINUTE {
        ctx.warnings.push(format!(
            "{}: {key} = {max_requests_per_minute} is above the API's limit of \
             {API_REQUESTS_PER_MINUTE} requests a minute: expect 429 responses and delays",
            ctx.file
        ));
    }
    let key = &format!("{sec} flush_interval");
    let flush_interval = ctx.nonzero(
        key,
        ctx.duration(key, raw.flush_interval, DEFAULT_FLUSH_INTERVAL)?,
    )?;
    let key = &format!("{sec} request_timeout");
    let request_timeout = ctx.nonzero(
        key,
        ctx.duration(key, raw.request_timeout, DEFAULT_REQUEST_TIMEOUT)?,
    )?;
    let key = &format!("{sec} max_backoff");
    let max_backoff = ctx.nonzero(
        key,
        ctx.duration(key, raw.max_backoff, DEFAULT_MAX_BACKOFF)?,
    )?;
    let rereport_after = ctx.duration(
        &format!("{sec} rereport_after"),
        raw.rereport_after,
        Duration::ZERO,
    )?;
    Ok(Schedule {
        batch_size,
        flush_interval,
        max_requests_per_minute,
        request_timeout,
        max_backoff,
        rereport_after,
        rate_window: API_RATE_WINDOW,
    })
}
