//! `tjfwd completions SHELL`: print a shell completion script (packaging
//! installs those of bash, zsh and fish).

use std::process::ExitCode;

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
    clap_complete::generate(args.shell, &mut cli, "tjfwd", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
