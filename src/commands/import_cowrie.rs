//! `tjfwd config import-cowrie COWRIE_CFG`: print the tjfwd TOML
//! configuration equivalent to Cowrie's `cowrie.cfg` (its warnings and notes
//! go to the log); the token is never printed. The work is
//! [`cowrie_cfg::import_toml`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::LOG_TARGET;
use crate::cowrie_cfg;

/// The flags of `tjfwd config import-cowrie`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cowrie's configuration file (e.g. /home/cowrie/cowrie/etc/cowrie.cfg).
    #[arg(value_name = "COWRIE_CFG")]
    cowrie_config: PathBuf,
    /// The directory Cowrie runs in (its relative paths are relative to it);
    /// default: the directory of cowrie.cfg, or its parent if that is `etc`.
    #[arg(long, value_name = "DIR")]
    cowrie_dir: Option<PathBuf>,
}

/// Prints the TOML; logs the warnings and notes of the import.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let imported = cowrie_cfg::import_toml(&args.cowrie_config, args.cowrie_dir.as_deref())?;
    for w in &imported.warnings {
        tracing::warn!(target: LOG_TARGET, "{w}");
    }
    for n in &imported.notes {
        tracing::info!(target: LOG_TARGET, "{n}");
    }
    write!(crate::output::stdout(), "{}", imported.toml)
        .context("cannot write the configuration")?;
    Ok(ExitCode::SUCCESS)
}
