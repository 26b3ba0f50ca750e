//! The `[feed]` section: tjfwd's own denylist, its lifetime, and the HTTP
//! endpoint that serves it to firewalls (`crate::feed`).
//!
//! The token comes from exactly one source, the first of: `token`,
//! `token_file`, and (for [`crate::config::Config::load`]) the systemd
//! credential [`FEED_CREDENTIAL_NAME`]; it is a [`Secret`], never printed
//! (`check-config` shows `<redacted>`).
//!
//! Invariants of a [`Feed`]: `ttl > 0`; `listen`, when set, has a non-zero
//! port, and is a loopback address unless `allow_from` or the token
//! restricts who may read the list; the token, when set, is a single
//! non-empty run of printable ASCII.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config_kit::{ser, ConfigError, Ctx, Secret};

/// The denylist's default lifetime after an address's last sighting.
pub const DEFAULT_FEED_TTL: Duration = Duration::from_secs(24 * 3600);

/// Name of the systemd credential holding the feed's token
/// (`LoadCredential=feed_token:/etc/tjfwd/feed_token`), read last.
pub const FEED_CREDENTIAL_NAME: &str = "feed_token";

/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// The `[feed]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feed {
    /// Address the denylist is served on (`GET /denylist.txt`,
    /// `/denylist.json`); None (the default): not served.
    #[serde(
        serialize_with = "ser::display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub listen: Option<SocketAddr>,
    /// Networks allowed to fetch it (empty: any, subject to the token).
    #[serde(serialize_with = "ser::display_seq")]
    pub allow_from: Vec<IpNet>,
    /// The token a request must carry (Bearer, or the password of HTTP
    /// basic auth); None: none needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// How long an address stays listed after its last sighting.
    #[serde(serialize_with = "ser::duration")]
    pub ttl: Duration,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            listen: None,
            allow_from: Vec::new(),
            token: None,
            ttl: DEFAULT_FEED_TTL,
        }
    }
}

/// `[feed]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeed {
    pub(super) listen: Option<String>,
    pub(super) allow_from: Option<Vec<String>>,
    pub(super) token: Option<Secret>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) ttl: Option<toml::Value>,
}

/// Checks `[feed]` as written and applies its defaults. `credentials` is
/// the systemd credentials directory, if any; `state_dir` decides who may
/// read a token file.
pub(super) fn validate(
    ctx: &mut Ctx,
    raw: RawFeed,
    credentials: Option<&Path>,
    state_dir: &Path,
) -> Result<Feed, ConfigError> {
    let ttl_key = "[feed] ttl";
    let ttl = ctx.nonzero(ttl_key, ctx.duration(ttl_key, raw.ttl, DEFAULT_FEED_TTL)?)?;

    let key = "[feed] allow_from";
    let mut allow_from = Vec::new();
    for entry in raw.allow_from.unwrap_or_default() {
        let text = entry.trim();
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ctx.invalid(
                    key,
                    format!(
                        "{key}: the entry {entry:?} is not a CIDR or an IP address: write the \
                         networks of your firewalls, like \"192.168.1.0/24\" or \"10.0.0.1\""
                    ),
                )
            })?;
        allow_from.push(net.trunc());
    }

    let token = token(ctx, raw.token, raw.token_file, credentials, state_dir)?;

    let key = "[feed] listen";
    let listen = match raw.listen {
        None => None,
        Some(text) => {
            let addr = text.trim().parse::<SocketAddr>().map_err(|_| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} is not a socket address: write an IP address and a \
                         port, like \"127.0.0.1:9109\" or \"0.0.0.0:9109\", or remove the key \
                         (the denylist is not served)"
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} has port 0: give the fixed port your firewalls fetch \
                         the list from, like \"0.0.0.0:9109\""
                    ),
                ));
            }
            if !addr.ip().is_loopback() && allow_from.is_empty() && token.is_none() {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} is reachable from other hosts, and neither \
                         [feed] allow_from nor a token restricts who may read the list: set \
                         allow_from to your firewalls' networks (e.g. [\"192.168.1.0/24\"]), \
                         or token_file (the firewalls send it as a Bearer token or as the \
                         password of HTTP basic auth), or both; or listen on 127.0.0.1"
                    ),
                ));
            }
            Some(addr)
        }
    };
    Ok(Feed {
        listen,
        allow_from,
        token,
        ttl,
    })
}

/// A token travels in an HTTP header: one run of visible ASCII.
fn token_chars_ok(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

const BAD_CHARS: &str = "is empty, or contains spaces, control or non-ASCII characters; \
                         the feed's token is a single word of printable ASCII";

fn token(
    ctx: &mut Ctx,
    inline: Option<Secret>,
    file: Option<PathBuf>,
    credentials: Option<&Path>,
    state_dir: &Path,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ctx.invalid(
            "[feed] token",
            "[feed] token and [feed] token_file are both set: keep only one (token_file is \
             preferred, so the configuration file holds no secret)"
                .into(),
        )),
        (Some(secret), None) => {
            let t = secret.expose().trim();
            if !token_chars_ok(t) {
                return Err(ctx.invalid("[feed] token", format!("[feed] token {BAD_CHARS}")));
            }
            Ok(Some(Secret::new(t.to_string())))
        }
        (None, Some(p)) => {
            let key = "[feed] token_file";
            let p = ctx.path(key, p)?;
            let t = read_token_file(ctx, key, &p)?;
            if let Some(who) = std::fs::metadata(&p)
                .ok()
                .and_then(|m| crate::config_kit::secret_readers(&m, state_dir))
            {
                ctx.warnings.push(format!(
                    "{}: the token file \"{}\" ({key}) can be read by {who}: run `chmod 600 {}`",
                    ctx.file,
                    p.display(),
                    p.display()
                ));
            }
            Ok(Some(t))
        }
        (None, None) => match credentials.map(|d| d.join(FEED_CREDENTIAL_NAME)) {
            Some(p) if p.exists() => {
                let key = &format!("systemd credential {FEED_CREDENTIAL_NAME}");
                read_token_file(ctx, key, &p).map(Some)
            }
            _ => Ok(None),
        },
    }
}

/// The token in file `p` (at most [`MAX_TOKEN_FILE`] bytes, trimmed).
fn read_token_file(ctx: &Ctx, key: &str, p: &Path) -> Result<Secret, ConfigError> {
    use std::io::Read;
    let shown = p.display();
    let mut bytes = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_TOKEN_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            ctx.invalid(
                key,
                format!(
                    "{key} = \"{shown}\": cannot read the token file ({e}): check the path and \
                     that the user running tjfwd can read it"
                ),
            )
        })?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(ctx.invalid(
            key,
            format!("{key} = \"{shown}\": longer than 64 KiB: not a token"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        ctx.invalid(
            key,
            format!("{key} = \"{shown}\": the token file is not UTF-8 text"),
        )
    })?;
    let t = text.trim();
    if !token_chars_ok(t) {
        return Err(ctx.invalid(
            key,
            format!("{key} = \"{shown}\": the token file {BAD_CHARS}"),
        ));
    }
    Ok(Secret::new(t.to_string()))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse_ok, refused};
    use std::time::Duration;

    #[test]
    fn off_by_default_with_a_day_of_ttl() {
        let c = parse_ok("");
        assert_eq!(c.feed.listen, None);
        assert_eq!(c.feed.ttl, Duration::from_secs(86_400));
        assert!(c.feed.allow_from.is_empty() && c.feed.token.is_none());
        assert!(!c.redacted_toml().contains("\ntoken ="));
    }

    #[test]
    fn loopback_needs_no_access_control_other_addresses_do() {
        let c = parse_ok("[feed]\nlisten = \"127.0.0.1:9109\"\nttl = \"6h\"");
        assert_eq!(c.feed.listen, Some("127.0.0.1:9109".parse().unwrap()));
        assert_eq!(c.feed.ttl, Duration::from_secs(6 * 3600));
        for listen in ["0.0.0.0:9109", "192.168.1.5:9109", "[::]:9109"] {
            let msg = refused(&format!("[feed]\nlisten = \"{listen}\""), "[feed] listen");
            assert!(
                msg.contains("neither [feed] allow_from nor a token"),
                "{msg}"
            );
            assert!(msg.contains("127.0.0.1"), "{msg}");
        }
        let c = parse_ok("[feed]\nlisten = \"0.0.0.0:9109\"\nallow_from = [\"192.168.1.7/24\"]");
        assert_eq!(c.feed.allow_from, ["192.168.1.0/24".parse().unwrap()]);
        let c = parse_ok("[feed]\nlisten = \"[::]:9109\"\ntoken = \"s3cret-Token\"");
        assert_eq!(c.feed.token.as_ref().unwrap().expose(), "s3cret-Token");
        let shown = c.redacted_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("token = \"<redacted>\""), "{shown}");
        assert!(shown.contains("listen = \"[::]:9109\""), "{shown}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        refused("[feed]\nlisten = \"127.0.0.1:0\"", "[feed] listen");
        refused("[feed]\nlisten = \"localhost:9109\"", "[feed] listen");
        refused("[feed]\nallow_from = [\"lan\"]", "[feed] allow_from");
        refused("[feed]\nttl = \"0s\"", "[feed] ttl");
        refused("[feed]\ntoken = \"two words\"", "[feed] token");
        let msg = refused("[feed]\ntoken = \"a\"\ntoken_file = \"/x\"", "[feed] token");
        assert!(msg.contains("both set"), "{msg}");
        let msg = refused(
            "[feed]\ntoken_file = \"/nonexistent/feed_token\"",
            "[feed] token_file",
        );
        assert!(msg.contains("cannot read the token file"), "{msg}");
    }

    #[test]
    fn the_token_file_is_read_and_never_shown() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("feed_token");
        std::fs::write(&p, "from-a-file\n").unwrap();
        let c = parse_ok(&format!(
            "[feed]\nlisten = \"0.0.0.0:9109\"\ntoken_file = \"{}\"",
            p.display()
        ));
        assert_eq!(c.feed.token.as_ref().unwrap().expose(), "from-a-file");
        assert!(!c.redacted_toml().contains("from-a-file"));
        assert!(!format!("{c:?}").contains("from-a-file"));
    }
}
