//! The `tjfwd` binary: parses arguments, sets up logging, calls the library.
//!
//! Commands: `run` (the daemon; its configuration from `--config` TOML
//! and/or Cowrie's `--cowrie-config`, built by the library) and `config
//! import-cowrie` (prints the TOML equivalent of a cowrie.cfg).
//!
//! Exit codes (stable, for scripts and monitoring):
//! - 0: success (for `run`: a clean shutdown after SIGTERM/SIGINT, or the
//!   end of `--drain`);
//! - 1: failure (invalid configuration, state directory in use, storage
//!   error...);
//! - 2: usage error (unknown flag, missing argument).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tjfwd::config::{Config, LoadOptions};
use tjfwd::cowrie_cfg;
use tjfwd::daemon::{self, RunOptions};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the forwarder: tail cowrie.json, queue, report.
    Run(RunArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    /// Do everything but the HTTP request: log each batch, acknowledge nothing.
    /// No token is needed.
    #[arg(long)]
    dry_run: bool,
    /// Read the input to its end, send everything pending (still under the
    /// rate limit, without waiting for flush_interval), then exit.
    #[arg(long)]
    drain: bool,
    /// Use this state directory instead of the configured state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tjfwd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => cmd_run(args),
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
    print!("{}", imported.toml);
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        dry_run: args.dry_run,
    };
    let mut config = match &args.cowrie_config {
        Some(cowrie) => cowrie_cfg::load_config(
            cowrie,
            args.cowrie_dir.as_deref(),
            args.config.as_deref(),
            &opts,
        )?,
        None => {
            let path = args
                .config
                .as_deref()
                .context("--config FILE is required")?;
            Config::load(path, &opts)?
        }
    };
    for n in &config.notes {
        tracing::info!("{n}");
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
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

/// Human-readable logs on stderr; `-v`/`-q` pick the level, RUST_LOG wins.
fn init_logging(verbose: u8, quiet: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (q, _) if q > 0 => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sled=warn,hyper=warn,reqwest=warn,rustls=warn"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
