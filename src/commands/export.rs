//! `tjfwd export`: tjfwd's denylist (every address it selected, while
//! pending and until `[feed] ttl` after its last sighting), or with
//! `--target NAME` the active entries of that target's reported mirror,
//! with their remaining TTLs, so an operator can block the attackers
//! locally: plain addresses, JSON, CSV, an nftables script (sets with
//! per-element timeouts), or `ipset restore` input.

use std::fmt::Write as _;
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
    /// Print this target's reported mirror (what it accepted, until its
    /// TTL there runs out) instead of tjfwd's own denylist.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

/// Runs `tjfwd export`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    export(
        &args.config.load(false)?,
        args.format,
        &args.name,
        args.target.as_deref(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One address a line.
    Plain,
    /// `{"exported_at": ..., "entries": [...]}`: each entry's address,
    /// expires_at, remaining_ttl_s, and last_seen and pending (the
    /// denylist) or last_reported and reports (a target's mirror).
    Json,
    /// `address,expires_at,remaining_ttl_s,last_seen,pending` (the
    /// denylist) or `address,expires_at,remaining_ttl_s,last_reported,reports`
    /// (a target's mirror), with a header line.
    Csv,
    /// An `nft -f` script: table `inet NAME`, sets NAME4/NAME6 with timeouts.
    Nft,
    /// `ipset restore` input: sets NAME4/NAME6 (hash:ip) with timeouts.
    Ipset,
}

/// ipset's largest timeout, seconds.
const IPSET_MAX_TIMEOUT: u64 = 2_147_483;

/// The `maxelem` of tjfwd's ipset sets: ipset's default (65,536) refused
/// larger lists ("Hash is full"). One fixed value, far above any sensor's
/// list (it is a cap, not an allocation), so that `create -exist` finds the
/// set a previous export made "the same" and goes on.
const IPSET_MAXELEM: usize = 1 << 24;

/// Renders entries in a format; `name` names the nft table / ipset sets;
/// `target` is the target whose mirror they are (None: the denylist).
pub fn render(entries: &[ExportEntry], format: Format, name: &str, target: Option<&str>) -> String {
    let what = match target {
        None => "tjfwd's denylist".to_string(),
        Some(t) => format!("the reported mirror of target {t}"),
    };
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
        Format::Csv if target.is_none() => {
            s.push_str("address,expires_at,remaining_ttl_s,last_seen,pending\n");
            for e in entries {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{}",
                    e.address,
                    e.expires_at,
                    e.remaining_ttl_s,
                    e.last_seen.as_deref().unwrap_or(""),
                    e.pending.unwrap_or(false)
                );
            }
        }
        Format::Csv => {
            s.push_str("address,expires_at,remaining_ttl_s,last_reported,reports\n");
            for e in entries {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{}",
                    e.address,
                    e.expires_at,
                    e.remaining_ttl_s,
                    e.last_reported.as_deref().unwrap_or(""),
                    e.reports.unwrap_or(0)
                );
            }
        }
        Format::Nft => {
            let _ = writeln!(s, "#!/usr/sbin/nft -f");
            let _ = writeln!(
                s,
                "# tjfwd: {} addresses of {what}, {}",
                entries.len(),
                rfc3339(now_ms())
            );
            let _ = writeln!(s, "table inet {name} {{");
            let _ = writeln!(s, "\tset {name}4 {{ type ipv4_addr; flags timeout; }}");
            let _ = writeln!(s, "\tset {name}6 {{ type ipv6_addr; flags timeout; }}");
            let _ = writeln!(s, "}}");
            // `nft -f` applies the file as one transaction: the sets are
            // replaced at once (gone addresses leave, timeouts are renewed).
            let _ = writeln!(s, "flush set inet {name} {name}4");
            let _ = writeln!(s, "flush set inet {name} {name}6");
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
            // Each set is filled under a second name, then swapped with the
            // live one, which firewall rules keep referring to: a reload
            // replaces the list at once (gone addresses leave, timeouts are
            // renewed). Sized by IPSET_MAXELEM.
            let _ = writeln!(
                s,
                "# tjfwd: {} addresses of {what}, {}",
                entries.len(),
                rfc3339(now_ms())
            );
            for (set, family, list) in [("4", "inet", &v4), ("6", "inet6", &v6)] {
                let live = format!("{name}{set}");
                let next = format!("{name}{set}-next");
                let kind = format!("hash:ip family {family} timeout 0 maxelem {IPSET_MAXELEM}");
                // A set left by an interrupted restore goes first.
                let _ = writeln!(s, "create {next} {kind} -exist");
                let _ = writeln!(s, "destroy {next}");
                let _ = writeln!(s, "create {next} {kind}");
                for e in list.iter() {
                    let _ = writeln!(
                        s,
                        "add {next} {} timeout {} -exist",
                        e.address,
                        e.remaining_ttl_s.clamp(1, IPSET_MAX_TIMEOUT)
                    );
                }
                let _ = writeln!(s, "create {live} {kind} -exist");
                let _ = writeln!(s, "swap {next} {live}");
                let _ = writeln!(s, "destroy {next}");
            }
        }
    }
    s
}

/// Prints the export: the denylist, or with `target` (a configured
/// target's name) its reported mirror.
pub fn export(
    config: &Config,
    format: Format,
    name: &str,
    target: Option<&str>,
) -> Result<(), CommandError> {
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
    if let Some(t) = target {
        let configured: Vec<String> = crate::daemon::store_targets(config)
            .into_iter()
            .map(|s| s.name)
            .collect();
        if !configured.iter().any(|c| c == t) {
            return Err(CommandError::Other(format!(
                "--target {t:?} is not a configured target (configured: {}); without \
                 --target, export prints tjfwd's own denylist",
                if configured.is_empty() {
                    "none".to_string()
                } else {
                    configured.join(", ")
                }
            )));
        }
    }
    let entries = Backend::open(config)?.export(target)?;
    print(render(&entries, format, name, target))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: &str, ttl: u64) -> ExportEntry {
        ExportEntry {
            address: a.parse().unwrap(),
            last_seen: None,
            pending: None,
            last_reported: Some("2026-11-25T10:00:00Z".into()),
            expires_at: "2026-11-26T10:00:00Z".into(),
            remaining_ttl_s: ttl,
            reports: Some(2),
        }
    }

    fn listed(a: &str, ttl: u64, pending: bool) -> ExportEntry {
        ExportEntry {
            address: a.parse().unwrap(),
            last_seen: Some("2026-11-25T09:00:00Z".into()),
            pending: Some(pending),
            last_reported: None,
            expires_at: "2026-11-26T09:00:00Z".into(),
            remaining_ttl_s: ttl,
            reports: None,
        }
    }

    #[test]
    fn denylist_formats() {
        let list = [
            listed("11.1.1.1", 3600, true),
            listed("2a01:4f8::1", 60, false),
        ];
        let csv = render(&list, Format::Csv, "t", None);
        assert_eq!(
            csv.lines().collect::<Vec<_>>(),
            [
                "address,expires_at,remaining_ttl_s,last_seen,pending",
                "11.1.1.1,2026-11-26T09:00:00Z,3600,2026-11-25T09:00:00Z,true",
                "2a01:4f8::1,2026-11-26T09:00:00Z,60,2026-11-25T09:00:00Z,false",
            ]
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&list, Format::Json, "t", None)).unwrap();
        assert_eq!(json["entries"][0]["pending"], true);
        assert_eq!(json["entries"][1]["last_seen"], "2026-11-25T09:00:00Z");
        assert!(json["entries"][0].get("reports").is_none());
        assert!(render(&list, Format::Nft, "t", None).contains("addresses of tjfwd's denylist"));
        assert!(render(&list, Format::Ipset, "t", Some("abuseipdb"))
            .contains("addresses of the reported mirror of target abuseipdb"));
    }

    #[test]
    fn formats() {
        let list = [e("11.1.1.1", 3600), e("2a01:4f8::1", 7200)];
        assert_eq!(
            render(&list, Format::Plain, "t", Some("threatjammer")),
            "11.1.1.1\n2a01:4f8::1\n"
        );
        let csv = render(&list, Format::Csv, "t", Some("threatjammer"));
        assert_eq!(
            csv.lines().nth(1),
            Some("11.1.1.1,2026-11-26T10:00:00Z,3600,2026-11-25T10:00:00Z,2")
        );
        let nft = render(&list, Format::Nft, "tjfwd", Some("threatjammer"));
        assert!(nft.contains("table inet tjfwd {"));
        assert!(nft.contains("add element inet tjfwd tjfwd4 { 11.1.1.1 timeout 3600s }"));
        assert!(nft.contains("add element inet tjfwd tjfwd6 { 2a01:4f8::1 timeout 7200s }"));
        let ipset = render(&list, Format::Ipset, "tj", Some("threatjammer"));
        assert!(ipset.contains("create tj4-next hash:ip family inet timeout 0 maxelem 16777216\n"));
        assert!(ipset.contains("add tj6-next 2a01:4f8::1 timeout 7200 -exist"));
        assert!(ipset.contains("swap tj4-next tj4\n"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&list, Format::Json, "t", Some("threatjammer"))).unwrap();
        assert_eq!(json["entries"][1]["address"], "2a01:4f8::1");
        assert_eq!(json["entries"][0]["remaining_ttl_s"], 3600);
        // No empty element lists in nft (a syntax error there).
        assert!(!render(&[], Format::Nft, "t", None).contains("add element"));
    }
}
