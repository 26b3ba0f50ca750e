//! The report part of `[targets.threatjammer]`: the Report API endpoint,
//! the bearer token and the contents of each report (its sending policy is
//! `schedule.rs`). The same keys form the deprecated top-level
//! `[threatjammer]` table, and cowrie.cfg's `[output_threatjammer]` (see
//! `crate::cowrie_cfg`), which hands its values in as a `RawThreatJammer`;
//! `sec`, the section as named in messages, tells them apart.
//!
//! `api_url` has no default: the Threat Jammer service shut down in 2024,
//! and the domain its default pointed at (threatjammer.com) now belongs to
//! someone else. An enabled Threat Jammer target without `api_url`, or with
//! one on that domain, is refused with the explanation ([`SHUT_DOWN`]).
//!
//! The bearer token comes from exactly one source, the first of:
//! `bearer_token`, `bearer_token_file`, the environment variable
//! [`TOKEN_ENV`], and the systemd credential [`CREDENTIAL_NAME`] (the last
//! two from `Ctx::secrets`); it is a [`Secret`] and never appears in a
//! message or a warning.
//!
//! Invariants of a [`ThreatJammer`] from `validate` (and `ca_file`):
//! `api_url` is https, or http to a loopback host, or http with
//! `allow_insecure_http = true`, carries no user name or password, and is
//! not on the old domain; `ca_file`, when set, was readable and held at
//! least one valid PEM certificate; `token`, when set, is a single
//! non-empty run of printable ASCII; `ttl > 0`; `category` matches
//! `[A-Z0-9_]+`; every tag matches `[A-Z0-9]+`, each once.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::config_kit::{secret_readers, ser, ConfigError, Ctx, Secret, SecretSources, KIB};

/// The domain of the Threat Jammer service, which shut down in 2024: it now
/// belongs to someone else, and `api_url` may not point there.
pub const OLD_DOMAIN: &str = "threatjammer.com";

/// Why `api_url` has no default, for the messages that refuse a
/// configuration without it (or with the old domain).
pub const SHUT_DOWN: &str = "the Threat Jammer service shut down in 2024 (Cowrie removed its \
                             plugin then: \"domain is gone\"), and its old domain, \
                             threatjammer.com, is not the service any more: it belongs to someone \
                             else now, so tjfwd must not send your token and attacker addresses \
                             there";

/// An example of `api_url` in messages (a placeholder, not a service).
const EXAMPLE_API_URL: &str = "https://report.example.net/v1/ip";

/// Environment variable consulted for the bearer token when the file names none.
pub const TOKEN_ENV: &str = "TJFWD_BEARER_TOKEN";

/// Name of the systemd credential holding the bearer token, read from
/// `$CREDENTIALS_DIRECTORY` when no other source names a token (the unit
/// says `LoadCredential=bearer_token:/etc/tjfwd/token`).
pub const CREDENTIAL_NAME: &str = "bearer_token";

/// Environment variable systemd sets to the directory of the credentials.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

pub(crate) const DEFAULT_TTL: u64 = 86_400;
pub(crate) const DEFAULT_CATEGORY: &str = "ABUSE";
pub(crate) const DEFAULT_TAGS: [&str; 3] = ["COWRIE", "LOGIN", "SESSION"];

/// The report part of `[targets.threatjammer]`: the Report API and the
/// contents of each report. Serializes to the section's keys (the token as
/// `<redacted>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreatJammer {
    /// Endpoint the batches are POSTed to (regional; the token belongs to a region).
    #[serde(serialize_with = "ser::display")]
    pub api_url: Url,
    /// Bearer token of the API; None only in dry-run mode.
    #[serde(rename = "bearer_token", skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Report the source of `cowrie.login.*` events (as cowrie's plugin does).
    pub track_login: bool,
    /// Report the source of `cowrie.session.*` events (every connection).
    pub track_session: bool,
    /// Seconds an address stays in the private denylist after a report (`ttl` in the API).
    #[serde(serialize_with = "ser::saturating_i64")]
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
    #[serde(
        serialize_with = "ser::path_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<PathBuf>,
}

impl ThreatJammer {
    /// The defaults of every key, with `api_url` (which has none) and no
    /// token: for configurations built in code.
    pub fn with_api_url(api_url: Url) -> Self {
        ThreatJammer {
            api_url,
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

/// The report keys as written, before validation. Also built from
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
    pub(crate) fn set_keys(&self) -> Vec<&'static str> {
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

/// Checks the report keys of Threat Jammer's section (`ca_file` aside: see
/// [`ca_file`]; it is left unset). `sec` is how the section is named in
/// messages: `[targets.threatjammer]` (or the deprecated `[threatjammer]`)
/// in tjfwd.toml, `[output_threatjammer]` in cowrie.cfg. The token's other
/// sources are `ctx.secrets`'.
pub(crate) fn validate(
    ctx: &mut Ctx,
    sec: &str,
    raw: RawThreatJammer,
) -> Result<ThreatJammer, ConfigError> {
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let api_url = api_url(ctx, sec, raw.api_url, allow_insecure_http)?;
    let inline_token = raw.bearer_token.is_some();
    let token = token(ctx, sec, raw.bearer_token, raw.bearer_token_file)?;
    if inline_token {
        let readers = ctx
            .secrets
            .file_meta
            .as_ref()
            .and_then(|meta| secret_readers(meta, &ctx.secrets.state_dir));
        if let Some(who) = readers {
            let file = &ctx.file;
            ctx.warnings.push(format!(
                "{file}: the file holds {sec} bearer_token and can be read by {who}: run \
                 `chmod 600 {file}`, or move the token to a file named by bearer_token_file"
            ));
        }
    }

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

/// Whether a token is given outside the configuration file: the
/// environment variable [`TOKEN_ENV`] (not empty) or the systemd credential
/// [`CREDENTIAL_NAME`] (a file). Beside cowrie.cfg, such a token enables
/// Threat Jammer as one in `[output_threatjammer]` does.
pub(crate) fn token_outside(secrets: &SecretSources) -> bool {
    secrets.env(TOKEN_ENV).is_some_and(|t| !t.trim().is_empty())
        || secrets
            .credential(CREDENTIAL_NAME)
            .is_some_and(|p| p.is_file())
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

/// `{sec} ca_file` (only from tjfwd.toml): resolved, and read now so that
/// a missing, unreadable or non-PEM file is a configuration error (with the
/// key and the file), not a failure at the first request.
pub(crate) fn ca_file(
    ctx: &Ctx,
    sec: &str,
    raw: Option<PathBuf>,
) -> Result<Option<PathBuf>, ConfigError> {
    let key = &format!("{sec} ca_file");
    let Some(p) = raw else {
        return Ok(None);
    };
    let p = ctx.path(key, p)?;
    crate::tls::read_ca_file(&p).map_err(|e| {
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

fn api_url(
    ctx: &mut Ctx,
    sec: &str,
    raw: Option<String>,
    allow_insecure_http: bool,
) -> Result<Url, ConfigError> {
    let key = &format!("{sec} api_url");
    // What the operator can do instead.
    let instead = if sec.starts_with("[output_") {
        format!(
            "set api_url in {sec} to the URL of a compatible deployment of the Report API, or \
             leave Threat Jammer off (no token in {sec}) and enable another target"
        )
    } else {
        format!(
            "set {key} to the URL of a compatible deployment of the Report API, or remove \
             {sec} and enable another target (see README, \"Targets\")"
        )
    };
    let Some(text) = raw else {
        return Err(ctx.invalid(
            key,
            format!("{key} is not set, and it has no default any more: {SHUT_DOWN}. {instead}"),
        ));
    };
    let url = Url::parse(&text).map_err(|e| {
        ctx.invalid(
            key,
            format!(
                "{key} = {text:?} is not a valid URL ({e}): write the full address, \
                 e.g. {EXAMPLE_API_URL:?}"
            ),
        )
    })?;
    if let Some(Host::Domain(d)) = url.host() {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d == OLD_DOMAIN || d.ends_with(&format!(".{OLD_DOMAIN}")) {
            return Err(ctx.invalid(key, format!("{key} = {text:?}: {SHUT_DOWN}. {instead}")));
        }
    }
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
                     https, e.g. {EXAMPLE_API_URL:?}"
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
                .and_then(|m| secret_readers(&m, &ctx.secrets.state_dir))
            {
                ctx.warnings.push(format!(
                    "{}: the token file \"{shown}\" ({key}) can be read by {who}: run \
                     `chmod 600 {shown}`",
                    ctx.file
                ));
            }
            Some(Secret::new(t.to_string()))
        }
        (None, None) => match ctx.secrets.env(TOKEN_ENV).map(str::trim) {
            Some(t) if !t.is_empty() => {
                if !token_chars_ok(t) {
                    return Err(ctx.invalid(
                        TOKEN_ENV,
                        format!("the environment variable {TOKEN_ENV} {BAD_CHARS}"),
                    ));
                }
                Some(Secret::new(t.to_string()))
            }
            _ => match ctx.secrets.credential(CREDENTIAL_NAME) {
                Some(path) => credential_token(ctx, &path, BAD_CHARS)?,
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
