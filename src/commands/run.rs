//! `tjfwd run`: the daemon's command line. Loads the configuration, binds
//! its listening sockets, starts the async runtime and runs
//! [`daemon::run_reloading`] until SIGTERM or SIGINT (or, with `--drain`,
//! until the input is read and everything pending sent). Exits 0 after a
//! clean stop, 1 on any error — also when a component of the daemon failed
//! ([`crate::supervisor`]): it then stopped, flushed its queue, and systemd
//! restarts it.
//!
//! The signals are handled here, and only here (`Signals`): SIGTERM,
//! SIGINT and SIGXCPU stop the daemon in order; SIGHUP loads the
//! configuration again, as at start, and hands it to the daemon (see
//! [`daemon::reload`]), or logs why it cannot; the other signals whose
//! default action would end the process and that an operator or the
//! system may send are logged and ignored. A signal never ends tjfwd
//! without the orderly stop (the queue flushed, the control socket
//! removed), but SIGKILL, SIGQUIT (a core dump, on purpose), the signals
//! of a fault (SIGSEGV, SIGABRT...) and the real-time ones, which nothing
//! sends a daemon by accident.

use std::process::ExitCode;

use anyhow::Context;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::commands::{ConfigArgs, LOG_TARGET};
use crate::daemon::reload::{Reloader, Reloads};
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
    let dry_run = args.dry_run;
    let drain = args.drain;
    let config_args = args.config;
    let stats = runtime.block_on(async {
        let signals = Signals::install();
        let (reloader, reloads) = Reloads::channel();
        let reload = move || reload_config(&config_args, dry_run, &reloader);
        daemon::run_reloading(
            config,
            RunOptions { dry_run, drain },
            listeners,
            signals.until_stop(reload),
            reloads,
        )
        .await
    })?;
    if let Some(e) = stats.input_error().filter(|_| drain) {
        anyhow::bail!("the input could not be read to its end ({e}); what was queued was sent");
    }
    Ok(ExitCode::SUCCESS)
}

/// On SIGHUP: loads the configuration as at start and hands it to the
/// daemon; one that cannot be loaded is logged, and changes nothing.
fn reload_config(config: &ConfigArgs, dry_run: bool, reloader: &Reloader) {
    match config.load(!dry_run) {
        Ok(c) => reloader.reload(c),
        Err(e) => tracing::error!(
            target: LOG_TARGET,
            "the configuration was not reloaded: {e:#}; tjfwd goes on with the running settings"
        ),
    }
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

/// The signals `tjfwd run` handles, and what it does on each (see the
/// module doc). Installed once the runtime runs: from then on none of them
/// has its default action. (None: it could not be handled, and was logged.)
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    /// The soft CPU-time limit: stop in order before the kernel's SIGKILL
    /// at the hard one.
    xcpu: Option<Signal>,
    hup: Option<Signal>,
    /// Logged and ignored.
    ignore: Vec<(&'static str, Signal)>,
}

/// Handles `kind`; logs why it cannot (it then keeps its default action).
fn handle(name: &str, kind: SignalKind) -> Option<Signal> {
    signal(kind)
        .inspect_err(|e| {
            tracing::error!(target: LOG_TARGET, error = %e, "cannot handle {name}: it keeps its default action")
        })
        .ok()
}

/// The next delivery of `s` (never, if it is not handled).
async fn next(s: &mut Option<Signal>) {
    if let Some(s) = s {
        if s.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}

impl Signals {
    fn install() -> Signals {
        let raw = SignalKind::from_raw;
        let ignore = [
            ("SIGUSR1", SignalKind::user_defined1()),
            ("SIGUSR2", SignalKind::user_defined2()),
            ("SIGALRM", SignalKind::alarm()),
            ("SIGVTALRM", raw(libc::SIGVTALRM)),
            ("SIGPROF", raw(libc::SIGPROF)),
            ("SIGIO", SignalKind::io()),
            ("SIGPWR", raw(libc::SIGPWR)),
            // A write beyond the file-size limit then fails (EFBIG), a
            // storage error like any other, instead of killing tjfwd.
            ("SIGXFSZ", raw(libc::SIGXFSZ)),
        ];
        Signals {
            term: handle("SIGTERM", SignalKind::terminate()),
            int: handle("SIGINT", SignalKind::interrupt()),
            xcpu: handle("SIGXCPU", raw(libc::SIGXCPU)),
            hup: handle("SIGHUP", SignalKind::hangup()),
            ignore: ignore
                .into_iter()
                .filter_map(|(name, kind)| Some((name, handle(name, kind)?)))
                .collect(),
        }
    }

    /// Completes on SIGTERM, SIGINT or SIGXCPU; on SIGHUP calls `reload`;
    /// logs the signals it ignores.
    async fn until_stop(mut self, reload: impl Fn()) {
        for (name, mut s) in std::mem::take(&mut self.ignore) {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    tracing::warn!(
                        target: LOG_TARGET,
                        signal = name,
                        "{name} received: ignored (SIGHUP reloads the configuration, SIGTERM stops tjfwd)"
                    );
                }
            });
        }
        loop {
            let name = tokio::select! {
                _ = next(&mut self.term) => "SIGTERM",
                _ = next(&mut self.int) => "SIGINT",
                _ = next(&mut self.xcpu) => "SIGXCPU",
                _ = next(&mut self.hup) => {
                    tracing::info!(target: LOG_TARGET, "SIGHUP received: reloading the configuration");
                    reload();
                    continue;
                }
            };
            tracing::info!(target: LOG_TARGET, "{name} received");
            return;
        }
    }
}
