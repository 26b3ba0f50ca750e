//! `tjfwd status`: where tjfwd stands, for people and for monitoring.
//!
//! Exit code: 0 healthy, 1 degraded (the API refuses our requests, or sends
//! have been failing for longer than five flush intervals), 2 not running or
//! an error.

use std::process::ExitCode;

use crate::commands::{print, Backend, CommandError, ConfigArgs};
use crate::config::Config;

/// The flags of `tjfwd status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// JSON output (a stable interface: docs/STATUS.md).
    #[arg(long)]
    json: bool,
}

/// Runs `tjfwd status`; its exit code is the status's.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(status(
        &args.config.load(false)?,
        args.json,
    )?))
}

/// Prints the status; returns the exit code.
pub fn status(config: &Config, json: bool) -> Result<u8, CommandError> {
    let snapshot = Backend::open(config)?.status()?;
    if json {
        print(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&snapshot).expect("plain data serializes")
        ))?;
    } else {
        print(snapshot.human())?;
    }
    Ok(snapshot.exit_code())
}
