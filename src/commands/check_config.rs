//! `tjfwd check-config`: validate the configuration and print the effective
//! one, token redacted. Used by the systemd unit's `ExecStartPre`.

use crate::commands::{note, print, CommandError};
use crate::config::Config;

/// Prints the effective configuration (unless `quiet`) and its warnings.
pub fn run(config: &Config, quiet: bool) -> Result<(), CommandError> {
    for w in &config.warnings {
        note(format_args!("tjfwd: warning: {w}"));
    }
    if !quiet {
        print(config.redacted_toml())?;
    }
    Ok(())
}
