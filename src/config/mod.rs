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
//! The way back, [`Config::redacted_toml`] (`tjfwd check-config`), is the
//! resolved layer serialized: each section derives `Serialize` with the keys
//! of its raw layer and writes durations, sizes, addresses and paths in the
//! forms the raw layer reads (`config_kit::ser`); a [`Secret`] serializes as
//! `<redacted>`, and what is not a key (`path`, `warnings`, `notes`,
//! `rate_window`) is skipped. Parsing the output back gives the same
//! configuration, but for the token.
//!
//! This module owns the file's layout: which tables there are, in which
//! order, and the loader that assembles the [`Config`] from them. Each table
//! has a module of its own, holding its raw struct, its resolved struct and
//! that struct's `Default`, its constants and its `validate` function:
//!
//! - here, the sections that are not a target's: `input`, `filter`,
//!   `storage`, `queue`, `admin`;
//! - in `crate::targets`, each target's, read from `[targets.<name>]`: the
//!   `[targets]` table ([`Config::targets`]) is generated from the registry
//!   of `crate::targets` (`raw_config!` below also expands an empty one,
//!   where `[targets]` is not a key). Adding a target changes nothing here.
//!
//! Threat Jammer's history is the one thing this module knows of a target
//! by name: its keys used to sit in two top-level tables, `[threatjammer]`
//! and `[schedule]`, which are still read as a deprecated alias of
//! `[targets.threatjammer]` (`take_alias`: a warning, messages naming the
//! old tables, refused beside the new one, written back in the new form);
//! and cowrie.cfg supplies its report keys (below). A file must enable at
//! least one target (`no_target`).
//!
//! Adding a key to a section touches that section's file (a field in each
//! struct, its default, its check) and the documentation: README's table of
//! keys and the example `packaging/tjfwd.toml` (`config import-cowrie`
//! writes the keys it shows itself, in `cowrie_cfg/import.rs`). The
//! machinery the sections share is `crate::config_kit` (`Ctx`, the checks of
//! paths, durations and sizes; [`ConfigError`]; [`Secret`]; the formats
//! written back). `tests` holds the tests of the whole loader, and of each
//! section through it.
//!
//! The same checks serve Cowrie's cowrie.cfg: `crate::cowrie_cfg` turns its
//! `[output_threatjammer]` section into a `RawThreatJammer` and hands it, with
//! the JSON log's path, to `load_with` as `Supplied` values, which are checked
//! here with messages naming cowrie.cfg and `[output_threatjammer]`. There,
//! Threat Jammer is enabled by a token (not Cowrie's placeholder) or by its
//! table in the TOML file, which may then hold only its sending keys and
//! `ca_file`. Likewise `[output_abuseipdb]` supplies AbuseIPDB's key and
//! thresholds (`SuppliedAbuseIpdb`): a key (there, or in the environment
//! or a credential) or a `[targets.abuseipdb]` table enables it, and that
//! table must not set the keys cowrie.cfg supplies.
//!
//! Invariants of a [`Config`] produced by [`Config::load`],
//! [`Config::from_toml_str`] or `cowrie_cfg::load_config`:
//!
//! - At least one target is enabled ([`Config::targets`] is not empty).
//! - Threat Jammer's section, when present: `api_url` was set, is https, or
//!   http to a loopback host, or http with `allow_insecure_http = true`,
//!   carries no user name or password and is not on the service's old
//!   domain; `ca_file`, when set, was readable and held at least one valid
//!   PEM certificate when the configuration was loaded; `token` is `Some`
//!   unless `LoadOptions::dry_run` was set, a single non-empty run of
//!   printable ASCII without spaces; `ttl > 0`; `category` matches
//!   `[A-Z0-9_]+`; every tag matches `[A-Z0-9]+`; `1 <= batch_size <= 1000`;
//!   `max_requests_per_minute >= 1`; `flush_interval`, `request_timeout`,
//!   `max_backoff` are non-zero; `rate_window` is 60 s (shorter only through
//!   the test-only [`Config::apply_test_rate_window`]).
//! - `0 < poll_interval <= 60 s`.
//! - `1 KiB <= input.max_line_bytes <= 64 MiB`; `1 <= input.max_connections <= 1024`;
//!   `input.listen_tcp` has a non-zero port (a non-loopback one adds a warning).
//! - `storage.cache_capacity >= 1 MiB`; `queue.max_pending >= 1000`.
//! - `admin.listen`, when set, is a socket address (port 0 is refused).
//! - `feed.ttl > 0`; `feed.listen`, when set, has a non-zero port and is a
//!   loopback address unless `feed.allow_from` or `feed.token` restricts
//!   who may read the list.
//! - Each section of [`Config::targets`] holds its target's invariants.
//! - Paths taken from the file are absolute when the file was found by
//!   [`Config::load`] (they are joined to the file's directory).
//!
//! The bearer token comes from exactly one source, the first of:
//! `[targets.threatjammer] bearer_token`, `bearer_token_file`, the environment
//! variable `TJFWD_BEARER_TOKEN`, and — for [`Config::load`] and Cowrie's
//! cowrie.cfg, not for [`Config::from_toml_str`] — the systemd credential
//! [`CREDENTIAL_NAME`] (`$CREDENTIALS_DIRECTORY/bearer_token`, from
//! `LoadCredential=bearer_token:/etc/tjfwd/token` in the unit).
//!
//! The bearer token is a [`Secret`]: its `Debug` and `Display` print
//! `<redacted>`, and it never appears in a [`ConfigError`], in a warning, or in
//! [`Config::redacted_toml`]. toml's own parse errors quote the offending source
//! line; before such an error is shown, any line that may hold a secret is
//! redacted (see `config_kit::render_parse_error`), and the error is kept only
//! as text (it is not chained as a `source()`, which would print the original).

mod admin;
mod feed;
mod filter;
mod input;
mod queue;
mod storage;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_kit::{
    format_duration, render_parse_error, resolve_secret, ser, Ctx, SecretSources,
};
use crate::targets::abuseipdb::config::{self as abuseipdb, FromCowrie};
use crate::targets::threatjammer::config::{self as threatjammer, RawThreatJammer};
use crate::targets::threatjammer::schedule::{self, RawSchedule};
use crate::targets::threatjammer::RawSection as RawThreatJammerSection;
use crate::targets::{self, RawTargets, Targets, TARGET_NAMES};
use admin::RawAdmin;
use feed::RawFeed;
use filter::RawFilter;
use input::RawInput;
use queue::RawQueue;
use storage::RawStorage;

pub use crate::config_kit::{ConfigError, Secret};
pub use crate::targets::threatjammer::config::{
    ThreatJammer, CREDENTIALS_DIRECTORY_ENV, CREDENTIAL_NAME, SHUT_DOWN, TOKEN_ENV,
};
pub use crate::targets::threatjammer::schedule::{
    Schedule, API_RATE_WINDOW, API_REQUESTS_PER_MINUTE, MAX_BATCH_SIZE, TEST_RATE_WINDOW_ENV,
};
pub use crate::targets::threatjammer::Section as ThreatJammerSection;
pub use admin::Admin;
pub use feed::{Feed, DEFAULT_FEED_TTL, FEED_CREDENTIAL_NAME, TOKEN_ENV as FEED_TOKEN_ENV};
pub use filter::Filter;
pub use input::{
    Input, StartAt, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_LINE_BYTES, MAX_MAX_CONNECTIONS,
    MAX_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES,
};
pub use queue::{QueueLimits, DEFAULT_MAX_PENDING, MIN_MAX_PENDING};
pub use storage::Storage;

/// Default location of the state directory (sled database, control socket).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tjfwd";

/// Threat Jammer's `api_url` in [`Config::default_for_tests`]: loopback, on
/// the discard port, where nothing answers.
pub const TEST_API_URL: &str = "http://127.0.0.1:9/v1/ip";

/// How a configuration that does not come from a file is named in messages.
const NO_FILE: &str = "<config>";

/// Options of the command line that change how the configuration is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--dry-run`: nothing is sent, so a missing bearer token is not an error.
    pub dry_run: bool,
}

/// The validated configuration of tjfwd. See the module documentation for the
/// invariants that hold when it comes from a file. Serializes to the keys of
/// the file, the bearer token as `<redacted>` (see [`Config::redacted_toml`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The file it was loaded from, to name it in messages (None when built in code).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// Where the sled database and the control socket live.
    #[serde(serialize_with = "ser::path")]
    pub state_dir: PathBuf,
    /// Which cowrie log to tail, and how.
    pub input: Input,
    /// Which addresses are never reported.
    pub filter: Filter,
    /// Tuning of the on-disk queue.
    pub storage: Storage,
    /// `[queue]`.
    pub queue: QueueLimits,
    /// The admin HTTP endpoint (metrics, health).
    pub admin: Admin,
    /// `[feed]`: the denylist's lifetime, and its HTTP endpoint.
    pub feed: Feed,
    /// `[targets]`: the section of each enabled target, `[targets.<name>]`
    /// (Threat Jammer's also from the deprecated `[threatjammer]` and
    /// `[schedule]`, or from cowrie.cfg). Never empty from a file.
    #[serde(skip_serializing_if = "Targets::is_empty")]
    pub targets: Targets,
    /// Non-fatal problems found while loading, to log at start-up (never contain the token).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Informational remarks found while loading (for example where the
    /// settings came from), to log at info level at start-up (never contain the token).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Default for Config {
    /// All defaults, no target, no file (a file must enable a target).
    fn default() -> Self {
        Config {
            path: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            input: Input::default(),
            filter: Filter::default(),
            storage: Storage::default(),
            queue: QueueLimits::default(),
            admin: Admin::default(),
            feed: Feed::default(),
            targets: Targets::default(),
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
            env: Default::default(),
        };
        build(source, opts, env_token, None)
    }

    /// A configuration with every default and the given state directory,
    /// whose one target is Threat Jammer at [`TEST_API_URL`] (nothing
    /// listens there), without a token: tests set its `api_url` and token
    /// to a fake's ([`Config::threatjammer_mut`]).
    pub fn default_for_tests(state_dir: PathBuf) -> Config {
        let mut c = Config {
            state_dir,
            ..Config::default()
        };
        c.targets.threatjammer = Some(ThreatJammerSection::with_api_url(
            url::Url::parse(TEST_API_URL).expect("a valid URL"),
        ));
        c
    }

    /// Threat Jammer's section, when it is enabled.
    pub fn threatjammer(&self) -> Option<&ThreatJammerSection> {
        self.targets.threatjammer.as_ref()
    }

    /// Threat Jammer's section, to change (tests built in code).
    ///
    /// # Panics
    /// When Threat Jammer is not enabled.
    pub fn threatjammer_mut(&mut self) -> &mut ThreatJammerSection {
        self.targets
            .threatjammer
            .as_mut()
            .expect("Threat Jammer is enabled")
    }

    /// Threat Jammer's sending policy (batching, rate limit, flush
    /// interval), or its defaults when it is not enabled: what the views of
    /// a single target's sending (status, health, `recover`) read.
    pub fn schedule(&self) -> &Schedule {
        self.threatjammer()
            .map_or(&Schedule::DEFAULT, |tj| &tj.schedule)
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
        let window = Duration::from_millis(ms);
        if let Some(tj) = self.targets.threatjammer.as_mut() {
            tj.schedule.rate_window = window;
        }
        self.warnings.push(format!(
            "{TEST_RATE_WINDOW_ENV} is set: the rate window is {} instead of the API's {} \
             (for tests only; unset it in production)",
            format_duration(window),
            format_duration(API_RATE_WINDOW)
        ));
        Ok(())
    }

    /// Applies the test-only environment variable
    /// [`abuseipdb::config::TEST_DAY_ENV`](crate::targets::abuseipdb::config::TEST_DAY_ENV)
    /// (its value, if set): AbuseIPDB's day becomes that many seconds
    /// (1..=86400) instead of 24 hours, for the window of its `daily_limit`
    /// and the waits computed from the quota's day (a 429 without a hint
    /// waits for the next multiple of it since the epoch, "midnight"); a
    /// warning says so (logged at start, printed by `check-config`, which
    /// also shows the day). For tests of the binary that must not wait a
    /// day; never set it in production: AbuseIPDB's quota is per UTC day
    /// and would answer 429. Defaults computed from the day when the file
    /// was read (`flush_interval`) are not changed.
    pub fn apply_test_abuseipdb_day(&mut self, value: Option<&str>) -> Result<(), ConfigError> {
        use crate::targets::abuseipdb::config::{DAY, TEST_DAY_ENV};
        let Some(value) = value else {
            return Ok(());
        };
        let secs = value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=DAY.as_secs()).contains(s))
            .ok_or_else(|| ConfigError::Invalid {
                file: "environment".to_string(),
                key: TEST_DAY_ENV.to_string(),
                message: format!(
                    "{TEST_DAY_ENV} = {value:?} is not a number of seconds from 1 to 86400; \
                     it is for tests only: unset it"
                ),
            })?;
        let day = Duration::from_secs(secs);
        if let Some(ab) = self.targets.abuseipdb.as_mut() {
            ab.day = day;
        }
        self.warnings.push(format!(
            "{TEST_DAY_ENV} is set: AbuseIPDB's day is {} instead of {} (for tests only; unset \
             it in production)",
            format_duration(day),
            format_duration(DAY)
        ));
        Ok(())
    }

    /// The sections the targets are built from (for [`targets::start_enabled`]).
    pub fn target_sections(&self) -> targets::Sections<'_> {
        targets::Sections {
            targets: &self.targets,
        }
    }

    /// The effective configuration as TOML (for `tjfwd check-config`), with the
    /// token shown as `<redacted>`. Parsing it back gives the same configuration,
    /// except for the token. The body is this `Config` serialized: every
    /// section serializes to the keys of its raw layer.
    pub fn redacted_toml(&self) -> String {
        let mut out = String::from("# Effective tjfwd configuration");
        match &self.path {
            Some(p) => out.push_str(&format!(" (loaded from {})\n", p.display())),
            None => out.push_str(" (built in code)\n"),
        }
        if let Some(tj) = self.threatjammer() {
            if tj.report.token.is_none() {
                out.push_str("# No bearer token is configured (dry run only).\n");
            }
            if tj.schedule.rate_window != API_RATE_WINDOW {
                out.push_str(&format!(
                    "# rate window (not settable in TOML): {}\n",
                    format_duration(tj.schedule.rate_window)
                ));
            }
        }
        if let Some(ab) = self.targets.abuseipdb.as_ref() {
            if ab.day != crate::targets::abuseipdb::config::DAY {
                out.push_str(&format!(
                    "# AbuseIPDB day (not settable in TOML): {}\n",
                    format_duration(ab.day)
                ));
            }
        }
        if self.input.cowrie_json.is_none() {
            out.push_str("# [input] cowrie_json is not set: no file is tailed.\n");
        }
        out.push('\n');
        match toml::to_string(self) {
            Ok(body) => out.push_str(&body),
            Err(e) => out.push_str(&format!("# cannot render the configuration: {e}\n")),
        }
        out
    }
}

/// Defines `RawConfig`, the file as written (sections default to empty
/// tables), from the registry of `crate::targets` (`targets::registry!`
/// expands it with the list of the targets read from `[targets.<name>]`):
/// with none registered, `[targets]` is not a key of the file, so a file
/// that has one is refused as before, with the same list of expected keys.
/// `take_targets` gives the `[targets]` table as written either way.
macro_rules! raw_config {
    (@struct $($targets:tt)*) => {
        /// The file as written. Sections default to empty tables.
        #[derive(Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawConfig {
            /// `state_dir`: where the database lives (default /var/lib/tjfwd).
            state_dir: Option<PathBuf>,
            /// `[threatjammer]`: deprecated, the report keys of
            /// `[targets.threatjammer]`.
            threatjammer: Option<RawThreatJammer>,
            /// `[input]`: the cowrie.json tailer.
            #[serde(default)]
            input: RawInput,
            /// `[schedule]`: deprecated, the sending keys of
            /// `[targets.threatjammer]`.
            schedule: Option<RawSchedule>,
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
            /// `[feed]`: the denylist and its HTTP endpoint.
            #[serde(default)]
            feed: RawFeed,
            $($targets)*
        }
    };
    () => {
        raw_config!(@struct);

        impl RawConfig {
            fn take_targets(&mut self) -> RawTargets {
                RawTargets::default()
            }
        }
    };
    ($($registered:tt)+) => {
        raw_config!(@struct
            /// `[targets]`: one `[targets.<name>]` table per registered target.
            #[serde(default)]
            targets: RawTargets,
        );

        impl RawConfig {
            fn take_targets(&mut self) -> RawTargets {
                std::mem::take(&mut self.targets)
            }
        }
    };
}
#[cfg(test)]
use raw_config;

targets::registry!(raw_config);

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
    /// The `TJFWD_*` environment variables the targets' sections may take
    /// a secret from (empty: none).
    env: std::collections::BTreeMap<String, String>,
}

/// Threat Jammer's report keys and `[input] cowrie_json` supplied by another
/// file than the TOML one: Cowrie's cowrie.cfg (see `crate::cowrie_cfg`).
/// The TOML file must then not set them itself; it may give Threat Jammer's
/// sending keys and `ca_file`.
pub(crate) struct Supplied {
    /// The file they come from, as named in messages.
    pub(crate) file: String,
    /// How Threat Jammer's section is named in that file, e.g. `[output_threatjammer]`.
    pub(crate) section: String,
    /// Threat Jammer's report values, checked by the same rules as the TOML
    /// ones. A `bearer_token` there (a real one) enables the target.
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
    /// Completes the refusal of a configuration that enables no target (how
    /// that file enables one).
    pub(crate) target_hint: String,
    /// Warnings found while reading that file.
    pub(crate) warnings: Vec<String>,
    /// Informational remarks found while reading that file.
    pub(crate) notes: Vec<String>,
    /// AbuseIPDB's keys from that file.
    pub(crate) abuseipdb: SuppliedAbuseIpdb,
}

/// AbuseIPDB's API key and report thresholds supplied by another file than
/// the TOML one (cowrie.cfg's `[output_abuseipdb]`). A key there, one
/// given outside the files, or a `[targets.abuseipdb]` table in the TOML
/// file enables the target; that table may then hold every key but these.
pub(crate) struct SuppliedAbuseIpdb {
    /// How the section is named in that file, e.g. `[output_abuseipdb]`.
    pub(crate) section: String,
    /// The values, in tjfwd's units (the key not yet checked).
    pub(crate) values: FromCowrie,
    /// What that file calls each supplied key of `[targets.abuseipdb]`:
    /// (tjfwd's key, that file's).
    pub(crate) names: Vec<(&'static str, &'static str)>,
    /// Completes "no AbuseIPDB API key: ..." (how to give one there).
    pub(crate) key_hint: String,
}

/// Reads the TOML file `path` (None: an empty configuration, all defaults)
/// and builds the configuration, with Threat Jammer's report keys and `[input]
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
            env: SecretSources::process_env(),
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
        env: SecretSources::process_env(),
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
        env,
    } = source;
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
        secrets: SecretSources::default(),
    };
    let mut raw_targets = raw.take_targets();
    // How the file names Threat Jammer's section (the alias: its old tables).
    let tj_tables = take_alias(&mut ctx, &mut raw, &mut raw_targets)?;

    let state_dir = match raw.state_dir {
        Some(p) => ctx.path("state_dir", p)?,
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let mut env = env;
    if let Some(t) = env_token {
        env.insert(TOKEN_ENV.to_string(), t);
    }
    ctx.secrets = SecretSources {
        env,
        credentials_dir,
        state_dir: state_dir.clone(),
        file_meta: path.and(file_meta),
        dry_run: opts.dry_run,
    };

    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    // Beside cowrie.cfg: its context (Threat Jammer's report keys are
    // checked there), how the section is named there, how to give a token
    // there, how to enable a target there.
    let mut other: Option<(Ctx, String, String, String)> = None;
    // Threat Jammer's section, when cowrie.cfg supplies its report keys.
    let mut supplied_tj = None;
    // AbuseIPDB's, when cowrie.cfg supplies its key and thresholds.
    let mut supplied_aipdb = None;
    let input = match supplied {
        None => input::validate(&mut ctx, raw.input)?,
        Some(mut s) => {
            warnings.append(&mut s.warnings);
            notes.append(&mut s.notes);
            // The TOML file's Threat Jammer table, either form, enables it;
            // so does a token (cowrie.cfg's, or one given outside the files).
            let in_toml = raw_targets.threatjammer.take();
            let enabled = in_toml.is_some()
                || s.threatjammer.bearer_token.is_some()
                || threatjammer::token_outside(&ctx.secrets);
            let in_toml = in_toml.unwrap_or_default();
            let (report_sec, schedule_sec) = in_toml.tables(TJ_TABLE);
            let (mut toml_report, toml_schedule) = in_toml.split();
            refuse_supplied_keys(&ctx, report_sec, &toml_report, &raw.input, &s)?;
            let mut sctx = Ctx {
                file: s.file,
                base_dir: None,
                warnings: Vec::new(),
                secrets: SecretSources {
                    file_meta: None,
                    ..ctx.secrets.clone()
                },
            };
            let mut input = input::validate(&mut ctx, raw.input)?;
            input.cowrie_json = s.cowrie_json;
            if input.cowrie_json.is_none() && input.listen_tcp.is_none() {
                let (key, message) = s.no_input;
                return Err(sctx.invalid(&key, message));
            }
            if enabled {
                // ca_file is the TOML file's (cowrie.cfg has no such key).
                let ca_file = threatjammer::ca_file(&ctx, report_sec, toml_report.ca_file.take())?;
                let mut report = threatjammer::validate(&mut sctx, &s.section, s.threatjammer)?;
                report.ca_file = ca_file;
                let schedule = schedule::validate(&mut ctx, schedule_sec, toml_schedule)?;
                supplied_tj = Some(ThreatJammerSection { report, schedule });
            }
            supplied_aipdb = supplied_abuseipdb(
                &mut ctx,
                &mut sctx,
                raw_targets.abuseipdb.take(),
                s.abuseipdb,
                opts,
            )?;
            other = Some((sctx, s.section, s.token_hint, s.target_hint));
            input
        }
    };
    let filter = filter::validate(&ctx, raw.filter)?;
    let storage = storage::validate(&ctx, raw.storage)?;
    let queue = queue::validate(&ctx, raw.queue)?;
    let admin = admin::validate(&ctx, raw.admin)?;
    let feed = feed::validate(&mut ctx, raw.feed)?;
    let mut targets = Targets::validate(&mut ctx, raw_targets)?;
    if supplied_tj.is_some() {
        targets.threatjammer = supplied_tj;
    }
    if supplied_aipdb.is_some() {
        targets.abuseipdb = supplied_aipdb;
    }

    // Checked last: the other keys' mistakes are reported first, as they are
    // what a dry run or `check-config` without the token is meant to find.
    if targets.is_empty() {
        return Err(no_target(
            &ctx,
            other.as_ref().map(|o| (&o.0, o.3.as_str())),
        ));
    }
    if targets
        .threatjammer
        .as_ref()
        .is_some_and(|tj| tj.report.token.is_none())
        && !opts.dry_run
    {
        return Err(match &other {
            Some((sctx, section, hint, _)) => sctx.invalid(
                &format!("{section} bearer_token"),
                format!("no Threat Jammer bearer token: {hint}"),
            ),
            None => {
                let sec = tj_tables.0;
                ctx.invalid(
                    &format!("{sec} bearer_token"),
                    format!(
                        "no Threat Jammer bearer token: set {sec} bearer_token_file (a file \
                         holding the token, mode 600) or bearer_token, or the environment \
                         variable {TOKEN_ENV}, or pass the systemd credential {CREDENTIAL_NAME} \
                         (LoadCredential={CREDENTIAL_NAME}:/etc/tjfwd/token), or use --dry-run"
                    ),
                )
            }
        });
    }

    if let Some((sctx, ..)) = other {
        warnings.extend(sctx.warnings);
    }
    warnings.extend(ctx.warnings);
    Ok(Config {
        path: path.map(Path::to_path_buf),
        state_dir,
        input,
        filter,
        storage,
        queue,
        admin,
        feed,
        targets,
        warnings,
        notes,
    })
}

/// Threat Jammer's table.
const TJ_TABLE: &str = "[targets.threatjammer]";

/// The deprecated `[threatjammer]` and `[schedule]`: moved into
/// `raw_targets` as Threat Jammer's section, with a warning; refused beside
/// `[targets.threatjammer]`. Returns how the file names the section's
/// report keys and its sending keys.
fn take_alias(
    ctx: &mut Ctx,
    raw: &mut RawConfig,
    raw_targets: &mut RawTargets,
) -> Result<(&'static str, &'static str), ConfigError> {
    let (tj, schedule) = (raw.threatjammer.take(), raw.schedule.take());
    if tj.is_none() && schedule.is_none() {
        return Ok((TJ_TABLE, TJ_TABLE));
    }
    let old: Vec<&str> = [
        ("[threatjammer]", tj.is_some()),
        ("[schedule]", schedule.is_some()),
    ]
    .into_iter()
    .filter_map(|(t, set)| set.then_some(t))
    .collect();
    let old = old.join(" and ");
    if raw_targets.threatjammer.is_some() {
        return Err(ctx.invalid(
            TJ_TABLE,
            format!(
                "{TJ_TABLE} and {old} are both set: they are the same target, Threat Jammer \
                 ({old}: the deprecated form). Move the keys of {old} into {TJ_TABLE} and \
                 remove {old}"
            ),
        ));
    }
    ctx.warnings.push(format!(
        "{}: {old} {} deprecated: Threat Jammer's keys go in one table, {TJ_TABLE} \
         (`tjfwd check-config` prints the configuration in that form)",
        ctx.file,
        if old.contains(" and ") { "are" } else { "is" }
    ));
    raw_targets.threatjammer = Some(RawThreatJammerSection::from_alias(
        tj.unwrap_or_default(),
        schedule.unwrap_or_default(),
    ));
    Ok(("[threatjammer]", "[schedule]"))
}

/// The refusal of a configuration that enables no target; `other` is the
/// context of cowrie.cfg and how to enable a target there.
fn no_target(ctx: &Ctx, other: Option<(&Ctx, &str)>) -> ConfigError {
    let names = TARGET_NAMES.join(", ");
    let how = format!(
        "enable one with its table, [targets.<name>], in {} (README, \"Targets\", lists \
         each one's keys)",
        if ctx.file == NO_FILE {
            "the configuration file"
        } else {
            &ctx.file
        }
    );
    let why = format!(
        "no report target is enabled, so tjfwd would have nowhere to report. The targets \
         are: {names}"
    );
    let old = "tjfwd no longer reports to Threat Jammer unless told to: that service shut \
               down in 2024";
    match other {
        Some((sctx, hint)) => sctx.invalid("[targets]", format!("{why}: {how}, or {hint}. {old}")),
        None => ctx.invalid("[targets]", format!("{why}: {how}. {old}")),
    }
}

/// AbuseIPDB's section with cowrie.cfg (`sctx`): None when nothing enables
/// it (no table in the TOML file `ctx`, no key in cowrie.cfg nor outside
/// the files). The TOML table gives the keys cowrie.cfg does not, and must
/// not set those it does; the key is checked as cowrie.cfg's, the rest as
/// the TOML file's.
fn supplied_abuseipdb(
    ctx: &mut Ctx,
    sctx: &mut Ctx,
    in_toml: Option<abuseipdb::Raw>,
    a: SuppliedAbuseIpdb,
    opts: &LoadOptions,
) -> Result<Option<abuseipdb::Section>, ConfigError> {
    if let Some(name) = in_toml
        .as_ref()
        .and_then(|t| t.cowrie_keys_set().first().copied())
    {
        let key = format!("{AIPDB_TABLE} {name}");
        let theirs = a
            .names
            .iter()
            .find(|(ours, _)| *ours == name)
            .map_or("api_key", |(_, theirs)| theirs);
        return Err(ctx.invalid(
            &key,
            format!(
                "{key} is set here, but {} (--cowrie-config) supplies it, from {} {theirs}:                  remove {name} from {AIPDB_TABLE} in {} and set {theirs} in {} of {} instead                  (the API key can also come from the environment variable {} or the systemd                  credential {})",
                sctx.file,
                a.section,
                ctx.file,
                a.section,
                sctx.file,
                abuseipdb::KEY_ENV,
                abuseipdb::CREDENTIAL_NAME
            ),
        ));
    }
    let mut values = a.values;
    let enabled =
        in_toml.is_some() || values.api_key.is_some() || abuseipdb::key_outside(&ctx.secrets);
    if !enabled {
        return Ok(None);
    }
    let key = resolve_secret(
        sctx,
        &abuseipdb::key_spec(&a.section),
        values.api_key.take(),
        None,
    )?;
    values.api_key = key;
    let raw = in_toml.unwrap_or_default().with_cowrie(values);
    // The key is not in the TOML file (no warning about who may read it
    // there), and is known by now: a missing one is refused below, naming
    // cowrie.cfg, once the other keys are checked.
    let secrets = ctx.secrets.clone();
    ctx.secrets.file_meta = None;
    ctx.secrets.dry_run = true;
    let section = abuseipdb::validate(ctx, AIPDB_TABLE, raw);
    ctx.secrets = secrets;
    let section = section?;
    if section.api_key.is_none() && !opts.dry_run {
        return Err(sctx.invalid(
            &format!("{} api_key", a.section),
            format!("no AbuseIPDB API key: {}", a.key_hint),
        ));
    }
    Ok(Some(section))
}

/// AbuseIPDB's table.
const AIPDB_TABLE: &str = "[targets.abuseipdb]";

/// With `supplied`, the TOML file must not set what the other file supplies:
/// two places for one setting would leave the operator guessing which wins.
/// `report` is the TOML file's Threat Jammer table, named `sec`.
fn refuse_supplied_keys(
    ctx: &Ctx,
    sec: &str,
    report: &RawThreatJammer,
    input: &RawInput,
    s: &Supplied,
) -> Result<(), ConfigError> {
    if let Some(name) = report.set_keys().first() {
        let key = format!("{sec} {name}");
        return Err(ctx.invalid(
            &key,
            format!(
                "{key} is set here, but {} (--cowrie-config) supplies Threat Jammer's settings \
                 from its {} section: remove {name} from {sec} in {} and set it in {} of {} \
                 instead (the bearer token can also come from the environment variable \
                 {TOKEN_ENV})",
                s.file, s.section, ctx.file, s.section, s.file
            ),
        ));
    }
    if input.cowrie_json.is_some() {
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
