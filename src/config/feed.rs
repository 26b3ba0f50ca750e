//! The `[feed]` section: tjfwd's own denylist, its lifetime, and the HTTP
//! endpoint that serves it to firewalls (`crate::feed`).
//!
//! The token comes from exactly one source, the first of: `token`,
//! `token_file`, the environment variable [`TOKEN_ENV`] and (for
//! [`crate::config::Config::load`]) the systemd credential
//! [`FEED_CREDENTIAL_NAME`], with the rules of the targets' secrets
//! (`config_kit::credential`); it is a [`Secret`], never printed
//! (`check-config` shows `<redacted>`).
//!
//! Invariants of a [`Feed`]: `ttl > 0`; `listen`, when set, has a non-zero
//! port, and is a loopback address unless `allow_from` or the token
//! restricts who may read the list; the token, when set, is a single
//! non-empty run of printable ASCII.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config_kit::{resolve_secret, ser, ConfigError, Ctx, Secret, SecretSpec};

/// The denylist's default lifetime after an address's last sighting.
pub const DEFAULT_FEED_TTL: Duration = Duration::from_secs(24 * 3600);

/// Name of the systemd credential holding the feed's token
/// (`LoadCredential=feed_token:/etc/tjfwd/feed_token`), read last.
pub const FEED_CREDENTIAL_NAME: &str = "feed_token";

/// The environment variable holding the feed's token, read when neither
/// `token` nor `token_file` is set.
pub const TOKEN_ENV: &str = "TJFWD_FEED_TOKEN";

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

/// Checks `[feed]` as written and applies its defaults.
pub(super) fn validate(ctx: &mut Ctx, raw: RawFeed) -> Result<Feed, ConfigError> {
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

    let token = resolve_secret(ctx, &TOKEN, raw.token, raw.token_file)?;

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

/// Where the feed's token comes from: `token`, `token_file`, the
/// environment variable [`TOKEN_ENV`], the systemd credential
/// [`FEED_CREDENTIAL_NAME`], as for the targets' secrets.
const TOKEN: SecretSpec<'static> = SecretSpec {
    table: "[feed]",
    key: "token",
    file_key: "token_file",
    env: TOKEN_ENV,
    credential: FEED_CREDENTIAL_NAME,
    what: "the token the firewalls send",
    chars_ok: token_chars_ok,
    bad_chars: "spaces, control or non-ASCII characters: the feed's token is a single word \
                of printable ASCII",
};

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
        assert!(msg.contains("cannot read the file"), "{msg}");
    }

    #[test]
    fn the_token_may_come_from_the_environment_after_the_keys() {
        use crate::config_kit::{Ctx, SecretSources};
        let raw = |text: &str| -> super::RawFeed { toml::from_str(text).unwrap() };
        let ctx = |value: &str| Ctx {
            file: "tjfwd.toml".into(),
            base_dir: None,
            warnings: Vec::new(),
            secrets: SecretSources {
                env: [(super::TOKEN_ENV.to_string(), value.to_string())].into(),
                ..SecretSources::default()
            },
        };
        let listen = "listen = \"0.0.0.0:9109\"\n";
        let f = super::validate(&mut ctx(" env-Token \n"), raw(listen)).unwrap();
        assert_eq!(f.token.unwrap().expose(), "env-Token");
        // The key wins over the environment.
        let f = super::validate(
            &mut ctx("env-Token"),
            raw(&format!("{listen}token = \"key-Token\"")),
        )
        .unwrap();
        assert_eq!(f.token.unwrap().expose(), "key-Token");
        // A token that cannot be sent in a header is refused, not shown.
        let e = super::validate(&mut ctx("two words"), raw(listen)).unwrap_err();
        assert!(e.to_string().contains(super::TOKEN_ENV), "{e}");
        assert!(!e.to_string().contains("two words"), "{e}");
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
