//! The `[admin]` section: the HTTP endpoint for monitoring.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config_kit::{ser, ConfigError, Ctx};

/// The `[admin]` section: the HTTP endpoint for monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Admin {
    /// Address serving `/metrics` (Prometheus text) and `/healthz`; None
    /// (the default): no admin endpoint.
    #[serde(
        serialize_with = "ser::display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub listen: Option<SocketAddr>,
}

/// `[admin]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// A socket address string, parsed so an error can show the expected form.
    pub(super) listen: Option<String>,
}

/// Checks `[admin]` as written and applies its defaults.
pub(super) fn validate(ctx: &Ctx, raw: RawAdmin) -> Result<Admin, ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, parse_ok, refused};
    use crate::config::ConfigError;

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
}
