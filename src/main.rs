//! The `tjfwd` binary: parses arguments, sets up logging, calls the library.
//!
//! Commands: `run` (the daemon), the operator commands `status`, `replay`,
//! `resend`, `export`, `flush`, `check-config` (they talk to a running
//! daemon through its control socket, or open the database when none runs),
//! `config import-cowrie`, `completions` and `man`. Every command takes the
//! same configuration flags (`--config`, `TJFWD_CONFIG`, `--cowrie-config`).
//!
//! Exit codes (stable, for scripts and monitoring):
//! - 0: success (for `run`: a clean shutdown after SIGTERM/SIGINT, or the
//!   end of `--drain`; for `status`: healthy);
//! - 1: failure (invalid configuration, state directory in use, storage
//!   error...; for `status`: degraded);
//! - 2: usage error (unknown flag, missing argument; for `status`: not
//!   running).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tjfwd::commands;
use tjfwd::config::{Config, LoadOptions, TEST_RATE_WINDOW_ENV};
use tjfwd::control::ResendFilter;
use tjfwd::cowrie_cfg;
use tjfwd::daemon::{self, RunOptions};
use tjfwd::logging::{self, LogFormat, LogOptions};

/// Forwards attacker addresses seen by the Cowrie honeypot to the Threat
/// Jammer Report API, durably.
#[derive(Debug, Parser)]
#[command(name = "tjfwd", version, about, propagate_version = true)]
struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (-q warnings and errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
    /// Log line format: human (journald-friendly under systemd) or json
    /// (one object a line, for log shippers).
    #[arg(long, value_enum, global = true, env = "TJFWD_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or RUST_LOG-style
    /// directives (tjfwd=debug,sled=info); wins over RUST_LOG, -v and -q.
    #[arg(long, global = true, env = "TJFWD_LOG_LEVEL", value_name = "LEVEL", value_parser = logging::parse_level)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the forwarder: tail cowrie.json, queue, report.
    Run(RunArgs),
    /// Show where tjfwd stands (exit 0 healthy, 1 degraded, 2 not running).
    Status(StatusArgs),
    /// Queue the addresses of historical Cowrie logs (plain, .gz, - for stdin).
    Replay(ReplayArgs),
    /// Queue again addresses already reported (or dead-lettered).
    Resend(ResendArgs),
    /// Print the active denylist mirror with remaining TTLs.
    Export(ExportArgs),
    /// Send now what is pending (still under the rate limit).
    Flush(ConfigOnlyArgs),
    /// Validate the configuration and print the effective one (token redacted).
    CheckConfig(CheckConfigArgs),
    /// Examine a damaged database, move it aside and rebuild the queue from
    /// what it still holds and the Cowrie logs on disk (nothing is deleted).
    Recover(RecoverArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// The configuration, the same for every command.
#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// The configuration file (TOML). Optional with --cowrie-config.
    #[arg(
        short,
        long,
        env = "TJFWD_CONFIG",
        value_name = "FILE",
        required_unless_present = "cowrie_config"
    )]
    config: Option<PathBuf>,
    /// Take [threatjammer] and the JSON log from Cowrie's cowrie.cfg
    /// ([output_threatjammer], [output_jsonlog]); the TOML file, if any,
    /// supplies the rest and must not set them.
    #[arg(long, value_name = "FILE")]
    cowrie_config: Option<PathBuf>,
    /// The directory Cowrie runs in (default: the directory of cowrie.cfg,
    /// or its parent if that is `etc`).
    #[arg(long, value_name = "DIR", requires = "cowrie_config")]
    cowrie_dir: Option<PathBuf>,
    /// Use this state directory instead of the configured state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the configuration; `need_token` refuses one without a token.
    fn load(&self, need_token: bool) -> anyhow::Result<Config> {
        let opts = LoadOptions {
            dry_run: !need_token,
        };
        let mut config = match &self.cowrie_config {
            Some(cowrie) => cowrie_cfg::load_config(
                cowrie,
                self.cowrie_dir.as_deref(),
                self.config.as_deref(),
                &opts,
            )?,
            None => {
                let path = self
                    .config
                    .as_deref()
                    .context("--config FILE is required")?;
                Config::load(path, &opts)?
            }
        };
        for n in &config.notes {
            tracing::info!("{n}");
        }
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        // Test-only: a shorter rate window, so tests of the binary need not
        // wait minutes (a warning says so at start and in check-config).
        let window = std::env::var_os(TEST_RATE_WINDOW_ENV);
        config.apply_test_rate_window(window.as_ref().map(|v| v.to_string_lossy()).as_deref())?;
        Ok(config)
    }
}

#[derive(Debug, clap::Args)]
struct ConfigOnlyArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, clap::Args)]
struct CheckConfigArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Accept a configuration without a token (as `run --dry-run` does).
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// JSON output (a stable interface: docs/STATUS.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Log files: plain or gzip; - for standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Only events at or after this time: RFC 3339, or a duration ago (7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<u64>,
    /// Only events before this time: RFC 3339, or a duration ago (1d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<u64>,
    /// Print the distinct addresses with their counts; queue nothing.
    #[arg(long, conflicts_with = "send")]
    dry_run: bool,
    /// When no daemon runs: send what is pending afterwards (under the
    /// rate limit), then exit.
    #[arg(long)]
    send: bool,
    /// Plain progress lines instead of a progress bar.
    #[arg(long)]
    no_progress_bar: bool,
}

fn parse_time(s: &str) -> Result<u64, String> {
    tjfwd::commands::replay::parse_time(s)
}

#[derive(Debug, clap::Args)]
struct ResendArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Addresses whose TTL has not run out (the default).
    #[arg(long, conflicts_with = "dead_letter")]
    active: bool,
    /// Addresses reported (or dead-lettered) within this long (e.g. 2h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only this address.
    #[arg(long, value_name = "ADDR")]
    ip: Option<std::net::IpAddr>,
    /// Only addresses in this network.
    #[arg(long, value_name = "NET")]
    cidr: Option<ipnet::IpNet>,
    /// Retry what the API rejected (the dead-letter set), once its cause is fixed.
    #[arg(long)]
    dead_letter: bool,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "plain")]
    format: tjfwd::commands::export::Format,
    /// nft table / ipset set name prefix (sets NAME4 and NAME6).
    #[arg(long, default_value = "tjfwd")]
    name: String,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the tjfwd TOML configuration equivalent to Cowrie's cowrie.cfg
    /// ([output_threatjammer] and the JSON log); never prints the token.
    ImportCowrie(ImportCowrieArgs),
}

#[derive(Debug, clap::Args)]
struct ImportCowrieArgs {
    /// Cowrie's configuration file (e.g. /home/cowrie/cowrie/etc/cowrie.cfg).
    #[arg(value_name = "COWRIE_CFG")]
    cowrie_config: PathBuf,
    /// The directory Cowrie runs in (its relative paths are relative to it);
    /// default: the directory of cowrie.cfg, or its parent if that is `etc`.
    #[arg(long, value_name = "DIR")]
    cowrie_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Do everything but the HTTP request: log each batch, acknowledge nothing.
    /// No token is needed.
    #[arg(long)]
    dry_run: bool,
    /// Read the input to its end, send everything pending (still under the
    /// rate limit, without waiting for flush_interval), then exit.
    #[arg(long)]
    drain: bool,
}

#[derive(Debug, clap::Args)]
struct RecoverArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only examine the database and say what is wrong (exit 0 sound,
    /// 1 damaged); change nothing.
    #[arg(long)]
    check: bool,
    /// Rebuild even when the database is sound.
    #[arg(long, conflicts_with = "check")]
    force: bool,
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    logging::init(&LogOptions {
        format: cli.log_format,
        level: cli.log_level.clone(),
        verbose: cli.verbose,
        quiet: cli.quiet,
    });
    match run(cli) {
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = cli.quiet > 0;
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Status(a) => Ok(ExitCode::from(commands::status::run(
            &a.config.load(false)?,
            a.json,
        )?)),
        Command::Replay(a) => {
            let config = a.config.load(false)?;
            let opts = commands::replay::Options {
                files: a.files,
                since_ms: a.since,
                until_ms: a.until,
                dry_run: a.dry_run,
                send: a.send,
                progress_bar: a.no_progress_bar.then_some(false),
            };
            commands::replay::run(&config, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resend(a) => {
            let filter = ResendFilter {
                dead_letter: a.dead_letter,
                active_only: !a.dead_letter,
                within_ms: a.since.map(|d| d.as_millis() as u64),
                ip: a.ip,
                cidr: a.cidr,
            };
            let _ = a.active; // the default; the flag documents it
            commands::resend::run(&a.config.load(false)?, &filter)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(a) => {
            commands::export::run(&a.config.load(false)?, a.format, &a.name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Flush(a) => {
            commands::flush::run(&a.config.load(false)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(a) => {
            commands::check_config::run(&a.config.load(!a.dry_run)?, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Recover(a) => {
            let config = a.config.load(false)?;
            let opts = commands::recover::Options {
                check: a.check,
                force: a.force,
            };
            let sound = commands::recover::run(&config, opts, &mut tjfwd::output::stdout())?;
            Ok(if a.check && !sound {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tjfwd", &mut script);
            tjfwd::output::stdout()
                .write_all(&script)
                .context("cannot write the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut tjfwd::output::stdout())
                .context("cannot write the man page")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::ImportCowrie(args)) => cmd_import_cowrie(args),
    }
}

fn cmd_import_cowrie(args: ImportCowrieArgs) -> anyhow::Result<ExitCode> {
    let imported = cowrie_cfg::import_toml(&args.cowrie_config, args.cowrie_dir.as_deref())?;
    for w in &imported.warnings {
        tracing::warn!("{w}");
    }
    for n in &imported.notes {
        tracing::info!("{n}");
    }
    write!(tjfwd::output::stdout(), "{}", imported.toml)
        .context("cannot write the configuration")?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load(!args.dry_run)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        daemon::run(
            config,
            RunOptions {
                dry_run: args.dry_run,
                drain: args.drain,
            },
            shutdown_signal(),
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
