//! Select and filter: which events count, and which addresses may be reported.
//!
//! - **select** (the seed plugin's rule): an event counts when its `eventid`
//!   without its last dotted part is `cowrie.login` (`track_login`) or
//!   `cowrie.session` (`track_session`).
//! - **normalize**: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as Cowrie's
//!   Telnet side writes them) becomes the IPv4 address, so one attacker is one
//!   entry.
//! - **filter**: non-public addresses are skipped unless
//!   `report_non_public`, because the API rejects a whole request for one of
//!   them; allowlisted networks are never reported.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::Config;
use crate::stats::SkipReason;

/// The select + filter rules, built once from the configuration.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Count `cowrie.login.*` events.
    pub track_login: bool,
    /// Count `cowrie.session.*` events.
    pub track_session: bool,
    /// Report private/reserved addresses too (the API will reject them).
    pub report_non_public: bool,
    /// Networks never reported.
    pub allowlist: Vec<IpNet>,
}

impl Rules {
    /// Rules from Threat Jammer's section (`track_*`; without it, its
    /// defaults: logins only) and `[filter]`.
    pub fn from_config(config: &Config) -> Rules {
        let (track_login, track_session) = config.threatjammer().map_or((true, false), |tj| {
            (tj.report.track_login, tj.report.track_session)
        });
        Rules {
            track_login,
            track_session,
            report_non_public: config.filter.report_non_public,
            allowlist: config.filter.allowlist.clone(),
        }
    }

    /// The seed's rule: `eventid` minus its last dotted part.
    pub fn selects(&self, eventid: &str) -> bool {
        match eventid.rsplit_once('.') {
            Some(("cowrie.login", _)) => self.track_login,
            Some(("cowrie.session", _)) => self.track_session,
            _ => false,
        }
    }

    /// Parses, normalizes and filters a `src_ip`.
    pub fn address(&self, src_ip: &str) -> Result<IpAddr, SkipReason> {
        // std's parser accepts only the plain textual forms: no zone
        // (`fe80::1%eth0`), no port, no brackets, no spaces.
        let ip: IpAddr = src_ip.parse().map_err(|_| SkipReason::InvalidAddress)?;
        let ip = normalize(ip);
        if !self.report_non_public && !is_public(ip) {
            return Err(SkipReason::NonPublic);
        }
        if self.allowlist.iter().any(|net| net.contains(&ip)) {
            return Err(SkipReason::Allowlisted);
        }
        Ok(ip)
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; everything else unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether an address is globally routable unicast, as the API requires.
pub fn is_public(ip: IpAddr) -> bool {
    match normalize(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    // IANA IPv4 Special-Purpose Address Registry, plus multicast and 240/4.
    const SPECIAL: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network"
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT shared address space
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
    ];
    !SPECIAL.iter().any(|(net, p)| in_v4(ip, *net, *p))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    // Only global unicast 2000::/3 is public at all...
    if seg[0] & 0xe000 != 0x2000 {
        return false;
    }
    // ...minus its special-purpose blocks.
    let special = [
        seg[0] == 0x2001 && seg[1] < 0x0200, // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking...)
        seg[0] == 0x2001 && seg[1] == 0x0db8, // 2001:db8::/32 documentation
        seg[0] == 0x2002,                    // 6to4 (embeds IPv4, may be private)
        seg[0] & 0xfff0 == 0x3ff0,           // 3ff0::/12 incl. 3fff::/20 documentation
    ];
    !special.iter().any(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            track_login: true,
            track_session: false,
            report_non_public: false,
            allowlist: vec![
                "8.8.8.0/24".parse().unwrap(),
                "2a00:1450::/32".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn select_follows_the_seed_rule() {
        let mut r = rules();
        assert!(r.selects("cowrie.login.failed"));
        assert!(r.selects("cowrie.login.success"));
        assert!(!r.selects("cowrie.session.connect"));
        assert!(!r.selects("cowrie.command.input"));
        assert!(!r.selects("cowrie.login"));
        assert!(!r.selects("cowrie.loginx.failed"));
        assert!(!r.selects(""));
        r.track_session = true;
        assert!(r.selects("cowrie.session.connect"));
        assert!(r.selects("cowrie.session.file_download"));
        // Its id minus the last part is cowrie.session.file_download.
        assert!(!r.selects("cowrie.session.file_download.failed"));
        r.track_login = false;
        assert!(!r.selects("cowrie.login.failed"));
    }

    #[test]
    fn addresses_are_normalized_and_filtered() {
        let r = rules();
        assert_eq!(r.address("1.2.3.4"), Ok("1.2.3.4".parse().unwrap()));
        assert_eq!(r.address("::ffff:1.2.3.4"), Ok("1.2.3.4".parse().unwrap()));
        assert_eq!(r.address("2a01:4f8::1"), Ok("2a01:4f8::1".parse().unwrap()));
        for bad in [
            "fe80::1%eth0",
            "1.2.3.4:22",
            " 1.2.3.4",
            "1.2.3.4 ",
            "",
            "1.2.3",
            "[::1]",
            "1.2.3.4\0",
        ] {
            assert_eq!(r.address(bad), Err(SkipReason::InvalidAddress), "{bad:?}");
        }
        for np in [
            "10.1.2.3",
            "127.0.0.1",
            "::ffff:192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "198.19.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002::1",
            "3fff::1",
            "64:ff9b::1.2.3.4",
        ] {
            assert_eq!(r.address(np), Err(SkipReason::NonPublic), "{np}");
        }
        assert_eq!(r.address("8.8.8.8"), Err(SkipReason::Allowlisted));
        assert_eq!(r.address("::ffff:8.8.8.9"), Err(SkipReason::Allowlisted));
        assert_eq!(r.address("2a00:1450::5"), Err(SkipReason::Allowlisted));
        assert_eq!(r.address("8.8.9.8"), Ok("8.8.9.8".parse().unwrap()));
    }

    #[test]
    fn report_non_public_lets_them_through_but_not_the_allowlist() {
        let mut r = rules();
        r.report_non_public = true;
        r.allowlist.push("10.0.0.0/8".parse().unwrap());
        assert_eq!(r.address("192.168.1.1"), Ok("192.168.1.1".parse().unwrap()));
        assert_eq!(r.address("10.1.1.1"), Err(SkipReason::Allowlisted));
    }
}
