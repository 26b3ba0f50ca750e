//! The `tjfwd` binary: parses arguments, sets up logging, calls the library.
//!
//! Commands: `run` (the daemon), the operator commands `status`, `replay`,
//! `resend`, `export`, `flush`, `check-config` (they talk to a running
//! daemon through its control socket, or open the database when none runs),
//! `config import-cowrie`, `completions` and `man`. Every command takes the
//! same configuration flags (`--config`, `TJFWD_CONFIG`, `--cowrie-config`).
//! The command line is defined in the library ([`tjfwd::cli`]), each
//! command's flags and code in its file of [`tjfwd::commands`].
//!
//! Exit codes (stable, for scripts and monitoring):
//! - 0: success (for `run`: a clean shutdown after SIGTERM/SIGINT, or the
//!   end of `--drain`; for `status`: healthy);
//! - 1: failure (invalid configuration, state directory in use, storage
//!   error, a port in use...; for `run`, also a thread or task of the daemon
//!   that panicked or ended unexpectedly: the daemon stopped the others and
//!   flushed its queue first, see `tjfwd::supervisor`; for `status`:
//!   degraded);
//! - 2: usage error (unknown flag, missing argument; for `status`: not
//!   running).

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tjfwd::cli::{Cli, Command, ConfigCommand};
use tjfwd::commands;
use tjfwd::logging;

fn main() -> ExitCode {
    limit_malloc_arenas();
    match run() {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!, which panics when standard error is closed.
            let _ = writeln!(tjfwd::output::stderr(), "tjfwd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// At most two glibc malloc arenas, unless the operator set
/// `MALLOC_ARENA_MAX`. glibc gives threads that allocate at once arenas of
/// their own (up to 8 per core), and memory freed into one is not reused by
/// threads allocating from another: `tjfwd replay`, whose reading, decoding
/// and queue-writing threads pass buffers to each other, peaked anywhere
/// between 55 and 84 MiB for the same 2M-line log; with two arenas, 54 to
/// 60 MiB (README "Benchmarks"). Nothing of tjfwd allocates on many
/// threads at once, so the contention costs nothing measurable.
// glibc's mallopt has no safe binding: the one unsafe call of the binary.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a parameter of the allocator; called
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Parses the command line (exit 2 on a usage error), sets up logging and
/// runs the command.
fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    logging::init(&cli.log_options());
    let quiet = cli.quiet > 0;
    match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Resend(args) => commands::resend::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Flush(args) => commands::flush::run(args),
        Command::CheckConfig(args) => commands::check_config::run(args, quiet),
        Command::Recover(args) => commands::recover::run(args),
        Command::Config(ConfigCommand::ImportCowrie(args)) => commands::import_cowrie::run(args),
        Command::Completions(args) => commands::completions::run(args, Cli::command()),
        Command::Man(args) => commands::man::run(args, Cli::command()),
    }
}
