//! The daemon (`tjfwd run`): wires source → decode → filter → queue on an
//! ingest thread, and the scheduler/reporter on the async runtime.
//!
//! The ingest side is synchronous on purpose: it reads files and writes sled
//! transactions, both blocking. It runs on its own thread, wakes the
//! scheduler when it queued something, and stops at the next chunk boundary
//! when asked. Shutdown comes in as a future (only `main` knows about
//! signals), so tests can stop the daemon however they like.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::Config;
use crate::control::{self, DaemonHooks, Ops};
use crate::decode::{cannot_select, decode, decode_fast, decode_serde};
use crate::filter::Rules;
use crate::scheduler::{Mode, Scheduler};
use crate::socket::{self, SocketInput};
use crate::source::{Chunk, Tailer};
use crate::stats::{escape_for_log, Stats};
use crate::store::{EnqueueOutcome, Sighting, Store, StoreError};
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
    #[error("cannot listen on {addr} ([input] listen_tcp): {source}; is another process using the port?")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
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
    let ingest = match &config.input.cowrie_json {
        Some(path) => {
            let tailer = Tailer::new(
                path.clone(),
                config.input.start_at,
                config.input.max_line_bytes,
            )
            .with_grace(
                config
                    .input
                    .poll_interval
                    .saturating_mul(20)
                    .max(Duration::from_secs(10)),
            );
            let ctx = Ingest {
                queue: queue.clone(),
                rules: Rules::from_config(&config),
                stats: stats.clone(),
                notify: notify.clone(),
                input_done: input_done.clone(),
                stop: stop.clone(),
                poll: config.input.poll_interval,
                drain: opts.drain,
                max_pending: config.queue.max_pending,
                storage: StorageWatch {
                    dir: config.state_dir.clone(),
                    reopen: reopen.clone(),
                },
            };
            Some(
                std::thread::Builder::new()
                    .name("tjfwd-ingest".into())
                    .spawn(move || ctx.run(tailer))
                    .expect("spawning the ingest thread"),
            )
        }
        None => {
            input_done.store(true, Ordering::Release);
            None
        }
    };

    // The socket input is for a running daemon; --drain reads files only.
    let socket = match (config.input.listen_tcp, opts.drain) {
        (Some(addr), false) => {
            let listener =
                socket::bind(addr).map_err(|source| DaemonError::Listen { addr, source })?;
            let input = SocketInput {
                queue: queue.clone(),
                rules: Rules::from_config(&config),
                stats: stats.clone(),
                notify: notify.clone(),
                stop: stop.clone(),
                max_line: config.input.max_line_bytes,
                max_connections: config.input.max_connections,
                max_pending: config.queue.max_pending,
            };
            Some(
                std::thread::Builder::new()
                    .name("tjfwd-listen".into())
                    .spawn(move || input.run(listener))
                    .expect("spawning the socket listener"),
            )
        }
        _ => None,
    };

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
        storage: StorageWatch {
            dir: config.state_dir.clone(),
            reopen: reopen.clone(),
        },
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
    if let Some(handle) = ingest {
        handle.thread().unpark();
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
    if let Some(handle) = socket {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
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

/// What the ingest thread needs.
struct Ingest {
    queue: Arc<Store>,
    rules: Rules,
    stats: Arc<Stats>,
    notify: Arc<Notify>,
    input_done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    poll: Duration,
    drain: bool,
    max_pending: u64,
    /// Asks for a new database when the storage failed and is writable again.
    storage: StorageWatch,
}

/// After a storage error: whether the state directory is writable again,
/// in which case the daemon reopens the database (sled fails every write
/// after an I/O error, even once space is freed: only a new instance can
/// use it).
#[derive(Clone)]
pub struct StorageWatch {
    dir: std::path::PathBuf,
    reopen: Arc<Notify>,
}

impl StorageWatch {
    /// Looks at a failed queue operation; true when a reopen was asked for.
    pub fn recovered(&self, e: &StoreError) -> bool {
        if !matches!(e, StoreError::Sled(sled::Error::Io(_))) || !storage_writable(&self.dir) {
            return false;
        }
        tracing::warn!(error = %e, "the queue failed to write, and the state directory is writable now: the database will be reopened");
        self.reopen.notify_one();
        true
    }
}

impl Ingest {
    fn run(self, mut tailer: Tailer) {
        let mut chunk = Chunk::default();
        let mut sightings = Vec::new();
        let mut failures = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if !has_room(&self.queue, self.max_pending, &self.stats) {
                std::thread::park_timeout(self.poll);
                continue;
            }
            let now = now_ms();
            let got = match tailer.next_chunk(&self.queue, &self.stats, &mut chunk, now) {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the input; retrying");
                    failures += 1;
                    self.pause(failures);
                    continue;
                }
            };
            if !got {
                if self.drain {
                    break;
                }
                std::thread::park_timeout(self.poll);
                continue;
            }
            sightings.clear();
            select_lines(chunk.lines(), &self.rules, &self.stats, now, &mut sightings);
            let ckpt = chunk.checkpoint(now);
            match self
                .queue
                .enqueue(&sightings, ckpt.as_ref().map(|(id, c)| (id, c)), now)
            {
                Ok(out) => {
                    if failures > 0 {
                        self.stats.set_paused(None);
                    }
                    failures = 0;
                    tailer.commit();
                    count_enqueued(&self.stats, &out);
                    if out.queued_new > 0 {
                        self.notify.notify_one();
                    }
                }
                Err(e) => {
                    failures += 1;
                    if self.storage.recovered(&e) {
                        return; // not "input done": the next run reads on
                    }
                    tracing::error!(error = %e, "cannot queue addresses; the input is not advanced and will be read again");
                    self.stats
                        .set_paused(Some(format!("cannot write the queue: {e}")));
                    if let Err(e) = tailer.rewind() {
                        tracing::warn!(error = %e, "cannot rewind the input");
                    }
                    self.pause(failures);
                }
            }
        }
        self.input_done.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits before retrying after a failure (up to 30 s), unless stopped.
    fn pause(&self, failures: u32) {
        let d = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)))
            .min(Duration::from_secs(30));
        std::thread::park_timeout(d);
    }
}

/// Whether the state directory takes a write of a few segments again (the
/// room sled needs to go on), tested with a scratch file.
fn storage_writable(dir: &std::path::Path) -> bool {
    use std::io::Write;
    let probe = dir.join("space.probe");
    let ok = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; 2 << 20])?;
            f.sync_all()
        })
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Whether the queue has room for more (backpressure): below
/// `[queue] max_pending`, the inputs read; at it, they wait for the
/// scheduler to send. Records the pause in `stats` (status, metrics, log).
pub fn has_room(queue: &Store, max_pending: u64, stats: &Stats) -> bool {
    let pending = match queue.pending_count() {
        Ok(n) => n,
        // The enqueue will fail too, and say why.
        Err(_) => return true,
    };
    let full = pending >= max_pending;
    let paused = stats.paused();
    let full_reason = || {
        format!(
            "the queue is full: {pending} pending addresses, [queue] max_pending = {max_pending}"
        )
    };
    match (full, paused) {
        (true, None) => stats.set_paused(Some(full_reason())),
        (false, Some(p)) if p.starts_with("the queue is full") => stats.set_paused(None),
        _ => {}
    }
    !full
}

/// The longest line `select_lines` decodes before asking the prefilter.
const FAST_FIRST: usize = 1024;

/// Decodes, selects and filters lines into `out`.
pub fn select_lines<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    rules: &Rules,
    stats: &Stats,
    now: u64,
    out: &mut Vec<Sighting>,
) {
    // Counted once per call: an atomic add per line costs more than the
    // prefilter's verdict on a short line.
    let mut read = 0u64;
    for line in lines {
        read += 1;
        // A line of up to 1 KiB goes to the decoder's fast path first: it
        // takes as long as the prefilter on such a line, and selected lines
        // (mostly short) then need nothing else. Longer ones (the kex lines)
        // meet the prefilter first, which skips them in a third of the time.
        // Either way the answer is `decode`'s (the fast path answers as it
        // does, or defers), and a line the prefilter would have skipped is
        // one that is not selected: the same sightings and counts.
        let fast = if line.len() <= FAST_FIRST {
            decode_fast(line)
        } else {
            None
        };
        let event = match fast {
            Some(e) => e,
            None => {
                // Most lines cannot be selected: skip them before serde_json.
                if cannot_select(line, rules) {
                    continue;
                }
                let decoded = if line.len() <= FAST_FIRST {
                    decode_serde(line)
                } else {
                    decode(line)
                };
                match decoded {
                    Ok(e) => e,
                    Err(reason) => {
                        stats.skip(reason, || escape_for_log(line, 120));
                        continue;
                    }
                }
            }
        };
        if !rules.selects(&event.eventid) {
            continue;
        }
        Stats::add(&stats.events_selected, 1);
        match rules.address(&event.src_ip) {
            Ok(addr) => out.push(Sighting {
                addr,
                seen_ms: event.timestamp_ms.map_or(now, |t| t.min(now)),
            }),
            Err(reason) => stats.skip(reason, || escape_for_log(event.src_ip.as_bytes(), 80)),
        }
    }
    Stats::add(&stats.lines_read, read);
}

/// Adds what an enqueue did to the counters.
pub fn count_enqueued(stats: &Stats, out: &EnqueueOutcome) {
    Stats::add(&stats.queued_new, out.queued_new);
    Stats::add(&stats.queued_updates, out.updated);
    Stats::add(&stats.already_reported, out.already_reported);
    Stats::add(&stats.dead_lettered_seen, out.dead);
}
