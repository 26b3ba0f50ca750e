//! `tjfwd check-config`: validate the configuration and print the effective
//! one, token redacted. Used by the systemd unit's `ExecStartPre`.

use std::process::ExitCode;

use crate::commands::{note, print, CommandError, ConfigArgs};
use crate::config::Config;

/// The flags of `tjfwd check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Accept a configuration without a token (as `run --dry-run` does).
    #[arg(long)]
    dry_run: bool,
}

/// Runs `tjfwd check-config`; `quiet` (the global `-q`) prints only the
/// warnings.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    check_config(&args.config.load(!args.dry_run)?, quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the effective configuration (unless `quiet`) and its warnings.
pub fn check_config(config: &Config, quiet: bool) -> Result<(), CommandError> {
    for w in &config.warnings {
        note(format_args!("tjfwd: warning: {w}"));
    }
    if !quiet {
        print(config.redacted_toml())?;
    }
    Ok(())
}
