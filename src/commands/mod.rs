//! The subcommands of `tjfwd`, one file each: [`run`] (the daemon), the
//! operator commands [`status`], [`replay`], [`resend`], [`export`],
//! [`flush`], [`check_config`], [`recover`], and [`import_cowrie`]
//! (`config import-cowrie`), [`completions`], [`man`].
//!
//! Each file holds the command's flags, `Args` (a `clap::Args`, with the
//! help texts), and `run(args)`, which loads the configuration
//! ([`ConfigArgs`], flattened into every command that needs one), does the
//! command and returns its exit code; the operator commands keep their work
//! in a function named after them, on a loaded [`Config`] (e.g.
//! [`replay::replay`]). The top-level command line that gathers them is
//! [`crate::cli`]; `main.rs` only parses, sets up logging and dispatches.
//! Nothing outside `commands` and `cli` depends on this module.
//!
//! The operator commands work through a [`Backend`]: the running daemon's
//! control socket when there is one, else the database opened directly. The
//! result is the same either way (see [`crate::control`]).

pub mod check_config;
pub mod completions;
mod config_args;
pub mod export;
pub mod flush;
pub mod import_cowrie;
pub mod man;
pub mod recover;
pub mod replay;
pub mod resend;
pub mod run;
pub mod status;

pub use config_args::ConfigArgs;

use std::sync::Arc;

use crate::config::Config;
use crate::control::{
    Client, ControlError, ExportEntry, FlushOutcome, Ops, Request, ResendFilter, ResendOutcome,
};
use crate::status::Snapshot;
use crate::store::{EnqueueOutcome, Sighting, Store, StoreError};

/// The target of the log events of the command line's own code: the
/// binary's crate name, which is what these events carried when that code
/// lived in `main.rs` (log lines read `INFO tjfwd: ...`, and filters such as
/// `--log-level tjfwd=debug` select them as before).
pub(crate) const LOG_TARGET: &str = "tjfwd";

/// Errors of the commands: each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Queue(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

/// Where a command's operations run.
pub enum Backend {
    /// A running daemon, through its control socket.
    Daemon(Client),
    /// The database, opened by this process (no daemon runs).
    Local(Box<Ops>),
}

impl Backend {
    /// Connects to the daemon of the configured state directory, or opens
    /// the database when none runs.
    pub fn open(config: &Config) -> Result<Backend, CommandError> {
        if !config.state_dir.join("db").exists() && Client::connect(&config.state_dir)?.is_none() {
            return Err(CommandError::Other(format!(
                "no tjfwd database in {}: has `tjfwd run` ever run with this state_dir? (check --config / state_dir)",
                config.state_dir.display()
            )));
        }
        // A daemon that is starting holds the database before its socket
        // listens: try both for a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(client) = Client::connect(&config.state_dir)? {
                return Ok(Backend::Daemon(client));
            }
            match Store::open_configured(config) {
                Ok(q) => {
                    return Ok(Backend::Local(Box::new(Ops {
                        queue: Arc::new(q),
                        config: config.clone(),
                        daemon: None,
                    })))
                }
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(StoreError::Locked { dir, .. }) => {
                    return Err(CommandError::Other(format!(
                        "a tjfwd daemon holds {} but its control socket could not be reached; \
                         run this command as the daemon's user (or root), or check that the daemon is not stuck starting",
                        dir.display()
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether a daemon is answering.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Backend::Daemon(_))
    }

    pub fn status(&mut self) -> Result<Snapshot, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Status)?),
            Backend::Local(ops) => Ok(ops.status()?),
        }
    }

    pub fn enqueue(&mut self, sightings: &[Sighting]) -> Result<EnqueueOutcome, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Enqueue {
                sightings: sightings.iter().map(|s| (s.addr, s.seen_ms)).collect(),
            })?),
            Backend::Local(ops) => Ok(ops.enqueue(sightings)?),
        }
    }

    pub fn resend(&mut self, filter: &ResendFilter) -> Result<ResendOutcome, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Resend {
                filter: filter.clone(),
            })?),
            Backend::Local(ops) => Ok(ops.resend(filter)?),
        }
    }

    pub fn export(&mut self) -> Result<Vec<ExportEntry>, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Export)?),
            Backend::Local(ops) => Ok(ops.export()?),
        }
    }

    /// Only with a daemon; without one, see [`flush::flush`].
    pub fn flush(&mut self) -> Result<FlushOutcome, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Flush)?),
            Backend::Local(ops) => Ok(ops.flush()?),
        }
    }
}

/// Sends everything pending (no daemon runs): the daemon's own scheduler in
/// drain mode, without inputs, under the same rate limit. Needs a token.
pub fn send_pending(config: &Config) -> Result<u64, CommandError> {
    if config.threatjammer.token.is_none() {
        return Err(CommandError::Other(
            "no daemon runs, and sending needs the API token: set [threatjammer] bearer_token_file or TJFWD_BEARER_TOKEN".into(),
        ));
    }
    let mut c = config.clone();
    c.input.cowrie_json = None;
    c.input.listen_tcp = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Other(format!("cannot start the async runtime: {e}")))?;
    let stats = runtime
        .block_on(crate::daemon::run(
            c,
            crate::daemon::RunOptions {
                dry_run: false,
                drain: true,
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        ))
        .map_err(|e| CommandError::Other(e.to_string()))?;
    Ok(crate::stats::Stats::get(&stats.addresses_reported))
}
