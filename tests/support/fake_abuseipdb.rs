//! A contract-faithful fake of the AbuseIPDB API v2 report endpoints, for
//! tests: `POST /api/v2/report` and `POST /api/v2/bulk-report`.
//!
//! It refuses what the service refuses, with the service's statuses and
//! JSON shapes, and records every request and every accepted report. Facts
//! and sources: `TARGETS.md`; AbuseIPDB's API v2 documentation
//! (docs.abuseipdb.com: the report and bulk-report sections, the rate-limit
//! headers, the error format), its bulk-report page (CSV format and limits),
//! its categories page and FAQ (1,000 reports a day on the free plan), its
//! reporting policy (60 days). Where those are silent the fake is strict and
//! says so below with **assumed**: a client that works against it also
//! works against the looser truth, and must not depend on the assumed
//! details (e.g. it should identify invalid bulk rows by `input`, not only
//! by `rowNumber`).
//!
//! # Running it
//!
//! [`FakeAbuseIpdb::start`] binds `127.0.0.1:0` and serves on its own
//! background std thread with its own current-thread tokio runtime (so it
//! works from plain and `#[tokio::test]`s alike). Dropping it (or
//! [`FakeAbuseIpdb::shutdown`]) closes the port and every connection.
//! [`FakeAbuseIpdb::base_url`] is what a client configures as `api_url`
//! (`http://127.0.0.1:PORT/api/v2`).
//!
//! # Its clock
//!
//! Quotas count per UTC day and reports have a 15-minute and a 60-day rule:
//! all of them use the fake's own clock, the real time shifted by what the
//! test set with [`FakeAbuseIpdb::set_now`] or [`FakeAbuseIpdb::advance`]
//! (whole seconds), so a test crosses midnight or waits 15 minutes at once.
//! A test that must live through several quota days instead shortens the
//! quota's day ([`AbuseConfig::day`], as tjfwd's test-only
//! `TJFWD_TEST_ABUSEIPDB_DAY_SECS` does): days are then that many seconds
//! since the epoch, "midnight" their ends; the 15-minute and 60-day rules
//! keep real durations.
//!
//! # The contract it enforces
//!
//! A request is answered by the first rule that applies. Every error body
//! is `{"errors": [{"detail": "...", "status": N, "source": {"parameter":
//! "..."}}]}` (`source` only where a parameter is at fault); clients should
//! rely on the status and `source`, the `detail` texts are informative
//! except the 15-minute one (rule 9).
//!
//! 1. while [`FakeAbuseIpdb::set_down`]`(true)`: `503` to everything;
//! 2. unknown path `404`; a method other than `POST` `405`;
//! 3. header `Key` missing or not the current key: `401` (the API also
//!    takes the key as a `key` parameter; the fake does not, on purpose:
//!    clients must send the header, which keeps keys out of URLs);
//! 4. `Accept` not naming `application/json`: `406` (**assumed**: the docs
//!    require the header; without it the real service answers in another
//!    format, which is an error for a JSON client all the same);
//! 5. the next scripted [`Failure`] (FIFO, one per request passing rule 4);
//! 6. the daily quota of the endpoint (`report_daily_limit`, default 1,000,
//!    and `bulk_daily_limit`, default 5: the free plan's, per
//!    `TARGETS.md`), counted per UTC day of the fake's clock. *Every*
//!    request passing rule 4 counts, whatever its answer (**assumed**: the
//!    docs count requests, not reports), and so do the requests of another
//!    client of the same key ([`FakeAbuseIpdb::spend`]). Over the quota: `429` with
//!    `Retry-After` (seconds until the next UTC midnight),
//!    `X-RateLimit-Reset` (that midnight, epoch seconds) and a body whose
//!    `detail` says the daily rate limit of N requests was exceeded.
//!    `X-RateLimit-Limit` and `X-RateLimit-Remaining` (what is left after
//!    this request) are on every answer from this rule on (not on the
//!    scripted answers of rule 5, which model failures in front of the
//!    service, so a client must do without them); `Retry-After`
//!    and `X-RateLimit-Reset` only on this 429 (**assumed**: the docs show
//!    them with the 429);
//! 7. parameters (below): `422`, one entry per problem;
//! 8. `/report` only, `ip` = `127.0.0.2`: the 15-minute answer of rule 9
//!    (documented as the way to simulate it);
//! 9. `/report` only, an accepted report of the same address (compared by
//!    value, by either endpoint) less than 15 minutes ago: `429`, body
//!    `{"errors":[{"detail":"You can only report the same IP address
//!    (`IP`) once in 15 minutes.","status":429,"source":{"parameter":"ip"}}]}`,
//!    with no `Retry-After` (**assumed**: unconfirmed either way, so a client
//!    must recognise it by the body, never by the header);
//! 10. otherwise `200`: `/report` answers
//!     `{"data":{"ipAddress":IP,"abuseConfidenceScore":N}}` (N is the fake's
//!     count of reports of that address, capped at 100: not meaningful);
//!     `/bulk-report` answers `{"data":{"savedReports":N,"invalidReports":[
//!     {"error":...,"input":IP,"rowNumber":R}, ...]}}`.
//!
//! `/report` parameters, from the query string and an
//! `application/x-www-form-urlencoded` body (the body wins): `ip` required,
//! a valid IPv4 or IPv6 address that is public ([`non_public_reason`] of
//! the Threat Jammer fake: **assumed** the same ranges); `categories`
//! required, comma-separated ids of [`CATEGORIES`], at least one (no
//! maximum is documented and none is enforced); `comment` optional, cut to
//! [`MAX_COMMENT_BYTES`] bytes (the docs say it is truncated, not refused;
//! [`Report::comment_truncated`] tells); `timestamp` optional, ISO 8601
//! *with* a zone (**assumed**: the service guesses a zone, the fake
//! refuses), not older than [`MAX_AGE_DAYS`] days (the reporting policy;
//! **assumed** refused with 422) and not later than `max_future` ahead of
//! the fake's clock (**assumed**, default 0).
//!
//! `/bulk-report`: a `multipart/form-data` body with a file part named `csv`
//! (else 422, parameter `csv`); the file under [`MAX_CSV_BYTES`] bytes and
//! at most [`MAX_CSV_LINES`] lines with the header (else 422, parameter
//! `csv`; lines are CSV records, a quoted comment's newlines do not count:
//! **assumed**); first line exactly [`CSV_HEADER`] (else 422); at least one
//! row (**assumed**, else 422). CSV: fields separated by commas, a field in
//! double quotes may hold commas and newlines, a quote inside is written
//! `""` or `\"` (the bulk page documents the backslash); records end with
//! `\n` or `\r\n`. Each row is then checked alone, and a bad row goes into
//! `invalidReports` without failing the others: `"Invalid IP"` (not an
//! address, or not public: **assumed** the same text for both),
//! `"Invalid Category"`, `"Invalid ReportDate"` (same rules as `timestamp`,
//! but required), `"ReportDate too old"` / `"ReportDate in the future"`
//! (**assumed** texts), `"Invalid row"` (not 4 fields: **assumed**),
//! `"Duplicate IP"` (the address is in an earlier row of the same file or
//! was accepted less than 15 minutes ago: the docs show this error text,
//! the 15-minute cause is **assumed**). `error` texts other than those the
//! docs show are the fake's; `input` is the row's IP field as sent;
//! `rowNumber` counts the header as row 1 (**assumed**). The comment is cut
//! like `/report`'s.
//!
//! # Recording
//!
//! Every request is recorded ([`RequestRecord`]) before its answer is sent;
//! every accepted report (one per `/report` success, one per saved bulk
//! row) is in [`FakeAbuseIpdb::reports`]. A request is processed to the end
//! even if the client gives up (e.g. during a [`Failure::Delay`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::fake_api::non_public_reason;
use super::fake_server::{
    all_headers, format_rfc3339, header, media_type, parse_iso8601, parse_multipart, poll_async,
    poll_blocking, shifted_now, Outcome, Server,
};

/// The key [`AbuseConfig::default`] accepts.
pub const DEFAULT_KEY: &str = "abuseipdb-test-key-0123456789";
/// The single-report endpoint.
pub const REPORT_PATH: &str = "/api/v2/report";
/// The bulk-report endpoint.
pub const BULK_PATH: &str = "/api/v2/bulk-report";
/// Valid category ids (the categories page lists 1 to 23; e.g. 14 Port
/// Scan, 18 Brute-Force, 22 SSH, 23 IoT Targeted).
pub const CATEGORIES: std::ops::RangeInclusive<u32> = 1..=23;
/// A comment is cut after this many bytes.
pub const MAX_COMMENT_BYTES: usize = 1024;
/// The bulk file's first line.
pub const CSV_HEADER: &str = "IP,Categories,ReportDate,Comment";
/// Most lines of a bulk file, the header included.
pub const MAX_CSV_LINES: usize = 10_000;
/// A bulk file must be smaller than this.
pub const MAX_CSV_BYTES: usize = 2 * 1024 * 1024;
/// Reports of attacks older than this many days are refused.
pub const MAX_AGE_DAYS: i64 = 60;
/// One report per address per this many seconds.
pub const SAME_IP_SECS: i64 = 15 * 60;
/// The address that simulates the 15-minute answer.
pub const SIMULATE_15_MIN_IP: &str = "127.0.0.2";

/// Settings of a [`FakeAbuseIpdb`]; use struct update syntax over
/// [`Default`].
#[derive(Clone, Debug)]
pub struct AbuseConfig {
    /// The API key accepted at start (see [`FakeAbuseIpdb::set_key`]).
    pub key: String,
    /// Requests a UTC day on `/report` (free plan: 1,000).
    pub report_daily_limit: u32,
    /// Requests a UTC day on `/bulk-report` (free plan: 5).
    pub bulk_daily_limit: u32,
    /// The fake clock's start, unix seconds (`None`: the real time).
    pub start_at: Option<i64>,
    /// The quota's day, whole seconds (default 24 h): shorter in tests
    /// that must see the quota reset (see the module docs).
    pub day: Duration,
    /// How far past the fake clock a timestamp may be.
    pub max_future: Duration,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            key: DEFAULT_KEY.to_owned(),
            report_daily_limit: 1000,
            bulk_daily_limit: 5,
            start_at: None,
            day: Duration::from_secs(86_400),
            max_future: Duration::ZERO,
        }
    }
}

/// Which endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/v2/report`.
    Report,
    /// `POST /api/v2/bulk-report`.
    Bulk,
}

/// A scripted, one-shot misbehaviour, consumed (FIFO) by the next request
/// passing rule 4, which counts against the quota all the same. Scripted
/// answers carry no `X-RateLimit-*` headers. See
/// [`FakeAbuseIpdb::push_failure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer this status with an `errors` body; never an accepted report
    /// (an invalid code is answered as 500).
    Status(u16),
    /// `429` with this `Retry-After` value verbatim, or none, and a
    /// daily-limit body.
    TooMany { retry_after: Option<String> },
    /// Close the connection without answering (recorded with status 0).
    Drop,
    /// Wait this long, then answer normally (the quota is counted on
    /// arrival, the rest after the delay).
    Delay(Duration),
}

/// A bulk row the fake refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidReport {
    /// Why (`"Invalid IP"`, `"Duplicate IP"`...).
    pub error: String,
    /// The row's IP field as sent.
    pub input: String,
    /// Its row number, the header being row 1.
    pub row_number: usize,
}

/// An accepted report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The address, canonical (`IpAddr` display).
    pub ip: String,
    /// Its category ids, in the order sent.
    pub categories: Vec<u32>,
    /// The attack time, unix seconds (`timestamp` / `ReportDate`), if sent.
    pub timestamp: Option<i64>,
    /// The comment as stored (cut to [`MAX_COMMENT_BYTES`]), if sent.
    pub comment: Option<String>,
    /// Whether the comment sent was longer and was cut.
    pub comment_truncated: bool,
    /// Which endpoint accepted it.
    pub endpoint: Endpoint,
    /// The fake clock when it was accepted, unix seconds.
    pub at: i64,
}

/// One request the fake received, whatever its answer.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The fake clock at arrival, unix seconds.
    pub at: i64,
    /// The real time at arrival.
    pub instant: Instant,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Status answered; `0` when the connection was dropped.
    pub status: u16,
    /// Whether a scripted [`Failure::Drop`] closed the connection.
    pub dropped: bool,
    /// Whether the `Key` header was the current key.
    pub authorized: bool,
    /// The `Key` header, if any.
    pub key: Option<String>,
    /// All request headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The `/report` parameters (query then form), as decoded.
    pub params: Vec<(String, String)>,
    /// The `csv` file of a bulk request (lossy UTF-8).
    pub csv: Option<String>,
    /// Size of the request body in bytes.
    pub body_len: usize,
    /// The answer's body.
    pub answer: String,
    /// The `Retry-After` answered, if any.
    pub retry_after: Option<String>,
    /// The `X-RateLimit-Remaining` answered, if any.
    pub remaining: Option<u32>,
    /// Reports accepted by this request.
    pub saved: usize,
    /// Bulk rows refused by this request.
    pub invalid: Vec<InvalidReport>,
}

impl RequestRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running fake AbuseIPDB API. Stops when dropped.
pub struct FakeAbuseIpdb {
    server: Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeAbuseIpdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAbuseIpdb")
            .field("addr", &self.server.addr())
            .finish()
    }
}

impl FakeAbuseIpdb {
    /// Binds `127.0.0.1:0` and serves; the port accepts connections when
    /// this returns.
    pub fn start(cfg: AbuseConfig) -> FakeAbuseIpdb {
        FakeAbuseIpdb::start_at(Server::any_port(), cfg)
    }

    /// Like [`FakeAbuseIpdb::start`], on `addr` (e.g. the port of a fake
    /// that was shut down).
    pub fn start_at(addr: SocketAddr, cfg: AbuseConfig) -> FakeAbuseIpdb {
        let offset = cfg.start_at.map_or(0, |t| t - shifted_now(0));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                key: cfg.key.clone(),
                cfg,
                offset,
                down: false,
                failures: VecDeque::new(),
                used: HashMap::new(),
                last_report: HashMap::new(),
                records: Vec::new(),
                reports: Vec::new(),
            }),
        });
        let for_server = Arc::clone(&shared);
        let server = Server::start("fake-abuseipdb", addr, move |parts, body| {
            process(Arc::clone(&for_server), parts, body)
        });
        FakeAbuseIpdb { server, shared }
    }

    /// Stops the server (as dropping it does).
    pub fn shutdown(mut self) {
        self.server.stop();
    }

    /// `http://127.0.0.1:PORT/api/v2`, a client's `api_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v2", self.server.addr())
    }

    /// The URL of `endpoint`.
    pub fn url(&self, endpoint: Endpoint) -> String {
        let path = match endpoint {
            Endpoint::Report => REPORT_PATH,
            Endpoint::Bulk => BULK_PATH,
        };
        format!("http://{}{path}", self.server.addr())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    // ----- clock and controls ------------------------------------------

    /// The fake clock, unix seconds.
    pub fn now(&self) -> i64 {
        self.shared.lock().now()
    }

    /// Sets the fake clock to `unix_secs` (it goes on ticking from there).
    pub fn set_now(&self, unix_secs: i64) {
        self.shared.lock().offset = unix_secs - shifted_now(0);
    }

    /// Moves the fake clock forward (or back, with a negative value).
    pub fn advance(&self, by: Duration) {
        self.shared.lock().offset += by.as_secs() as i64;
    }

    /// Moves the fake clock by `secs` (negative: back).
    pub fn advance_secs(&self, secs: i64) {
        self.shared.lock().offset += secs;
    }

    /// Switches the accepted key (the old one gets 401 from now on).
    pub fn set_key(&self, key: impl Into<String>) {
        self.shared.lock().key = key.into();
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Changes an endpoint's daily limit from now on.
    pub fn set_daily_limit(&self, endpoint: Endpoint, limit: u32) {
        let mut state = self.shared.lock();
        match endpoint {
            Endpoint::Report => state.cfg.report_daily_limit = limit,
            Endpoint::Bulk => state.cfg.bulk_daily_limit = limit,
        }
    }

    /// Requests left today on `endpoint` (fake clock's UTC day).
    pub fn remaining(&self, endpoint: Endpoint) -> u32 {
        let state = self.shared.lock();
        let day = state.now().div_euclid(state.day_secs());
        let used = match state.used.get(&endpoint) {
            Some((d, n)) if *d == day => *n,
            _ => 0,
        };
        state.limit(endpoint).saturating_sub(used)
    }

    /// Counts `n` requests of another client of the same key on
    /// `endpoint` today (not recorded: they are not the client's under
    /// test): e.g. the whole quota, so that the client's next requests get
    /// the quota's 429 until the next midnight.
    pub fn spend(&self, endpoint: Endpoint, n: u32) {
        let mut state = self.shared.lock();
        let now = state.now();
        for _ in 0..n {
            state.count(endpoint, now);
        }
    }

    /// The quota's day in seconds (see [`AbuseConfig::day`]).
    pub fn day_secs(&self) -> i64 {
        self.shared.lock().day_secs()
    }

    /// Queues a one-shot failure.
    pub fn push_failure(&self, failure: Failure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Queues several failures, in order.
    pub fn push_failures(&self, failures: impl IntoIterator<Item = Failure>) {
        self.shared.lock().failures.extend(failures);
    }

    /// Scripted failures not consumed yet.
    pub fn pending_failures(&self) -> usize {
        self.shared.lock().failures.len()
    }

    /// Forgets the scripted failures not consumed yet.
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
    }

    // ----- recording ---------------------------------------------------

    /// Every request so far, in the order their answers were decided.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().records.clone()
    }

    /// Number of requests so far.
    pub fn request_count(&self) -> usize {
        self.shared.lock().records.len()
    }

    /// Forgets the recorded requests (not quotas, not reports).
    pub fn clear_requests(&self) {
        self.shared.lock().records.clear();
    }

    /// Every accepted report, in order.
    pub fn reports(&self) -> Vec<Report> {
        self.shared.lock().reports.clone()
    }

    /// Number of accepted reports so far (cheap, for polling).
    pub fn report_count(&self) -> usize {
        self.shared.lock().reports.len()
    }

    /// The addresses of the accepted reports, in order, duplicates included.
    pub fn reported_ips(&self) -> Vec<String> {
        self.reports().into_iter().map(|r| r.ip).collect()
    }

    /// Every bulk row refused so far, in order.
    pub fn invalid_reports(&self) -> Vec<InvalidReport> {
        self.shared
            .lock()
            .records
            .iter()
            .flat_map(|r| r.invalid.clone())
            .collect()
    }

    /// Blocks until at least `n` reports were accepted or `timeout` passed.
    pub fn wait_for_reports(&self, n: usize, timeout: Duration) -> bool {
        poll_blocking(timeout, || self.shared.lock().reports.len() >= n)
    }

    /// Async [`FakeAbuseIpdb::wait_for_reports`].
    pub async fn wait_for_reports_async(&self, n: usize, timeout: Duration) -> bool {
        poll_async(timeout, || self.shared.lock().reports.len() >= n).await
    }

    /// Blocks until at least `n` requests were recorded or `timeout` passed.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        poll_blocking(timeout, || self.request_count() >= n)
    }

    /// Async [`FakeAbuseIpdb::wait_for_requests`].
    pub async fn wait_for_requests_async(&self, n: usize, timeout: Duration) -> bool {
        poll_async(timeout, || self.request_count() >= n).await
    }
}

// ===== state ===============================================================

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State {
    cfg: AbuseConfig,
    key: String,
    /// Fake clock minus real clock, seconds.
    offset: i64,
    down: bool,
    failures: VecDeque<Failure>,
    /// Per endpoint: (UTC day number, requests counted that day).
    used: HashMap<Endpoint, (i64, u32)>,
    /// Per address: the fake time of its last accepted report.
    last_report: HashMap<IpAddr, i64>,
    records: Vec<RequestRecord>,
    reports: Vec<Report>,
}

impl State {
    fn now(&self) -> i64 {
        shifted_now(self.offset)
    }

    fn day_secs(&self) -> i64 {
        (self.cfg.day.as_secs() as i64).max(1)
    }

    fn limit(&self, endpoint: Endpoint) -> u32 {
        match endpoint {
            Endpoint::Report => self.cfg.report_daily_limit,
            Endpoint::Bulk => self.cfg.bulk_daily_limit,
        }
    }

    /// Counts a request on `endpoint`; returns (limit, remaining after it,
    /// whether it is over the limit).
    fn count(&mut self, endpoint: Endpoint, now: i64) -> (u32, u32, bool) {
        let day = now.div_euclid(self.day_secs());
        let limit = self.limit(endpoint);
        let entry = self.used.entry(endpoint).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        (limit, limit.saturating_sub(entry.1), entry.1 > limit)
    }

    /// Whether `ip` was accepted less than 15 minutes before `now`.
    fn too_soon(&self, ip: &IpAddr, now: i64) -> bool {
        self.last_report
            .get(ip)
            .is_some_and(|t| now - t < SAME_IP_SECS && now >= *t)
    }

    fn accept(&mut self, report: Report, ip: IpAddr) {
        self.last_report.insert(ip, report.at);
        self.reports.push(report);
    }
}

// ===== answers =============================================================

struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, detail: &str, parameter: Option<&str>) -> Reply {
        Reply::new(
            status,
            json!({ "errors": [error_entry(status, detail, parameter)] }),
        )
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_string(),
        )
            .into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

fn error_entry(status: u16, detail: &str, parameter: Option<&str>) -> Value {
    match parameter {
        Some(p) => json!({ "detail": detail, "status": status, "source": { "parameter": p } }),
        None => json!({ "detail": detail, "status": status }),
    }
}

fn daily_limit_body(limit: u32) -> Value {
    json!({ "errors": [error_entry(
        429,
        &format!("Daily rate limit of {limit} requests exceeded for this endpoint."),
        None,
    )] })
}

/// The 15-minute answer's body for `ip` as sent.
pub fn fifteen_minutes_body(ip: &str) -> Value {
    json!({ "errors": [error_entry(
        429,
        &format!("You can only report the same IP address (`{ip}`) once in 15 minutes."),
        Some("ip"),
    )] })
}

// ===== request handling ====================================================

/// (limit, remaining after this request, over the limit).
type Quota = (u32, u32, bool);

/// Rules 1 to 6: a delay and the quota, or the answer (`None`: drop).
type Admitted = Result<(Option<Duration>, Quota), Option<Reply>>;

async fn process(shared: Arc<Shared>, parts: Parts, body: Bytes) -> Outcome {
    let mut rec = RequestRecord {
        at: 0,
        instant: Instant::now(),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        status: 0,
        dropped: false,
        authorized: false,
        key: header(&parts, "key").map(str::to_owned),
        headers: all_headers(&parts),
        params: Vec::new(),
        csv: None,
        body_len: body.len(),
        answer: String::new(),
        retry_after: None,
        remaining: None,
        saved: 0,
        invalid: Vec::new(),
    };
    let endpoint = match rec.path.as_str() {
        REPORT_PATH => Some(Endpoint::Report),
        BULK_PATH => Some(Endpoint::Bulk),
        _ => None,
    };
    if endpoint == Some(Endpoint::Report) {
        rec.params = report_params(&parts, &body);
    }
    if endpoint == Some(Endpoint::Bulk) {
        rec.csv = csv_part(&parts, &body).map(|b| String::from_utf8_lossy(&b).into_owned());
    }

    // Rules 1 to 6, on arrival. The record is pushed under the same lock
    // as the verdict, so a test that sees a report also sees its request.
    let (delay, (limit, remaining, over)) = {
        let mut state = shared.lock();
        let now = state.now();
        rec.at = now;
        rec.authorized = rec.key.as_deref() == Some(state.key.as_str());
        let admitted: Admitted = if state.down {
            Err(Some(Reply::error(503, "Service unavailable.", None)))
        } else if endpoint.is_none() {
            Err(Some(Reply::error(404, "Not found.", None)))
        } else if parts.method != Method::POST {
            Err(Some(Reply::error(405, "Method not allowed.", None)))
        } else if !rec.authorized {
            Err(Some(Reply::error(
                401,
                "Authentication failed: the API key is missing, wrong or revoked.",
                None,
            )))
        } else if !header(&parts, "accept").is_some_and(|a| {
            a.split(',').any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            })
        }) {
            Err(Some(Reply::error(
                406,
                "Send Accept: application/json.",
                None,
            )))
        } else {
            let ep = endpoint.expect("checked above");
            let quota = state.count(ep, now);
            match state.failures.pop_front() {
                None => Ok((None, quota)),
                Some(Failure::Delay(d)) => Ok((Some(d), quota)),
                Some(Failure::Drop) => Err(None),
                Some(Failure::Status(code)) => {
                    let code = if (100..=999).contains(&code) {
                        code
                    } else {
                        500
                    };
                    Err(Some(Reply::error(code, "Scripted failure.", None)))
                }
                Some(Failure::TooMany { retry_after }) => {
                    let mut reply = Reply::new(429, daily_limit_body(quota.0));
                    if let Some(v) = retry_after {
                        reply.headers.push(("retry-after", v));
                    }
                    Err(Some(reply))
                }
            }
        };
        match admitted {
            Ok(admitted) => admitted,
            Err(reply) => return finish(&mut state, rec, endpoint, reply),
        }
    };

    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut state = shared.lock();
    let mut reply = if over {
        let now = state.now();
        let day = state.day_secs();
        let reset = (now.div_euclid(day) + 1) * day;
        let mut r = Reply::new(429, daily_limit_body(limit));
        r.headers
            .push(("retry-after", (reset - now).max(1).to_string()));
        r.headers.push(("x-ratelimit-reset", reset.to_string()));
        r
    } else {
        match endpoint.expect("admitted") {
            Endpoint::Report => judge_report(&mut state, &rec.params),
            Endpoint::Bulk => judge_bulk(&mut state, &parts, &body, &mut rec),
        }
    };
    reply.headers.push(("x-ratelimit-limit", limit.to_string()));
    reply
        .headers
        .push(("x-ratelimit-remaining", remaining.to_string()));
    rec.remaining = Some(remaining);
    finish(&mut state, rec, endpoint, Some(reply))
}

/// Records the request with its answer (`None`: dropped) and returns it.
fn finish(
    state: &mut State,
    mut rec: RequestRecord,
    endpoint: Option<Endpoint>,
    reply: Option<Reply>,
) -> Outcome {
    let outcome = match reply {
        None => {
            rec.dropped = true;
            Outcome::Drop
        }
        Some(reply) => {
            rec.status = reply.status;
            rec.answer = reply.body.to_string();
            rec.retry_after = reply.header("retry-after").map(str::to_owned);
            if rec.status == 200 && endpoint == Some(Endpoint::Report) {
                rec.saved = 1;
            }
            Outcome::Respond(reply.into_response())
        }
    };
    state.records.push(rec);
    outcome
}

/// The `/report` parameters: the query's, then the form body's.
fn report_params(parts: &Parts, body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if media_type(parts).as_deref() == Some("application/x-www-form-urlencoded") {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    params
}

/// The last value of `name` (the body's wins over the query's).
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn csv_part(parts: &Parts, body: &[u8]) -> Option<Vec<u8>> {
    let ct = header(parts, "content-type")?;
    parse_multipart(ct, body)?
        .into_iter()
        .find(|p| p.name == "csv")
        .map(|p| p.data)
}

/// Cuts `comment` to [`MAX_COMMENT_BYTES`] at a character boundary.
fn cut_comment(comment: &str) -> (String, bool) {
    if comment.len() <= MAX_COMMENT_BYTES {
        return (comment.to_owned(), false);
    }
    let mut end = MAX_COMMENT_BYTES;
    while !comment.is_char_boundary(end) {
        end -= 1;
    }
    (comment[..end].to_owned(), true)
}

/// Category ids of `s` (`"18,22"`), or `None` if any is not valid.
fn parse_categories(s: &str) -> Option<Vec<u32>> {
    let ids: Option<Vec<u32>> = s
        .split(',')
        .map(|c| {
            c.trim()
                .parse::<u32>()
                .ok()
                .filter(|c| CATEGORIES.contains(c))
        })
        .collect();
    ids.filter(|ids| !ids.is_empty())
}

enum When {
    Ok(i64),
    Invalid,
    TooOld,
    Future,
}

fn check_time(s: &str, now: i64, max_future: Duration) -> When {
    match parse_iso8601(s.trim()) {
        None => When::Invalid,
        Some(t) if t < now - MAX_AGE_DAYS * 86_400 => When::TooOld,
        Some(t) if t > now + max_future.as_secs() as i64 => When::Future,
        Some(t) => When::Ok(t),
    }
}

fn public_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .filter(|ip| non_public_reason(ip).is_none())
}

fn judge_report(state: &mut State, params: &[(String, String)]) -> Reply {
    let now = state.now();
    let mut errors = Vec::new();
    let ip_raw = param(params, "ip");
    let ip = match ip_raw {
        None | Some("") => {
            errors.push(error_entry(422, "The ip field is required.", Some("ip")));
            None
        }
        Some(SIMULATE_15_MIN_IP) => None,
        Some(s) => match s.parse::<IpAddr>() {
            Err(_) => {
                errors.push(error_entry(
                    422,
                    "The ip must be a valid IP address.",
                    Some("ip"),
                ));
                None
            }
            Ok(ip) => match non_public_reason(&ip) {
                Some(why) => {
                    errors.push(error_entry(
                        422,
                        &format!("The ip must be a public IP address ({why})."),
                        Some("ip"),
                    ));
                    None
                }
                None => Some(ip),
            },
        },
    };
    let categories = match param(params, "categories") {
        None | Some("") => {
            errors.push(error_entry(
                422,
                "The categories field is required.",
                Some("categories"),
            ));
            None
        }
        Some(s) => {
            let parsed = parse_categories(s);
            if parsed.is_none() {
                errors.push(error_entry(
                    422,
                    &format!(
                        "The categories must be ids from {} to {}.",
                        CATEGORIES.start(),
                        CATEGORIES.end()
                    ),
                    Some("categories"),
                ));
            }
            parsed
        }
    };
    let timestamp = match param(params, "timestamp") {
        None => None,
        Some(s) => match check_time(s, now, state.cfg.max_future) {
            When::Ok(t) => Some(t),
            When::Invalid => {
                errors.push(error_entry(
                    422,
                    "The timestamp must be an ISO 8601 date and time with a zone.",
                    Some("timestamp"),
                ));
                None
            }
            When::TooOld => {
                errors.push(error_entry(
                    422,
                    &format!("The timestamp must be within the last {MAX_AGE_DAYS} days."),
                    Some("timestamp"),
                ));
                None
            }
            When::Future => {
                errors.push(error_entry(
                    422,
                    "The timestamp must not be in the future.",
                    Some("timestamp"),
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Reply::new(422, json!({ "errors": errors }));
    }
    let ip_raw = ip_raw.expect("checked");
    let Some(ip) = ip else {
        // The documented simulation address.
        return Reply::new(429, fifteen_minutes_body(ip_raw));
    };
    if state.too_soon(&ip, now) {
        return Reply::new(429, fifteen_minutes_body(ip_raw));
    }
    let (comment, comment_truncated) = match param(params, "comment") {
        Some(c) => {
            let (c, cut) = cut_comment(c);
            (Some(c), cut)
        }
        None => (None, false),
    };
    state.accept(
        Report {
            ip: ip.to_string(),
            categories: categories.expect("checked"),
            timestamp,
            comment,
            comment_truncated,
            endpoint: Endpoint::Report,
            at: now,
        },
        ip,
    );
    let score = state
        .reports
        .iter()
        .filter(|r| r.ip == ip.to_string())
        .count()
        .min(100);
    Reply::new(
        200,
        json!({ "data": { "ipAddress": ip.to_string(), "abuseConfidenceScore": score } }),
    )
}

fn judge_bulk(state: &mut State, parts: &Parts, body: &[u8], rec: &mut RequestRecord) -> Reply {
    let csv_error = |detail: &str| Reply::error(422, detail, Some("csv"));
    let Some(csv) = csv_part(parts, body) else {
        return csv_error("The csv field is required (a multipart/form-data file part).");
    };
    if csv.len() >= MAX_CSV_BYTES {
        return csv_error("The csv file must be under 2 MB.");
    }
    let Ok(text) = std::str::from_utf8(&csv) else {
        return csv_error("The csv file must be UTF-8 text.");
    };
    let Some(records) = parse_csv(text) else {
        return csv_error("The csv file is malformed (an unterminated quote).");
    };
    if records.len() > MAX_CSV_LINES {
        return csv_error(&format!(
            "The csv file must have at most {MAX_CSV_LINES} lines, the header included."
        ));
    }
    let header_ok = records.first().is_some_and(|h| h.join(",") == CSV_HEADER);
    if !header_ok {
        return csv_error(&format!(
            "The csv file must start with the header {CSV_HEADER}."
        ));
    }
    if records.len() < 2 {
        return csv_error("The csv file holds no report.");
    }
    let now = state.now();
    let max_future = state.cfg.max_future;
    let mut in_file: HashMap<IpAddr, usize> = HashMap::new();
    let mut invalid = Vec::new();
    let mut saved = 0;
    for (i, row) in records.iter().enumerate().skip(1) {
        let row_number = i + 1;
        let input = row.first().cloned().unwrap_or_default();
        let verdict = (|| {
            if row.len() != 4 {
                return Err("Invalid row");
            }
            let ip = public_ip(&row[0]).ok_or("Invalid IP")?;
            let categories = parse_categories(&row[1]).ok_or("Invalid Category")?;
            let t = match check_time(&row[2], now, max_future) {
                When::Ok(t) => t,
                When::Invalid => return Err("Invalid ReportDate"),
                When::TooOld => return Err("ReportDate too old"),
                When::Future => return Err("ReportDate in the future"),
            };
            if in_file.contains_key(&ip) || state.too_soon(&ip, now) {
                return Err("Duplicate IP");
            }
            Ok((ip, categories, t))
        })();
        match verdict {
            Ok((ip, categories, t)) => {
                in_file.insert(ip, row_number);
                let (comment, comment_truncated) = cut_comment(&row[3]);
                state.accept(
                    Report {
                        ip: ip.to_string(),
                        categories,
                        timestamp: Some(t),
                        comment: Some(comment),
                        comment_truncated,
                        endpoint: Endpoint::Bulk,
                        at: now,
                    },
                    ip,
                );
                saved += 1;
            }
            Err(error) => invalid.push(InvalidReport {
                error: error.to_owned(),
                input,
                row_number,
            }),
        }
    }
    rec.saved = saved;
    rec.invalid = invalid.clone();
    let invalid_json: Vec<Value> = invalid
        .iter()
        .map(|r| json!({ "error": r.error, "input": r.input, "rowNumber": r.row_number }))
        .collect();
    Reply::new(
        200,
        json!({ "data": { "savedReports": saved, "invalidReports": invalid_json } }),
    )
}

/// The records of a CSV text (see the module docs for the dialect); `None`
/// on an unterminated quote. A final empty line is not a record.
pub fn parse_csv(text: &str) -> Option<Vec<Vec<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '\\' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    if any {
        record.push(field);
        records.push(record);
    }
    Some(records)
}

/// The CSV header and `rows` (each `[ip, categories, date, comment]`)
/// quoted as the bulk page asks, lines ending in `\n`: for tests that
/// build bulk files by hand.
pub fn build_csv(rows: &[[&str; 4]]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = format!("{CSV_HEADER}\n");
    for [ip, cats, date, comment] in rows {
        out.push_str(&format!("{ip},{},{date},{}\n", quote(cats), quote(comment)));
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` of unix seconds, as tests write `timestamp`s.
pub fn iso(unix_secs: i64) -> String {
    format_rfc3339(unix_secs)
}
