//! The `[targets.abuseipdb]` section: the endpoint, the API key, the mode
//! (bulk or single reports), the categories, the daily limit and when an
//! address is worth a report.
//!
//! The API key comes from exactly one source, the first of: `api_key`,
//! `api_key_file`, the environment variable [`KEY_ENV`] and the systemd
//! credential [`CREDENTIAL_NAME`], by the rules of Threat Jammer's token
//! (`crate::config_kit::resolve_secret`): a [`Secret`], never printed;
//! warnings for a key other users can read; a missing key is refused when
//! the target is built to send (not in `--dry-run`).
//!
//! Invariants of a [`Section`] from `validate`: `api_url` is https, or http
//! to a loopback host, or http with `allow_insecure_http = true`, with no
//! user name or password; `ca_file`, when set, was readable and held a PEM
//! certificate; `categories` is a non-empty list of distinct ids of
//! AbuseIPDB's category list ([`CATEGORY_IDS`]); `daily_limit >= 1`;
//! `rereport_after >= 15 min` (the API refuses a second report of an
//! address within 15 minutes); `min_attempts >= 1`; `attempts_window`,
//! `flush_interval`, `request_timeout` and `max_backoff` non-zero.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::config_kit::{resolve_secret, ser, ConfigError, Ctx, Secret, SecretSources, SecretSpec};

/// The API's base URL: the endpoints are `{api_url}/report` and
/// `{api_url}/bulk-report`.
pub const DEFAULT_API_URL: &str = "https://api.abuseipdb.com/api/v2";

/// Environment variable consulted for the key when the file names none.
pub const KEY_ENV: &str = "TJFWD_ABUSEIPDB_KEY";

/// The systemd credential holding the key (`LoadCredential=abuseipdb_key:FILE`).
pub const CREDENTIAL_NAME: &str = "abuseipdb_key";

/// AbuseIPDB's report categories (its categories page): 1 to 23, of which
/// 1 and 2 are no longer listed but still accepted by the API (e.g. 14
/// Port Scan, 18 Brute-Force, 22 SSH, 23 IoT Targeted).
pub const CATEGORY_IDS: std::ops::RangeInclusive<u8> = 1..=23;

/// Cowrie's plugin's categories: 18 Brute-Force and 22 SSH.
pub const DEFAULT_CATEGORIES: [u8; 2] = [18, 22];

/// The free plan's requests a day: 5 on `/bulk-report`, 1,000 on `/report`.
pub const FREE_BULK_DAILY_LIMIT: u32 = 5;
/// See [`FREE_BULK_DAILY_LIMIT`].
pub const FREE_SINGLE_DAILY_LIMIT: u32 = 1000;

/// The API refuses a second report of an address within 15 minutes.
pub const MIN_REREPORT_AFTER: Duration = Duration::from_secs(15 * 60);

const DEFAULT_REREPORT_AFTER: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_ATTEMPTS_WINDOW: Duration = Duration::from_secs(2 * 3600);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);
/// The period of `daily_limit`.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// Test-only environment variable shortening AbuseIPDB's day in the binary
/// (whole seconds, 1 to 86400): the window of `daily_limit` and the waits
/// computed from the quota's day (until its "midnight", and their cap).
/// See [`Config::apply_test_abuseipdb_day`](crate::config::Config::apply_test_abuseipdb_day).
pub const TEST_DAY_ENV: &str = "TJFWD_TEST_ABUSEIPDB_DAY_SECS";

/// How reports are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `POST {api_url}/bulk-report`: a CSV of up to 9,999 reports a request.
    Bulk,
    /// `POST {api_url}/report`: one address a request.
    Single,
}

impl Mode {
    /// Its name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bulk => "bulk",
            Mode::Single => "single",
        }
    }
}

/// `[targets.abuseipdb]` checked. Serializes to the table's keys (the key
/// as `<redacted>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The API's base URL.
    #[serde(serialize_with = "ser::display")]
    pub api_url: Url,
    /// The API key; None only in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Bulk (CSV) or single reports.
    pub mode: Mode,
    /// Category ids of every report.
    #[serde(serialize_with = "ser_categories")]
    pub categories: Vec<u8>,
    /// Requests a UTC day on the mode's endpoint.
    pub daily_limit: u32,
    /// A sighting less than this after the last report does not queue the
    /// address again.
    #[serde(serialize_with = "ser::duration")]
    pub rereport_after: Duration,
    /// Report an address only once it made this many attempts within
    /// `attempts_window`.
    pub min_attempts: u32,
    /// See `min_attempts`.
    #[serde(serialize_with = "ser::duration")]
    pub attempts_window: Duration,
    /// Longest time the oldest pending address waits for a batch.
    #[serde(serialize_with = "ser::duration")]
    pub flush_interval: Duration,
    /// Time limit of one request.
    #[serde(serialize_with = "ser::duration")]
    pub request_timeout: Duration,
    /// Cap of the backoff after transient failures.
    #[serde(serialize_with = "ser::duration")]
    pub max_backoff: Duration,
    /// The quota's day: not a TOML key, always [`DAY`] from a file; tests
    /// of the binary shorten it through the test-only [`TEST_DAY_ENV`].
    #[serde(skip)]
    pub day: Duration,
    /// Allows plain http to a non-loopback host (the key travels in clear).
    pub allow_insecure_http: bool,
    /// A PEM bundle of the CAs to trust instead of the public roots.
    #[serde(
        serialize_with = "ser::path_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<PathBuf>,
}

fn ser_categories<S: serde::Serializer>(c: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&categories_text(c))
}

/// `18,22`.
pub fn categories_text(c: &[u8]) -> String {
    c.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// `[targets.abuseipdb]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    api_url: Option<String>,
    api_key: Option<Secret>,
    api_key_file: Option<PathBuf>,
    mode: Option<String>,
    /// `"18,22"` or `[18, 22]`.
    categories: Option<toml::Value>,
    daily_limit: Option<i64>,
    rereport_after: Option<toml::Value>,
    min_attempts: Option<i64>,
    attempts_window: Option<toml::Value>,
    flush_interval: Option<toml::Value>,
    request_timeout: Option<toml::Value>,
    max_backoff: Option<toml::Value>,
    allow_insecure_http: Option<bool>,
    ca_file: Option<PathBuf>,
}

/// Where the API key may come from, with `table` (or cowrie.cfg's
/// `[output_abuseipdb]`) naming it in messages.
pub(crate) fn key_spec(table: &str) -> SecretSpec<'_> {
    SecretSpec {
        table,
        key: "api_key",
        file_key: "api_key_file",
        env: KEY_ENV,
        credential: CREDENTIAL_NAME,
        what: "the AbuseIPDB API key",
        chars_ok: |s| s.bytes().all(|b| b.is_ascii_graphic()),
        bad_chars: "spaces, control or non-ASCII characters: an AbuseIPDB API key is one \
                    word of printable ASCII (it is sent in an HTTP header)",
    }
}

/// Whether a key is given outside the files: the environment variable
/// [`KEY_ENV`] or the systemd credential [`CREDENTIAL_NAME`] (with
/// cowrie.cfg, that enables the target as a key there does).
pub(crate) fn key_outside(secrets: &SecretSources) -> bool {
    secrets.env(KEY_ENV).is_some_and(|k| !k.trim().is_empty())
        || secrets
            .credential(CREDENTIAL_NAME)
            .is_some_and(|p| p.is_file())
}

/// The keys Cowrie's `[output_abuseipdb]` supplies (`crate::cowrie_cfg`):
/// the key (already checked, or None: none given), and the report
/// thresholds converted from the plugin's units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FromCowrie {
    /// `api_key`, or the environment's or the credential's.
    pub(crate) api_key: Option<Secret>,
    /// `rereport_after` (hours).
    pub(crate) rereport_after: Duration,
    /// `tolerance_attempts`.
    pub(crate) min_attempts: u32,
    /// `tolerance_window` (minutes).
    pub(crate) attempts_window: Duration,
}

impl Raw {
    /// The keys of this table that [`FromCowrie`] supplies, as written here
    /// (with cowrie.cfg, the TOML file must not set them).
    pub(crate) fn cowrie_keys_set(&self) -> Vec<&'static str> {
        [
            ("api_key", self.api_key.is_some()),
            ("api_key_file", self.api_key_file.is_some()),
            ("rereport_after", self.rereport_after.is_some()),
            ("min_attempts", self.min_attempts.is_some()),
            ("attempts_window", self.attempts_window.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// This table with the keys cowrie.cfg supplies.
    pub(crate) fn with_cowrie(mut self, c: FromCowrie) -> Raw {
        let d = |d: Duration| Some(toml::Value::String(crate::config_kit::format_duration(d)));
        self.api_key = c.api_key;
        self.api_key_file = None;
        self.rereport_after = d(c.rereport_after);
        self.min_attempts = Some(i64::from(c.min_attempts));
        self.attempts_window = d(c.attempts_window);
        self
    }
}

/// Checks `[targets.abuseipdb]` (`table` names it in messages) and applies
/// its defaults.
pub fn validate(ctx: &mut Ctx, table: &str, raw: Raw) -> Result<Section, ConfigError> {
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let api_url = api_url(ctx, table, raw.api_url, allow_insecure_http)?;
    let ca_file = match raw.ca_file {
        None => None,
        Some(p) => {
            let key = format!("{table} ca_file");
            let p = ctx.path(&key, p)?;
            crate::tls::read_ca_file(&p).map_err(|e| {
                ctx.invalid(
                    &key,
                    format!(
                        "{key} = \"{}\": {e}; it must name a PEM file of the CA certificate(s) \
                         that sign the API's certificate (or remove the key to trust the \
                         public CAs)",
                        p.display()
                    ),
                )
            })?;
            Some(p)
        }
    };
    let mode = match raw.mode.as_deref() {
        None => Mode::Bulk,
        Some("bulk") => Mode::Bulk,
        Some("single") => Mode::Single,
        Some(other) => {
            let key = format!("{table} mode");
            return Err(ctx.invalid(
                &key,
                format!(
                    "{key} = {other:?} is not a mode: write \"bulk\" (a CSV of up to 9,999 \
                     reports a request, the default) or \"single\" (one report a request)"
                ),
            ));
        }
    };
    let categories = categories(ctx, table, raw.categories)?;
    let (default_limit, endpoint) = match mode {
        Mode::Bulk => (FREE_BULK_DAILY_LIMIT, "bulk-report"),
        Mode::Single => (FREE_SINGLE_DAILY_LIMIT, "report"),
    };
    let daily_limit = match raw.daily_limit {
        None => default_limit,
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
        Some(n) => {
            let key = format!("{table} daily_limit");
            return Err(ctx.invalid(
                &key,
                format!(
                    "{key} = {n} is out of range: it is the number of requests a day your \
                     AbuseIPDB plan allows on /{endpoint} and must be at least 1 (the free \
                     plan's: {default_limit})"
                ),
            ));
        }
    };
    let key = format!("{table} rereport_after");
    let rereport_after = ctx.duration(&key, raw.rereport_after, DEFAULT_REREPORT_AFTER)?;
    if rereport_after < MIN_REREPORT_AFTER {
        return Err(ctx.invalid(
            &key,
            format!(
                "{key} = \"{}\" is too short: AbuseIPDB refuses a second report of an address \
                 within 15 minutes, so it must be at least \"15m\" (default \"24h\")",
                humantime::format_duration(rereport_after)
            ),
        ));
    }
    let min_attempts = match raw.min_attempts {
        None => 1,
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
        Some(n) => {
            let key = format!("{table} min_attempts");
            return Err(ctx.invalid(
                &key,
                format!(
                    "{key} = {n} is out of range: it must be at least 1 (1: every address \
                     seen is reported)"
                ),
            ));
        }
    };
    let key = format!("{table} attempts_window");
    let attempts_window = ctx.nonzero(
        &key,
        ctx.duration(&key, raw.attempts_window, DEFAULT_ATTEMPTS_WINDOW)?,
    )?;
    let key = format!("{table} flush_interval");
    let flush_interval = ctx.nonzero(
        &key,
        ctx.duration(&key, raw.flush_interval, DAY / daily_limit)?,
    )?;
    let key = format!("{table} request_timeout");
    let request_timeout = ctx.nonzero(
        &key,
        ctx.duration(&key, raw.request_timeout, DEFAULT_REQUEST_TIMEOUT)?,
    )?;
    let key = format!("{table} max_backoff");
    let max_backoff = ctx.nonzero(
        &key,
        ctx.duration(&key, raw.max_backoff, DEFAULT_MAX_BACKOFF)?,
    )?;
    let api_key = resolve_secret(ctx, &key_spec(table), raw.api_key, raw.api_key_file)?;
    if api_key.is_none() && !ctx.secrets.dry_run {
        return Err(ctx.invalid(
            &format!("{table} api_key"),
            format!(
                "no AbuseIPDB API key: set {table} api_key_file (a file holding the key, mode \
                 600) or api_key, or the environment variable {KEY_ENV}, or pass the systemd \
                 credential {CREDENTIAL_NAME} (LoadCredential={CREDENTIAL_NAME}:/etc/tjfwd/\
                 {CREDENTIAL_NAME}), or use --dry-run"
            ),
        ));
    }
    Ok(Section {
        api_url,
        api_key,
        mode,
        categories,
        daily_limit,
        rereport_after,
        min_attempts,
        attempts_window,
        flush_interval,
        request_timeout,
        max_backoff,
        day: DAY,
        allow_insecure_http,
        ca_file,
    })
}

fn categories(
    ctx: &mut Ctx,
    table: &str,
    raw: Option<toml::Value>,
) -> Result<Vec<u8>, ConfigError> {
    let key = &format!("{table} categories");
    let hint = "write AbuseIPDB category ids from 1 to 23, e.g. categories = \"18,22\" \
                (18 Brute-Force, 22 SSH; 23 IoT Targeted for Telnet, 14 Port Scan)";
    let items: Vec<String> = match raw {
        None => return Ok(DEFAULT_CATEGORIES.to_vec()),
        Some(toml::Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Some(toml::Value::Array(list)) => list
            .into_iter()
            .map(|v| match v {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => {
            return Err(ctx.invalid(key, format!("{key} = {other} is not valid: {hint}")));
        }
    };
    let mut ids: Vec<u8> = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .parse::<u8>()
            .ok()
            .filter(|id| CATEGORY_IDS.contains(id))
            .ok_or_else(|| {
                ctx.invalid(
                    key,
                    format!("{key}: {item:?} is not an AbuseIPDB category: {hint}"),
                )
            })?;
        if ids.contains(&id) {
            ctx.warnings.push(format!(
                "{}: {key} lists {id} more than once; it is sent once",
                ctx.file
            ));
            continue;
        }
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(ctx.invalid(
            key,
            format!("{key} is empty: a report needs at least one category; {hint}"),
        ));
    }
    Ok(ids)
}

fn api_url(
    ctx: &mut Ctx,
    table: &str,
    raw: Option<String>,
    allow_insecure_http: bool,
) -> Result<Url, ConfigError> {
    let key = &format!("{table} api_url");
    let Some(text) = raw else {
        return Ok(Url::parse(DEFAULT_API_URL).expect("the default API URL is valid"));
    };
    let url = Url::parse(&text).map_err(|e| {
        ctx.invalid(
            key,
            format!(
                "{key} = {text:?} is not a valid URL ({e}): write the full address, \
                 e.g. {DEFAULT_API_URL:?}"
            ),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} must not contain a user name or password: remove them; the API is \
                 authenticated with api_key_file"
            ),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = {text:?} has a query or a fragment: write the API's base URL, \
                 e.g. {DEFAULT_API_URL:?}"
            ),
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(Host::Domain(d)) => {
                    d.eq_ignore_ascii_case("localhost") || d.eq_ignore_ascii_case("localhost.")
                }
                Some(Host::Ipv4(a)) => a.is_loopback(),
                Some(Host::Ipv6(a)) => a.is_loopback(),
                None => false,
            };
            if !loopback {
                if !allow_insecure_http {
                    return Err(ctx.invalid(
                        key,
                        format!(
                            "{key} = {text:?} uses plain http, which would send the API key \
                             unencrypted: use https, or set {table} allow_insecure_http = true \
                             if you really mean it"
                        ),
                    ));
                }
                ctx.warnings.push(format!(
                    "{}: {key} uses plain http to a non-loopback host (allow_insecure_http = \
                     true): the API key travels unencrypted",
                    ctx.file
                ));
            }
        }
        other => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {text:?} has the scheme {other:?}: the API is reached over https, \
                     e.g. {DEFAULT_API_URL:?}"
                ),
            ))
        }
    }
    Ok(url)
}

/// `{api_url}/{endpoint}` (a trailing slash of `api_url` is not doubled).
pub fn endpoint_url(base: &Url, endpoint: &str) -> Url {
    let mut u = base.clone();
    let path = format!("{}/{endpoint}", base.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}
