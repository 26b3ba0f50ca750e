//! `tjfwd flush`: send now what is pending, still under the rate limit.
//!
//! With a daemon running, its scheduler is asked to send without waiting for
//! the flush interval. Without one, this command sends it itself (the same
//! scheduler, in drain mode) and returns when nothing is pending.

use std::process::ExitCode;

use crate::commands::{print, send_pending, Backend, CommandError, ConfigArgs};
use crate::config::Config;

/// The flags of `tjfwd flush`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only this target (threatjammer, abuseipdb, crowdsec); every enabled
    /// target by default.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

/// Runs `tjfwd flush`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    flush(&args.config.load(false)?, args.target.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Flushes (target `only`, or all); prints what it did.
pub fn flush(config: &Config, only: Option<&str>) -> Result<(), CommandError> {
    match Backend::open(config)? {
        mut b @ Backend::Daemon(_) => {
            let out = b.flush(only)?;
            print(format_args!(
                "asked the daemon to send {} pending addresses now (under the rate limit)\n",
                out.pending
            ))?;
        }
        Backend::Local(ops) => {
            let pending = match only {
                None => ops.queue.pending_count()?,
                Some(_) => {
                    let t = ops.targets_in_scope(only)?[0];
                    ops.queue.pending_count_for(t)?
                }
            };
            drop(ops);
            print(format_args!(
                "no daemon runs: sending {pending} pending addresses (under the rate limit)…\n"
            ))?;
            let sent = send_pending(config, only)?;
            print(format_args!("sent {sent} addresses\n"))?;
        }
    }
    Ok(())
}
