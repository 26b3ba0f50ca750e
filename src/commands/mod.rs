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
    self, Client, ControlError, ExportEntry, FlushOutcome, Ops, Request, ResendFilter,
    ResendOutcome,
};
use crate::status::Snapshot;
use crate::store::{EnqueueOutcome, Sighting, StoreError};

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
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error("{0}")]
    Other(String),
    /// Standard output could not be written (a closed pipe is not an
    /// error: see [`crate::output`]).
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),
}

/// Prints `text` to standard output through [`crate::output`]: a reader
/// that went away ends the output quietly, any other error is returned.
pub(crate) fn print(text: impl std::fmt::Display) -> Result<(), CommandError> {
    use std::io::Write;
    write!(crate::output::stdout(), "{text}").map_err(CommandError::Output)
}

/// A message of the command's own on standard error, through
/// [`crate::output`]; a failure to write it has nowhere to be reported.
pub(crate) fn note(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(crate::output::stderr(), "{text}");
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
    /// the database when none runs. Refuses a state directory without a
    /// database: the commands that only read it or act on what it holds
    /// (status, export, resend, flush) have nothing to say about an empty
    /// one, and creating it for them would hide a wrong state_dir.
    pub fn open(config: &Config) -> Result<Backend, CommandError> {
        if !config.state_dir.join("db").exists() && Client::connect(&config.state_dir)?.is_none() {
            return Err(CommandError::Other(format!(
                "no tjfwd database in {}: has `tjfwd run` ever run with this state_dir? (check --config / state_dir)",
                config.state_dir.display()
            )));
        }
        Backend::open_or_create(config)
    }

    /// As [`Backend::open`], but without a database creates it (and the
    /// state directory), as `tjfwd run` does: the same code, so the same
    /// permission checks ([`crate::permissions`]), lock and schema. For the
    /// commands that add to the queue (`replay`: an operator may replay
    /// old logs before the daemon's first start).
    pub fn open_or_create(config: &Config) -> Result<Backend, CommandError> {
        // A daemon that is starting holds the database before its socket
        // listens: try both for a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(client) = Client::connect(&config.state_dir)? {
                return Ok(Backend::Daemon(client));
            }
            match crate::daemon::open_queue(config) {
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
            Backend::Daemon(c) => enqueue_within_limit(c, sightings),
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

    /// The denylist, or with `target` that target's reported mirror.
    pub fn export(&mut self, target: Option<&str>) -> Result<Vec<ExportEntry>, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Export {
                target: target.map(str::to_owned),
            })?),
            Backend::Local(ops) => Ok(ops.export(target)?),
        }
    }

    /// Only with a daemon; without one, see [`flush::flush`].
    pub fn flush(&mut self, only: Option<&str>) -> Result<FlushOutcome, CommandError> {
        match self {
            Backend::Daemon(c) => Ok(c.call(&Request::Flush {
                target: only.map(str::to_string),
            })?),
            Backend::Local(ops) => Ok(ops.flush(only)?),
        }
    }
}

/// Queues `sightings` through the daemon, in as many requests as the
/// daemon's limit on a request's size takes ([`control::MAX_REQUEST`]):
/// halves until each fits. (`replay`'s batches fit in one: the split is for
/// what they may become.)
fn enqueue_within_limit(
    c: &mut Client,
    sightings: &[Sighting],
) -> Result<EnqueueOutcome, CommandError> {
    let req = Request::Enqueue {
        sightings: sightings.iter().map(|s| (s.addr, s.seen_ms)).collect(),
    };
    let size = serde_json::to_vec(&req).map_or(0, |v| v.len()) + 1;
    if size <= control::MAX_REQUEST || sightings.len() < 2 {
        return Ok(c.call(&req)?);
    }
    let (a, b) = sightings.split_at(sightings.len() / 2);
    let (a, b) = (enqueue_within_limit(c, a)?, enqueue_within_limit(c, b)?);
    Ok(EnqueueOutcome {
        queued_new: a.queued_new + b.queued_new,
        updated: a.updated + b.updated,
        already_reported: a.already_reported + b.already_reported,
        dead: a.dead + b.dead,
    })
}

/// Sends everything pending (no daemon runs): the daemon's own scheduler in
/// drain mode, without inputs, under the same rate limit; target `only`'s
/// alone when given. Needs the credentials of the targets it sends to.
pub fn send_pending(config: &Config, only: Option<&str>) -> Result<u64, CommandError> {
    let mut config = config.clone();
    if let Some(name) = only {
        if !config.targets.keep_only(name) {
            return Err(CommandError::Other(format!(
                "no enabled target is called {name:?}; enabled: {}",
                config.targets.names().join(", ")
            )));
        }
    }
    let config = &config;
    if config
        .threatjammer()
        .is_some_and(|tj| tj.report.token.is_none())
    {
        return Err(CommandError::Other(
            "no daemon runs, and sending needs the API token: set [targets.threatjammer] bearer_token_file or TJFWD_BEARER_TOKEN".into(),
        ));
    }
    let mut c = config.clone();
    c.input.cowrie_json = None;
    c.input.listen_tcp = None;
    // As the daemon would (its admin endpoint answers while this sends).
    let listeners = crate::listeners::Listeners::bind(&c, true)
        .map_err(|e| CommandError::Other(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Other(format!("cannot start the async runtime: {e}")))?;
    let stats = runtime.block_on(crate::daemon::run(
        c,
        crate::daemon::RunOptions {
            dry_run: false,
            drain: true,
        },
        listeners,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))?;
    Ok(crate::stats::Stats::get(&stats.addresses_reported))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `replay` through a daemon: sightings that would make a request
    /// larger than the daemon takes are sent in several requests, all of
    /// them queued.
    #[test]
    fn a_large_enqueue_is_split_into_requests_the_daemon_takes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default_for_tests(dir.path().join("state"));
        let queue = Arc::new(crate::daemon::open_queue(&config).unwrap());
        let ops = Arc::new(Ops {
            queue: queue.clone(),
            config: config.clone(),
            daemon: None,
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = rt
            .block_on(async { control::bind(&config.state_dir) })
            .unwrap();
        let server = rt.spawn(control::serve(listener, ops, async {
            let _ = stopped.await;
        }));
        // 40,000 distinct IPv6 sightings: about 2.6 MB of JSON.
        let sightings: Vec<Sighting> = (0..40_000u32)
            .map(|i| Sighting {
                addr: format!(
                    "2a00:1450:4001:81b:{:x}:{:x}:1234:5678",
                    i >> 16,
                    i & 0xffff
                )
                .parse()
                .unwrap(),
                seen_ms: 1_700_000_000_000 + u64::from(i),
            })
            .collect();
        let req = Request::Enqueue {
            sightings: sightings.iter().map(|s| (s.addr, s.seen_ms)).collect(),
        };
        assert!(serde_json::to_vec(&req).unwrap().len() > 2 * control::MAX_REQUEST);
        let mut backend = Backend::Daemon(Client::connect(&config.state_dir).unwrap().unwrap());
        let out = backend.enqueue(&sightings).unwrap();
        assert_eq!(out.queued_new, 40_000);
        assert_eq!(queue.pending_count().unwrap(), 40_000);
        // The connection still serves requests.
        backend.status().unwrap();
        drop(backend);
        let _ = stop.send(());
        rt.block_on(server).unwrap();
    }
}
