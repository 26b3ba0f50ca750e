//! The daemon (`tjfwd run`): wires the enabled inputs into the pipeline
//! (source → decode → filter → queue, [`crate::inputs`]), and the
//! scheduler/reporter on the async runtime.
//!
//! The input side is synchronous on purpose: it reads files and sockets and
//! writes sled transactions, all blocking. Each input runs on its own
//! thread, wakes the scheduler when it queued something, and stops at the
//! next chunk boundary when asked. Shutdown comes in as a future (only
//! `main` knows about signals), so tests can stop the daemon however they
//! like.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::control::{self, DaemonHooks, Ops};
use crate::inputs::{self, StartError};
use crate::pipeline::{Pipeline, StorageWatch};
use crate::scheduler::{Mode, Scheduler};
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use crate::targets::{self, SetupError, Target};

/// How `tjfwd run` was asked to behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Everything but the HTTP request: batches are logged, not acknowledged.
    pub dry_run: bool,
    /// Read the input to its end, send everything pending, then exit.
    pub drain: bool,
}

/// Errors that stop the daemon at start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Queue(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] SetupError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot create the control socket {path}: {source}")]
    Control {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input cannot start (the `[input] listen_tcp` port...).
    #[error(transparent)]
    Input(#[from] StartError),
}

/// Opens the queue, waiting up to `patience` while another process holds
/// it: an operator command (`tjfwd status` with no daemon running) holds the
/// state directory for a moment, which must not stop a daemon from starting.
pub async fn open_queue_waiting(config: &Config, patience: Duration) -> Result<Store, StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut logged = false;
    loop {
        match Store::open_configured(config) {
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
/// everything is read and sent). Returns once sled has been flushed.
pub async fn run(
    config: Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Arc<Stats>, DaemonError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Runs of the daemon: one, unless the storage failed (disk full...) and
    // became writable again, when sled must be opened anew (it keeps
    // failing after an I/O error until then).
    let runs = async {
        loop {
            let mut rx = stop_rx.clone();
            let stopped = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            match run_once(&config, opts, &stats, stopped).await? {
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

async fn run_once(
    config: &Config,
    opts: RunOptions,
    stats: &Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Ended, DaemonError> {
    let config = config.clone();
    // The targets first: a missing token stops the start before anything
    // else is opened.
    let mut schedulers = Schedulers::default();
    targets::start_enabled(&config, opts.dry_run, &mut schedulers)?;
    let queue = Arc::new(open_queue_waiting(&config, Duration::from_secs(5)).await?);
    let stats = stats.clone();
    stats.set_paused(None);
    let reopen = Arc::new(Notify::new());
    let tj = &config.threatjammer;
    tracing::info!(
        "tjfwd initialized. Category={}. TTL={}. Session Tracking={}. Login Tracking={}",
        tj.category,
        tj.ttl,
        tj.track_session,
        tj.track_login
    );
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
        api_url = %tj.api_url,
        dry_run = opts.dry_run,
        "started"
    );

    // The admin endpoint ([admin] listen: metrics, health); stops when dropped.
    let admin = crate::admin::start_configured(&config, &queue, &stats)?;
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
        },
    )?;

    let flush_now = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        queue: queue.clone(),
        mode: Mode {
            dry_run: opts.dry_run,
            drain: opts.drain,
        },
        stats: stats.clone(),
        notify: notify.clone(),
        input_done,
        flush_now: flush_now.clone(),
        storage: storage.clone(),
    };

    // The control socket, for the operator commands.
    let listener = control::bind(&config.state_dir).map_err(|source| DaemonError::Control {
        path: control::socket_path(&config.state_dir),
        source,
    })?;
    let (control_stop, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops = Arc::new(Ops {
        queue: queue.clone(),
        config: config.clone(),
        daemon: Some(DaemonHooks {
            notify,
            flush_now,
            stats: stats.clone(),
            storage,
        }),
    });
    let control_task = tokio::spawn(control::serve(listener, ops, async {
        let _ = control_stopped.await;
    }));

    // Read every record once, in the background (the queue is usable at
    // once): damage that sled's open did not notice stops the daemon with
    // the advice to run `tjfwd recover`, before it builds on a broken base.
    let damaged = Arc::new(Notify::new());
    let verify = spawn_verify(queue.clone(), damaged.clone(), stop.clone());
    let stopped_by_damage = Arc::new(AtomicBool::new(false));
    let flag = stopped_by_damage.clone();
    let reopening = Arc::new(AtomicBool::new(false));
    let reopen_flag = reopening.clone();
    schedulers
        .run(&shared, async move {
            tokio::select! {
                _ = shutdown => {}
                _ = damaged.notified() => flag.store(true, Ordering::Release),
                _ = reopen.notified() => reopen_flag.store(true, Ordering::Release),
            }
        })
        .await;
    drop(admin);
    let _ = control_stop.send(());
    let _ = control_task.await;

    tracing::info!("stopping");
    stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || inputs.stop()).await;
    let reopening = reopening.load(Ordering::Acquire);
    match queue.flush() {
        // sled refuses everything after an I/O error: what it did not
        // write was never acknowledged (the input was rewound).
        Err(e) if reopening => {
            tracing::warn!(error = %e, "the old database could not be flushed (storage failed before)")
        }
        r => r?,
    }
    let _ = tokio::task::spawn_blocking(move || verify.join()).await;
    if reopening {
        drop(queue);
        return Ok(Ended::Reopen);
    }
    if stopped_by_damage.load(Ordering::Acquire) {
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
    /// Woken by the inputs when addresses were queued.
    notify: Arc<Notify>,
    /// Set when the inputs have read everything (drain mode).
    input_done: Arc<AtomicBool>,
    /// Set by `tjfwd flush`.
    flush_now: Arc<AtomicBool>,
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

/// The schedulers of the enabled targets ([`targets::start_enabled`] hands
/// each target over; they start once the queue is open).
#[derive(Default)]
struct Schedulers(Vec<Start>);

impl targets::Starter for Schedulers {
    fn start<T: Target>(&mut self, target: T) {
        self.0.push(Box::new(move |shared: &Shared, mut stop| {
            let scheduler = Scheduler::new(
                shared.queue.clone(),
                target,
                shared.mode,
                shared.stats.clone(),
                shared.notify.clone(),
                shared.input_done.clone(),
                shared.flush_now.clone(),
            )
            .with_storage_watch(shared.storage.clone());
            Box::pin(scheduler.run(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            }))
        }));
    }
}

impl Schedulers {
    /// Runs every scheduler until `shutdown` (or, in drain mode, until all
    /// are done).
    async fn run(self, shared: &Shared, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        for start in self.0 {
            tasks.spawn(start(shared, stop_rx.clone()));
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    None => return,
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(_) => {}
                },
                _ = &mut shutdown => {
                    let _ = stop_tx.send(true);
                    while let Some(r) = tasks.join_next().await {
                        if let Err(e) = r {
                            if e.is_panic() {
                                std::panic::resume_unwind(e.into_panic());
                            }
                        }
                    }
                    return;
                }
            }
        }
    }
}

/// Verifies the database on a thread of its own; on damage, records it
/// ([`crate::store::mark_damaged`]) and wakes `damaged`.
fn spawn_verify(
    queue: Arc<Store>,
    damaged: Arc<Notify>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("tjfwd-verify".into())
        .spawn(move || {
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
        })
        .expect("spawning the verify thread")
}
