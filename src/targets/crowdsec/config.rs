//! The `[targets.crowdsec]` section: the Local API, the machine tjfwd logs
//! in as, what its decisions say, and its sending policy.
//!
//! The machine's password comes from exactly one source, the first of:
//! `password`, `password_file`, the environment variable [`PASSWORD_ENV`],
//! and the systemd credential [`CREDENTIAL_NAME`] (the rules of Threat
//! Jammer's token: `crate::config_kit::resolve_secret`). It is a
//! [`Secret`]: never printed. A missing password stops a real start, not a
//! dry run (see `CrowdSec::build`).
//!
//! Invariants of a [`Section`] from `validate`: `lapi_url` is https, or http
//! to a loopback host, or http with `allow_insecure_http = true`, carries no
//! user name, password, query or fragment; `ca_file`, when set, was a
//! readable PEM bundle; `machine_id` is a non-empty run of visible ASCII;
//! `duration` is whole seconds, at least one; `scenario` matches
//! `[A-Za-z0-9_./-]+`; `1 <= batch_size <= 1000`; `flush_interval`,
//! `request_timeout` and `max_backoff` are non-zero.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::config_kit::{resolve_secret, ser, ConfigError, Ctx, Secret, SecretSpec};

/// Where the LAPI listens by default (`api.server.listen_uri` of
/// CrowdSec's config.yaml).
pub const DEFAULT_LAPI_URL: &str = "http://127.0.0.1:8080";

/// Environment variable consulted for the password when the file names none.
pub const PASSWORD_ENV: &str = "TJFWD_CROWDSEC_PASSWORD";

/// The systemd credential holding the password
/// (`LoadCredential=crowdsec_password:/etc/tjfwd/crowdsec-password`).
pub const CREDENTIAL_NAME: &str = "crowdsec_password";

/// Most decisions in one alert: tjfwd's own cap (the LAPI writes an
/// alert's decisions in one transaction).
pub const MAX_BATCH_SIZE: usize = 1000;

/// Default decision length.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Default scenario of the alerts and decisions.
pub const DEFAULT_SCENARIO: &str = "tjfwd/cowrie-login";

/// How long CrowdSec keeps an alert (and its decisions) by default: its
/// `db_config.flush.max_age`.
const LAPI_FLUSH_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
const DEFAULT_REREPORT_AFTER: Duration = Duration::from_secs(3600);

/// `[targets.crowdsec]` checked. Serializes to the section's keys (the
/// password as `<redacted>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The Local API's base URL (`/v1/...` is appended).
    #[serde(serialize_with = "ser::display")]
    pub lapi_url: Url,
    /// The machine tjfwd logs in as (`cscli machines add NAME`).
    pub machine_id: String,
    /// Its password; None only where nothing is sent (a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// How long each decision bans its address.
    #[serde(serialize_with = "ser::duration")]
    pub duration: Duration,
    /// The scenario named by the alerts and their decisions.
    pub scenario: String,
    /// Allows plain http to a non-loopback host.
    pub allow_insecure_http: bool,
    /// A PEM bundle of the CAs that sign the LAPI's certificate (https);
    /// None: the public roots.
    #[serde(
        serialize_with = "ser::path_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<PathBuf>,
    /// Most decisions in one alert (one alert a request).
    #[serde(serialize_with = "ser::saturating_i64")]
    pub batch_size: usize,
    /// Longest time the oldest pending address waits for a batch to fill.
    #[serde(serialize_with = "ser::duration")]
    pub flush_interval: Duration,
    /// Time limit of one HTTP request (the login and the alert each).
    #[serde(serialize_with = "ser::duration")]
    pub request_timeout: Duration,
    /// Upper bound of the backoff after transient failures.
    #[serde(serialize_with = "ser::duration")]
    pub max_backoff: Duration,
    /// A sighting less than this after the last report does not make a new
    /// decision (0: every later sighting does).
    #[serde(serialize_with = "ser::duration")]
    pub rereport_after: Duration,
}

/// `[targets.crowdsec]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    lapi_url: Option<String>,
    machine_id: Option<String>,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    duration: Option<toml::Value>,
    scenario: Option<String>,
    allow_insecure_http: Option<bool>,
    ca_file: Option<PathBuf>,
    batch_size: Option<i64>,
    flush_interval: Option<toml::Value>,
    request_timeout: Option<toml::Value>,
    max_backoff: Option<toml::Value>,
    rereport_after: Option<toml::Value>,
}

/// Checks the table; `table` is how messages name it.
pub fn validate(ctx: &mut Ctx, table: &str, raw: Raw) -> Result<Section, ConfigError> {
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let lapi_url = lapi_url(ctx, table, raw.lapi_url, allow_insecure_http)?;
    let ca_file = match raw.ca_file {
        None => None,
        Some(p) => {
            let key = &format!("{table} ca_file");
            let p = ctx.path(key, p)?;
            crate::tls::read_ca_file(&p).map_err(|e| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = \"{}\": {e}; it must name a PEM file of the CA certificate(s) \
                         that sign the LAPI's certificate (or remove the key)",
                        p.display()
                    ),
                )
            })?;
            Some(p)
        }
    };

    let key = &format!("{table} machine_id");
    let machine_id = match raw.machine_id.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} is required: the name of the machine registered for tjfwd with \
                     `cscli machines add NAME --password PASSWORD` on the CrowdSec host"
                ),
            ))
        }
        Some(m) if !m.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(ctx.invalid(
                key,
                format!("{key} = {m:?} is not valid: a machine name is one word of visible ASCII"),
            ))
        }
        Some(m) => m.to_string(),
    };

    let password = resolve_secret(
        ctx,
        &SecretSpec {
            table,
            key: "password",
            file_key: "password_file",
            env: PASSWORD_ENV,
            credential: CREDENTIAL_NAME,
            what: "the machine's password",
            chars_ok: |s| !s.chars().any(char::is_control),
            bad_chars: "control characters: a CrowdSec machine password is one line of text",
        },
        raw.password,
        raw.password_file,
    )?;
    if password.is_none() && !ctx.secrets.dry_run {
        return Err(ctx.invalid(
            &format!("{table} password"),
            format!(
                "no CrowdSec machine password: set {table} password_file (a file holding it, \
                 mode 600) or password, or the environment variable {PASSWORD_ENV}, or pass \
                 the systemd credential {CREDENTIAL_NAME}, or use --dry-run; the machine is \
                 registered with `cscli machines add NAME --password PASSWORD`"
            ),
        ));
    }

    let key = &format!("{table} duration");
    let duration = ctx.duration(key, raw.duration, DEFAULT_DURATION)?;
    if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = \"{}\" is not allowed: a decision lasts whole seconds, at least \"1s\" \
                 (default \"24h\")",
                crate::config_kit::format_duration(duration)
            ),
        ));
    }
    if duration > LAPI_FLUSH_MAX_AGE {
        ctx.warnings.push(format!(
            "{}: {key} is longer than 7 days: CrowdSec deletes alerts older than its \
             db_config.flush.max_age (7 days by default) with their decisions; raise it there too",
            ctx.file
        ));
    }

    let key = &format!("{table} scenario");
    let scenario = match raw.scenario {
        None => DEFAULT_SCENARIO.to_string(),
        Some(s) => {
            let ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'));
            if !ok {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = {s:?} is not valid: write a scenario name such as \
                         {DEFAULT_SCENARIO:?} (letters, digits, _ . / -)"
                    ),
                ));
            }
            s
        }
    };

    let key = &format!("{table} batch_size");
    let batch_size = match raw.batch_size {
        None => MAX_BATCH_SIZE,
        Some(n) if (1..=MAX_BATCH_SIZE as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is out of range: it must be between 1 and {MAX_BATCH_SIZE} \
                     (decisions in one alert)"
                ),
            ))
        }
    };
    let key = &format!("{table} flush_interval");
    let flush_interval = ctx.nonzero(
        key,
        ctx.duration(key, raw.flush_interval, DEFAULT_FLUSH_INTERVAL)?,
    )?;
    let key = &format!("{table} request_timeout");
    let request_timeout = ctx.nonzero(
        key,
        ctx.duration(key, raw.request_timeout, DEFAULT_REQUEST_TIMEOUT)?,
    )?;
    let key = &format!("{table} max_backoff");
    let max_backoff = ctx.nonzero(
        key,
        ctx.duration(key, raw.max_backoff, DEFAULT_MAX_BACKOFF)?,
    )?;
    let key = &format!("{table} rereport_after");
    let rereport_after = ctx.duration(key, raw.rereport_after, DEFAULT_REREPORT_AFTER)?;
    if rereport_after >= duration {
        ctx.warnings.push(format!(
            "{}: {key} is not shorter than {table} duration: an attacker still active when its \
             decision ends is not banned again until rereport_after has passed",
            ctx.file
        ));
    }

    Ok(Section {
        lapi_url,
        machine_id,
        password,
        duration,
        scenario,
        allow_insecure_http,
        ca_file,
        batch_size,
        flush_interval,
        request_timeout,
        max_backoff,
        rereport_after,
    })
}

fn lapi_url(
    ctx: &mut Ctx,
    table: &str,
    raw: Option<String>,
    allow_insecure_http: bool,
) -> Result<Url, ConfigError> {
    let key = &format!("{table} lapi_url");
    let Some(text) = raw else {
        return Ok(Url::parse(DEFAULT_LAPI_URL).expect("the default LAPI URL is valid"));
    };
    let url = Url::parse(&text).map_err(|e| {
        ctx.invalid(
            key,
            format!(
                "{key} = {text:?} is not a valid URL ({e}): write the LAPI's address, e.g. \
                 {DEFAULT_LAPI_URL:?}"
            ),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} must not contain a user name or password: remove them; tjfwd logs in \
                 with machine_id and password_file"
            ),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ctx.invalid(
            key,
            format!("{key} = {text:?} has a query or fragment: give the LAPI's base URL only"),
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
                            "{key} = {text:?} uses plain http to another host, which would send \
                             the machine's password unencrypted: use https (CrowdSec's \
                             api.server.tls), or set {table} allow_insecure_http = true if the \
                             network is trusted"
                        ),
                    ));
                }
                ctx.warnings.push(format!(
                    "{}: {key} uses plain http to a non-loopback host (allow_insecure_http = \
                     true): the machine's password travels unencrypted",
                    ctx.file
                ));
            }
        }
        other => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {text:?} has the scheme {other:?}: the LAPI is reached over http \
                     or https, e.g. {DEFAULT_LAPI_URL:?}"
                ),
            ))
        }
    }
    Ok(url)
}

/// `d` as a Go duration (what the LAPI parses): `24h`, `1h30m`, `90s` →
/// `1m30s`. Whole seconds.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_kit::SecretSources;

    fn ctx(env: &[(&str, &str)]) -> Ctx {
        Ctx {
            file: "tjfwd.toml".into(),
            base_dir: None,
            warnings: Vec::new(),
            secrets: SecretSources {
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                // As `check-config --dry-run`: the other checks, without
                // a password (the refusal of a missing one is tested below).
                dry_run: true,
                ..SecretSources::default()
            },
        }
    }

    fn check(text: &str, env: &[(&str, &str)]) -> Result<(Section, Vec<String>), ConfigError> {
        let raw: Raw = toml::from_str(text).unwrap();
        let mut c = ctx(env);
        validate(&mut c, "[targets.crowdsec]", raw).map(|s| (s, c.warnings))
    }

    fn refused_key(text: &str) -> String {
        match check(text, &[]).unwrap_err() {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_the_environment_password() {
        let (s, warnings) = check("machine_id = \"m1\"", &[(PASSWORD_ENV, " pw \n")]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.lapi_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(s.machine_id, "m1");
        assert_eq!(s.password.as_ref().unwrap().expose(), "pw");
        assert_eq!(s.duration, DEFAULT_DURATION);
        assert_eq!(s.scenario, DEFAULT_SCENARIO);
        assert_eq!(s.batch_size, 1000);
        assert_eq!(s.flush_interval, Duration::from_secs(60));
        assert_eq!(s.rereport_after, Duration::from_secs(3600));
        // Written back as it is read, the password redacted.
        let out = toml::to_string(&s).unwrap();
        assert!(out.contains("password = \"<redacted>\""), "{out}");
        assert!(out.contains("duration = \"1day\""), "{out}");
        let (again, _) = check(&out, &[]).unwrap();
        assert_eq!(again.duration, s.duration);
        assert_eq!(again.lapi_url, s.lapi_url);
        // No password anywhere: fine for a dry run, refused otherwise.
        let (s, _) = check("machine_id = \"m1\"", &[]).unwrap();
        assert!(s.password.is_none());
        let mut c = ctx(&[]);
        c.secrets.dry_run = false;
        let raw: Raw = toml::from_str("machine_id = \"m1\"").unwrap();
        match validate(&mut c, "[targets.crowdsec]", raw).unwrap_err() {
            ConfigError::Invalid { key, message, .. } => {
                assert_eq!(key, "[targets.crowdsec] password");
                assert!(message.contains(PASSWORD_ENV), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_name_their_key() {
        for (text, key) in [
            ("", "machine_id"),
            ("machine_id = \"a b\"", "machine_id"),
            ("machine_id = \"m\"\nlapi_url = \"ftp://x\"", "lapi_url"),
            (
                "machine_id = \"m\"\nlapi_url = \"http://10.0.0.1:8080\"",
                "lapi_url",
            ),
            (
                "machine_id = \"m\"\nlapi_url = \"http://u:p@127.0.0.1\"",
                "lapi_url",
            ),
            ("machine_id = \"m\"\nduration = \"500ms\"", "duration"),
            ("machine_id = \"m\"\nduration = \"1s 500ms\"", "duration"),
            ("machine_id = \"m\"\nduration = 86400", "duration"),
            ("machine_id = \"m\"\nscenario = \"a b\"", "scenario"),
            ("machine_id = \"m\"\nbatch_size = 1001", "batch_size"),
            ("machine_id = \"m\"\nbatch_size = 0", "batch_size"),
            (
                "machine_id = \"m\"\nflush_interval = \"0s\"",
                "flush_interval",
            ),
            ("machine_id = \"m\"\npassword = \"\"", "password"),
        ] {
            assert_eq!(
                refused_key(text),
                format!("[targets.crowdsec] {key}"),
                "{text}"
            );
        }
    }

    #[test]
    fn warnings() {
        let (_, w) = check(
            "machine_id = \"m\"\nlapi_url = \"http://10.0.0.1:8080\"\nallow_insecure_http = true",
            &[],
        )
        .unwrap();
        assert!(w[0].contains("unencrypted"), "{w:?}");
        let (_, w) = check("machine_id = \"m\"\nduration = \"8d\"", &[]).unwrap();
        assert!(w[0].contains("max_age"), "{w:?}");
        let (_, w) = check("machine_id = \"m\"\nduration = \"1h\"", &[]).unwrap();
        assert!(w[0].contains("rereport_after"), "{w:?}");
    }

    #[test]
    fn go_durations() {
        for (secs, want) in [
            (86_400, "24h"),
            (5400, "1h30m"),
            (90, "1m30s"),
            (1, "1s"),
            (3661, "1h1m1s"),
        ] {
            assert_eq!(go_duration(Duration::from_secs(secs)), want);
        }
    }
}
