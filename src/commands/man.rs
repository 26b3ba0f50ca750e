//! `tjfwd man`: print the man page (roff), made from the command line's
//! help texts (packaging installs it as tjfwd(1)).

use std::process::ExitCode;

use anyhow::Context;

/// `tjfwd man` has no flags of its own.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints the man page of `cli`, the whole `tjfwd` command
/// (`crate::cli::Cli`, passed in so that no module below `cli` depends on
/// it).
pub fn run(_args: Args, cli: clap::Command) -> anyhow::Result<ExitCode> {
    clap_mangen::Man::new(cli)
        .render(&mut crate::output::stdout())
        .context("cannot write the man page")?;
    Ok(ExitCode::SUCCESS)
}
