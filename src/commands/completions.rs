//! `tjfwd completions SHELL`: print a shell completion script (packaging
//! installs those of bash, zsh and fish).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

/// The flags of `tjfwd completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Prints the completion script of `cli`, the whole `tjfwd` command
/// (`crate::cli::Cli`, passed in so that no module below `cli` depends on
/// it).
pub fn run(args: Args, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    // Into memory first: clap_complete panics on a write error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "tjfwd", &mut script);
    crate::output::stdout()
        .write_all(&script)
        .context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}
