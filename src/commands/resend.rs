//! `tjfwd resend`: queue again addresses of the reported set (the local
//! mirror of the private denylist) or of the dead-letter set, e.g. after an
//! outage on the API's side or a token change, or once the cause of a
//! rejection is fixed.

use std::process::ExitCode;

use crate::commands::{print, Backend, CommandError, ConfigArgs};
use crate::config::Config;
use crate::control::ResendFilter;

/// The flags of `tjfwd resend`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Addresses whose TTL has not run out (the default).
    #[arg(long, conflicts_with = "dead_letter")]
    active: bool,
    /// Addresses reported (or dead-lettered) within this long (e.g. 2h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only this address.
    #[arg(long, value_name = "ADDR")]
    ip: Option<std::net::IpAddr>,
    /// Only addresses in this network.
    #[arg(long, value_name = "NET")]
    cidr: Option<ipnet::IpNet>,
    /// Retry what the API rejected (the dead-letter set), once its cause is fixed.
    #[arg(long)]
    dead_letter: bool,
    /// Only this target's set, queued again for it alone (threatjammer,
    /// abuseipdb, crowdsec); by default each enabled target's set, each
    /// queued again for its own target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

/// Runs `tjfwd resend`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = ResendFilter {
        dead_letter: args.dead_letter,
        active_only: !args.dead_letter,
        within_ms: args.since.map(|d| d.as_millis() as u64),
        ip: args.ip,
        cidr: args.cidr,
        target: args.target,
    };
    let _ = args.active; // the default; the flag documents it
    resend(&args.config.load(false)?, &filter)?;
    Ok(ExitCode::SUCCESS)
}

/// Queues the matching addresses again; prints how many.
pub fn resend(config: &Config, filter: &ResendFilter) -> Result<(), CommandError> {
    let mut b = Backend::open(config)?;
    let out = b.resend(filter)?;
    let from = if filter.dead_letter {
        "dead-letter set"
    } else {
        "reported set"
    };
    print(format_args!(
        "{} addresses of the {from} matched: {} queued again, {} were already pending\n",
        out.matched, out.queued, out.already_pending
    ))?;
    if !b.is_daemon() && out.queued > 0 {
        print(
            "no daemon runs: they are sent when `tjfwd run` starts (or now with `tjfwd flush`)\n",
        )?;
    }
    Ok(())
}
