//! The TOML configuration of tjfwd: how the file is read, checked and resolved.
//!
//! Loading happens in two layers:
//!
//! 1. **Raw layer** (`Raw*` structs, private): a faithful serde image of the file.
//!    Every table uses `#[serde(deny_unknown_fields)]`, so a misspelt key is an
//!    error (toml reports the line, the column and the keys it expected) instead
//!    of a silently ignored setting. Every key is optional; values whose syntax
//!    we check ourselves (durations, sizes, tags) are kept as `toml::Value`, and
//!    integers as `i64`, so that range and type errors can name the key and say
//!    what to write instead.
//! 2. **Resolved layer** ([`Config`] and its sections): defaults applied, every
//!    value validated and converted to the type the rest of the crate uses
//!    (`Duration`, `Url`, `IpNet`, byte counts), relative paths resolved against
//!    the directory of the configuration file, and the bearer token obtained from
//!    exactly one source.
//!
//! The same checks serve Cowrie's cowrie.cfg: `crate::cowrie_cfg` turns its
//! `[output_threatjammer]` section into a `RawThreatJammer` and hands it, with
//! the JSON log's path, to `load_with` as `Supplied` values, which are checked
//! here with messages naming cowrie.cfg and `[output_threatjammer]`.
//!
//! Invariants of a [`Config`] produced by [`Config::load`],
//! [`Config::from_toml_str`] or `cowrie_cfg::load_config`:
//!
//! - `threatjammer.api_url` is https, or http to a loopback host, or http with
//!   `allow_insecure_http = true`; it carries no user name or password.
//! - `threatjammer.ca_file`, when set, was readable and held at least one
//!   valid PEM certificate when the configuration was loaded.
//! - `threatjammer.token` is `Some` unless `LoadOptions::dry_run` was set; it is a
//!   single non-empty run of printable ASCII without spaces.
//! - `ttl > 0`; `category` matches `[A-Z0-9_]+`; every tag matches `[A-Z0-9]+`.
//! - `1 <= batch_size <= 1000`; `max_requests_per_minute >= 1`;
//!   `flush_interval`, `request_timeout`, `max_backoff` are non-zero;
//!   `0 < poll_interval <= 60 s`; `rate_window` is 60 s (shorter only through
//!   the test-only [`Config::apply_test_rate_window`]).
//! - `1 KiB <= input.max_line_bytes <= 64 MiB`; `1 <= input.max_connections <= 1024`;
//!   `input.listen_tcp` has a non-zero port (a non-loopback one adds a warning).
//! - `storage.cache_capacity >= 1 MiB`; `queue.max_pending >= 1000`.
//! - `admin.listen`, when set, is a socket address (port 0 is refused).
//! - Paths taken from the file are absolute when the file was found by
//!   [`Config::load`] (they are joined to the file's directory).
//!
//! The bearer token comes from exactly one source, the first of:
//! `[threatjammer] bearer_token`, `bearer_token_file`, the environment
//! variable `TJFWD_BEARER_TOKEN`, and — for [`Config::load`] and Cowrie's
//! cowrie.cfg, not for [`Config::from_toml_str`] — the systemd credential
//! [`CREDENTIAL_NAME`] (`$CREDENTIALS_DIRECTORY/bearer_token`, from
//! `LoadCredential=bearer_token:/etc/tjfwd/token` in the unit).
//!
//! The bearer token is a [`Secret`]: its `Debug` and `Display` print
//! `<redacted>`, and it never appears in a [`ConfigError`], in a warning, or in
//! [`Config::redacted_toml`]. toml's own parse errors quote the offending source
//! line; before such an error is shown, any line that may hold a secret is
//! redacted (see `render_parse_error`), and the error is kept only as text (it
//! is not chained as a `source()`, which would print the original).

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// Default location of the state directory (sled database, control socket).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tjfwd";
/// Default Report API endpoint (the same as cowrie's `output_threatjammer`).
pub const DEFAULT_API_URL: &str = "https://dublin.report.threatjammer.com/v1/ip";
/// Environment variable consulted for the bearer token when the file names none.
pub const TOKEN_ENV: &str = "TJFWD_BEARER_TOKEN";
/// Name of the systemd credential holding the bearer token, read from
/// `$CREDENTIALS_DIRECTORY` when no other source names a token (the unit
/// says `LoadCredential=bearer_token:/etc/tjfwd/token`).
pub const CREDENTIAL_NAME: &str = "bearer_token";
/// Environment variable systemd sets to the directory of the credentials.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The Report API accepts at most this many addresses in one request.
pub const MAX_BATCH_SIZE: usize = 1000;
/// The Report API's documented request limit per token and per minute.
pub const API_REQUESTS_PER_MINUTE: u32 = 6;
/// The window of the API's rate limit (`Schedule::rate_window` from a file).
pub const API_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Test-only environment variable shortening the rate window of the binary
/// (milliseconds); see [`Config::apply_test_rate_window`].
pub const TEST_RATE_WINDOW_ENV: &str = "TJFWD_TEST_RATE_WINDOW_MS";

pub(crate) const DEFAULT_TTL: u64 = 86_400;
pub(crate) const DEFAULT_CATEGORY: &str = "ABUSE";
pub(crate) const DEFAULT_TAGS: [&str; 3] = ["COWRIE", "LOGIN", "SESSION"];
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const DEFAULT_CACHE_CAPACITY: u64 = 32 * MIB;
const MIN_CACHE_CAPACITY: u64 = MIB;
/// Default of `[queue] max_pending`: two days of sending at the API's limit
/// (6,000 addresses a minute would be 8.6 M; 2 M is ~1 GiB of disk).
pub const DEFAULT_MAX_PENDING: u64 = 2_000_000;
/// Smallest accepted `[queue] max_pending` (one full batch).
pub const MIN_MAX_PENDING: u64 = 1000;
/// Default of `[input] max_line_bytes`: longer lines are skipped and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = MIB as usize;
/// Smallest accepted `[input] max_line_bytes` (Cowrie's lines are ~350 bytes,
/// ~1.9 KB for `cowrie.client.kex`).
pub const MIN_MAX_LINE_BYTES: usize = KIB as usize;
/// Largest accepted `[input] max_line_bytes` (a line is buffered whole).
pub const MAX_MAX_LINE_BYTES: usize = 64 * MIB as usize;
/// Default of `[input] max_connections` (socket clients served at once).
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;
/// Largest accepted `[input] max_connections`.
pub const MAX_MAX_CONNECTIONS: usize = 1024;
/// What a redacted secret is shown as.
pub(crate) const REDACTED: &str = "<redacted>";
/// How a configuration that does not come from a file is named in messages.
const NO_FILE: &str = "<config>";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a configuration could not be loaded. The `Display` text always starts
/// with the file name and names the key at fault; it never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read the configuration file: {io}; check the path and its permissions", path.display())]
    Read {
        /// The file we tried to read, so the message can name it.
        path: PathBuf,
        /// What the OS said (kept as a field, not a `source`, to print it once).
        io: io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong
    /// type. `message` is toml's diagnostic with secrets redacted.
    #[error("{file}: {message}")]
    Parse {
        /// The configuration file, as given (or `<config>` when built from a string).
        file: String,
        /// toml's message with line, column and snippet; secret values redacted.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{file}: {message}")]
    Invalid {
        /// The configuration file, as given (or `<config>` when built from a string).
        file: String,
        /// The key at fault, like `[schedule] batch_size`, for callers and tests.
        key: String,
        /// What is wrong and what to do; starts with the key.
        message: String,
    },
}

// ---------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------

/// A value that must never be printed (the Report API bearer token).
/// `Debug` and `Display` print `<redacted>`; use [`Secret::expose`] only where
/// the value is actually sent.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret value itself, for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

// ---------------------------------------------------------------------------
// Resolved configuration
// ---------------------------------------------------------------------------

/// Options of the command line that change how the configuration is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--dry-run`: nothing is sent, so a missing bearer token is not an error.
    pub dry_run: bool,
}

/// The validated configuration of tjfwd. See the module documentation for the
/// invariants that hold when it comes from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was loaded from, to name it in messages (None when built in code).
    pub path: Option<PathBuf>,
    /// Where the sled database and the control socket live.
    pub state_dir: PathBuf,
    /// How and what to report to the Threat Jammer Report API.
    pub threatjammer: ThreatJammer,
    /// Which cowrie log to tail, and how.
    pub input: Input,
    /// When to send batches and how fast to retry.
    pub schedule: Schedule,
    /// Which addresses are never reported.
    pub filter: Filter,
    /// Tuning of the on-disk queue.
    pub storage: Storage,
    /// `[queue]`.
    pub queue: QueueLimits,
    /// The admin HTTP endpoint (metrics, health).
    pub admin: Admin,
    /// Non-fatal problems found while loading, to log at start-up (never contain the token).
    pub warnings: Vec<String>,
    /// Informational remarks found while loading (for example where the
    /// settings came from), to log at info level at start-up (never contain the token).
    pub notes: Vec<String>,
}

/// The `[threatjammer]` section: the Report API and the contents of each report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreatJammer {
    /// Endpoint the batches are POSTed to (regional; the token belongs to a region).
    pub api_url: Url,
    /// Bearer token of the API; None only in dry-run mode.
    pub token: Option<Secret>,
    /// Report the source of `cowrie.login.*` events (as cowrie's plugin does).
    pub track_login: bool,
    /// Report the source of `cowrie.session.*` events (every connection).
    pub track_session: bool,
    /// Seconds an address stays in the private denylist after a report (`ttl` in the API).
    pub ttl: u64,
    /// The dataset the addresses go to (`type` in the API), e.g. `ABUSE`.
    pub category: String,
    /// Tags attached to every report, uppercase alphanumeric.
    pub tags: Vec<String>,
    /// Allows plain http to a non-loopback host (the token then travels in clear).
    pub allow_insecure_http: bool,
    /// A PEM bundle of the CAs that sign the API's certificate (a private
    /// deployment). When set, tjfwd trusts exactly these CAs and not the
    /// built-in public roots; when None, the public roots. Verification is
    /// always on.
    pub ca_file: Option<PathBuf>,
}

/// Where the tailer starts reading a cowrie.json it has no checkpoint for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartAt {
    /// Only new events (the log's past is not reported).
    #[default]
    End,
    /// From the first line of the current file.
    Beginning,
}

impl StartAt {
    /// The TOML spelling of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartAt::End => "end",
            StartAt::Beginning => "beginning",
        }
    }
}

/// The `[input]` section: the cowrie JSON log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// cowrie.json to tail; None when events come only from other inputs.
    pub cowrie_json: Option<PathBuf>,
    /// Where to start in a file seen for the first time (no checkpoint yet).
    pub start_at: StartAt,
    /// How often the tailer looks for new data, rotation and truncation.
    pub poll_interval: Duration,
    /// Longest input line accepted, in bytes; a longer line is skipped
    /// (without being buffered whole) and counted. 1 KiB..=64 MiB.
    pub max_line_bytes: usize,
    /// Address to accept Cowrie's `[output_socketlog]` connections on (JSON
    /// lines over TCP); None: no socket input. Port is never 0.
    pub listen_tcp: Option<SocketAddr>,
    /// Most socket clients served at once (1..=1024); further ones wait or are refused.
    pub max_connections: usize,
}

/// The `[schedule]` section: batching, rate limit, retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Most addresses in one request; a full batch is sent at once (API limit 1000).
    pub batch_size: usize,
    /// Longest time the oldest pending address waits before a partial batch is sent.
    pub flush_interval: Duration,
    /// Most requests (retries included) in any rolling `rate_window` (API limit 6/min).
    pub max_requests_per_minute: u32,
    /// Time limit of one HTTP request, connection included.
    pub request_timeout: Duration,
    /// Upper bound of the exponential backoff after transient failures.
    pub max_backoff: Duration,
    /// An address reported less than this long ago is not queued again (0 = always).
    pub rereport_after: Duration,
    /// Length of the rate-limit window: not a TOML key, always 60 s from a file
    /// (the API's window); tests built in code shorten it, tests of the binary
    /// through the test-only `TJFWD_TEST_RATE_WINDOW_MS`.
    pub rate_window: Duration,
}

/// The `[filter]` section: addresses that are never reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Report private, loopback, documentation... addresses too (the API rejects
    /// a whole batch for one of them, so this is for tests against a fake API).
    pub report_non_public: bool,
    /// Networks never reported (own hosts, scanners you run); IPv4-mapped IPv6
    /// entries are stored as IPv4, as addresses are normalized before filtering.
    pub allowlist: Vec<IpNet>,
}

/// The `[storage]` section: the sled database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Bytes of sled's page cache.
    pub cache_capacity: u64,
}

/// The `[queue]` section: bounds of the pending set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    /// At this many pending addresses the inputs stop reading (the file
    /// input stops advancing, the socket input stops reading its clients)
    /// until sending brings the number down: nothing is dropped.
    pub max_pending: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// The `[admin]` section: the HTTP endpoint for monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admin {
    /// Address serving `/metrics` (Prometheus text) and `/healthz`; None
    /// (the default): no admin endpoint.
    pub listen: Option<SocketAddr>,
}

impl Default for ThreatJammer {
    fn default() -> Self {
        ThreatJammer {
            api_url: Url::parse(DEFAULT_API_URL).expect("the default API URL is valid"),
            token: None,
            track_login: true,
            track_session: false,
            ttl: DEFAULT_TTL,
            category: DEFAULT_CATEGORY.to_string(),
            tags: DEFAULT_TAGS.iter().map(|t| t.to_string()).collect(),
            allow_insecure_http: false,
            ca_file: None,
        }
    }
}

impl Default for Input {
    fn default() -> Self {
        Input {
            cowrie_json: None,
            start_at: StartAt::End,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            listen_tcp: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            batch_size: MAX_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_requests_per_minute: API_REQUESTS_PER_MINUTE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            rereport_after: Duration::ZERO,
            rate_window: API_RATE_WINDOW,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

impl Default for Config {
    /// All defaults, no token, no file: what an empty file gives in dry-run mode.
    fn default() -> Self {
        Config {
            path: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            threatjammer: ThreatJammer::default(),
            input: Input::default(),
            schedule: Schedule::default(),
            filter: Filter::default(),
            storage: Storage::default(),
            queue: QueueLimits::default(),
            admin: Admin::default(),
            warnings: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and validates the configuration file `path`; the bearer token may
    /// come from the environment variable `TJFWD_BEARER_TOKEN` (see
    /// [`Config::from_toml_str`]). Relative paths in the file are resolved
    /// against the file's (absolute) directory. Adds a warning when the file
    /// holds an inline `bearer_token` and is readable by group or others.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
        load_with(Some(path), opts, std::env::var(TOKEN_ENV).ok(), None)
    }

    /// Parses and validates a configuration from `text`. `path` is the file it
    /// came from (used in messages and to resolve relative paths; None: `<config>`
    /// and paths are kept as written). `env_token` stands for the value of
    /// `TJFWD_BEARER_TOKEN`. Reads nothing but a `bearer_token_file`.
    pub fn from_toml_str(
        text: &str,
        path: Option<&Path>,
        opts: &LoadOptions,
        env_token: Option<String>,
    ) -> Result<Config, ConfigError> {
        let source = Source {
            text,
            path,
            resolve_base: path,
            file_meta: None,
            credentials_dir: None,
        };
        build(source, opts, env_token, None)
    }

    /// A configuration with every default and no token, with the given state directory.
    pub fn default_for_tests(state_dir: PathBuf) -> Config {
        Config {
            state_dir,
            ..Config::default()
        }
    }

    /// Applies the test-only environment variable [`TEST_RATE_WINDOW_ENV`]
    /// (its value, if set): the rate-limit window becomes that many
    /// milliseconds (1..=60000) instead of the API's 60 s, and a warning says
    /// so (logged at start, printed by `check-config`, which also shows the
    /// window). For tests of the binary that must not wait minutes; never set
    /// it in production: the API would answer 429 to the extra requests.
    pub fn apply_test_rate_window(&mut self, value: Option<&str>) -> Result<(), ConfigError> {
        let Some(value) = value else {
            return Ok(());
        };
        let ms = value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=API_RATE_WINDOW.as_millis() as u64).contains(ms))
            .ok_or_else(|| ConfigError::Invalid {
                file: "environment".to_string(),
                key: TEST_RATE_WINDOW_ENV.to_string(),
                message: format!(
                    "{TEST_RATE_WINDOW_ENV} = {value:?} is not a number of milliseconds from 1 \
                     to 60000; it is for tests only: unset it"
                ),
            })?;
        self.schedule.rate_window = Duration::from_millis(ms);
        self.warnings.push(format!(
            "{TEST_RATE_WINDOW_ENV} is set: the rate window is {} instead of the API's {} \
             (for tests only; unset it in production)",
            format_duration(self.schedule.rate_window),
            format_duration(API_RATE_WINDOW)
        ));
        Ok(())
    }

    /// The effective configuration as TOML (for `tjfwd check-config`), with the
    /// token shown as `<redacted>`. Parsing it back gives the same configuration,
    /// except for the token.
    pub fn redacted_toml(&self) -> String {
        let tj = &self.threatjammer;
        let view = ViewConfig {
            state_dir: self.state_dir.to_string_lossy().into_owned(),
            threatjammer: ViewThreatJammer {
                api_url: tj.api_url.to_string(),
                bearer_token: tj.token.as_ref().map(|_| REDACTED),
                track_login: tj.track_login,
                track_session: tj.track_session,
                ttl: i64::try_from(tj.ttl).unwrap_or(i64::MAX),
                category: tj.category.clone(),
                tags: tj.tags.clone(),
                allow_insecure_http: tj.allow_insecure_http,
                ca_file: tj
                    .ca_file
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
            },
            input: ViewInput {
                cowrie_json: self
                    .input
                    .cowrie_json
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                start_at: self.input.start_at.as_str(),
                poll_interval: format_duration(self.input.poll_interval),
                max_line_bytes: format_size(self.input.max_line_bytes as u64),
                listen_tcp: self.input.listen_tcp.map(|a| a.to_string()),
                max_connections: i64::try_from(self.input.max_connections).unwrap_or(i64::MAX),
            },
            schedule: ViewSchedule {
                batch_size: i64::try_from(self.schedule.batch_size).unwrap_or(i64::MAX),
                flush_interval: format_duration(self.schedule.flush_interval),
                max_requests_per_minute: i64::from(self.schedule.max_requests_per_minute),
                request_timeout: format_duration(self.schedule.request_timeout),
                max_backoff: format_duration(self.schedule.max_backoff),
                rereport_after: format_duration(self.schedule.rereport_after),
            },
            filter: ViewFilter {
                report_non_public: self.filter.report_non_public,
                allowlist: self
                    .filter
                    .allowlist
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
            },
            storage: ViewStorage {
                cache_capacity: format_size(self.storage.cache_capacity),
            },
            queue: ViewQueue {
                max_pending: i64::try_from(self.queue.max_pending).unwrap_or(i64::MAX),
            },
            admin: ViewAdmin {
                listen: self.admin.listen.map(|a| a.to_string()),
            },
        };
        let mut out = String::from("# Effective tjfwd configuration");
        match &self.path {
            Some(p) => out.push_str(&format!(" (loaded from {})\n", p.display())),
            None => out.push_str(" (built in code)\n"),
        }
        if tj.token.is_none() {
            out.push_str("# No bearer token is configured (dry run only).\n");
        }
        if self.input.cowrie_json.is_none() {
            out.push_str("# [input] cowrie_json is not set: no file is tailed.\n");
        }
        if self.schedule.rate_window != API_RATE_WINDOW {
            out.push_str(&format!(
                "# rate window (not settable in TOML): {}\n",
                format_duration(self.schedule.rate_window)
            ));
        }
        out.push('\n');
        match toml::to_string(&view) {
            Ok(body) => out.push_str(&body),
            Err(e) => out.push_str(&format!("# cannot render the configuration: {e}\n")),
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Raw layer
// ---------------------------------------------------------------------------

/// The file as written. Sections default to empty tables.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// `state_dir`: where the database lives (default /var/lib/tjfwd).
    state_dir: Option<PathBuf>,
    /// `[threatjammer]`: same keys as cowrie's `[output_threatjammer]`.
    #[serde(default)]
    threatjammer: RawThreatJammer,
    /// `[input]`: the cowrie.json tailer.
    #[serde(default)]
    input: RawInput,
    /// `[schedule]`: batching, rate limit, retries.
    #[serde(default)]
    schedule: RawSchedule,
    /// `[filter]`: addresses never reported.
    #[serde(default)]
    filter: RawFilter,
    /// `[storage]`: sled tuning.
    #[serde(default)]
    storage: RawStorage,
    /// `[queue]`: bounds of the pending set.
    #[serde(default)]
    queue: RawQueue,
    /// `[admin]`: the metrics and health endpoint.
    #[serde(default)]
    admin: RawAdmin,
}

/// `[threatjammer]` as written, before validation. Also built from
/// cowrie.cfg's `[output_threatjammer]` (see `crate::cowrie_cfg`), so that
/// both are checked by the same rules.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThreatJammer {
    /// Report API endpoint; parsed and checked for https.
    pub(crate) api_url: Option<String>,
    /// Inline token (a `Secret` already, so it can never be printed by mistake).
    pub(crate) bearer_token: Option<Secret>,
    /// File holding the token (preferred: the config file can then stay readable).
    pub(crate) bearer_token_file: Option<PathBuf>,
    /// Report login events.
    pub(crate) track_login: Option<bool>,
    /// Report session events.
    pub(crate) track_session: Option<bool>,
    /// Denylist TTL in seconds; `i64` so that a negative value gets our message.
    pub(crate) ttl: Option<i64>,
    /// Dataset name (`type` in the API).
    pub(crate) category: Option<String>,
    /// Comma-separated string (cowrie's form) or a list of strings.
    pub(crate) tags: Option<toml::Value>,
    /// Allow http to non-loopback hosts.
    pub(crate) allow_insecure_http: Option<bool>,
    /// PEM bundle of a private CA (only from tjfwd.toml: cowrie.cfg has no
    /// such key, so it is allowed beside `--cowrie-config`).
    pub(crate) ca_file: Option<PathBuf>,
}

impl RawThreatJammer {
    /// The keys that are set, in the order of the section's documentation.
    fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |set: bool, key| {
            if set {
                keys.push(key);
            }
        };
        add(self.api_url.is_some(), "api_url");
        add(self.bearer_token.is_some(), "bearer_token");
        add(self.bearer_token_file.is_some(), "bearer_token_file");
        add(self.track_login.is_some(), "track_login");
        add(self.track_session.is_some(), "track_session");
        add(self.ttl.is_some(), "ttl");
        add(self.category.is_some(), "category");
        add(self.tags.is_some(), "tags");
        add(self.allow_insecure_http.is_some(), "allow_insecure_http");
        // ca_file is not listed: cowrie.cfg cannot set it, so tjfwd.toml may
        // beside --cowrie-config.
        keys
    }
}

/// `[input]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    /// cowrie.json path; relative to the config file's directory.
    cowrie_json: Option<PathBuf>,
    /// "end" or "beginning"; a string so that a bad value gets our message.
    start_at: Option<String>,
    /// humantime duration string.
    poll_interval: Option<toml::Value>,
    /// A size string ("1MiB") or an integer number of bytes.
    max_line_bytes: Option<toml::Value>,
    /// A socket address such as "127.0.0.1:9000" or "[::1]:9000".
    listen_tcp: Option<String>,
    /// Socket clients at once, 1..=1024.
    max_connections: Option<i64>,
}

/// `[schedule]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    /// Addresses per request, 1..=1000.
    batch_size: Option<i64>,
    /// humantime duration string.
    flush_interval: Option<toml::Value>,
    /// Requests per rolling minute, >= 1.
    max_requests_per_minute: Option<i64>,
    /// humantime duration string.
    request_timeout: Option<toml::Value>,
    /// humantime duration string.
    max_backoff: Option<toml::Value>,
    /// humantime duration string.
    rereport_after: Option<toml::Value>,
}

/// `[filter]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    /// Report non-public addresses too.
    report_non_public: Option<bool>,
    /// CIDRs or bare addresses, parsed one by one so an error names the entry.
    allowlist: Option<Vec<String>>,
}

/// `[storage]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    /// A size string ("32MiB") or an integer number of bytes.
    cache_capacity: Option<toml::Value>,
}

/// `[queue]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    /// Pending addresses at which the inputs pause.
    max_pending: Option<i64>,
}

/// `[admin]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// A socket address string, parsed so an error can show the expected form.
    listen: Option<String>,
}

// ---------------------------------------------------------------------------
// Output layer of redacted_toml (same keys as the raw layer)
// ---------------------------------------------------------------------------

/// Serializable image of a `Config` (see `redacted_toml`).
#[derive(Serialize)]
struct ViewConfig {
    /// `state_dir`.
    state_dir: String,
    /// `[threatjammer]`.
    threatjammer: ViewThreatJammer,
    /// `[input]`.
    input: ViewInput,
    /// `[schedule]`.
    schedule: ViewSchedule,
    /// `[filter]`.
    filter: ViewFilter,
    /// `[storage]`.
    storage: ViewStorage,
    /// `[queue]`.
    queue: ViewQueue,
    /// `[admin]`.
    admin: ViewAdmin,
}

/// `[threatjammer]` for output.
#[derive(Serialize)]
struct ViewThreatJammer {
    /// Endpoint.
    api_url: String,
    /// Always `<redacted>` when a token is set; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_token: Option<&'static str>,
    /// Report login events.
    track_login: bool,
    /// Report session events.
    track_session: bool,
    /// TTL in seconds (TOML integers are i64).
    ttl: i64,
    /// Dataset.
    category: String,
    /// Tags, as a list.
    tags: Vec<String>,
    /// Allow http to non-loopback hosts.
    allow_insecure_http: bool,
    /// Omitted when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
}

/// `[input]` for output.
#[derive(Serialize)]
struct ViewInput {
    /// Omitted when not set (TOML has no null).
    #[serde(skip_serializing_if = "Option::is_none")]
    cowrie_json: Option<String>,
    /// "end" or "beginning".
    start_at: &'static str,
    /// humantime string.
    poll_interval: String,
    /// Size string that parses back to the same number of bytes.
    max_line_bytes: String,
    /// Omitted when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_tcp: Option<String>,
    /// Socket clients at once.
    max_connections: i64,
}

/// `[schedule]` for output.
#[derive(Serialize)]
struct ViewSchedule {
    /// Addresses per request.
    batch_size: i64,
    /// humantime string.
    flush_interval: String,
    /// Requests per rolling minute.
    max_requests_per_minute: i64,
    /// humantime string.
    request_timeout: String,
    /// humantime string.
    max_backoff: String,
    /// humantime string.
    rereport_after: String,
}

/// `[filter]` for output.
#[derive(Serialize)]
struct ViewFilter {
    /// Report non-public addresses too.
    report_non_public: bool,
    /// CIDRs.
    allowlist: Vec<String>,
}

/// `[storage]` for output.
#[derive(Serialize)]
struct ViewStorage {
    /// Size string that parses back to the same number of bytes.
    cache_capacity: String,
}

/// `[queue]` for output.
#[derive(Serialize)]
struct ViewQueue {
    /// Pending addresses at which the inputs pause.
    max_pending: i64,
}

/// `[admin]` for output.
#[derive(Serialize)]
struct ViewAdmin {
    /// Omitted when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

pub(crate) fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(crate) fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// State shared by the validation steps: the file name for messages, the
/// directory for relative paths, and the warnings collected so far.
struct Ctx {
    /// The file as named in messages.
    file: String,
    /// Directory relative paths are joined to (None: kept as written).
    base_dir: Option<PathBuf>,
    /// Warnings collected so far.
    warnings: Vec<String>,
}

impl Ctx {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.to_string(),
            message,
        }
    }

    fn resolve(&self, p: PathBuf) -> PathBuf {
        match &self.base_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        }
    }

    fn path(&self, key: &str, p: PathBuf) -> Result<PathBuf, ConfigError> {
        if p.as_os_str().is_empty() {
            return Err(self.invalid(
                key,
                format!("{key} is empty: give a path, or remove the key to use the default"),
            ));
        }
        Ok(self.resolve(p))
    }

    fn duration(
        &self,
        key: &str,
        value: Option<toml::Value>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(toml::Value::String(s)) => humantime::parse_duration(s.trim()).map_err(|e| {
                self.invalid(
                    key,
                    format!(
                        "{key} = {s:?} is not a valid duration ({e}): \
                         write it like \"500ms\", \"60s\", \"10m\" or \"1h 30m\""
                    ),
                )
            }),
            Some(toml::Value::Integer(n)) => Err(self.invalid(
                key,
                format!(
                    "{key} = {n} has no unit: write the duration as a string with a unit, \
                     e.g. {key} = \"{n}s\""
                ),
            )),
            Some(other) => Err(self.invalid(
                key,
                format!(
                    "{key} = {other} is not a duration: write it as a string like \"60s\" or \"10m\""
                ),
            )),
        }
    }

    /// A size: a string like "32MiB" or "1 GiB", or an integer number of bytes.
    fn size(
        &self,
        key: &str,
        value: Option<toml::Value>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match value {
            None => Ok(default),
            Some(toml::Value::String(s)) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| {
                    self.invalid(
                        key,
                        format!(
                            "{key} = {s:?} is not a valid size ({e}): write it like \
                             \"{}\" or as a number of bytes",
                            format_size(default)
                        ),
                    )
                }),
            Some(toml::Value::Integer(n)) if n >= 0 => Ok(n as u64),
            Some(other) => Err(self.invalid(
                key,
                format!(
                    "{key} = {other} is not a size: write it like \"{}\" or as a number of bytes",
                    format_size(default)
                ),
            )),
        }
    }

    fn nonzero(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.invalid(
                key,
                format!("{key} = \"0s\" is not allowed: it must be greater than zero"),
            ))
        } else {
            Ok(d)
        }
    }
}

/// The TOML text to build a [`Config`] from, and what is known of its file.
struct Source<'a> {
    /// The TOML text.
    text: &'a str,
    /// The file, as named in messages (None: `<config>`).
    path: Option<&'a Path>,
    /// The file whose directory relative paths are joined to (None: kept as written).
    resolve_base: Option<&'a Path>,
    /// The file's metadata, to warn about an inline token other users can read.
    file_meta: Option<fs::Metadata>,
    /// `$CREDENTIALS_DIRECTORY` (systemd credentials), where the token is
    /// looked for last, as [`CREDENTIAL_NAME`]; None: not looked for.
    credentials_dir: Option<PathBuf>,
}

/// `[threatjammer]` and `[input] cowrie_json` supplied by another file than
/// the TOML one: Cowrie's cowrie.cfg (see `crate::cowrie_cfg`). The TOML file
/// must then not set them itself.
pub(crate) struct Supplied {
    /// The file they come from, as named in messages.
    pub(crate) file: String,
    /// How `[threatjammer]` is named in that file, e.g. `[output_threatjammer]`.
    pub(crate) section: String,
    /// The `[threatjammer]` values, checked by the same rules as the TOML ones.
    pub(crate) threatjammer: RawThreatJammer,
    /// The JSON log (absolute); None when that file names none.
    pub(crate) cowrie_json: Option<PathBuf>,
    /// Where `cowrie_json` comes from in that file, e.g. `[output_jsonlog] logfile`.
    pub(crate) cowrie_json_key: String,
    /// Refusal when there is neither a JSON log nor `[input] listen_tcp`:
    /// (key, message).
    pub(crate) no_input: (String, String),
    /// Completes "no Threat Jammer bearer token: ..." (how to give one there).
    pub(crate) token_hint: String,
    /// Warnings found while reading that file.
    pub(crate) warnings: Vec<String>,
    /// Informational remarks found while reading that file.
    pub(crate) notes: Vec<String>,
}

/// Reads the TOML file `path` (None: an empty configuration, all defaults)
/// and builds the configuration, with `[threatjammer]` and `[input]
/// cowrie_json` taken from `supplied` when given. `env_token` stands for the
/// value of `TJFWD_BEARER_TOKEN`. The systemd credential [`CREDENTIAL_NAME`]
/// is looked for in `$CREDENTIALS_DIRECTORY` when it is set.
pub(crate) fn load_with(
    path: Option<&Path>,
    opts: &LoadOptions,
    env_token: Option<String>,
    supplied: Option<Supplied>,
) -> Result<Config, ConfigError> {
    let Some(path) = path else {
        let source = Source {
            text: "",
            path: None,
            resolve_base: None,
            file_meta: None,
            credentials_dir: credentials_dir(),
        };
        return build(source, opts, env_token, supplied);
    };
    let text = fs::read_to_string(path).map_err(|io| ConfigError::Read {
        path: path.to_path_buf(),
        io,
    })?;
    // Resolve against an absolute directory, so that the daemon's paths do
    // not depend on its working directory; messages keep the name as given.
    let base = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let source = Source {
        text: &text,
        path: Some(path),
        resolve_base: Some(&base),
        file_meta: fs::metadata(path).ok(),
        credentials_dir: credentials_dir(),
    };
    build(source, opts, env_token, supplied)
}

/// `$CREDENTIALS_DIRECTORY`, set by systemd when the unit loads credentials.
fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os(CREDENTIALS_DIRECTORY_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn build(
    source: Source<'_>,
    opts: &LoadOptions,
    env_token: Option<String>,
    supplied: Option<Supplied>,
) -> Result<Config, ConfigError> {
    let Source {
        text,
        path,
        resolve_base,
        file_meta,
        credentials_dir,
    } = source;
    let creds = credentials_dir.as_deref();
    let file = path.map_or_else(|| NO_FILE.to_string(), |p| p.display().to_string());
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.clone(),
        message: render_parse_error(text, &e),
    })?;
    let mut ctx = Ctx {
        file,
        base_dir: resolve_base
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf),
        warnings: Vec::new(),
    };
    if let Some(s) = &supplied {
        refuse_supplied_keys(&ctx, &raw, s)?;
    }

    let state_dir = match raw.state_dir {
        Some(p) => ctx.path("state_dir", p)?,
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };

    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    // [threatjammer] is checked in the context of the file it comes from:
    // (that context, how the section is named there, how to give a token there).
    let mut other: Option<(Ctx, String, String)> = None;
    // Taken out first: it is checked in the TOML file's context even beside
    // --cowrie-config (cowrie.cfg has no such key).
    let ca_file = ca_file(&ctx, raw.threatjammer.ca_file.take())?;
    let (mut threatjammer, input) = match supplied {
        None => {
            let inline_token = raw.threatjammer.bearer_token.is_some();
            let tj = threatjammer(
                &mut ctx,
                "[threatjammer]",
                raw.threatjammer,
                env_token,
                creds,
                &state_dir,
            )?;
            if inline_token {
                if let (Some(p), Some(meta)) = (path, &file_meta) {
                    if let Some(who) = secret_readers(meta, &state_dir) {
                        ctx.warnings.push(format!(
                            "{}: the file holds [threatjammer] bearer_token and can be read by \
                             {who}: run `chmod 600 {}`, or move the token to a file named by \
                             bearer_token_file",
                            p.display(),
                            p.display()
                        ));
                    }
                }
            }
            (tj, input(&mut ctx, raw.input)?)
        }
        Some(s) => {
            warnings.extend(s.warnings);
            notes.extend(s.notes);
            let mut sctx = Ctx {
                file: s.file,
                base_dir: None,
                warnings: Vec::new(),
            };
            let tj = threatjammer(
                &mut sctx,
                &s.section,
                s.threatjammer,
                env_token,
                creds,
                &state_dir,
            )?;
            let mut input = input(&mut ctx, raw.input)?;
            input.cowrie_json = s.cowrie_json;
            if input.cowrie_json.is_none() && input.listen_tcp.is_none() {
                let (key, message) = s.no_input;
                return Err(sctx.invalid(&key, message));
            }
            other = Some((sctx, s.section, s.token_hint));
            (tj, input)
        }
    };
    threatjammer.ca_file = ca_file;
    let schedule = schedule(&mut ctx, raw.schedule)?;
    let filter = filter(&ctx, raw.filter)?;
    let storage = storage(&ctx, raw.storage)?;
    let queue = queue_limits(&ctx, raw.queue)?;
    let admin = admin(&ctx, raw.admin)?;

    // Checked last: the other keys' mistakes are reported first, as they are
    // what a dry run or `check-config` without the token is meant to find.
    if threatjammer.token.is_none() && !opts.dry_run {
        return Err(match &other {
            Some((sctx, section, hint)) => sctx.invalid(
                &format!("{section} bearer_token"),
                format!("no Threat Jammer bearer token: {hint}"),
            ),
            None => ctx.invalid(
                "[threatjammer] bearer_token",
                format!(
                    "no Threat Jammer bearer token: set [threatjammer] bearer_token_file (a file \
                     holding the token, mode 600) or bearer_token, or the environment variable \
                     {TOKEN_ENV}, or pass the systemd credential {CREDENTIAL_NAME} \
                     (LoadCredential={CREDENTIAL_NAME}:/etc/tjfwd/token), or use --dry-run"
                ),
            ),
        });
    }

    if let Some((sctx, _, _)) = other {
        warnings.extend(sctx.warnings);
    }
    warnings.extend(ctx.warnings);
    Ok(Config {
        path: path.map(Path::to_path_buf),
        state_dir,
        threatjammer,
        input,
        schedule,
        filter,
        storage,
        queue,
        admin,
        warnings,
        notes,
    })
}

fn admin(ctx: &Ctx, raw: RawAdmin) -> Result<Admin, ConfigError> {
    let key = "[admin] listen";
    let listen = match raw.listen {
        None => None,
        Some(text) => {
            let addr = text.trim().parse::<SocketAddr>().map_err(|_| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} is not a socket address: write an IP address and a \
                         port, like \"127.0.0.1:9108\" or \"[::1]:9108\", or remove the key \
                         (no admin endpoint)"
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} has port 0: give the fixed port your monitoring \
                         scrapes, like \"127.0.0.1:9108\""
                    ),
                ));
            }
            Some(addr)
        }
    };
    Ok(Admin { listen })
}

/// With `supplied`, the TOML file must not set what the other file supplies:
/// two places for one setting would leave the operator guessing which wins.
fn refuse_supplied_keys(ctx: &Ctx, raw: &RawConfig, s: &Supplied) -> Result<(), ConfigError> {
    if let Some(name) = raw.threatjammer.set_keys().first() {
        let key = format!("[threatjammer] {name}");
        return Err(ctx.invalid(
            &key,
            format!(
                "{key} is set here, but {} (--cowrie-config) supplies the [threatjammer] \
                 settings, from its {} section: remove [threatjammer] from {} and set {name} \
                 in {} of {} instead (the bearer token can also come from the environment \
                 variable {TOKEN_ENV})",
                s.file, s.section, ctx.file, s.section, s.file
            ),
        ));
    }
    if raw.input.cowrie_json.is_some() {
        let key = "[input] cowrie_json";
        return Err(ctx.invalid(
            key,
            format!(
                "{key} is set here, but {} (--cowrie-config) supplies the JSON log, from its \
                 {}: remove {key} from {}",
                s.file, s.cowrie_json_key, ctx.file
            ),
        ));
    }
    Ok(())
}

/// Checks the `[threatjammer]` values. `sec` is how the section is named in
/// messages: `[threatjammer]` in tjfwd.toml, `[output_threatjammer]` in cowrie.cfg.
fn threatjammer(
    ctx: &mut Ctx,
    sec: &str,
    raw: RawThreatJammer,
    env_token: Option<String>,
    credentials: Option<&Path>,
    state_dir: &Path,
) -> Result<ThreatJammer, ConfigError> {
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let api_url = api_url(ctx, sec, raw.api_url, allow_insecure_http)?;
    let token = token(
        ctx,
        sec,
        raw.bearer_token,
        raw.bearer_token_file,
        env_token,
        credentials,
        state_dir,
    )?;

    let ttl = match raw.ttl {
        None => DEFAULT_TTL,
        Some(n) if n > 0 => n as u64,
        Some(n) => {
            let key = format!("{sec} ttl");
            return Err(ctx.invalid(
                &key,
                format!(
                    "{key} = {n} is out of range: it is the number of seconds an \
                     address stays in the denylist and must be greater than 0 (default {DEFAULT_TTL})"
                ),
            ));
        }
    };

    let category = match raw.category {
        None => DEFAULT_CATEGORY.to_string(),
        Some(c) => {
            let key = &format!("{sec} category");
            let valid = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            };
            if !valid(&c) {
                let hint = if valid(&c.to_ascii_uppercase()) {
                    format!(
                        "write it in uppercase: category = {:?}",
                        c.to_ascii_uppercase()
                    )
                } else {
                    format!(
                        "use a dataset name made of A-Z, 0-9 and _, such as {DEFAULT_CATEGORY:?}"
                    )
                };
                return Err(ctx.invalid(key, format!("{key} = {c:?} is not valid: {hint}")));
            }
            c
        }
    };

    let tags = tags(ctx, sec, raw.tags)?;

    let track_login = raw.track_login.unwrap_or(true);
    let track_session = raw.track_session.unwrap_or(false);
    if !track_login && !track_session {
        ctx.warnings.push(format!(
            "{}: {sec} track_login and track_session are both false: no cowrie event \
             will be reported",
            ctx.file
        ));
    }

    Ok(ThreatJammer {
        api_url,
        token,
        track_login,
        track_session,
        ttl,
        category,
        tags,
        allow_insecure_http,
        ca_file: None,
    })
}

/// Largest token file read: a token is a few dozen bytes, and a path such
/// as /dev/zero must not make tjfwd read forever.
const MAX_TOKEN_FILE: u64 = 64 * KIB;

/// Reads at most [`MAX_TOKEN_FILE`] bytes; a longer file is an error.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {} KiB: not a token", MAX_TOKEN_FILE / KIB),
        ));
    }
    Ok(bytes)
}

/// `[threatjammer] ca_file`: resolved, and read now so that a missing,
/// unreadable or non-PEM file is a configuration error (with the key and
/// the file), not a failure at the first request.
fn ca_file(ctx: &Ctx, raw: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
    let key = "[threatjammer] ca_file";
    let Some(p) = raw else {
        return Ok(None);
    };
    let p = ctx.path(key, p)?;
    crate::reporter::read_ca_file(&p).map_err(|e| {
        ctx.invalid(
            key,
            format!(
                "{key} = \"{}\": {e}; it must name a PEM file of the CA certificate(s) that \
                 sign the API's certificate (or remove the key to trust the public CAs)",
                p.display()
            ),
        )
    })?;
    Ok(Some(p))
}

/// Who besides its owner can read a file holding the token, or None when
/// nobody else can. A group may: the group tjfwd runs as (its effective
/// group), or the group owning the state directory (the service's: under
/// the Debian package, root:tjfwd 0640 is how the tjfwd user reads a file
/// of root's). Any other group, or everyone, draws a warning.
fn secret_readers(meta: &fs::Metadata, state_dir: &Path) -> Option<String> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Some(format!("every user (mode {mode:04o})"));
    }
    if mode & 0o040 != 0 {
        let gid = meta.gid();
        let ours = gid == rustix::process::getegid().as_raw();
        let service = fs::metadata(state_dir).is_ok_and(|m| m.gid() == gid);
        if !ours && !service {
            return Some(format!("the users of group {gid} (mode {mode:04o})"));
        }
    }
    None
}

fn api_url(
    ctx: &mut Ctx,
    sec: &str,
    raw: Option<String>,
    allow_insecure_http: bool,
) -> Result<Url, ConfigError> {
    let key = &format!("{sec} api_url");
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
                 authenticated with bearer_token_file"
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
                            "{key} = {text:?} uses plain http, which would send the bearer token \
                             unencrypted: use https, or set {sec} allow_insecure_http = true \
                             if you really mean it"
                        ),
                    ));
                }
                ctx.warnings.push(format!(
                    "{}: {key} uses plain http to a non-loopback host (allow_insecure_http = true): \
                     the bearer token travels unencrypted",
                    ctx.file
                ));
            }
        }
        other => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {text:?} has the scheme {other:?}: the Report API is reached over \
                     https, e.g. {DEFAULT_API_URL:?}"
                ),
            ))
        }
    }
    Ok(url)
}

/// A token must fit in an HTTP header as `Bearer <token>`: one run of visible
/// ASCII (RFC 6750's b64token is a subset).
fn token_chars_ok(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_graphic())
}

fn token(
    ctx: &mut Ctx,
    sec: &str,
    inline: Option<Secret>,
    file: Option<PathBuf>,
    env_token: Option<String>,
    credentials: Option<&Path>,
    state_dir: &Path,
) -> Result<Option<Secret>, ConfigError> {
    const BAD_CHARS: &str = "contains spaces, control or non-ASCII characters; \
                             a Threat Jammer token is a single word of printable ASCII";
    let token = match (inline, file) {
        (Some(_), Some(_)) => {
            let key = &format!("{sec} bearer_token");
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} and {sec} bearer_token_file are both set: keep only one \
                     (bearer_token_file is preferred, so the configuration file holds no secret)"
                ),
            ));
        }
        (Some(secret), None) => {
            let key = &format!("{sec} bearer_token");
            let t = secret.expose().trim();
            if t.is_empty() {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} is empty: put the token there, or remove the key and use \
                         bearer_token_file or the environment variable {TOKEN_ENV}"
                    ),
                ));
            }
            if !token_chars_ok(t) {
                return Err(ctx.invalid(key, format!("{key} {BAD_CHARS}")));
            }
            Some(Secret::new(t.to_string()))
        }
        (None, Some(p)) => {
            let key = &format!("{sec} bearer_token_file");
            let p = ctx.path(key, p)?;
            let shown = p.display();
            let bytes = read_small(&p).map_err(|e| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = \"{shown}\": cannot read the token file ({e}): check the path \
                         and that the user running tjfwd can read it"
                    ),
                )
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                ctx.invalid(
                    key,
                    format!("{key} = \"{shown}\": the token file is not UTF-8 text: {BAD_CHARS}"),
                )
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(ctx.invalid(
                    key,
                    format!("{key} = \"{shown}\": the token file is empty: write the token in it"),
                ));
            }
            if !token_chars_ok(t) {
                return Err(ctx.invalid(
                    key,
                    format!("{key} = \"{shown}\": the token file {BAD_CHARS}"),
                ));
            }
            if let Some(who) = fs::metadata(&p)
                .ok()
                .and_then(|m| secret_readers(&m, state_dir))
            {
                ctx.warnings.push(format!(
                    "{}: the token file \"{shown}\" ({key}) can be read by {who}: run \
                     `chmod 600 {shown}`",
                    ctx.file
                ));
            }
            Some(Secret::new(t.to_string()))
        }
        (None, None) => match env_token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => {
                if !token_chars_ok(t) {
                    return Err(ctx.invalid(
                        TOKEN_ENV,
                        format!("the environment variable {TOKEN_ENV} {BAD_CHARS}"),
                    ));
                }
                Some(Secret::new(t.to_string()))
            }
            _ => match credentials {
                Some(dir) => credential_token(ctx, &dir.join(CREDENTIAL_NAME), BAD_CHARS)?,
                None => None,
            },
        },
    };
    Ok(token)
}

/// The token from the systemd credential file `path`
/// (`$CREDENTIALS_DIRECTORY/bearer_token`); None when there is no such file.
fn credential_token(
    ctx: &Ctx,
    path: &Path,
    bad_chars: &str,
) -> Result<Option<Secret>, ConfigError> {
    let key = &format!("systemd credential {CREDENTIAL_NAME}");
    let shown = path.display();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} (\"{shown}\"): cannot read it ({e}): check LoadCredential= in the \
                     unit and $CREDENTIALS_DIRECTORY"
                ),
            ))
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        ctx.invalid(
            key,
            format!("{key} (\"{shown}\") is not UTF-8 text: {bad_chars}"),
        )
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} (\"{shown}\") is empty: write the token in the file the unit's \
                 LoadCredential={CREDENTIAL_NAME}:FILE names (/etc/tjfwd/token)"
            ),
        ));
    }
    if !token_chars_ok(t) {
        return Err(ctx.invalid(key, format!("{key} (\"{shown}\") {bad_chars}")));
    }
    Ok(Some(Secret::new(t.to_string())))
}

fn tags(ctx: &mut Ctx, sec: &str, raw: Option<toml::Value>) -> Result<Vec<String>, ConfigError> {
    let key = &format!("{sec} tags");
    let items: Vec<String> = match raw {
        None => return Ok(DEFAULT_TAGS.iter().map(|t| t.to_string()).collect()),
        Some(toml::Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(toml::Value::Array(list)) => {
            let mut items = Vec::with_capacity(list.len());
            for v in list {
                match v {
                    toml::Value::String(s) => items.push(s),
                    other => {
                        return Err(ctx.invalid(
                            key,
                            format!(
                                "{key} contains {other}, which is not a string: write the tags \
                                 as strings, e.g. tags = [\"COWRIE\", \"LOGIN\"]"
                            ),
                        ))
                    }
                }
            }
            items
        }
        Some(other) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {other} is not valid: write a comma-separated string such as \
                     \"COWRIE,LOGIN,SESSION\" or a list such as [\"COWRIE\", \"LOGIN\"]"
                ),
            ))
        }
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let t = item.trim();
        if t.is_empty() {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} contains an empty tag: remove the extra comma or empty string \
                     (for no tags at all, write tags = [])"
                ),
            ));
        }
        if !valid(t) {
            let hint = if valid(&t.to_ascii_uppercase()) {
                format!("write it in uppercase: {:?}", t.to_ascii_uppercase())
            } else {
                "tags may contain only A-Z and 0-9".to_string()
            };
            return Err(ctx.invalid(key, format!("{key}: the tag {t:?} is not valid: {hint}")));
        }
        if tags.iter().any(|x| x == t) {
            ctx.warnings.push(format!(
                "{}: {key} lists {t:?} more than once; it is sent once",
                ctx.file
            ));
            continue;
        }
        tags.push(t.to_string());
    }
    Ok(tags)
}

fn input(ctx: &mut Ctx, raw: RawInput) -> Result<Input, ConfigError> {
    let cowrie_json = raw
        .cowrie_json
        .map(|p| ctx.path("[input] cowrie_json", p))
        .transpose()?;
    let start_at = match raw.start_at.as_deref() {
        None => StartAt::End,
        Some(s) if s.eq_ignore_ascii_case("end") => StartAt::End,
        Some(s) if s.eq_ignore_ascii_case("beginning") => StartAt::Beginning,
        Some(s) => {
            let key = "[input] start_at";
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {s:?} is not valid: use \"end\" (only new events) or \"beginning\" \
                     (the whole current file)"
                ),
            ));
        }
    };
    let key = "[input] poll_interval";
    let poll_interval = ctx.nonzero(
        key,
        ctx.duration(key, raw.poll_interval, DEFAULT_POLL_INTERVAL)?,
    )?;
    if poll_interval > MAX_POLL_INTERVAL {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = \"{}\" is too long: it must be at most 60s (default 500ms)",
                format_duration(poll_interval)
            ),
        ));
    }

    let key = "[input] max_line_bytes";
    let max_line_bytes = ctx.size(key, raw.max_line_bytes, DEFAULT_MAX_LINE_BYTES as u64)?;
    if !(MIN_MAX_LINE_BYTES as u64..=MAX_MAX_LINE_BYTES as u64).contains(&max_line_bytes) {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = {max_line_bytes} bytes is out of range: it must be between 1KiB and \
                 64MiB (default 1MiB; Cowrie's lines are a few KB at most)"
            ),
        ));
    }

    let key = "[input] listen_tcp";
    let listen_tcp = match raw.listen_tcp {
        None => None,
        Some(text) => {
            let addr = text.trim().parse::<SocketAddr>().map_err(|_| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} is not a socket address: write an IP address and a \
                         port, like \"127.0.0.1:9000\" or \"[::1]:9000\" (the address of \
                         Cowrie's [output_socketlog])"
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} has port 0: give the fixed port Cowrie's \
                         [output_socketlog] address connects to, like \"127.0.0.1:9000\""
                    ),
                ));
            }
            if !addr.ip().is_loopback() {
                ctx.warnings.push(format!(
                    "{}: {key} = \"{addr}\" is not a loopback address: anyone who can reach \
                     this port can feed tjfwd events (the socket takes unauthenticated input); \
                     prefer \"127.0.0.1:{}\" with Cowrie on the same host, or firewall the port",
                    ctx.file,
                    addr.port()
                ));
            }
            Some(addr)
        }
    };

    let key = "[input] max_connections";
    let max_connections = match raw.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) if (1..=MAX_MAX_CONNECTIONS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is out of range: it must be between 1 and \
                     {MAX_MAX_CONNECTIONS} (default {DEFAULT_MAX_CONNECTIONS})"
                ),
            ))
        }
    };

    Ok(Input {
        cowrie_json,
        start_at,
        poll_interval,
        max_line_bytes: max_line_bytes as usize,
        listen_tcp,
        max_connections,
    })
}

fn schedule(ctx: &mut Ctx, raw: RawSchedule) -> Result<Schedule, ConfigError> {
    let batch_size = match raw.batch_size {
        None => MAX_BATCH_SIZE,
        Some(n) if (1..=MAX_BATCH_SIZE as i64).contains(&n) => n as usize,
        Some(n) => {
            let key = "[schedule] batch_size";
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is out of range: it must be between 1 and {MAX_BATCH_SIZE} \
                     (the API takes at most {MAX_BATCH_SIZE} addresses a request)"
                ),
            ));
        }
    };
    let key = "[schedule] max_requests_per_minute";
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
    let key = "[schedule] flush_interval";
    let flush_interval = ctx.nonzero(
        key,
        ctx.duration(key, raw.flush_interval, DEFAULT_FLUSH_INTERVAL)?,
    )?;
    let key = "[schedule] request_timeout";
    let request_timeout = ctx.nonzero(
        key,
        ctx.duration(key, raw.request_timeout, DEFAULT_REQUEST_TIMEOUT)?,
    )?;
    let key = "[schedule] max_backoff";
    let max_backoff = ctx.nonzero(
        key,
        ctx.duration(key, raw.max_backoff, DEFAULT_MAX_BACKOFF)?,
    )?;
    let rereport_after = ctx.duration(
        "[schedule] rereport_after",
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

fn filter(ctx: &Ctx, raw: RawFilter) -> Result<Filter, ConfigError> {
    let key = "[filter] allowlist";
    let mut allowlist = Vec::new();
    for entry in raw.allowlist.unwrap_or_default() {
        let text = entry.trim();
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ctx.invalid(
                    key,
                    format!(
                        "{key}: the entry {entry:?} is not a CIDR or an IP address: write it \
                         like \"192.0.2.0/24\", \"2001:db8::/32\" or \"198.51.100.7\""
                    ),
                )
            })?;
        allowlist.push(unmap_v4(net));
    }
    Ok(Filter {
        report_non_public: raw.report_non_public.unwrap_or(false),
        allowlist,
    })
}

/// `::ffff:a.b.c.d/n` (n >= 96) becomes `a.b.c.d/(n-96)`, since the filter sees
/// IPv4-mapped addresses as IPv4.
fn unmap_v4(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.addr().to_ipv4_mapped() {
                if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

fn storage(ctx: &Ctx, raw: RawStorage) -> Result<Storage, ConfigError> {
    let key = "[storage] cache_capacity";
    let cache_capacity = ctx.size(key, raw.cache_capacity, DEFAULT_CACHE_CAPACITY)?;
    if cache_capacity < MIN_CACHE_CAPACITY {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = {cache_capacity} bytes is too small: it must be at least 1MiB \
                 (default 32MiB)"
            ),
        ));
    }
    Ok(Storage { cache_capacity })
}

fn queue_limits(ctx: &Ctx, raw: RawQueue) -> Result<QueueLimits, ConfigError> {
    let key = "[queue] max_pending";
    let max_pending = match raw.max_pending {
        None => DEFAULT_MAX_PENDING,
        Some(n) if n >= MIN_MAX_PENDING as i64 => n as u64,
        Some(n) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is too small: it must be at least {MIN_MAX_PENDING} \
                     (default {DEFAULT_MAX_PENDING})"
                ),
            ))
        }
    };
    Ok(QueueLimits { max_pending })
}

// ---------------------------------------------------------------------------
// Redaction of toml parse errors
// ---------------------------------------------------------------------------

/// Parts of key names that suggest the value is a secret. Over-redaction is
/// harmless (it only hides part of a snippet), under-redaction is not; a typo
/// such as `bearer_tokn` must be covered too, hence substrings.
const SENSITIVE_WORDS: [&str; 8] = [
    "token",
    "secret",
    "passw",
    "bearer",
    "apikey",
    "api_key",
    "auth",
    "credential",
];

/// The lines of `text`, each redacted where it may show a secret, and the
/// removed values (to scrub from toml's message too).
fn redacted_lines(text: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut removed = Vec::new();
    // Closing delimiter of a multi-line string that started on a redacted line.
    let mut open_multiline: Option<&str> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(delim) = open_multiline {
            removed.push(line.trim().to_string());
            lines.push(REDACTED.to_string());
            if line.contains(delim) {
                open_multiline = None;
            }
            continue;
        }
        match redact_line(line) {
            Some((shown, value)) => {
                let v = value.trim();
                for delim in ["\"\"\"", "'''"] {
                    if let Some(rest) = v.strip_prefix(delim) {
                        if !rest.contains(delim) {
                            open_multiline = Some(delim);
                        }
                    }
                }
                removed.push(v.to_string());
                removed.push(v.trim_matches(|c| c == '"' || c == '\'').to_string());
                lines.push(shown);
            }
            None => lines.push(line.to_string()),
        }
    }
    (lines, removed)
}

/// If `line` has a key that looks like a secret (and is not a `..._file` key),
/// returns the line with everything after that key's `=` replaced, and the
/// replaced text.
fn redact_line(line: &str) -> Option<(String, String)> {
    let bytes = line.as_bytes();
    let is_key_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut i = 0;
    while i < bytes.len() {
        if !is_key_char(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_key_char(bytes[i]) {
            i += 1;
        }
        let word = line[start..i].to_ascii_lowercase();
        if word.ends_with("_file") || !SENSITIVE_WORDS.iter().any(|s| word.contains(s)) {
            continue;
        }
        return Some(match line[i..].find('=') {
            Some(eq) => {
                let cut = i + eq + 1;
                (
                    format!("{} \"{REDACTED}\"", &line[..cut]),
                    line[cut..].to_string(),
                )
            }
            None => (format!("{} {REDACTED}", &line[..i]), line[i..].to_string()),
        });
    }
    None
}

/// toml's diagnostic (same layout as toml's `Display`: position, snippet with
/// a caret, message), with any line that may hold a secret redacted in the
/// snippet, and removed values scrubbed from the message.
fn render_parse_error(text: &str, err: &toml::de::Error) -> String {
    let (lines, removed) = redacted_lines(text);
    let mut scrub: Vec<&str> = removed
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() >= 3)
        .collect();
    scrub.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let clean = |s: &str| {
        scrub
            .iter()
            .fold(s.to_string(), |acc, secret| acc.replace(secret, REDACTED))
    };

    let Some(span) = err.span() else {
        // No position: toml's Display has no snippet then, only the message
        // (and the key path).
        return clean(err.to_string().trim_end());
    };
    let (line, column) = position(text, span.start);
    let content = lines.get(line).map(String::as_str).unwrap_or("");
    let line_num = line + 1;
    let gutter = " ".repeat(line_num.to_string().len() + 1);
    // On a redacted line the original column may lie past the shortened text
    // (and would hint at the secret's length): keep the caret on the text.
    let caret = column.min(content.chars().count());
    let highlight = (span.end - span.start)
        .min(content.chars().count().saturating_sub(caret))
        .max(1);
    format!(
        "TOML parse error at line {line_num}, column {}\n{gutter}|\n{line_num} | {content}\n\
         {gutter}|{}{}\n{}",
        column + 1,
        " ".repeat(caret + 1),
        "^".repeat(highlight),
        clean(err.message().trim_end())
    )
}

/// Zero-based line and column (in characters) of byte `index` in `text`.
fn position(text: &str, index: usize) -> (usize, usize) {
    let index = index.min(text.len());
    let before = text.get(..index).unwrap_or(text);
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let column = before[line_start..].chars().count();
    (line, column)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TOKEN: &str = "s3cr3t-T0KEN-value-42";
    const FILE: &str = "/etc/tjfwd/tjfwd.toml";

    fn opts() -> LoadOptions {
        LoadOptions::default()
    }

    fn dry() -> LoadOptions {
        LoadOptions { dry_run: true }
    }

    /// Parses `text` as if loaded from FILE, with the inline test token.
    fn parse(text: &str) -> Result<Config, ConfigError> {
        let text = format!("{text}\n");
        let with_token = if text.contains("[threatjammer]") {
            text.replacen(
                "[threatjammer]\n",
                &format!("[threatjammer]\nbearer_token = \"{TOKEN}\"\n"),
                1,
            )
        } else {
            format!("{text}\n[threatjammer]\nbearer_token = \"{TOKEN}\"\n")
        };
        Config::from_toml_str(&with_token, Some(Path::new(FILE)), &opts(), None)
    }

    fn parse_ok(text: &str) -> Config {
        match parse(text) {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// Asserts that `text` is refused with a message naming FILE and `key`,
    /// and not containing the token. Returns the message.
    fn refused(text: &str, key: &str) -> String {
        let err = parse(text).expect_err("the configuration should be refused");
        let msg = err.to_string();
        assert!(
            msg.starts_with(FILE),
            "message does not name the file: {msg}"
        );
        assert!(msg.contains(key), "message does not name {key:?}: {msg}");
        assert!(!msg.contains(TOKEN), "message leaks the token: {msg}");
        msg
    }

    fn invalid_key(err: &ConfigError) -> &str {
        match err {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected ConfigError::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_toml_str("", None, &dry(), None).unwrap();
        let expected = Config::default();
        assert_eq!(c, expected);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/tjfwd"));
        let tj = &c.threatjammer;
        assert_eq!(tj.api_url.as_str(), DEFAULT_API_URL);
        assert!(tj.token.is_none());
        assert!(tj.track_login);
        assert!(!tj.track_session);
        assert_eq!(tj.ttl, 86_400);
        assert_eq!(tj.category, "ABUSE");
        assert_eq!(tj.tags, ["COWRIE", "LOGIN", "SESSION"]);
        assert!(!tj.allow_insecure_http);
        assert_eq!(c.input.cowrie_json, None);
        assert_eq!(c.input.start_at, StartAt::End);
        assert_eq!(c.input.poll_interval, Duration::from_millis(500));
        assert_eq!(c.input.max_line_bytes, 1024 * 1024);
        assert_eq!(c.input.listen_tcp, None);
        assert_eq!(c.input.max_connections, 8);
        assert!(c.notes.is_empty());
        let s = &c.schedule;
        assert_eq!(s.batch_size, 1000);
        assert_eq!(s.flush_interval, Duration::from_secs(60));
        assert_eq!(s.max_requests_per_minute, 6);
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.max_backoff, Duration::from_secs(600));
        assert_eq!(s.rereport_after, Duration::ZERO);
        assert_eq!(s.rate_window, Duration::from_secs(60));
        assert!(!c.filter.report_non_public);
        assert!(c.filter.allowlist.is_empty());
        assert_eq!(c.storage.cache_capacity, 32 * 1024 * 1024);
        assert!(c.warnings.is_empty());
        assert_eq!(c.path, None);
    }

    #[test]
    fn empty_sections_are_defaults() {
        let text = "[threatjammer]\n[input]\n[schedule]\n[filter]\n[storage]\n";
        let c = Config::from_toml_str(text, None, &dry(), None).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn default_for_tests_has_defaults_and_no_token() {
        let c = Config::default_for_tests(PathBuf::from("/tmp/x"));
        assert_eq!(c.state_dir, PathBuf::from("/tmp/x"));
        assert!(c.threatjammer.token.is_none());
        assert_eq!(c.schedule, Schedule::default());
        assert_eq!(c.path, None);
    }

    const FULL: &str = r#"
state_dir = "/srv/tjfwd"

[threatjammer]
api_url = "https://london.report.threatjammer.com/v1/ip"
bearer_token = "s3cr3t-T0KEN-value-42"
track_login = false
track_session = true
ttl = 3600
category = "MY_SET_2"
tags = "COWRIE, SSH"
allow_insecure_http = false

[input]
cowrie_json = "/home/cowrie/cowrie/var/log/cowrie/cowrie.json"
start_at = "beginning"
poll_interval = "250ms"
max_line_bytes = "2MiB"
listen_tcp = "127.0.0.1:9000"
max_connections = 16

[schedule]
batch_size = 500
flush_interval = "1h 30m"
max_requests_per_minute = 3
request_timeout = "10s"
max_backoff = "5m"
rereport_after = "1h"

[filter]
report_non_public = true
allowlist = ["192.0.2.0/24", "198.51.100.7", "2001:db8::/32", "2001:db8::1", "::ffff:203.0.113.0/120"]

[storage]
cache_capacity = "64MiB"
"#;

    #[test]
    fn full_valid_file() {
        let c = Config::from_toml_str(FULL, Some(Path::new(FILE)), &opts(), None).unwrap();
        assert_eq!(c.path.as_deref(), Some(Path::new(FILE)));
        assert_eq!(c.state_dir, PathBuf::from("/srv/tjfwd"));
        let tj = &c.threatjammer;
        assert_eq!(
            tj.api_url.as_str(),
            "https://london.report.threatjammer.com/v1/ip"
        );
        assert_eq!(tj.token.as_ref().unwrap().expose(), TOKEN);
        assert!(!tj.track_login);
        assert!(tj.track_session);
        assert_eq!(tj.ttl, 3600);
        assert_eq!(tj.category, "MY_SET_2");
        assert_eq!(tj.tags, ["COWRIE", "SSH"]);
        assert_eq!(
            c.input.cowrie_json.as_deref(),
            Some(Path::new("/home/cowrie/cowrie/var/log/cowrie/cowrie.json"))
        );
        assert_eq!(c.input.start_at, StartAt::Beginning);
        assert_eq!(c.input.poll_interval, Duration::from_millis(250));
        assert_eq!(c.input.max_line_bytes, 2 * 1024 * 1024);
        assert_eq!(
            c.input.listen_tcp,
            Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        assert_eq!(c.input.max_connections, 16);
        let s = &c.schedule;
        assert_eq!(s.batch_size, 500);
        assert_eq!(s.flush_interval, Duration::from_secs(5400));
        assert_eq!(s.max_requests_per_minute, 3);
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert_eq!(s.max_backoff, Duration::from_secs(300));
        assert_eq!(s.rereport_after, Duration::from_secs(3600));
        assert_eq!(s.rate_window, Duration::from_secs(60));
        assert!(c.filter.report_non_public);
        let nets: Vec<String> = c.filter.allowlist.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            nets,
            [
                "192.0.2.0/24",
                "198.51.100.7/32",
                "2001:db8::/32",
                "2001:db8::1/128",
                "203.0.113.0/24"
            ]
        );
        assert_eq!(c.storage.cache_capacity, 64 * 1024 * 1024);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn tags_as_string_and_as_list() {
        let c = parse_ok("[threatjammer]\ntags = \" COWRIE ,LOGIN,SSH2 \"");
        assert_eq!(c.threatjammer.tags, ["COWRIE", "LOGIN", "SSH2"]);
        let c = parse_ok("[threatjammer]\ntags = [\"COWRIE\", \" LOGIN \"]");
        assert_eq!(c.threatjammer.tags, ["COWRIE", "LOGIN"]);
        let c = parse_ok("[threatjammer]\ntags = []");
        assert!(c.threatjammer.tags.is_empty());
        let c = parse_ok("[threatjammer]\ntags = \"COWRIE,COWRIE\"");
        assert_eq!(c.threatjammer.tags, ["COWRIE"]);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn refuses_bad_tags() {
        let msg = refused(
            "[threatjammer]\ntags = \"COWRIE,login\"",
            "[threatjammer] tags",
        );
        assert!(msg.contains("\"LOGIN\""), "{msg}");
        refused(
            "[threatjammer]\ntags = [\"COW-RIE\"]",
            "[threatjammer] tags",
        );
        refused("[threatjammer]\ntags = \"COWRIE,\"", "[threatjammer] tags");
        refused("[threatjammer]\ntags = [1]", "[threatjammer] tags");
        refused("[threatjammer]\ntags = 5", "[threatjammer] tags");
    }

    #[test]
    fn refuses_bad_category() {
        let msg = refused(
            "[threatjammer]\ncategory = \"abuse\"",
            "[threatjammer] category",
        );
        assert!(msg.contains("\"ABUSE\""), "{msg}");
        refused("[threatjammer]\ncategory = \"\"", "[threatjammer] category");
        refused(
            "[threatjammer]\ncategory = \"A B\"",
            "[threatjammer] category",
        );
    }

    #[test]
    fn refuses_unknown_key() {
        let msg = refused("[schedule]\nbatchsize = 10", "batchsize");
        assert!(
            msg.contains("batch_size"),
            "toml lists expected keys: {msg}"
        );
        assert!(msg.contains("line 2"), "{msg}");
        refused("statedir = \"/x\"", "statedir");
        refused("[inputs]\ncowrie_json = \"/x\"", "inputs");
    }

    #[test]
    fn refuses_malformed_url() {
        let msg = refused(
            "[threatjammer]\napi_url = \"not a url\"",
            "[threatjammer] api_url",
        );
        assert!(msg.contains("https://"), "{msg}");
        refused(
            "[threatjammer]\napi_url = \"https://\"",
            "[threatjammer] api_url",
        );
        refused(
            "[threatjammer]\napi_url = \"ftp://example.com/\"",
            "[threatjammer] api_url",
        );
        refused(
            "[threatjammer]\napi_url = \"https://user:pw@example.com/\"",
            "[threatjammer] api_url",
        );
    }

    #[test]
    fn refuses_http_to_non_loopback() {
        let msg = refused(
            "[threatjammer]\napi_url = \"http://dublin.report.threatjammer.com/v1/ip\"",
            "[threatjammer] api_url",
        );
        assert!(msg.contains("https"), "{msg}");
        assert!(msg.contains("allow_insecure_http"), "{msg}");
        refused(
            "[threatjammer]\napi_url = \"http://10.0.0.1:8080/v1/ip\"",
            "[threatjammer] api_url",
        );
    }

    #[test]
    fn accepts_http_to_loopback() {
        for url in [
            "http://127.0.0.1:8080/v1/ip",
            "http://127.3.2.1/v1/ip",
            "http://[::1]:9000/v1/ip",
            "http://localhost:8080/v1/ip",
            "http://LOCALHOST/v1/ip",
        ] {
            let c = parse_ok(&format!("[threatjammer]\napi_url = \"{url}\""));
            assert_eq!(c.threatjammer.api_url.scheme(), "http");
            assert!(c.warnings.is_empty(), "{url}: {:?}", c.warnings);
        }
    }

    #[test]
    fn allow_insecure_http_accepts_http_with_a_warning() {
        let c = parse_ok(
            "[threatjammer]\napi_url = \"http://10.0.0.1/v1/ip\"\nallow_insecure_http = true",
        );
        assert!(c.threatjammer.allow_insecure_http);
        assert_eq!(c.threatjammer.api_url.as_str(), "http://10.0.0.1/v1/ip");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("unencrypted"));
    }

    #[test]
    fn refuses_ttl_zero_or_negative() {
        let msg = refused("[threatjammer]\nttl = 0", "[threatjammer] ttl");
        assert!(msg.contains("greater than 0"), "{msg}");
        refused("[threatjammer]\nttl = -5", "[threatjammer] ttl");
    }

    #[test]
    fn refuses_batch_size_out_of_range() {
        let msg = refused("[schedule]\nbatch_size = 0", "[schedule] batch_size");
        assert!(msg.contains("between 1 and 1000"), "{msg}");
        let msg = refused("[schedule]\nbatch_size = 1001", "[schedule] batch_size");
        assert!(msg.contains("1001"), "{msg}");
        assert_eq!(
            parse_ok("[schedule]\nbatch_size = 1").schedule.batch_size,
            1
        );
        assert_eq!(
            parse_ok("[schedule]\nbatch_size = 1000")
                .schedule
                .batch_size,
            1000
        );
    }

    #[test]
    fn error_message_format() {
        let err = parse("[schedule]\nbatch_size = 5000").unwrap_err();
        assert_eq!(invalid_key(&err), "[schedule] batch_size");
        assert_eq!(
            err.to_string(),
            "/etc/tjfwd/tjfwd.toml: [schedule] batch_size = 5000 is out of range: it must be \
             between 1 and 1000 (the API takes at most 1000 addresses a request)"
        );
        // Without a file, the configuration is named `<config>`.
        let err =
            Config::from_toml_str("[schedule]\nbatch_size = 0", None, &dry(), None).unwrap_err();
        assert!(err.to_string().starts_with("<config>: "), "{err}");
    }

    #[test]
    fn refuses_max_requests_per_minute_zero_and_warns_above_limit() {
        refused(
            "[schedule]\nmax_requests_per_minute = 0",
            "[schedule] max_requests_per_minute",
        );
        let c = parse_ok("[schedule]\nmax_requests_per_minute = 10");
        assert_eq!(c.schedule.max_requests_per_minute, 10);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn refuses_missing_token() {
        let err = Config::from_toml_str("", Some(Path::new(FILE)), &opts(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(msg.contains("bearer_token_file"), "{msg}");
        assert!(msg.contains(TOKEN_ENV), "{msg}");
        assert!(msg.contains("--dry-run"), "{msg}");
        assert_eq!(invalid_key(&err), "[threatjammer] bearer_token");
        // An empty environment variable counts as unset.
        let err = Config::from_toml_str("", Some(Path::new(FILE)), &opts(), Some("  ".into()));
        assert!(err.is_err());
    }

    #[test]
    fn missing_token_is_fine_in_dry_run() {
        let c = Config::from_toml_str("", Some(Path::new(FILE)), &dry(), None).unwrap();
        assert!(c.threatjammer.token.is_none());
    }

    #[test]
    fn refuses_empty_or_malformed_inline_token() {
        let text = "[threatjammer]\nbearer_token = \"  \"\n";
        let err = Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
        assert_eq!(invalid_key(&err), "[threatjammer] bearer_token");
        assert!(err.to_string().starts_with(FILE));
        let text = "[threatjammer]\nbearer_token = \"two words\"\n";
        let err = Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
        assert!(!err.to_string().contains("two words"), "{err}");
    }

    #[test]
    fn refuses_both_token_keys() {
        let text = format!(
            "[threatjammer]\nbearer_token = \"{TOKEN}\"\nbearer_token_file = \"/etc/tjfwd/token\"\n"
        );
        let err = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(msg.contains("bearer_token_file"), "{msg}");
        assert!(msg.contains("both"), "{msg}");
        assert!(!msg.contains(TOKEN), "{msg}");
    }

    fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(content.as_bytes()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn token_from_file_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "token", &format!("\n  {TOKEN}\n\n"), 0o600);
        let config = dir.path().join("tjfwd.toml");
        let text = "state_dir = \"state\"\n[threatjammer]\nbearer_token_file = \"token\"\n\
                    [input]\ncowrie_json = \"log/cowrie.json\"\n";
        let c =
            Config::from_toml_str(text, Some(&config), &opts(), Some("from-env".into())).unwrap();
        assert_eq!(c.threatjammer.token.as_ref().unwrap().expose(), TOKEN);
        assert_eq!(c.state_dir, dir.path().join("state"));
        assert_eq!(
            c.input.cowrie_json.as_deref(),
            Some(dir.path().join("log/cowrie.json").as_path())
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn refuses_empty_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = write_file(dir.path(), "token", " \n\n", 0o600);
        let text = format!(
            "[threatjammer]\nbearer_token_file = \"{}\"\n",
            token.display()
        );
        let err = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(msg.contains("[threatjammer] bearer_token_file"), "{msg}");
        assert!(msg.contains(&token.display().to_string()), "{msg}");
        assert!(msg.contains("empty"), "{msg}");
    }

    #[test]
    fn refuses_unreadable_or_malformed_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[threatjammer]\nbearer_token_file = \"missing\"\n";
        let config = dir.path().join("tjfwd.toml");
        let err = Config::from_toml_str(text, Some(&config), &opts(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[threatjammer] bearer_token_file"), "{msg}");
        assert!(msg.contains(&dir.path().join("missing").display().to_string()));

        // A file that is not a token: its content is never printed.
        write_file(dir.path(), "token", "line one\nline two\n", 0o600);
        let text = "[threatjammer]\nbearer_token_file = \"token\"\n";
        let err = Config::from_toml_str(text, Some(&config), &opts(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[threatjammer] bearer_token_file"), "{msg}");
        assert!(!msg.contains("line one"), "{msg}");
    }

    #[test]
    fn token_from_env() {
        let c = Config::from_toml_str(
            "",
            Some(Path::new(FILE)),
            &opts(),
            Some(format!(" {TOKEN}\n")),
        )
        .unwrap();
        assert_eq!(c.threatjammer.token.unwrap().expose(), TOKEN);
        // The file's token wins over the environment.
        let text = "[threatjammer]\nbearer_token = \"inline\"\n";
        let c = Config::from_toml_str(text, None, &opts(), Some(TOKEN.into())).unwrap();
        assert_eq!(c.threatjammer.token.unwrap().expose(), "inline");
        // A malformed env token is refused without being printed.
        let err = Config::from_toml_str("", None, &opts(), Some("a b".into())).unwrap_err();
        assert_eq!(invalid_key(&err), TOKEN_ENV);
    }

    #[test]
    fn refuses_bad_durations() {
        let msg = refused(
            "[schedule]\nflush_interval = \"soon\"",
            "[schedule] flush_interval",
        );
        assert!(msg.contains("\"soon\""), "{msg}");
        assert!(msg.contains("60s"), "{msg}");
        let msg = refused("[schedule]\nmax_backoff = 600", "[schedule] max_backoff");
        assert!(msg.contains("\"600s\""), "{msg}");
        refused(
            "[schedule]\nrequest_timeout = \"0s\"",
            "[schedule] request_timeout",
        );
        refused(
            "[schedule]\nflush_interval = \"0s\"",
            "[schedule] flush_interval",
        );
        refused(
            "[schedule]\nrereport_after = true",
            "[schedule] rereport_after",
        );
        refused("[input]\npoll_interval = \"0ms\"", "[input] poll_interval");
        let msg = refused("[input]\npoll_interval = \"61s\"", "[input] poll_interval");
        assert!(msg.contains("60s"), "{msg}");
        assert_eq!(
            parse_ok("[input]\npoll_interval = \"60s\"")
                .input
                .poll_interval,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn refuses_bad_start_at() {
        let msg = refused("[input]\nstart_at = \"middle\"", "[input] start_at");
        assert!(msg.contains("\"beginning\""), "{msg}");
    }

    #[test]
    fn refuses_empty_paths() {
        refused("state_dir = \"\"", "state_dir");
        refused("[input]\ncowrie_json = \"\"", "[input] cowrie_json");
    }

    #[test]
    fn refuses_bad_cidr() {
        let msg = refused(
            "[filter]\nallowlist = [\"192.0.2.0/24\", \"10.0.0.300/8\"]",
            "[filter] allowlist",
        );
        assert!(msg.contains("\"10.0.0.300/8\""), "{msg}");
        refused(
            "[filter]\nallowlist = [\"192.0.2.0/33\"]",
            "[filter] allowlist",
        );
        refused(
            "[filter]\nallowlist = [\"example.com\"]",
            "[filter] allowlist",
        );
    }

    #[test]
    fn cache_capacity_forms_and_refusals() {
        assert_eq!(
            parse_ok("[storage]\ncache_capacity = \"1 GiB\"")
                .storage
                .cache_capacity,
            1 << 30
        );
        assert_eq!(
            parse_ok("[storage]\ncache_capacity = 2097152")
                .storage
                .cache_capacity,
            2 << 20
        );
        let msg = refused(
            "[storage]\ncache_capacity = \"lots\"",
            "[storage] cache_capacity",
        );
        assert!(msg.contains("\"lots\""), "{msg}");
        let msg = refused(
            "[storage]\ncache_capacity = \"512KiB\"",
            "[storage] cache_capacity",
        );
        assert!(msg.contains("1MiB"), "{msg}");
        refused("[storage]\ncache_capacity = -1", "[storage] cache_capacity");
    }

    #[test]
    fn max_line_bytes_forms_and_refusals() {
        let size = |text: &str| parse_ok(text).input.max_line_bytes;
        assert_eq!(size("[input]\nmax_line_bytes = \"64KiB\""), 64 * 1024);
        assert_eq!(size("[input]\nmax_line_bytes = \"1 KiB\""), 1024);
        assert_eq!(size("[input]\nmax_line_bytes = \"64MiB\""), 64 << 20);
        assert_eq!(size("[input]\nmax_line_bytes = 4096"), 4096);
        let msg = refused(
            "[input]\nmax_line_bytes = \"lots\"",
            "[input] max_line_bytes",
        );
        assert!(msg.contains("\"lots\""), "{msg}");
        assert!(msg.contains("1MiB"), "{msg}");
        let msg = refused("[input]\nmax_line_bytes = 1023", "[input] max_line_bytes");
        assert!(msg.contains("between 1KiB and 64MiB"), "{msg}");
        refused(
            "[input]\nmax_line_bytes = \"65MiB\"",
            "[input] max_line_bytes",
        );
        refused("[input]\nmax_line_bytes = -1", "[input] max_line_bytes");
        refused("[input]\nmax_line_bytes = 1.5", "[input] max_line_bytes");
    }

    #[test]
    fn listen_tcp_forms_warnings_and_refusals() {
        let c = parse_ok("[input]\nlisten_tcp = \"[::1]:9000\"");
        assert_eq!(c.input.listen_tcp, Some("[::1]:9000".parse().unwrap()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = parse_ok("[input]\nlisten_tcp = \" 127.0.0.2:9000 \"");
        assert_eq!(c.input.listen_tcp, Some("127.0.0.2:9000".parse().unwrap()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Allowed, with a warning: the port takes unauthenticated input.
        for addr in ["0.0.0.0:9000", "192.0.2.1:9000", "[::]:9000"] {
            let c = parse_ok(&format!("[input]\nlisten_tcp = \"{addr}\""));
            assert_eq!(c.input.listen_tcp, Some(addr.parse().unwrap()));
            assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
            let w = &c.warnings[0];
            assert!(w.starts_with(FILE), "{w}");
            assert!(w.contains("[input] listen_tcp"), "{w}");
            assert!(w.contains("unauthenticated"), "{w}");
        }
        for bad in [
            "localhost:9000",
            "127.0.0.1",
            "::1:9000",
            "127.0.0.1:70000",
            "",
        ] {
            let msg = refused(
                &format!("[input]\nlisten_tcp = \"{bad}\""),
                "[input] listen_tcp",
            );
            assert!(msg.contains("127.0.0.1:9000"), "{msg}");
        }
        let msg = refused(
            "[input]\nlisten_tcp = \"127.0.0.1:0\"",
            "[input] listen_tcp",
        );
        assert!(msg.contains("port 0"), "{msg}");
        // A number is a type error.
        assert!(matches!(
            parse("[input]\nlisten_tcp = 9000").unwrap_err(),
            ConfigError::Parse { .. }
        ));
    }

    #[test]
    fn max_connections_range() {
        assert_eq!(
            parse_ok("[input]\nmax_connections = 1")
                .input
                .max_connections,
            1
        );
        assert_eq!(
            parse_ok("[input]\nmax_connections = 1024")
                .input
                .max_connections,
            1024
        );
        for n in [0, -1, 1025] {
            let msg = refused(
                &format!("[input]\nmax_connections = {n}"),
                "[input] max_connections",
            );
            assert!(msg.contains("between 1 and 1024"), "{msg}");
        }
    }

    #[test]
    fn type_errors_are_parse_errors_naming_the_file() {
        let err = parse("[threatjammer]\ntrack_login = \"yes\"").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(msg.contains("track_login"), "{msg}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = Config::from_toml_str(FULL, Some(Path::new(FILE)), &opts(), None).unwrap();
        assert_eq!(c.threatjammer.token.as_ref().unwrap().expose(), TOKEN);
        let debug = format!("{c:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let pretty = format!("{c:#?}");
        assert!(!pretty.contains(TOKEN));
        let secret = Secret::new(TOKEN.to_string());
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert!(!format!("{:?}", c.clone()).contains(TOKEN));
    }

    /// Parse errors on lines holding a secret must not quote it.
    #[test]
    fn parse_errors_redact_the_token() {
        let cases = [
            // Unquoted value: the error points at the token itself.
            format!("[threatjammer]\nbearer_token = {TOKEN}\n"),
            // Unterminated string.
            format!("[threatjammer]\nbearer_token = \"{TOKEN}\n"),
            // Key in the wrong table: unknown field.
            format!("bearer_token = \"{TOKEN}\"\n"),
            // Misspelt key: unknown field, quoted line.
            format!("[threatjammer]\nbearer_tokn = \"{TOKEN}\"\n"),
            // Duplicate key.
            format!("[threatjammer]\nbearer_token = \"{TOKEN}\"\nbearer_token = \"{TOKEN}\"\n"),
            // Inline table.
            format!("threatjammer = {{ bearer_token = \"{TOKEN}\", bogus = 1 }}\n"),
            // Missing `=`.
            format!("[threatjammer]\nbearer_token \"{TOKEN}\"\n"),
            // Wrong type: serde quotes the value.
            "[threatjammer]\nbearer_token = 987654321\n".to_string(),
            // Multi-line string in an unknown key.
            format!("[threatjammer]\napi_token = \"\"\"\n{TOKEN}\n\"\"\"\n"),
        ];
        for text in &cases {
            let err =
                Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None).expect_err(text);
            let msg = err.to_string();
            assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {msg}");
            assert!(msg.starts_with(FILE), "{msg}");
            assert!(!msg.contains(TOKEN), "token leaked for {text:?}:\n{msg}");
            assert!(!msg.contains("987654321"), "value leaked:\n{msg}");
            assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
        }
        // The redacted snippet still points at the line.
        let text = format!("[threatjammer]\nbearer_token = {TOKEN}\n");
        let msg = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("bearer_token = \"<redacted>\""), "{msg}");
    }

    #[test]
    fn parse_errors_keep_the_snippet_of_other_lines() {
        let text = format!("[threatjammer]\nbearer_token = \"{TOKEN}\"\nttl = \"long\"\n");
        let msg = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("3 | ttl = \"long\""), "{msg}");
        assert!(msg.contains('^'), "{msg}");
        assert!(!msg.contains(TOKEN), "{msg}");
        // A bearer_token_file path is not a secret and stays visible.
        let text = "[threatjammer]\nbearer_token_file = /etc/tjfwd/token\n";
        let msg = Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/etc/tjfwd/token"), "{msg}");
    }

    #[test]
    fn load_reads_the_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(
            dir.path(),
            "tjfwd.toml",
            &format!("state_dir = \"s\"\n[threatjammer]\nbearer_token = \"{TOKEN}\"\n"),
            0o600,
        );
        let c = Config::load(&path, &opts()).unwrap();
        assert_eq!(c.path.as_deref(), Some(path.as_path()));
        assert_eq!(c.state_dir, dir.path().join("s"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        let missing = dir.path().join("nope.toml");
        let err = Config::load(&missing, &opts()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().starts_with(&missing.display().to_string()));
    }

    #[test]
    fn warns_about_readable_inline_token() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[threatjammer]\nbearer_token = \"{TOKEN}\"\n");
        // 0640 with tjfwd's own group (the file's here) is fine: see
        // secret_readers_of_another_group for a group of other users.
        for (mode, warned) in [(0o644, true), (0o640, false), (0o604, true), (0o600, false)] {
            let path = write_file(dir.path(), "tjfwd.toml", &text, mode);
            let c = Config::load(&path, &opts()).unwrap();
            assert_eq!(
                c.warnings.len(),
                usize::from(warned),
                "mode {mode:o}: {:?}",
                c.warnings
            );
            if warned {
                let w = &c.warnings[0];
                assert!(w.contains("chmod 600"), "{w}");
                assert!(w.contains("bearer_token_file"), "{w}");
                assert!(w.contains(&path.display().to_string()), "{w}");
                assert!(!w.contains(TOKEN), "{w}");
            }
        }
        // No inline token: a readable config file is fine.
        let token = write_file(dir.path(), "token", TOKEN, 0o600);
        let text = format!(
            "[threatjammer]\nbearer_token_file = \"{}\"\n",
            token.display()
        );
        let path = write_file(dir.path(), "tjfwd.toml", &text, 0o644);
        let c = Config::load(&path, &opts()).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn warns_about_world_readable_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tjfwd.toml");
        let text = "[threatjammer]\nbearer_token_file = \"token\"\n";
        for (mode, warned) in [(0o644, true), (0o604, true), (0o640, false), (0o600, false)] {
            write_file(dir.path(), "token", TOKEN, mode);
            let c = Config::from_toml_str(text, Some(&config), &opts(), None).unwrap();
            assert_eq!(
                c.warnings.len(),
                usize::from(warned),
                "mode {mode:o}: {:?}",
                c.warnings
            );
            if warned {
                let w = &c.warnings[0];
                assert!(w.contains("chmod 600"), "{w}");
                assert!(!w.contains(TOKEN), "{w}");
            }
        }
    }

    /// A file readable by a group tjfwd neither runs as nor owns its state
    /// with draws a warning; the package's root:tjfwd 0640 (the service's
    /// group owns the state directory) does not. Needs root (chown).
    #[test]
    fn secret_readers_of_another_group() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to give a file another group");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let token = write_file(dir.path(), "token", TOKEN, 0o640);
        let other_gid = 65534; // nogroup
        std::os::unix::fs::chown(&token, Some(0), Some(other_gid)).unwrap();
        let text = format!(
            "state_dir = \"{}\"\n[threatjammer]\nbearer_token_file = \"{}\"\n",
            state.display(),
            token.display()
        );
        let c = Config::from_toml_str(&text, None, &opts(), None).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let w = &c.warnings[0];
        assert!(w.contains("group 65534") && w.contains("0640"), "{w}");
        assert!(w.contains(&format!("chmod 600 {}", token.display())), "{w}");
        assert!(!w.contains(TOKEN), "{w}");
        // The group owning the state directory is the service's: quiet.
        std::os::unix::fs::chown(&state, Some(0), Some(other_gid)).unwrap();
        let c = Config::from_toml_str(&text, None, &opts(), None).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // World-readable is never fine.
        fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::from_toml_str(&text, None, &opts(), None).unwrap();
        assert!(c.warnings[0].contains("every user"), "{:?}", c.warnings);
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn ca_file_is_read_at_load_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "ca.pem", &ca_pem(), 0o644);
        let config = dir.path().join("tjfwd.toml");
        let text = "[threatjammer]\nca_file = \"ca.pem\"\n";
        let c = Config::from_toml_str(text, Some(&config), &dry(), None).unwrap();
        assert_eq!(c.threatjammer.ca_file, Some(dir.path().join("ca.pem")));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let out = c.redacted_toml();
        assert!(out.contains("ca_file = "), "{out}");
        let back = Config::from_toml_str(&out, Some(&config), &dry(), None).unwrap();
        assert_eq!(back.threatjammer.ca_file, c.threatjammer.ca_file);
        // Not set: the public roots, and nothing about it in the output.
        assert_eq!(parse_ok("").threatjammer.ca_file, None);
        assert!(!parse_ok("").redacted_toml().contains("ca_file"));
    }

    #[test]
    fn refuses_missing_empty_or_non_pem_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tjfwd.toml");
        let bad_der = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
        let bad_b64 = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        for (content, expect) in [
            (None, "cannot read it"),
            (Some(""), "no PEM certificate"),
            (Some("just some text\n"), "no PEM certificate"),
            (Some(bad_b64), "malformed PEM"),
            (Some(bad_der), "not a valid X.509"),
        ] {
            let ca = dir.path().join("ca.pem");
            let _ = fs::remove_file(&ca);
            if let Some(c) = content {
                write_file(dir.path(), "ca.pem", c, 0o644);
            }
            let text = "[threatjammer]\nca_file = \"ca.pem\"\n";
            let err = Config::from_toml_str(text, Some(&config), &dry(), None).unwrap_err();
            let msg = err.to_string();
            assert_eq!(invalid_key(&err), "[threatjammer] ca_file", "{msg}");
            assert!(msg.contains(expect), "{content:?}: {msg}");
            assert!(msg.contains(&ca.display().to_string()), "{msg}");
            assert!(msg.starts_with(&config.display().to_string()), "{msg}");
        }
        let err = Config::from_toml_str("[threatjammer]\nca_file = \"\"\n", None, &dry(), None)
            .unwrap_err();
        assert_eq!(invalid_key(&err), "[threatjammer] ca_file");
    }

    #[test]
    fn redacted_toml_hides_the_token_and_round_trips() {
        let c = Config::from_toml_str(FULL, Some(Path::new(FILE)), &opts(), None).unwrap();
        let out = c.redacted_toml();
        assert!(!out.contains(TOKEN), "{out}");
        assert!(out.contains("bearer_token = \"<redacted>\""), "{out}");
        let back = Config::from_toml_str(&out, Some(Path::new(FILE)), &opts(), None)
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(
            back.threatjammer.token.as_ref().unwrap().expose(),
            "<redacted>"
        );
        let mut expected = c.clone();
        expected.threatjammer.token = back.threatjammer.token.clone();
        assert_eq!(back, expected, "{out}");

        assert!(out.contains("listen_tcp = \"127.0.0.1:9000\""), "{out}");
        assert!(out.contains("max_line_bytes = \"2MiB\""), "{out}");
        assert!(out.contains("max_connections = 16"), "{out}");

        // Defaults, no token, odd sizes, IPv6.
        let mut c = Config::default_for_tests(PathBuf::from("/tmp/state"));
        c.storage.cache_capacity = MIB + 1;
        c.input.max_line_bytes = 1500;
        c.input.listen_tcp = Some("[::1]:9100".parse().unwrap());
        let out = c.redacted_toml();
        assert!(!out.contains("bearer_token ="), "{out}");
        let back = Config::from_toml_str(&out, None, &dry(), None)
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(back, c, "{out}");
    }

    #[test]
    fn admin_listen_is_off_by_default_and_parsed() {
        assert_eq!(parse_ok("").admin.listen, None);
        let c = parse_ok("[admin]\nlisten = \"127.0.0.1:9108\"");
        assert_eq!(c.admin.listen, Some("127.0.0.1:9108".parse().unwrap()));
        let c = parse_ok("[admin]\nlisten = \" [::1]:9108 \"");
        assert_eq!(c.admin.listen, Some("[::1]:9108".parse().unwrap()));
        for bad in ["localhost:9108", "9108", "127.0.0.1", ""] {
            let msg = refused(&format!("[admin]\nlisten = \"{bad}\""), "[admin] listen");
            assert!(msg.contains("127.0.0.1:9108"), "{msg}");
        }
        let msg = refused("[admin]\nlisten = \"127.0.0.1:0\"", "[admin] listen");
        assert!(msg.contains("port 0"), "{msg}");
        assert!(matches!(
            parse("[admin]\nlisten = 9108").unwrap_err(),
            ConfigError::Parse { .. }
        ));
        assert!(matches!(
            parse("[admin]\nlisen = \"127.0.0.1:9108\"").unwrap_err(),
            ConfigError::Parse { .. }
        ));
        // Round trip through the effective configuration.
        let c = parse_ok("[admin]\nlisten = \"127.0.0.1:9108\"");
        let out = c.redacted_toml();
        assert!(
            out.contains("[admin]\nlisten = \"127.0.0.1:9108\""),
            "{out}"
        );
    }

    /// Builds from `text` as `load_with` would, with `$CREDENTIALS_DIRECTORY`
    /// = `creds` (no process environment involved).
    fn with_credentials(
        text: &str,
        env_token: Option<&str>,
        creds: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let source = Source {
            text,
            path: Some(Path::new(FILE)),
            resolve_base: Some(Path::new(FILE)),
            file_meta: None,
            credentials_dir: creds.map(Path::to_path_buf),
        };
        build(source, &opts(), env_token.map(str::to_string), None)
    }

    #[test]
    fn token_from_a_systemd_credential_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path();
        write_file(creds, CREDENTIAL_NAME, &format!("  {TOKEN}\n"), 0o400);
        // Only the credential: used.
        let c = with_credentials("", None, Some(creds)).unwrap();
        assert_eq!(c.threatjammer.token.unwrap().expose(), TOKEN);
        // Every other source wins over it.
        let c = with_credentials("", Some("from-env"), Some(creds)).unwrap();
        assert_eq!(c.threatjammer.token.unwrap().expose(), "from-env");
        let c = with_credentials(
            "[threatjammer]\nbearer_token = \"inline\"\n",
            None,
            Some(creds),
        )
        .unwrap();
        assert_eq!(c.threatjammer.token.unwrap().expose(), "inline");
        let file = write_file(creds, "other", "from-file", 0o600);
        let c = with_credentials(
            &format!(
                "[threatjammer]\nbearer_token_file = \"{}\"\n",
                file.display()
            ),
            None,
            Some(creds),
        )
        .unwrap();
        assert_eq!(c.threatjammer.token.unwrap().expose(), "from-file");
        // from_toml_str never looks at credentials.
        assert!(Config::from_toml_str("", None, &opts(), None).is_err());
    }

    #[test]
    fn a_missing_credential_is_no_token_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = with_credentials("", None, Some(dir.path())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("LoadCredential=bearer_token:"), "{msg}");
        for (content, what) in [
            ("", "is empty"),
            ("a b", "spaces"),
            ("\u{e9}t\u{e9}", "spaces"),
        ] {
            write_file(dir.path(), CREDENTIAL_NAME, content, 0o400);
            let err = with_credentials("", None, Some(dir.path())).unwrap_err();
            assert_eq!(invalid_key(&err), "systemd credential bearer_token");
            let msg = err.to_string();
            assert!(msg.contains(what), "{msg}");
            assert!(msg.contains(CREDENTIAL_NAME), "{msg}");
        }
        fs::write(dir.path().join(CREDENTIAL_NAME), b"\xff\xfe").unwrap();
        let msg = with_credentials("", None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not UTF-8"), "{msg}");
        // The credentials directory itself is not a file: a read error names it.
        fs::remove_file(dir.path().join(CREDENTIAL_NAME)).unwrap();
        fs::create_dir(dir.path().join(CREDENTIAL_NAME)).unwrap();
        let msg = with_credentials("", None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cannot read it"), "{msg}");
    }

    #[test]
    fn the_test_rate_window_knob_shortens_the_window_and_says_so() {
        let mut c = Config::default();
        c.apply_test_rate_window(None).unwrap();
        assert_eq!(c.schedule.rate_window, API_RATE_WINDOW);
        assert!(c.warnings.is_empty());
        assert!(!c.redacted_toml().contains("rate window"));

        c.apply_test_rate_window(Some("1500")).unwrap();
        assert_eq!(c.schedule.rate_window, Duration::from_millis(1500));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains(TEST_RATE_WINDOW_ENV),
            "{:?}",
            c.warnings
        );
        assert!(c.warnings[0].contains("1s 500ms"), "{:?}", c.warnings);
        assert!(c
            .redacted_toml()
            .contains("# rate window (not settable in TOML): 1s 500ms"));

        for bad in ["", "0", "-5", "1.5", "60001", "1s", "abc"] {
            let mut c = Config::default();
            let e = c.apply_test_rate_window(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(TEST_RATE_WINDOW_ENV), "{bad}: {e}");
            assert!(e.contains("unset it"), "{bad}: {e}");
            assert_eq!(c.schedule.rate_window, API_RATE_WINDOW);
        }
    }
}
