//! The command line of the `tjfwd` binary: the global flags ([`Cli`]) and the
//! subcommands ([`Command`]). Each subcommand's flags and the code that runs
//! it live in its own file of [`crate::commands`]; `main.rs` parses, sets up
//! logging and dispatches. Being in the library, the clap command is
//! available to `tjfwd man`, `tjfwd completions` and tests
//! (`<Cli as clap::CommandFactory>::command()`).
//!
//! Every command takes the same configuration flags
//! ([`crate::commands::ConfigArgs`]: `--config`, `TJFWD_CONFIG`,
//! `--cowrie-config`...).

use clap::{Parser, Subcommand};

use crate::commands::{
    check_config, completions, export, flush, import_cowrie, man, recover, replay, resend, run,
    status,
};
use crate::logging::{self, LogFormat, LogOptions};

/// Forwards attacker addresses seen by the Cowrie honeypot to the Threat
/// Jammer Report API, durably.
#[derive(Debug, Parser)]
#[command(name = "tjfwd", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q warnings and errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log line format: human (journald-friendly under systemd) or json
    /// (one object a line, for log shippers).
    #[arg(long, value_enum, global = true, env = "TJFWD_LOG_FORMAT", default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or RUST_LOG-style
    /// directives (tjfwd=debug,sled=info); wins over RUST_LOG, -v and -q.
    #[arg(long, global = true, env = "TJFWD_LOG_LEVEL", value_name = "LEVEL", value_parser = logging::parse_level)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The logging set up by the global flags.
    pub fn log_options(&self) -> LogOptions {
        LogOptions {
            format: self.log_format,
            level: self.log_level.clone(),
            verbose: self.verbose,
            quiet: self.quiet,
        }
    }
}

/// The subcommands; each variant's flags are the `Args` of its file in
/// [`crate::commands`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the forwarder: tail cowrie.json, queue, report.
    ///
    /// Signals: SIGTERM or SIGINT stop it in order (the queue flushed to
    /// disk, exit 0, within seconds). SIGHUP reloads the configuration and
    /// the token: the settings of a request (`[targets.threatjammer]`
    /// bearer_token, api_url, ca_file, allow_insecure_http, category, tags,
    /// request_timeout) apply at once, every other key that changed is
    /// logged as taking effect at the next restart, and an invalid
    /// configuration is logged and changes nothing. SIGUSR1 and SIGUSR2 are
    /// logged and ignored.
    Run(run::Args),
    /// Show where tjfwd stands (exit 0 healthy, 1 degraded, 2 not running).
    Status(status::Args),
    /// Queue the addresses of historical Cowrie logs (plain, .gz, - for stdin).
    Replay(replay::Args),
    /// Queue again addresses already reported (or dead-lettered).
    Resend(resend::Args),
    /// Print tjfwd's denylist (or a target's mirror with --target), in several formats.
    Export(export::Args),
    /// Send now what is pending (still under each target's rate limit).
    Flush(flush::Args),
    /// Validate the configuration and print the effective one (token redacted).
    CheckConfig(check_config::Args),
    /// Examine a damaged database, move it aside and rebuild the queue from
    /// what it still holds and the Cowrie logs on disk (nothing is deleted).
    Recover(recover::Args),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions(completions::Args),
    /// Print the man page (roff).
    Man(man::Args),
}

/// The subcommands of `tjfwd config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the tjfwd TOML configuration equivalent to Cowrie's cowrie.cfg
    /// ([output_threatjammer] and the JSON log); never prints the token.
    // The doc comment is the help text: its brackets name a section of
    // cowrie.cfg, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    ImportCowrie(import_cowrie::Args),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks of the whole command line (conflicting
    /// or unknown argument names, `requires` naming nothing...), which it
    /// otherwise makes only for the subcommand being parsed.
    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_and_subcommand_flags_parse() {
        let cli = Cli::try_parse_from([
            "tjfwd",
            "check-config",
            "--config",
            "t.toml",
            "--dry-run",
            "-q",
        ])
        .unwrap();
        assert_eq!(cli.quiet, 1);
        assert!(matches!(cli.command, Command::CheckConfig(_)));
        let cli = Cli::try_parse_from(["tjfwd", "config", "import-cowrie", "cowrie.cfg"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCommand::ImportCowrie(_))
        ));
    }
}
