//! `tjfwd export`: the active entries of the denylist mirror with their
//! remaining TTLs, so an operator can also block the attackers locally:
//! plain addresses, JSON, CSV, an nftables script (sets with per-element
//! timeouts), or `ipset restore` input.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use crate::clock::now_ms;
use crate::commands::{print, Backend, CommandError, ConfigArgs};
use crate::config::Config;
use crate::control::ExportEntry;
use crate::status::rfc3339;

/// The flags of `tjfwd export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "plain")]
    format: Format,
    /// nft table / ipset set name prefix (sets NAME4 and NAME6).
    #[arg(long, default_value = "tjfwd")]
    name: String,
}

/// Runs `tjfwd export`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    export(&args.config.load(false)?, args.format, &args.name)?;
    Ok(ExitCode::SUCCESS)
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One address a line.
    Plain,
    /// `{"exported_at": ..., "entries": [{address, last_reported, expires_at, remaining_ttl_s, reports}]}`.
    Json,
    /// `address,expires_at,remaining_ttl_s,last_reported,reports` with a header line.
    Csv,
    /// An `nft -f` script: table `inet NAME`, sets NAME4/NAME6 with timeouts.
    Nft,
    /// `ipset restore` input: sets NAME4/NAME6 (hash:ip) with timeouts.
    Ipset,
}

/// ipset's largest timeout, seconds.
const IPSET_MAX_TIMEOUT: u64 = 2_147_483;

/// Renders entries in a format; `name` names the nft table / ipset sets.
pub fn render(entries: &[ExportEntry], format: Format, name: &str) -> String {
    let mut s = String::new();
    let (v4, v6): (Vec<&ExportEntry>, Vec<&ExportEntry>) =
        entries.iter().partition(|e| e.address.is_ipv4());
    match format {
        Format::Plain => {
            for e in entries {
                let _ = writeln!(s, "{}", e.address);
            }
        }
        Format::Json => {
            let doc = serde_json::json!({
                "exported_at": rfc3339(now_ms()),
                "entries": entries,
            });
            s = serde_json::to_string_pretty(&doc).expect("plain data serializes");
            s.push('\n');
        }
        Format::Csv => {
            s.push_str("address,expires_at,remaining_ttl_s,last_reported,reports\n");
            for e in entries {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{}",
                    e.address, e.expires_at, e.remaining_ttl_s, e.last_reported, e.reports
                );
            }
        }
        Format::Nft => {
            let _ = writeln!(s, "#!/usr/sbin/nft -f");
            let _ = writeln!(
                s,
                "# tjfwd: {} addresses of the Threat Jammer denylist mirror, {}",
                entries.len(),
                rfc3339(now_ms())
            );
            let _ = writeln!(s, "table inet {name} {{");
            let _ = writeln!(s, "\tset {name}4 {{ type ipv4_addr; flags timeout; }}");
            let _ = writeln!(s, "\tset {name}6 {{ type ipv6_addr; flags timeout; }}");
            let _ = writeln!(s, "}}");
            for (set, list) in [("4", &v4), ("6", &v6)] {
                for chunk in list.chunks(500) {
                    let elems: Vec<String> = chunk
                        .iter()
                        .map(|e| format!("{} timeout {}s", e.address, e.remaining_ttl_s.max(1)))
                        .collect();
                    let _ = writeln!(
                        s,
                        "add element inet {name} {name}{set} {{ {} }}",
                        elems.join(", ")
                    );
                }
            }
        }
        Format::Ipset => {
            let _ = writeln!(s, "create {name}4 hash:ip family inet timeout 0 -exist");
            let _ = writeln!(s, "create {name}6 hash:ip family inet6 timeout 0 -exist");
            for e in entries {
                let set = match e.address {
                    IpAddr::V4(_) => "4",
                    IpAddr::V6(_) => "6",
                };
                let _ = writeln!(
                    s,
                    "add {name}{set} {} timeout {} -exist",
                    e.address,
                    e.remaining_ttl_s.clamp(1, IPSET_MAX_TIMEOUT)
                );
            }
        }
    }
    s
}

/// Prints the export.
pub fn export(config: &Config, format: Format, name: &str) -> Result<(), CommandError> {
    if name.is_empty()
        || name.len() > 24
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(CommandError::Other(format!(
            "--name {name:?}: use 1 to 24 letters, digits, '_' or '-'"
        )));
    }
    let entries = Backend::open(config)?.export()?;
    print(render(&entries, format, name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: &str, ttl: u64) -> ExportEntry {
        ExportEntry {
            address: a.parse().unwrap(),
            last_reported: "2026-11-25T10:00:00Z".into(),
            expires_at: "2026-11-26T10:00:00Z".into(),
            remaining_ttl_s: ttl,
            reports: 2,
        }
    }

    #[test]
    fn formats() {
        let list = [e("11.1.1.1", 3600), e("2a01:4f8::1", 7200)];
        assert_eq!(render(&list, Format::Plain, "t"), "11.1.1.1\n2a01:4f8::1\n");
        let csv = render(&list, Format::Csv, "t");
        assert_eq!(
            csv.lines().nth(1),
            Some("11.1.1.1,2026-11-26T10:00:00Z,3600,2026-11-25T10:00:00Z,2")
        );
        let nft = render(&list, Format::Nft, "tjfwd");
        assert!(nft.contains("table inet tjfwd {"));
        assert!(nft.contains("add element inet tjfwd tjfwd4 { 11.1.1.1 timeout 3600s }"));
        assert!(nft.contains("add element inet tjfwd tjfwd6 { 2a01:4f8::1 timeout 7200s }"));
        let ipset = render(&list, Format::Ipset, "tj");
        assert!(ipset.contains("create tj4 hash:ip family inet timeout 0 -exist"));
        assert!(ipset.contains("add tj6 2a01:4f8::1 timeout 7200 -exist"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&list, Format::Json, "t")).unwrap();
        assert_eq!(json["entries"][1]["address"], "2a01:4f8::1");
        assert_eq!(json["entries"][0]["remaining_ttl_s"], 3600);
        // No empty element lists in nft (a syntax error there).
        assert!(!render(&[], Format::Nft, "t").contains("add element"));
    }
}
