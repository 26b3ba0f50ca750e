//! The daemon (`tjfwd run`): wires the enabled inputs into the pipeline
//! (source → decode → filter → queue, [`crate::inputs`],
//! [`crate::pipeline`]), and the scheduler/reporter on the async runtime.
//!
//! The input side is synchronous on purpose: it reads files and sockets and
//! writes sled transactions, all blocking. Each input runs on its own
//! thread, wakes the scheduler when it queued something, and stops at the
//! next chunk boundary when asked. Shutdown comes in as a future (only
//! `main` knows about signals), so tests can stop the daemon however they
//! like; so do the listening sockets ([`Listeners`], the socket input's
//! handed to it through [`inputs::Context`]), so tests bind port 0 and read
//! the port from the listener.
//!
//! Every thread and task of a run is started through a [`Supervisor`]: if
//! one panics, fails or ends when it should not, the run stops the others,
//! flushes the queue and [`run`] returns [`DaemonError::Failed`] naming the
//! component (`tjfwd run` exits 1, and systemd restarts it). It is never
//! left half-alive, and `run --drain` never waits for a component that is
//! gone.
//!
//! Reloads of the configuration come in the same way, as a channel
//! ([`run_reloading`], [`reload::Reloads`]): `main` sends one on SIGHUP,
//! tests send them directly. What a reload changes while running (the
//! targets' requests: endpoint, token, TLS trust, contents) and what waits
//! for a restart is [`reload`]'s.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::config::Config;
use crate::control::{self, DaemonHooks, Ops};
use crate::errors::chain;
use crate::inputs::{self, StartError};
use crate::pipeline::{Pipeline, StorageWatch};
use crate::scheduler::{Bells, Mode, Scheduler};
use crate::stats::Stats;
use crate::store::{Store, StoreError, TargetSpec};
use crate::supervisor::{Failure, Lifetime, Supervisor};
use crate::targets::{self, Live, SetupError, Target};

pub use crate::listeners::Listeners;

pub mod reload;

use reload::Reloads;

/// How long the components of a run may take to stop once asked (the
/// inputs' waits, up to 30 s between retries of a failing write, end at the
/// stop: their threads are unparked); one still running then is a failure,
/// and the run ends without it. Below systemd's `TimeoutStopSec=30s`.
pub const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// How `tjfwd run` was asked to behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Everything but the HTTP request: batches are logged, not acknowledged.
    pub dry_run: bool,
    /// Read the input to its end, send everything pending, then exit.
    pub drain: bool,
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Queue(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] SetupError),
    #[error("cannot create the control socket {path}")]
    Control {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve a listening socket")]
    Listener(#[source] std::io::Error),
    /// An input cannot be set up.
    #[error(transparent)]
    Input(#[from] StartError),
    /// A thread or task of the daemon failed (see [`crate::supervisor`]):
    /// the others were stopped and the queue flushed (the log says whether
    /// the flush worked).
    #[error(
        "{0}; tjfwd stopped: restart it (systemd's Restart=on-failure does), and if this \
         happens again, report it with the log above"
    )]
    Failed(Failure),
}

/// The targets the store serves: every enabled one ([`targets::store_specs`]).
pub fn store_targets(config: &Config) -> Vec<TargetSpec> {
    targets::store_specs(config.target_sections())
}

/// Opens the queue described by the configuration.
pub fn open_queue(config: &Config) -> Result<Store, StoreError> {
    Store::open(
        &config.state_dir,
        config.storage.cache_capacity,
        &store_targets(config),
    )
}

/// Opens the queue, waiting up to `patience` while another process holds
/// it: an operator command (`tjfwd status` with no daemon running) holds the
/// state directory for a moment, which must not stop a daemon from starting.
pub async fn open_queue_waiting(config: &Config, patience: Duration) -> Result<Store, StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut logged = false;
    loop {
        match open_queue(config) {
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                if !logged {
                    tracing::info!(state_dir = %config.state_dir.display(), "the state directory is busy (an operator command?): waiting");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Runs the daemon until `shutdown` completes (or, with `drain`, until
/// everything is read and sent), serving `listeners` (see
/// [`Listeners::bind`]; with `drain`, the socket input is not served).
/// Returns once sled has been flushed; [`DaemonError::Failed`] when a
/// component failed (after the others stopped and the queue was flushed).
pub async fn run(
    config: Config,
    opts: RunOptions,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Arc<Stats>, DaemonError> {
    run_reloading(config, opts, listeners, shutdown, Reloads::none()).await
}

/// As [`run`], and applies each configuration that comes from `reloads`
/// while it runs (see [`reload`]).
pub async fn run_reloading(
    config: Config,
    opts: RunOptions,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    mut reloads: Reloads,
) -> Result<Arc<Stats>, DaemonError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Runs of the daemon: one, unless the storage failed (disk full...) and
    // became writable again, when sled must be opened anew (it keeps
    // failing after an I/O error until then).
    // The configuration runs go on with (a reload changes it).
    let mut config = config;
    let runs = async {
        loop {
            let mut rx = stop_rx.clone();
            let stopped = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            match run_once(&mut config, opts, &listeners, &stats, stopped, &mut reloads).await? {
                Ended::Stopped => return Ok(stats.clone()),
                Ended::Reopen => {
                    tracing::warn!("the state directory is writable again: reopening the database and going on");
                }
            }
        }
    };
    tokio::pin!(shutdown);
    tokio::pin!(runs);
    let mut signalled = false;
    loop {
        tokio::select! {
            r = &mut runs => return r,
            _ = &mut shutdown, if !signalled => {
                signalled = true;
                let _ = stop_tx.send(true);
            }
        }
    }
}

/// How a run of the daemon ended.
enum Ended {
    /// Shut down (or drained).
    Stopped,
    /// The storage failed and is writable again: open it anew.
    Reopen,
}

/// Why a run was asked to stop.
enum Why {
    /// The shutdown future completed.
    Shutdown,
    /// The background check found damage.
    Damaged,
    /// The storage failed and is writable again.
    Reopen,
    /// Drain mode: every scheduler is done.
    Drained,
    /// A reloaded configuration came: apply it and go on.
    Reload(Arc<Config>),
}

/// One run of the daemon with `running` (a reload applied during it is
/// written back there, for the next run).
async fn run_once(
    running: &mut Config,
    opts: RunOptions,
    listeners: &Listeners,
    stats: &Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send,
    reloads: &mut Reloads,
) -> Result<Ended, DaemonError> {
    let config = running.clone();
    // The targets first: a missing token stops the start before anything
    // else is opened.
    let mut schedulers = Schedulers::default();
    targets::start_enabled(config.target_sections(), opts.dry_run, &mut schedulers)?;
    let queue = Arc::new(open_queue_waiting(&config, Duration::from_secs(5)).await?);
    let stats = stats.clone();
    stats.set_paused(None);
    let reopen = Arc::new(Notify::new());
    if let Some(tj) = config.threatjammer() {
        let tj = &tj.report;
        tracing::info!(
            api_url = %tj.api_url,
            "tjfwd initialized. Category={}. TTL={}. Session Tracking={}. Login Tracking={}",
            tj.category,
            tj.ttl,
            tj.track_session,
            tj.track_login
        );
    }
    let input = config
        .input
        .cowrie_json
        .as_ref()
        .map_or_else(|| "none".to_string(), |p| p.display().to_string());
    tracing::info!(
        state_dir = %config.state_dir.display(),
        pending = queue.pending_count()?,
        input = %input,
        checkpoints = ?queue.checkpoints()?.iter().map(|(_, c)| format!("{}@{}", c.path, c.offset)).collect::<Vec<_>>(),
        targets = ?schedulers.start.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        dry_run = opts.dry_run,
        "started"
    );

    // What can fail comes before anything is started: once a component
    // runs, the run ends only through the stop below.
    let serve = |l: &std::net::TcpListener| {
        let l = l.try_clone()?;
        l.set_nonblocking(true)?;
        Ok(l)
    };
    let admin_listener = listeners
        .admin
        .as_ref()
        .map(serve)
        .transpose()
        .map_err(DaemonError::Listener)?;
    let feed_listener = listeners
        .feed
        .as_ref()
        .map(serve)
        .transpose()
        .map_err(DaemonError::Listener)?;
    // The socket input is for a running daemon; --drain reads files only.
    let input_listener = match (&listeners.input_tcp, opts.drain) {
        (Some(l), false) => Some(serve(l).map_err(DaemonError::Listener)?),
        _ => None,
    };
    // The control socket, for the operator commands.
    let control_listener =
        control::bind(&config.state_dir).map_err(|source| DaemonError::Control {
            path: control::socket_path(&config.state_dir),
            source,
        })?;

    let mut sup = Supervisor::new();
    #[cfg(test)]
    supervised_tests::arm(&config.state_dir, &mut sup);

    // The inputs, through the pipeline, each on a thread under the
    // supervisor (the file's may finish: a drain read to its end, a
    // reopen; the socket's runs until stopped). Built before anything
    // starts: one that cannot be built stops the start.
    let notify = Arc::new(Notify::new());
    let input_done = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let storage = StorageWatch::new(config.state_dir.clone(), reopen.clone());
    let pipeline = Pipeline::new(queue.clone(), &config, stats.clone(), notify.clone())
        .with_storage_watch(storage.clone());
    let inputs = inputs::start_enabled(
        &config,
        &inputs::Context {
            pipeline: Arc::new(pipeline),
            store: queue.clone(),
            stop: stop.clone(),
            drain: opts.drain,
            done: input_done.clone(),
            input_tcp: input_listener.map(Arc::new),
        },
        &mut sup,
    )?;

    // The admin endpoint ([admin] listen: metrics, health).
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    if let Some(listener) = admin_listener {
        let sources = crate::admin::Sources::new(&config, &queue, &stats, sup.tripped());
        sup.task(
            "admin endpoint",
            Lifetime::UntilStopped,
            crate::admin::serve(listener, sources, async {
                let _ = admin_stopped.await;
            }),
        );
    }
    // The denylist: its feed ([feed] listen), and its pruning (always:
    // `tjfwd export` reads the same list).
    let (feed_stop, _) = tokio::sync::watch::channel(false);
    let feed_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    if let Some(listener) = feed_listener {
        sup.task(
            "denylist feed",
            Lifetime::UntilStopped,
            crate::feed::serve(
                listener,
                crate::feed::Sources::new(&config, &queue),
                feed_stopped(feed_stop.subscribe()),
            ),
        );
    }
    sup.task(
        "denylist pruning",
        Lifetime::UntilStopped,
        crate::feed::prune(
            queue.clone(),
            config.feed.ttl,
            feed_stopped(feed_stop.subscribe()),
        ),
    );
    // Each scheduler's own bell and flush flag: the inputs' one bell is
    // relayed to all of them (a single Notify wakes a single waiter), and
    // `tjfwd flush --target` raises one target's flag.
    let bells = Bells::new(schedulers.start.iter().map(|(name, _)| *name));
    let relay = tokio::spawn(bells.clone().relay(notify.clone()));
    let shared = Shared {
        queue: queue.clone(),
        mode: Mode {
            dry_run: opts.dry_run,
            drain: opts.drain,
        },
        stats: stats.clone(),
        bells: bells.clone(),
        input_done,
        storage: storage.clone(),
    };

    let (control_stop, control_stopped) = oneshot::channel::<()>();
    let ops = Arc::new(Ops {
        queue: queue.clone(),
        config: config.clone(),
        daemon: Some(DaemonHooks {
            notify,
            bells,
            stats: stats.clone(),
            storage,
        }),
    });
    sup.task(
        "control socket",
        Lifetime::UntilStopped,
        control::serve(control_listener, ops, async {
            let _ = control_stopped.await;
        }),
    );

    // Read every record once, in the background (the queue is usable at
    // once): damage that sled's open did not notice stops the daemon with
    // the advice to run `tjfwd recover`, before it builds on a broken base.
    let damaged = Arc::new(Notify::new());
    sup.thread(
        "verify thread",
        "tjfwd-verify",
        Lifetime::MayFinish,
        verify(queue.clone(), damaged.clone(), stop.clone()),
    );

    // The schedulers: in drain mode each ends when everything is sent.
    let (schedulers_stop, schedulers_stopped) = tokio::sync::watch::channel(false);
    let lifetime = if opts.drain {
        Lifetime::MayFinish
    } else {
        Lifetime::UntilStopped
    };
    let live = std::mem::take(&mut schedulers.live);
    let sending: Vec<_> = schedulers
        .start
        .into_iter()
        .map(|(name, start)| {
            sup.task(
                &format!("scheduler ({name})"),
                lifetime,
                start(&shared, schedulers_stopped.clone()),
            )
        })
        .collect();
    let all_sent = async {
        for s in sending {
            s.wait().await;
        }
    };

    tokio::pin!(shutdown);
    tokio::pin!(all_sent);
    let why = loop {
        let event = sup
            .until(async {
                tokio::select! {
                    _ = &mut shutdown => Why::Shutdown,
                    _ = damaged.notified() => Why::Damaged,
                    _ = reopen.notified() => Why::Reopen,
                    _ = &mut all_sent => Why::Drained,
                    new = reloads.next() => Why::Reload(new),
                }
            })
            .await;
        match event {
            Ok(Why::Reload(new)) => apply_reload(running, &new, opts, &live),
            other => break other.ok(),
        }
    };

    tracing::info!("stopping");
    sup.stop();
    let _ = admin_stop.send(());
    let _ = feed_stop.send(true);
    let _ = control_stop.send(());
    let _ = schedulers_stop.send(true);
    stop.store(true, Ordering::Release);
    inputs.stop();
    let joined = sup.join(STOP_PATIENCE).await;
    relay.abort();

    let flushed = queue.flush();
    if let Err(failure) = joined {
        match flushed {
            Ok(()) => tracing::info!("queue flushed to disk"),
            Err(e) => tracing::error!(error = %e, "the queue could not be flushed"),
        }
        return Err(DaemonError::Failed(failure));
    }
    let reopening = matches!(why, Some(Why::Reopen));
    match flushed {
        // sled refuses everything after an I/O error: what it did not
        // write was never acknowledged (the input was rewound).
        Err(e) if reopening => {
            tracing::warn!(error = %chain(&e), "the old database could not be flushed (storage failed before)")
        }
        r => r?,
    }
    if reopening {
        drop(queue);
        return Ok(Ended::Reopen);
    }
    if matches!(why, Some(Why::Damaged)) {
        return Err(DaemonError::Queue(StoreError::Damaged {
            dir: config.state_dir.clone(),
            detail: std::fs::read_to_string(config.state_dir.join(crate::store::DAMAGED_MARKER))
                .unwrap_or_default()
                .trim()
                .to_string(),
        }));
    }
    let skipped: Vec<String> = crate::stats::SkipReason::ALL
        .iter()
        .filter(|r| stats.skipped(**r) > 0)
        .map(|r| format!("{r}={}", stats.skipped(*r)))
        .collect();
    tracing::info!(
        pending = queue.pending_count()?,
        lines_read = Stats::get(&stats.lines_read),
        events_selected = Stats::get(&stats.events_selected),
        queued = Stats::get(&stats.queued_new),
        reported = Stats::get(&stats.addresses_reported),
        requests = Stats::get(&stats.requests),
        skipped = %skipped.join(" "),
        "stopped; queue flushed to disk"
    );
    Ok(Ended::Stopped)
}

/// What the schedulers of all targets share with the daemon.
struct Shared {
    queue: Arc<Store>,
    mode: Mode,
    stats: Arc<Stats>,
    /// Each scheduler's bell (rung when addresses were queued) and flush
    /// flag (`tjfwd flush`).
    bells: Arc<Bells>,
    /// Set when the inputs have read everything (drain mode).
    input_done: Arc<AtomicBool>,
    storage: StorageWatch,
}

/// A scheduler to run, for one enabled target: given what it shares with
/// the daemon and the stop signal, its run.
type Start = Box<
    dyn FnOnce(
            &Shared,
            tokio::sync::watch::Receiver<bool>,
        ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// The schedulers of the enabled targets, by target name
/// ([`targets::start_enabled`] hands each target over; they start, under
/// the supervisor, once the queue is open).
#[derive(Default)]
struct Schedulers {
    start: Vec<(&'static str, Start)>,
    /// Each target, as its scheduler holds it: a [`Live`] a reload
    /// replaces (by name; a `Live<T>` of the target's own type).
    live: LiveTargets,
}

/// The running targets a reload replaces.
type LiveTargets = Vec<(&'static str, Box<dyn std::any::Any + Send + Sync>)>;

impl targets::Starter for Schedulers {
    fn start<T: Target>(&mut self, target: T) {
        let name = target.name();
        let target = Live::new(target);
        self.live.push((name, Box::new(target.clone())));
        self.start.push((
            name,
            Box::new(move |shared: &Shared, mut stop| {
                let Some(id) = shared.queue.target_id(name) else {
                    // The store was opened for every enabled target
                    // (store_targets): one it does not serve is a bug, and
                    // a scheduler that ends at once is a failure the
                    // supervisor reports.
                    return Box::pin(async move {
                        tracing::error!(
                            target_name = name,
                            "the store does not serve this target; it is not started"
                        );
                    });
                };
                let (bell, flush_now) = shared.bells.of(name);
                let scheduler = Scheduler::new(
                    shared.queue.clone(),
                    target,
                    id,
                    shared.mode,
                    shared.stats.clone(),
                    bell,
                    shared.input_done.clone(),
                    flush_now,
                )
                .with_storage_watch(shared.storage.clone());
                Box::pin(scheduler.run(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                }))
            }),
        ));
    }
}

/// Applies a reloaded configuration `new` to a run with `running` (see
/// [`reload`]): logs the keys that need a restart, builds the targets again
/// from the merged configuration and puts them in place of the running
/// ones. If one cannot be built, nothing changes (logged).
fn apply_reload(running: &mut Config, new: &Config, opts: RunOptions, live: &LiveTargets) {
    let merged = reload::merge(running, new);
    for w in &merged.config.warnings {
        tracing::warn!("{w}");
    }
    let mut replacements = Replacements {
        live,
        replace: Vec::new(),
    };
    if let Err(e) = targets::start_enabled(
        merged.config.target_sections(),
        opts.dry_run,
        &mut replacements,
    ) {
        tracing::error!(
            error = %chain(&e),
            "the reloaded configuration cannot be applied; tjfwd goes on with the running settings"
        );
        return;
    }
    for key in &merged.need_restart {
        tracing::warn!(
            key = %key,
            "{key} changed in the configuration: it takes effect at the next restart \
             (systemctl restart tjfwd); the running value is kept"
        );
    }
    let applied = if merged.applied.is_empty() {
        "nothing that applies while running changed".to_string()
    } else {
        merged.applied.join(", ")
    };
    tracing::info!(
        applied = %applied,
        restart_needed = merged.need_restart.len(),
        "configuration reloaded; the targets' settings were read again"
    );
    for replace in replacements.replace {
        replace();
    }
    *running = merged.config;
}

/// The targets of a reloaded configuration, each to put in place of the
/// running one of its name ([`targets::start_enabled`] hands them over).
struct Replacements<'a> {
    live: &'a LiveTargets,
    /// The replacements, done once every target was built.
    replace: Vec<Box<dyn FnOnce() + Send>>,
}

impl targets::Starter for Replacements<'_> {
    fn start<T: Target>(&mut self, target: T) {
        let name = target.name();
        let running = self
            .live
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, l)| l.downcast_ref::<Live<T>>());
        match running {
            Some(l) => {
                let l = l.clone();
                self.replace.push(Box::new(move || l.replace(target)));
            }
            // The enabled targets are restart-only keys: a reload cannot
            // add one.
            None => tracing::warn!(
                target_name = name,
                "a reload cannot start a target that is not running; restart tjfwd"
            ),
        }
    }
}

/// The background check of the database, for a thread of its own; on
/// damage, records it ([`crate::store::mark_damaged`]) and wakes `damaged`.
fn verify(
    queue: Arc<Store>,
    damaged: Arc<Notify>,
    stop: Arc<AtomicBool>,
) -> impl FnOnce() + Send + 'static {
    move || {
        let started = std::time::Instant::now();
        let v = queue.verify_until(&stop, false);
        if v.problems == 0 {
            if !v.complete {
                return; // stopped before the end
            }
            tracing::debug!(
                pending = v.pending,
                reported = v.reported,
                seconds = started.elapsed().as_secs_f64(),
                "database verified"
            );
            return;
        }
        let detail = format!(
            "{} problems, first: {}",
            v.problems,
            v.details.first().map_or("", |d| d.as_str())
        );
        if let Err(e) = crate::store::mark_damaged(queue.dir(), &detail) {
            tracing::error!(error = %e, "cannot record the damage in the state directory");
        }
        tracing::error!(
            "{}",
            StoreError::Damaged {
                dir: queue.dir().to_path_buf(),
                detail,
            }
        );
        damaged.notify_one();
    }
}

#[cfg(test)]
mod supervised_tests;
