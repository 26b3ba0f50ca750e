//! `tjfwd check-config`: validate the configuration and print the effective
//! one, token redacted. Used by the systemd unit's `ExecStartPre`.

use crate::config::Config;

/// Prints the effective configuration (unless `quiet`) and its warnings.
pub fn run(config: &Config, quiet: bool) {
    for w in &config.warnings {
        eprintln!("tjfwd: warning: {w}");
    }
    if !quiet {
        print!("{}", config.redacted_toml());
    }
}
