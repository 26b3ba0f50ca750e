//! The `[filter]` section: addresses that are never reported.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config_kit::{ser, ConfigError, Ctx};

/// The `[filter]` section: addresses that are never reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// Report private, loopback, documentation... addresses too (the API rejects
    /// a whole batch for one of them, so this is for tests against a fake API).
    pub report_non_public: bool,
    /// Networks never reported (own hosts, scanners you run); IPv4-mapped IPv6
    /// entries are stored as IPv4, as addresses are normalized before filtering.
    #[serde(serialize_with = "ser::display_seq")]
    pub allowlist: Vec<IpNet>,
}

/// `[filter]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    /// Report non-public addresses too.
    pub(super) report_non_public: Option<bool>,
    /// CIDRs or bare addresses, parsed one by one so an error names the entry.
    pub(super) allowlist: Option<Vec<String>>,
}

/// Checks `[filter]` as written and applies its defaults.
pub(super) fn validate(ctx: &Ctx, raw: RawFilter) -> Result<Filter, ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::tests::refused;

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
}
