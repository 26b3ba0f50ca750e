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
}

/// Runs `tjfwd flush`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    flush(&args.config.load(false)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Flushes; prints what it did.
pub fn flush(config: &Config) -> Result<(), CommandError> {
    match Backend::open(config)? {
        mut b @ Backend::Daemon(_) => {
            let out = b.flush()?;
            print(format_args!(
                "asked the daemon to send {} pending addresses now (under the rate limit)\n",
                out.pending
            ))?;
        }
        Backend::Local(ops) => {
            let pending = ops.queue.pending_count()?;
            drop(ops);
            print(format_args!(
                "no daemon runs: sending {pending} pending addresses (under the rate limit)…\n"
            ))?;
            let sent = send_pending(config)?;
            print(format_args!("sent {sent} addresses\n"))?;
        }
    }
    Ok(())
}
