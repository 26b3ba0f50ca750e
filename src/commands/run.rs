//! `tjfwd run`: the daemon's command line. Loads the configuration, binds
//! its listening sockets, starts the async runtime and runs [`daemon::run`]
//! until SIGTERM or SIGINT (or, with `--drain`, until the input is read and
//! everything pending sent). Exits 0 after a clean stop, 1 on any error —
//! also when a component of the daemon failed ([`crate::supervisor`]): it
//! then stopped, flushed its queue, and systemd restarts it.

use std::process::ExitCode;

use anyhow::Context;

use crate::commands::{ConfigArgs, LOG_TARGET};
use crate::daemon::{self, RunOptions};
use crate::listeners::{Listeners, TEST_EPHEMERAL_PORTS_ENV};

/// The flags of `tjfwd run`.
#[derive(Debug, clap::Args)]
pub struct Args {
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

/// Runs the daemon; returns once it has shut down cleanly.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load(!args.dry_run)?;
    let listeners = bind(&config, args.drain)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stats = runtime.block_on(async {
        daemon::run(
            config,
            RunOptions {
                dry_run: args.dry_run,
                drain: args.drain,
            },
            listeners,
            shutdown_signal(),
        )
        .await
    })?;
    if let Some(e) = stats.input_error().filter(|_| args.drain) {
        anyhow::bail!("the input could not be read to its end ({e}); what was queued was sent");
    }
    Ok(ExitCode::SUCCESS)
}

/// Binds the listening sockets of `config` (see [`Listeners::bind`]); on
/// port 0 instead with the test-only [`TEST_EPHEMERAL_PORTS_ENV`], logging
/// the bound addresses for the tests to read.
fn bind(config: &crate::config::Config, drain: bool) -> anyhow::Result<Listeners> {
    let Some(value) = std::env::var_os(TEST_EPHEMERAL_PORTS_ENV) else {
        return Ok(Listeners::bind(config, drain)?);
    };
    if value != "1" {
        anyhow::bail!(
            "{TEST_EPHEMERAL_PORTS_ENV} = {value:?}: it is for tests only; unset it (or set it to 1 in a test)"
        );
    }
    let listeners = Listeners::bind_ephemeral(config, drain)?;
    for (key, addr) in listeners.addresses() {
        tracing::warn!(
            target: LOG_TARGET,
            "{TEST_EPHEMERAL_PORTS_ENV} is set: {key} listens on {addr} (a port the kernel picked, for tests only; unset it in production)"
        );
    }
    Ok(listeners)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(target: LOG_TARGET, error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(target: LOG_TARGET, "SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!(target: LOG_TARGET, "SIGINT received"),
    }
}
