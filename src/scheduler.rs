//! Scheduler: decides when to send to a [`Target`], sends, and applies the
//! classified answer ([`Action`]) to the queue. Generic over the target: it
//! knows actions, never a service's protocol.
//!
//! - A batch (at most the policy's `batch_size`) goes out when `batch_size`
//!   addresses are pending or the oldest has waited `flush_interval`. The
//!   target chooses it ([`Target::select`]): the oldest first by default; a
//!   target with a scarce quota may rank what it owes, set aside what the
//!   service would refuse for its age (dead letters), release what did
//!   not reach its threshold in time, and hold the rest back (the
//!   scheduler then waits for the target's recheck or a flush interval,
//!   whichever is shorter, not for each new sighting).
//! - No more than the policy's limit of attempts in any rolling window,
//!   retries included. Each attempt is recorded and fsynced *before* it is
//!   sent ([`Store::record_request`]), so a restart cannot reset the window.
//! - `Delivered` acks the batch; `RateLimited` waits (the service's hint,
//!   else a window); `Transient` backs off exponentially with jitter up to
//!   `max_backoff`; `TooLarge` splits; `Rejected` isolates the rejected
//!   addresses (by the indices the service names, else by bisection) into
//!   the dead-letter set while the rest is delivered; `AcceptedExcept`
//!   dead-letters the addresses named, each with its reason, and acks the
//!   rest without sending it again; `Config` drops nothing and retries
//!   slowly.
//! - Nothing is removed from the queue except by an ack or a dead-letter move,
//!   so an abandoned request (shutdown, crash) is simply sent again later.
//! - Time: waits are on tokio's (monotonic) clock; times stored on disk come
//!   from a [`Clock`], the system's wall clock except in tests, which run
//!   the scheduler on tokio's paused clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use migrations::v1::RequestLog;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::errors::chain;
use crate::health::FailureKind;
use crate::ratelimit::backoff;
use crate::stats::{Stats, TargetStats};
use crate::store::{BatchItem, QueuePos, Store, StoreError, TargetId};
use crate::targets::{Action, Policy, Selection, Target};

/// How the daemon runs a scheduler (the target's own settings are its
/// [`Policy`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Batches are logged, never sent nor acknowledged.
    pub dry_run: bool,
    /// Send what is pending without waiting for the flush interval once the
    /// input is read, and stop when nothing is left.
    pub drain: bool,
}

/// Sends batches to one target until shut down.
pub struct Scheduler<T: Target> {
    queue: Arc<Store>,
    target: T,
    /// The target's id in the store.
    id: TargetId,
    /// The target's policy, read once.
    policy: Policy,
    mode: Mode,
    /// Where times stored on disk come from.
    clock: Clock,
    stats: Arc<Stats>,
    /// This target's own counters (the process-wide ones are their sums).
    tstats: Arc<TargetStats>,
    /// Woken by the input when addresses were queued.
    notify: Arc<Notify>,
    /// Set by the input when it has read everything (drain mode).
    input_done: Arc<AtomicBool>,
    /// Set by `tjfwd flush`: send what is pending without waiting for the
    /// flush interval; cleared once nothing is pending.
    flush_now: Arc<AtomicBool>,
    /// No attempt before this instant (backoff, 429, configuration error).
    /// Monotonic: a wall clock stepped back cannot stretch it.
    blocked_until: Option<Instant>,
    /// The recent requests, on the monotonic timeline of [`Self::mono_ms`]
    /// (the rate limit's log in this run; the store keeps a copy in wall
    /// clock time for restarts and `status`).
    sent: Vec<u64>,
    /// The origin of [`Self::mono_ms`].
    epoch: Instant,
    /// The wall and monotonic clocks at the last look (clock step
    /// detection).
    last_look: Option<(u64, u64)>,
    /// Consecutive transient failures.
    transient_failures: u32,
    /// The backoff's jitter (seeded in tests).
    rng: rand::rngs::StdRng,
    /// Consecutive configuration/auth failures.
    config_failures: u32,
    /// Batch size in use: lowered when the server answers 413.
    batch_cap: usize,
    /// Dry run: the place in the queue after the last address logged.
    dry_run_cursor: QueuePos,
    /// Told about storage errors (the daemon reopens the database once the
    /// disk is writable again).
    storage_watch: Option<crate::pipeline::StorageWatch>,
    /// The last selection sent nothing: every pending address was held
    /// back by the target ([`Selection::waiting`]). A drain then ends
    /// with them still queued, for a later run.
    only_waiting: bool,
}

/// How far the wall clock jumped between two looks (ms, signed), beyond
/// what a clock that no step moves says passed, if more than
/// [`crate::clock::FUTURE_TOLERANCE_MS`].
fn wall_step(wall_then: u64, wall_now: u64, real_then: u64, real_now: u64) -> Option<i64> {
    let step = (wall_now as i64 - wall_then as i64) - (real_now as i64 - real_then as i64);
    (step.unsigned_abs() > crate::clock::FUTURE_TOLERANCE_MS).then_some(step)
}

/// Runs `f`, which may block its thread for long (a target's selection
/// scans all it owes; the acknowledgement of a batch of 9,999 addresses;
/// the classification of an answer listing as many rows), without holding
/// up the runtime's other tasks: `tjfwd run` has one worker thread, shared
/// by every target's scheduler and the input, so a scan there stopped the
/// other targets' sending for its whole length (found by tests/chaos.rs
/// with three targets: Threat Jammer and CrowdSec sent nothing for ~10 s
/// around each AbuseIPDB bulk request of a debug build). On a multi-thread
/// runtime it goes through [`tokio::task::block_in_place`] (the other
/// tasks move to another thread meanwhile); on a current-thread runtime
/// (tests on paused time) it runs inline, as before.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Where this run's monotonic timeline starts ([`Scheduler::mono_ms`]):
/// far enough from 0 that requests of earlier runs fit before it.
const MONO_BASE: u64 = 1 << 40;

/// The schedulers' bells and flush flags, one of each per target: the
/// inputs ring one bell ([`Bells::relay`]) and every scheduler hears it;
/// `tjfwd flush` raises the flag of one target or of all.
#[derive(Debug)]
pub struct Bells {
    each: Vec<(&'static str, Arc<Notify>, Arc<AtomicBool>)>,
}

impl Bells {
    /// A bell and a flag for each of the targets `names`.
    pub fn new(names: impl Iterator<Item = &'static str>) -> Arc<Bells> {
        Arc::new(Bells {
            each: names
                .map(|n| (n, Arc::new(Notify::new()), Arc::new(AtomicBool::new(false))))
                .collect(),
        })
    }

    /// Target `name`'s bell and flag (fresh ones, never rung, for a name
    /// not given to [`Bells::new`]).
    pub fn of(&self, name: &str) -> (Arc<Notify>, Arc<AtomicBool>) {
        match self.each.iter().find(|(n, _, _)| *n == name) {
            Some((_, b, f)) => (b.clone(), f.clone()),
            None => (Arc::new(Notify::new()), Arc::new(AtomicBool::new(false))),
        }
    }

    /// Rings every bell.
    pub fn ring(&self) {
        for (_, b, _) in &self.each {
            b.notify_one();
        }
    }

    /// Asks target `only` (every target when None) to send what it owes
    /// now; false when no target has that name.
    pub fn flush(&self, only: Option<&str>) -> bool {
        let mut found = false;
        for (n, b, f) in &self.each {
            if only.is_none_or(|o| o == *n) {
                f.store(true, Ordering::Release);
                b.notify_one();
                found = true;
            }
        }
        found
    }

    /// The target names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.each.iter().map(|(n, _, _)| *n).collect()
    }

    /// Relays `input`'s wake-ups to every bell, forever (a Notify keeps a
    /// permit, so none is lost while a relay is under way).
    pub async fn relay(self: Arc<Self>, input: Arc<Notify>) {
        loop {
            input.notified().await;
            self.ring();
        }
    }
}

/// How much of a would-be request a dry run logs.
const DRY_RUN_PREVIEW: usize = 4096;

/// Bumps a delivery counter of the process and of the target together.
macro_rules! bump {
    ($s:ident, $field:ident, $n:expr) => {{
        let n: u64 = $n;
        Stats::add(&$s.stats.$field, n);
        Stats::add(&$s.tstats.$field, n);
    }};
}

/// What to do next.
enum Step {
    Send,
    Wait(Option<Duration>),
    Done,
}

impl<T: Target> Scheduler<T> {
    /// A scheduler of `target` (`id` in the store) over `queue`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: Arc<Store>,
        target: T,
        id: TargetId,
        mode: Mode,
        stats: Arc<Stats>,
        notify: Arc<Notify>,
        input_done: Arc<AtomicBool>,
        flush_now: Arc<AtomicBool>,
    ) -> Scheduler<T> {
        let policy = target.policy();
        let tstats = stats.target(target.name());
        Scheduler {
            batch_cap: policy.batch_size,
            queue,
            target,
            id,
            policy,
            mode,
            clock: Clock::System,
            stats,
            tstats,
            notify,
            input_done,
            flush_now,
            blocked_until: None,
            sent: Vec::new(),
            epoch: Instant::now(),
            last_look: None,
            transient_failures: 0,
            rng: rand::SeedableRng::from_entropy(),
            config_failures: 0,
            dry_run_cursor: QueuePos::default(),
            storage_watch: None,
            only_waiting: false,
        }
    }

    /// Reports storage errors to `watch` (see [`crate::pipeline::StorageWatch`]).
    pub fn with_storage_watch(mut self, watch: crate::pipeline::StorageWatch) -> Scheduler<T> {
        self.storage_watch = Some(watch);
        self
    }

    /// Reads times stored on disk from `clock` (tests).
    pub fn with_clock(mut self, clock: Clock) -> Scheduler<T> {
        self.clock = clock;
        self
    }

    /// Draws the backoff's jitter from a generator seeded with `seed`
    /// (tests).
    pub fn with_seed(mut self, seed: u64) -> Scheduler<T> {
        self.rng = rand::SeedableRng::seed_from_u64(seed);
        self
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Now on the monotonic timeline of the request log: ms since the
    /// scheduler started, plus [`MONO_BASE`] so that requests of earlier
    /// runs (up to a window before) have a place on it too.
    fn mono_ms(&self) -> u64 {
        MONO_BASE.saturating_add(self.epoch.elapsed().as_millis() as u64)
    }

    /// Runs until `shutdown` completes (or, in drain mode, until the queue is
    /// empty). An in-flight request is abandoned unacknowledged at shutdown.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        if !self.mode.dry_run {
            if let Err(e) = self.load_request_log() {
                tracing::warn!(target_name = self.target.name(), error = %chain(&e), "cannot read the request log; counting the rate window as full");
                let now = self.mono_ms();
                self.sent = vec![now; self.policy.limit.max as usize];
            }
        }
        let mut last_prune: Option<Instant> = None;
        loop {
            let now = self.now_ms();
            self.notice_clock_steps(now);
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_prune = Some(Instant::now());
                self.prune(now);
            }
            let step = match self.next_step(now) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(target_name = self.target.name(), error = %chain(&e), "cannot read the queue; retrying in 5 s");
                    if let Some(w) = &self.storage_watch {
                        w.recovered(&e);
                    }
                    Step::Wait(Some(Duration::from_secs(5)))
                }
            };
            match step {
                Step::Done => return,
                Step::Wait(d) => {
                    let d = d.unwrap_or(Duration::from_secs(60));
                    let reloaded = tokio::select! {
                        _ = tokio::time::sleep(d) => false,
                        _ = self.notify.notified() => false,
                        _ = self.target.reloaded() => true,
                        _ = &mut shutdown => return,
                    };
                    if reloaded {
                        self.reloaded();
                    }
                }
                Step::Send => {
                    let result = tokio::select! {
                        r = self.send_batch() => r,
                        _ = &mut shutdown => return,
                    };
                    if let Err(e) = result {
                        tracing::error!(target_name = self.target.name(), error = %chain(&e), "storage error while sending; nothing was lost, retrying in 5 s");
                        if let Some(w) = &self.storage_watch {
                            w.recovered(&e);
                        }
                        self.block_for(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Loads the request log of earlier runs onto this run's monotonic
    /// timeline, each request at its true age ([`crate::clock::restate`]:
    /// a wall clock step while tjfwd was stopped changes nothing), and
    /// counts the most recent one as sent now.
    ///
    /// A request's record keeps its send time until its answer arrives, and
    /// the server counts it when it arrives. A request cut off by a crash
    /// (or abandoned at shutdown) was never moved: if it reached the server
    /// later than it was sent, the window after the restart could be filled
    /// so that the server saw one request too many (found by
    /// tests/chaos.rs: 7 in a window, and a 429). Requests go one at a time,
    /// so only the most recent record can be such a request, and it cannot
    /// have arrived after this process started (the restart takes longer
    /// than a request travels). The cost when it was answered: at most one
    /// slot of the window, for at most one window after a start.
    fn load_request_log(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now_all();
        let log = self.queue.request_log(self.id)?;
        let written = self.queue.request_clock(self.id)?;
        if let Some(w) = written.filter(|w| w.boot_id == now.boot_id) {
            if let Some(step) = wall_step(w.wall_ms, now.wall_ms, w.boot_ms, now.boot_ms) {
                tracing::warn!(
                    target_name = self.target.name(), step_s = step / 1000,
                    "the wall clock was stepped while tjfwd was stopped; stored times are read by real elapsed time"
                );
            }
        }
        let mono = self.mono_ms();
        self.sent = crate::clock::restate(&log.sent_at_ms, written.as_ref(), &now)
            .into_iter()
            .map(|t| mono.saturating_sub(now.wall_ms.saturating_sub(t)))
            .collect();
        self.sent.sort_unstable();
        self.policy.limit.prune(&mut self.sent, mono);
        if let Some(last) = self.sent.last_mut() {
            *last = mono;
        }
        self.persist_requests()
    }

    /// Stores the request log (see [`Store::record_request`]): each
    /// request's time in the wall clock's frame now, with the clocks now.
    fn persist_requests(&self) -> Result<(), StoreError> {
        let now = self.clock.now_all();
        let mono = self.mono_ms();
        let log = RequestLog {
            sent_at_ms: self
                .sent
                .iter()
                .map(|&m| now.wall_ms.saturating_sub(mono.saturating_sub(m)))
                .collect(),
        };
        self.queue.record_request(self.id, &log, &now)
    }

    /// Logs a step of the wall clock since the last look: a jump that the
    /// monotonic clock did not make. Nothing depends on it (waits and the
    /// rate window are monotonic; stored times ahead of the clock are
    /// handled where they are read); the operator should know.
    fn notice_clock_steps(&mut self, wall: u64) {
        let mono = self.mono_ms();
        if let Some((last_wall, last_mono)) = self.last_look {
            if let Some(step) = wall_step(last_wall, wall, last_mono, mono) {
                tracing::warn!(
                    target_name = self.target.name(),
                    step_s = step / 1000,
                    "the wall clock was stepped; sending goes on by the monotonic clock"
                );
            }
        }
        self.last_look = Some((wall, mono));
    }

    fn prune(&self, now: u64) {
        loop {
            match self.queue.prune_expired(now, 10_000) {
                Ok(10_000) => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(pruned = n, "pruned expired entries of the reported set");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(target_name = self.target.name(), error = %chain(&e), "cannot prune the reported set");
                    return;
                }
            }
        }
    }

    fn next_step(&self, now: u64) -> Result<Step, StoreError> {
        let flushing = self.flush_now.load(Ordering::Acquire);
        let draining = flushing || (self.mode.drain && self.input_done.load(Ordering::Acquire));
        let pending = if self.mode.dry_run {
            // Dry run: what has not been logged yet.
            self.queue
                .peek_batch_from(self.id, self.batch_cap, self.dry_run_cursor)?
                .len() as u64
        } else {
            self.queue.pending_count_for(self.id)?
        };
        let drained = self.mode.drain && self.input_done.load(Ordering::Acquire);
        if drained && self.only_waiting {
            // What is left waits for more sightings than this run has.
            return Ok(Step::Done);
        }
        if pending == 0 {
            if flushing {
                self.flush_now.store(false, Ordering::Release);
            }
            let done = self.mode.drain && self.input_done.load(Ordering::Acquire);
            return Ok(if done { Step::Done } else { Step::Wait(None) });
        }
        if let Some(until) = self.blocked_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Ok(Step::Wait(Some(left)));
            }
        }
        if (pending as usize) < self.batch_cap && !draining {
            if let Some(oldest) = self.queue.oldest_queued_at(self.id)? {
                // Queued "in the future": before the wall clock stepped
                // back, so it has waited for an unknown time: due now
                // (waiting for the clock to catch up could take hours).
                let due = oldest.saturating_add(self.policy.flush_interval.as_millis() as u64);
                if due > now && !crate::clock::from_the_future(oldest, now) {
                    let wait = ms(due - now).min(self.policy.flush_interval);
                    return Ok(Step::Wait(Some(wait)));
                }
            }
        }
        if !self.mode.dry_run {
            let mono = self.mono_ms();
            let next = self.policy.limit.next_allowed(&self.sent, mono);
            if next > mono {
                bump!(self, rate_limit_waits, 1);
                return Ok(Step::Wait(Some(ms(next - mono))));
            }
        }
        Ok(Step::Send)
    }

    /// Sends the oldest batch, isolating rejected addresses if needed.
    async fn send_batch(&mut self) -> Result<(), StoreError> {
        if self.mode.dry_run {
            return self.dry_run_batch();
        }
        let now = self.now_ms();
        let selection = off_the_runtime(|| {
            let selection = self
                .target
                .select(&self.queue, self.id, self.batch_cap, now)?;
            self.settle_unsent(&selection)?;
            Ok::<_, StoreError>(selection)
        })?;
        let items = selection.batch;
        self.only_waiting = false;
        if items.is_empty() {
            if selection.waiting > 0 {
                // Held back by the target (below its threshold): look
                // again when it says, at the latest after a flush
                // interval; new sightings do not wake it sooner, so
                // addresses that wait cannot make it spin.
                let wait = selection
                    .recheck
                    .unwrap_or(self.policy.flush_interval)
                    .min(self.policy.flush_interval)
                    .max(Duration::from_secs(1));
                tracing::debug!(
                    waiting = selection.waiting,
                    recheck_s = wait.as_secs(),
                    "nothing to send yet: every pending address is held back"
                );
                self.only_waiting = true;
                self.block_for(wait);
                return Ok(());
            }
            if !selection.stale.is_empty() || !selection.unqualified.is_empty() {
                return Ok(());
            }
            // The counter said something is pending, the tree says no.
            let n = self.queue.repair_pending_count()?;
            tracing::warn!(
                target_name = self.target.name(),
                pending = n,
                "the pending counter disagreed with the queue; recounted"
            );
            self.block_for(Duration::from_secs(5));
            return Ok(());
        }
        // Work stack of sub-batches; the top is sent next.
        let mut work: Vec<Vec<BatchItem>> = vec![items];
        let mut accepted_any = false;
        // Single addresses rejected before anything was accepted: if they
        // all are, the problem is the request, not the addresses.
        let mut suspects: Vec<(BatchItem, u16, String)> = Vec::new();
        let hint = self.target.rejects_everything_hint();
        while let Some(batch) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            if batch.len() > self.batch_cap {
                // A half pushed before a later 413 lowered the cap: the
                // service already said this size is too large.
                push_halves(&mut work, batch);
                continue;
            }
            self.wait_for_slot().await?;
            let (sent_at, status, action) = self.attempt(&batch).await?;
            match action {
                Action::Delivered => {
                    self.accepted(&batch, sent_at)?;
                    accepted_any = true;
                    for (item, status, reason) in suspects.drain(..) {
                        self.dead_letter(&[item], status, &reason)?;
                    }
                }
                Action::AcceptedExcept { rejected } => {
                    let reasons: std::collections::BTreeMap<usize, String> = rejected
                        .into_iter()
                        .filter(|(i, _)| *i < batch.len())
                        .collect();
                    let mut refused: std::collections::BTreeMap<String, Vec<BatchItem>> =
                        std::collections::BTreeMap::new();
                    let mut taken = Vec::with_capacity(batch.len());
                    for (i, item) in batch.into_iter().enumerate() {
                        match reasons.get(&i) {
                            Some(r) => refused.entry(r.clone()).or_default().push(item),
                            None => taken.push(item),
                        }
                    }
                    for (reason, items) in &refused {
                        self.dead_letter(items, status, reason)?;
                    }
                    self.accepted(&taken, sent_at)?;
                    accepted_any = true;
                    for (item, status, reason) in suspects.drain(..) {
                        self.dead_letter(&[item], status, &reason)?;
                    }
                }
                Action::RateLimited { wait } => {
                    let wait = wait.unwrap_or(ms(self.policy.limit.window_ms));
                    tracing::warn!(
                        target_name = self.target.name(),
                        wait_s = wait.as_secs(),
                        "the API says too many requests (429): waiting"
                    );
                    bump!(self, rate_limit_waits, 1);
                    self.block_for(wait);
                    self.record_health(Some((
                        status,
                        FailureKind::RateLimited,
                        "too many requests".into(),
                    )))?;
                    return Ok(());
                }
                Action::Transient { reason } => {
                    self.transient_failures += 1;
                    let delay = backoff(
                        self.transient_failures,
                        self.policy.max_backoff,
                        &mut self.rng,
                    );
                    tracing::warn!(target_name = self.target.name(), %reason, attempt = self.transient_failures, retry_in_s = delay.as_secs_f32(), "sending failed; will retry");
                    bump!(self, retries, 1);
                    self.block_for(delay);
                    self.record_health(Some((status, FailureKind::Transient, reason)))?;
                    return Ok(());
                }
                Action::TooLarge => {
                    if batch.len() == 1 {
                        self.config_error(
                            status,
                            "the API says one address is too large a request (413); check api_url"
                                .into(),
                        )?;
                        return Ok(());
                    }
                    let half = batch.len().div_ceil(2);
                    self.batch_cap = self.batch_cap.min(half);
                    tracing::warn!(
                        target_name = self.target.name(),
                        batch_size = self.batch_cap,
                        "the API says the request is too large (413): splitting batches"
                    );
                    push_halves(&mut work, batch);
                }
                Action::Rejected { indices, reason } => {
                    if !indices.is_empty()
                        && indices.iter().all(|&i| i < batch.len())
                        && indices.len() < batch.len()
                    {
                        let (bad, rest): (Vec<_>, Vec<_>) = batch
                            .into_iter()
                            .enumerate()
                            .partition(|(i, _)| indices.binary_search(i).is_ok());
                        let bad: Vec<BatchItem> = bad.into_iter().map(|(_, b)| b).collect();
                        self.dead_letter(&bad, status, &reason)?;
                        work.push(rest.into_iter().map(|(_, b)| b).collect());
                    } else if batch.len() > 1 {
                        push_halves(&mut work, batch);
                    } else if accepted_any {
                        self.dead_letter(&batch, status, &reason)?;
                    } else {
                        suspects.push((batch[0].clone(), status, reason));
                        if suspects.len() >= 3 {
                            break;
                        }
                        if suspects.len() == 2 {
                            // Probe one address from the far end of the batch:
                            // accepted, the suspects really are bad addresses.
                            match work.first_mut().and_then(|w| w.pop()) {
                                Some(p) => work.push(vec![p]),
                                None => break,
                            }
                        }
                    }
                }
                Action::Config { reason } => {
                    self.config_error(status, reason)?;
                    return Ok(());
                }
            }
        }
        if !accepted_any
            && suspects.len() > 1
            && suspects
                .iter()
                .all(|(i, _, _)| !crate::filter::is_public(i.addr))
        {
            // Every address rejected alone is non-public (private,
            // loopback, reserved...), queued because report_non_public is
            // on: the service refuses those, not our configuration. They
            // are set aside (resend --dead-letter retries them); sending
            // goes on.
            for (item, status, reason) in std::mem::take(&mut suspects) {
                self.dead_letter(&[item], status, &reason)?;
            }
            tracing::warn!(target_name = self.target.name(), "the API rejects non-public addresses: they are moved to the dead-letter set; set [filter] report_non_public = false to stop queuing them");
        }
        if !accepted_any && !suspects.is_empty() {
            let (item, status, reason) = suspects.swap_remove(0);
            let known_good = self.queue.reported(self.id, item.addr)?.is_some();
            if suspects.is_empty() && !known_good {
                self.dead_letter(&[item], status, &reason)?;
            } else {
                self.config_error(
                    status,
                    format!("the API rejects every address, even alone ({reason}); {hint}"),
                )?;
            }
        }
        Ok(())
    }

    /// Acknowledges what the target accepted of a request sent at
    /// `sent_at`, records the success and counts it.
    fn accepted(&mut self, batch: &[BatchItem], sent_at: u64) -> Result<(), StoreError> {
        off_the_runtime(|| self.queue.ack(self.id, batch, sent_at, self.now_ms()))?;
        // The success first, then the counters: a scrape of /metrics (or a
        // status) that sees the batch counted also sees the success, never
        // a moment of "reported, and still failing".
        let health = self.record_health(None);
        bump!(self, requests_ok, 1);
        bump!(self, addresses_reported, batch.len() as u64);
        tracing::info!(
            target_name = self.target.name(),
            addresses = batch.len(),
            "batch reported"
        );
        self.transient_failures = 0;
        self.config_failures = 0;
        health?;
        // On disk now (one fsync a batch, at most 6 a minute): a crash
        // after this does not send the batch again. Only the moment
        // between the success and this line can.
        self.queue.flush()
    }

    /// Settles what the target's selection takes out of its queue without
    /// sending: too old for the service (dead letters, with the target's
    /// reason), or below its threshold in time (released). In chunks, so
    /// that the replay of an old log does not make one huge transaction;
    /// one summary line each, not one per address.
    fn settle_unsent(&self, selection: &Selection) -> Result<(), StoreError> {
        const CHUNK: usize = 1000;
        if !selection.stale.is_empty() {
            let now = self.now_ms();
            let mut by_reason: std::collections::BTreeMap<&str, Vec<BatchItem>> =
                std::collections::BTreeMap::new();
            for (item, reason) in &selection.stale {
                by_reason
                    .entry(reason.as_str())
                    .or_default()
                    .push(item.clone());
            }
            for (reason, items) in by_reason {
                for chunk in items.chunks(CHUNK) {
                    self.queue.dead_letter(self.id, chunk, 0, reason, now)?;
                }
                bump!(self, addresses_dead_lettered, items.len() as u64);
                Stats::add(&self.stats.addresses_too_old, items.len() as u64);
                self.tstats.add_extra("too_old", items.len() as u64);
                tracing::warn!(target_name = self.target.name(), addresses = items.len(), %reason, "not sent: moved to the dead-letter set");
            }
        }
        if !selection.unqualified.is_empty() {
            for chunk in selection.unqualified.chunks(CHUNK) {
                self.queue.release(self.id, chunk)?;
            }
            let n = selection.unqualified.len() as u64;
            Stats::add(&self.stats.addresses_below_min_attempts, n);
            self.tstats.add_extra("below_min_attempts", n);
            tracing::info!(
                target_name = self.target.name(),
                addresses = n,
                "not reported: too few attempts within the window; released from the queue"
            );
        }
        Ok(())
    }

    /// The target's settings were reloaded (SIGHUP): a pause for a
    /// configuration error (a refused token...) ends, so that the new
    /// settings are tried at once (still within the rate limit).
    fn reloaded(&mut self) {
        if self.config_failures > 0 {
            tracing::info!(
                target_name = self.target.name(),
                "the target's settings were reloaded: trying them now"
            );
            self.blocked_until = None;
        }
    }

    fn block_for(&mut self, d: Duration) {
        self.blocked_until = Some(Instant::now() + d);
    }

    /// Waits (inside a send) until the rate limit allows one more attempt.
    async fn wait_for_slot(&self) -> Result<(), StoreError> {
        loop {
            let now = self.mono_ms();
            let next = self.policy.limit.next_allowed(&self.sent, now);
            if next <= now {
                return Ok(());
            }
            bump!(self, rate_limit_waits, 1);
            tokio::time::sleep(ms(next - now)).await;
        }
    }

    /// One request: recorded durably first, then sent; its record is moved
    /// to the time the answer came. Returns the send time, the service's
    /// code and the action.
    async fn attempt(&mut self, batch: &[BatchItem]) -> Result<(u64, u16, Action), StoreError> {
        let sent_at = self.now_ms();
        let mono = self.mono_ms();
        self.policy.limit.prune(&mut self.sent, mono);
        self.sent.push(mono);
        self.persist_requests()?;
        bump!(self, requests, 1);

        let reply = self.target.send(batch).await;
        let answer = off_the_runtime(|| self.target.classify(&reply, self.clock.now()));
        self.stats.count_reply(answer.code);
        self.tstats.count_reply(answer.code);
        if let Some(q) = self.target.quota(&reply, self.now_ms()) {
            self.tstats.set_quota(q);
        }

        // Rounded up to the next ms: the window then starts no earlier
        // than the answer, not up to a millisecond before it.
        let done = self.mono_ms().saturating_add(1);
        if let Some(t) = self.sent.iter_mut().rev().find(|t| **t == mono) {
            *t = done.max(mono);
        }
        self.persist_requests()?;
        tracing::debug!(
            status = answer.code,
            addresses = batch.len(),
            "API answered"
        );
        Ok((sent_at, answer.code, answer.action))
    }

    fn dead_letter(
        &self,
        items: &[BatchItem],
        status: u16,
        reason: &str,
    ) -> Result<(), StoreError> {
        // A non-public address (queued because report_non_public is on)
        // says so: that is why the service refuses it.
        let (public, private): (Vec<BatchItem>, Vec<BatchItem>) = items
            .iter()
            .cloned()
            .partition(|i| crate::filter::is_public(i.addr));
        let private_reason = format!(
            "{reason}; not a public address: the service does not take non-public \
             addresses, which tjfwd sends because report_non_public = true"
        );
        for (group, reason) in [(public, reason), (private, private_reason.as_str())] {
            if group.is_empty() {
                continue;
            }
            for i in &group {
                tracing::warn!(target_name = self.target.name(), address = %i.addr, status, %reason, "the API rejected an address: moved to the dead-letter set (tjfwd resend --dead-letter retries it)");
            }
            bump!(self, addresses_dead_lettered, group.len() as u64);
            off_the_runtime(|| {
                self.queue
                    .dead_letter(self.id, &group, status, reason, self.now_ms())
            })?;
        }
        Ok(())
    }

    fn config_error(&mut self, status: u16, reason: String) -> Result<(), StoreError> {
        self.config_failures += 1;
        // Retry slowly: a minute at first, then up to max_backoff.
        let delay = Duration::from_secs(60 * u64::from(self.config_failures.min(10)))
            .min(self.policy.max_backoff.max(Duration::from_secs(1)));
        tracing::error!(target_name = self.target.name(), status, %reason, retry_in_s = delay.as_secs(), "sending is paused; nothing is dropped");
        self.block_for(delay);
        self.record_health(Some((status, FailureKind::Refused, reason)))
    }

    /// Records a success (None) or a failure: the service's code, what
    /// kind of failure it is (what health judges), and the reason.
    fn record_health(&self, error: Option<(u16, FailureKind, String)>) -> Result<(), StoreError> {
        let now = self.now_ms();
        let mut h = self.queue.health(self.id)?;
        match error {
            None => {
                h.last_success_ms = Some(now);
                h.failing_since_ms = None;
            }
            Some((code, kind, message)) => {
                h.last_error_ms = Some(now);
                h.last_error_code = code;
                h.last_error_kind = Some(kind);
                h.last_error_message = message;
                h.failing_since_ms.get_or_insert(now);
            }
        }
        self.queue.set_health(self.id, &h)
    }

    fn dry_run_batch(&mut self) -> Result<(), StoreError> {
        let items = self
            .queue
            .peek_batch_from(self.id, self.batch_cap, self.dry_run_cursor)?;
        let Some(last) = items.last() else {
            return Ok(());
        };
        self.dry_run_cursor = last.next_pos();
        let addrs: Vec<String> = items.iter().map(|i| i.addr.to_string()).collect();
        // The request as it would go (its first 4 KiB: a full batch's is
        // up to a megabyte).
        let mut request = self.target.preview(&items, self.now_ms());
        if request.len() > DRY_RUN_PREVIEW {
            let total = request.len();
            let mut cut = DRY_RUN_PREVIEW;
            while !request.is_char_boundary(cut) {
                cut -= 1;
            }
            request.truncate(cut);
            request.push_str(&format!("… ({total} bytes in all)"));
        }
        tracing::info!(
            target_name = self.target.name(), dry_run = true,
            count = addrs.len(),
            settings = %self.target.describe(),
            %request,
            addresses = %addrs.join(","),
            "would send a batch (nothing is sent or acknowledged)"
        );
        Ok(())
    }
}

/// Replaces a batch on the stack by its two halves (first half on top).
fn push_halves(work: &mut Vec<Vec<BatchItem>>, mut batch: Vec<BatchItem>) {
    let second = batch.split_off(batch.len().div_ceil(2));
    work.push(second);
    work.push(batch);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The scheduler against a scripted target on tokio's paused clock: the
/// decisions of the module doc, with no HTTP server and no real waiting.
#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;

    use super::*;
    use crate::clock::Clock;
    use crate::health::verdict;
    use crate::ratelimit::Limit;
    use crate::store::{Policy as QueuePolicy, Sighting, TargetSpec};
    use crate::targets::Answer;

    /// How the scripted target answers a batch (its addresses, and the
    /// number of the attempt, from 0).
    type Script = Box<dyn Fn(&[IpAddr], usize) -> Answer + Send + Sync>;

    /// Each request the scripted target got: when, and its addresses.
    type Sent = Arc<Mutex<Vec<(Instant, Vec<IpAddr>)>>>;

    /// A target whose answers come from a script, and which records each
    /// batch it is sent with the (paused) time it was sent.
    struct Scripted {
        policy: Policy,
        script: Script,
        sent: Sent,
        /// Holds every address back ([`Selection::waiting`]) when set,
        /// and counts the selections.
        hold_back: Option<Arc<std::sync::atomic::AtomicUsize>>,
    }

    impl Target for Scripted {
        type Reply = Answer;
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn policy(&self) -> Policy {
            self.policy.clone()
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
        fn select(
            &self,
            queue: &Store,
            t: TargetId,
            n: usize,
            _now_ms: u64,
        ) -> Result<Selection, StoreError> {
            match &self.hold_back {
                None => Ok(Selection::of(queue.peek_batch(t, n)?)),
                Some(calls) => {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Ok(Selection {
                        waiting: queue.pending_count_for(t)?,
                        recheck: Some(Duration::from_secs(3600)),
                        ..Selection::default()
                    })
                }
            }
        }
        async fn send(&self, batch: &[BatchItem]) -> Answer {
            let addrs: Vec<IpAddr> = batch.iter().map(|b| b.addr).collect();
            let mut sent = self.sent.lock().unwrap();
            let answer = (self.script)(&addrs, sent.len());
            sent.push((Instant::now(), addrs));
            answer
        }
        fn classify(&self, reply: &Answer, _now: std::time::SystemTime) -> Answer {
            reply.clone()
        }
        fn rejects_everything_hint(&self) -> &'static str {
            "check the script"
        }
    }

    /// The scripted target's id: the first a new store gives.
    const T0: TargetId = 0;

    fn ok() -> Answer {
        Answer {
            code: 202,
            action: Action::Delivered,
        }
    }

    fn answer(code: u16, action: Action) -> Answer {
        Answer { code, action }
    }

    fn policy() -> Policy {
        Policy {
            batch_size: 1000,
            flush_interval: Duration::from_secs(60),
            limit: Limit {
                max: 1000,
                window_ms: 60_000,
            },
            max_backoff: Duration::from_secs(300),
            rereport_after: Duration::ZERO,
        }
    }

    fn addr(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))
    }

    /// A queue holding `n` addresses, and the clock they were queued by.
    struct Bench {
        _dir: tempfile::TempDir,
        queue: Arc<Store>,
        clock: Clock,
        sent: Sent,
        start: Instant,
        /// See [`Scripted::hold_back`].
        hold_back: Option<Arc<std::sync::atomic::AtomicUsize>>,
    }

    fn bench(n: u32) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let queue = Store::open(
            dir.path(),
            8 << 20,
            &[TargetSpec {
                name: "scripted".into(),
                policy: QueuePolicy {
                    ttl_ms: 86_400_000,
                    rereport_after_ms: 0,
                },
            }],
        )
        .unwrap();
        assert_eq!(queue.target_id("scripted"), Some(T0));
        let clock = Clock::following_tokio(1_800_000_000_000);
        let sightings: Vec<Sighting> = (0..n)
            .map(|i| Sighting {
                addr: addr(i),
                seen_ms: clock.now_ms(),
            })
            .collect();
        for chunk in sightings.chunks(1000) {
            queue.enqueue(chunk, None, clock.now_ms()).unwrap();
        }
        Bench {
            _dir: dir,
            queue: Arc::new(queue),
            clock,
            sent: Arc::default(),
            start: Instant::now(),
            hold_back: None,
        }
    }

    impl Bench {
        /// Runs a scheduler of the scripted target for `for_` of paused
        /// time (or until the queue is empty, with `drain`).
        async fn run(&self, policy: Policy, script: Script, drain: bool, for_: Duration) {
            self.run_with_clock(self.clock.clone(), policy, script, drain, for_)
                .await
        }

        /// [`Bench::run`] of the [`limited`] policy, every batch accepted,
        /// draining (the clock-step tests).
        async fn drain_limited(&self, for_: Duration) {
            self.run(limited(), Box::new(|_, _| ok()), true, for_).await
        }

        /// [`Bench::run`] with another clock (a restart after a reboot).
        async fn run_with_clock(
            &self,
            clock: Clock,
            policy: Policy,
            script: Script,
            drain: bool,
            for_: Duration,
        ) {
            let target = Scripted {
                policy,
                script,
                sent: self.sent.clone(),
                hold_back: self.hold_back.clone(),
            };
            let scheduler = Scheduler::new(
                self.queue.clone(),
                target,
                T0,
                Mode {
                    dry_run: false,
                    drain,
                },
                Arc::new(Stats::default()),
                Arc::new(Notify::new()),
                Arc::new(AtomicBool::new(true)),
                Arc::new(AtomicBool::new(false)),
            )
            .with_clock(clock)
            .with_seed(7);
            scheduler.run(tokio::time::sleep(for_)).await;
        }

        /// (seconds after the start, batch size) of each request.
        fn requests(&self) -> Vec<(f64, usize)> {
            let sent = self.sent.lock().unwrap();
            sent.iter()
                .map(|(at, b)| ((*at - self.start).as_secs_f64(), b.len()))
                .collect()
        }

        fn pending(&self) -> u64 {
            self.queue.pending_count().unwrap()
        }

        fn dead(&self) -> Vec<IpAddr> {
            let mut d: Vec<IpAddr> = self.queue.dead_entries(T0).map(|e| e.unwrap().0).collect();
            d.sort();
            d
        }
    }

    /// A target whose selection blocks its thread for `block` (a scan of
    /// all it owes, as AbuseIPDB's), and whose sends take a few ms of I/O.
    struct Slow {
        name: &'static str,
        block: Duration,
        sent: Sent,
    }

    impl Target for Slow {
        type Reply = Answer;
        fn name(&self) -> &'static str {
            self.name
        }
        fn policy(&self) -> Policy {
            Policy {
                batch_size: 1,
                ..policy()
            }
        }
        fn describe(&self) -> String {
            self.name.into()
        }
        fn select(
            &self,
            queue: &Store,
            t: TargetId,
            n: usize,
            _now_ms: u64,
        ) -> Result<Selection, StoreError> {
            std::thread::sleep(self.block);
            Ok(Selection::of(queue.peek_batch(t, n)?))
        }
        async fn send(&self, batch: &[BatchItem]) -> Answer {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let addrs: Vec<IpAddr> = batch.iter().map(|b| b.addr).collect();
            self.sent.lock().unwrap().push((Instant::now(), addrs));
            ok()
        }
        fn classify(&self, reply: &Answer, _now: std::time::SystemTime) -> Answer {
            reply.clone()
        }
        fn rejects_everything_hint(&self) -> &'static str {
            "none"
        }
    }

    /// On the daemon's runtime (one worker thread), a target that takes
    /// long to choose its batch does not hold the other targets up: while
    /// the slow one scans (1.5 s, twice), the fast one sends its 40
    /// addresses one a request. Found by tests/chaos.rs: with AbuseIPDB's
    /// selection blocking the only worker, Threat Jammer and CrowdSec sent
    /// nothing for seconds.
    #[test]
    fn a_target_slow_to_choose_its_batch_does_not_hold_up_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |name: &str| TargetSpec {
            name: name.into(),
            policy: QueuePolicy {
                ttl_ms: 86_400_000,
                rereport_after_ms: 0,
            },
        };
        let queue =
            Arc::new(Store::open(dir.path(), 8 << 20, &[spec("slow"), spec("fast")]).unwrap());
        let now = Clock::System.now_ms();
        let sightings: Vec<Sighting> = (0..40)
            .map(|i| Sighting {
                addr: addr(i),
                seen_ms: now,
            })
            .collect();
        queue.enqueue(&sightings, None, now).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (slow_sent, fast_sent): (Sent, Sent) = (Arc::default(), Arc::default());
        let start = Instant::now();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for (name, block, sent) in [
                ("slow", Duration::from_millis(1500), &slow_sent),
                ("fast", Duration::ZERO, &fast_sent),
            ] {
                let target = Slow {
                    name,
                    block,
                    sent: sent.clone(),
                };
                let id = queue.target_id(name).unwrap();
                let scheduler = Scheduler::new(
                    queue.clone(),
                    target,
                    id,
                    Mode::default(),
                    Arc::new(Stats::default()),
                    Arc::new(Notify::new()),
                    Arc::new(AtomicBool::new(false)),
                    Arc::new(AtomicBool::new(false)),
                )
                .with_seed(7);
                tasks.push(tokio::spawn(
                    scheduler.run(tokio::time::sleep(Duration::from_millis(3200))),
                ));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let slow = slow_sent.lock().unwrap().len();
        let fast = fast_sent.lock().unwrap();
        let last = fast.last().map(|(at, _)| *at - start);
        assert_eq!(fast.len(), 40, "the fast target sent {} of 40", fast.len());
        assert!(
            last.is_some_and(|l| l < Duration::from_millis(1400)),
            "the fast target's last request came {last:?} after the start, behind the slow \
             one's selection"
        );
        assert!((1..=2).contains(&slow), "the slow target sent {slow}");
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_go_at_once_and_the_rest_after_the_flush_interval() {
        let b = bench(2500);
        b.run(
            policy(),
            Box::new(|_, _| ok()),
            false,
            Duration::from_secs(3600),
        )
        .await;
        let reqs = b.requests();
        assert_eq!(
            reqs.iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        // Two full batches at once; the 500 left wait for the flush interval.
        assert!(reqs[0].0 < 1.0 && reqs[1].0 < 1.0, "{reqs:?}");
        assert!((60.0..61.0).contains(&reqs[2].0), "{reqs:?}");
        assert_eq!(b.pending(), 0);
        assert_eq!(b.queue.reported_count(T0), 2500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_too_large_is_split_and_later_batches_stay_small() {
        let b = bench(1000);
        let script: Script = Box::new(|batch, _| {
            if batch.len() > 300 {
                answer(413, Action::TooLarge)
            } else {
                ok()
            }
        });
        b.run(policy(), script, true, Duration::from_secs(3600))
            .await;
        let sizes: Vec<usize> = b.requests().iter().map(|r| r.1).collect();
        // 1000 → 500 → 250: then every batch is at most 250.
        assert_eq!(&sizes[..3], &[1000, 500, 250], "{sizes:?}");
        assert!(sizes[3..].iter().all(|&n| n <= 250), "{sizes:?}");
        assert_eq!(b.pending(), 0);
        assert_eq!(b.queue.reported_count(T0), 1000);
        assert!(b.dead().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_addresses_are_isolated_by_bisection_and_the_rest_delivered() {
        let b = bench(100);
        let bad = [addr(7), addr(42), addr(99)];
        let script: Script = Box::new(move |batch, _| {
            if batch.iter().any(|a| bad.contains(a)) {
                answer(
                    422,
                    Action::Rejected {
                        indices: vec![],
                        reason: "invalid address".into(),
                    },
                )
            } else {
                ok()
            }
        });
        b.run(policy(), script, true, Duration::from_secs(3600))
            .await;
        assert_eq!(b.dead(), bad.to_vec());
        assert_eq!(b.pending(), 0);
        assert_eq!(b.queue.reported_count(T0), 97);
        let dead = b.queue.dead(T0, addr(42)).unwrap().unwrap();
        assert_eq!(dead.status, 422);
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_addresses_named_by_the_service_go_without_bisection() {
        let b = bench(10);
        let script: Script = Box::new(|batch, _| match batch.iter().position(|a| *a == addr(4)) {
            Some(i) => answer(
                422,
                Action::Rejected {
                    indices: vec![i],
                    reason: "not public".into(),
                },
            ),
            None => ok(),
        });
        b.run(policy(), script, true, Duration::from_secs(3600))
            .await;
        assert_eq!(
            b.requests().iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![10, 9]
        );
        assert_eq!(b.dead(), vec![addr(4)]);
        assert_eq!(b.queue.reported_count(T0), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_except_some_dead_letters_them_and_acknowledges_the_rest_once() {
        let b = bench(10);
        let script: Script = Box::new(|batch, _| {
            let at = |a: IpAddr| batch.iter().position(|x| *x == a).unwrap();
            answer(
                200,
                Action::AcceptedExcept {
                    rejected: vec![
                        (at(addr(2)), "Invalid IP".into()),
                        (at(addr(5)), "ReportDate too old".into()),
                        (at(addr(7)), "Invalid IP".into()),
                        // Out of the batch: ignored.
                        (99, "nonsense".into()),
                    ],
                },
            )
        });
        b.run(policy(), script, true, Duration::from_secs(3600))
            .await;
        // One request: the rest was accepted, nothing is sent again.
        assert_eq!(b.requests().iter().map(|r| r.1).collect::<Vec<_>>(), [10]);
        assert_eq!(b.dead(), vec![addr(2), addr(5), addr(7)]);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.queue.reported_count(T0), 7);
        assert!(b.queue.reported(T0, addr(2)).unwrap().is_none());
        let d = b.queue.dead(T0, addr(5)).unwrap().unwrap();
        assert_eq!((d.status, d.reason.as_str()), (200, "ReportDate too old"));
        let d = b.queue.dead(T0, addr(7)).unwrap().unwrap();
        assert_eq!(d.reason, "Invalid IP");
        let h = b.queue.health(T0).unwrap();
        assert!(
            h.failing_since_ms.is_none() && h.last_success_ms.is_some(),
            "{h:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_the_target_holds_back_do_not_make_it_spin_nor_stop_a_drain() {
        // Held back for an hour each time; the flush interval (60 s) is
        // shorter: one look a minute, whatever the wake-ups, no request.
        let mut b = bench(50);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        b.hold_back = Some(calls.clone());
        b.run(
            policy(),
            Box::new(|_, _| ok()),
            false,
            Duration::from_secs(600),
        )
        .await;
        let n = calls.load(Ordering::Relaxed);
        assert!((9..=12).contains(&n), "{n} selections in 10 minutes");
        assert!(b.requests().is_empty());
        assert_eq!(b.pending(), 50);
        // A drain ends with them still queued, for a later run.
        calls.store(0, Ordering::Relaxed);
        let started = Instant::now();
        b.run(
            policy(),
            Box::new(|_, _| ok()),
            true,
            Duration::from_secs(3600),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(b.pending(), 50);
        assert!(b.requests().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_requests_waits_for_the_services_hint_or_a_window() {
        let b = bench(1000);
        let script: Script = Box::new(|_, n| match n {
            0 => answer(
                429,
                Action::RateLimited {
                    wait: Some(Duration::from_secs(30)),
                },
            ),
            1 => answer(429, Action::RateLimited { wait: None }),
            _ => ok(),
        });
        b.run(policy(), script, true, Duration::from_secs(3600))
            .await;
        let t: Vec<f64> = b.requests().iter().map(|r| r.0).collect();
        assert_eq!(t.len(), 3, "{t:?}");
        assert!((30.0..31.0).contains(&(t[1] - t[0])), "{t:?}");
        // No hint: a whole window of the limit (60 s).
        assert!((60.0..61.0).contains(&(t[2] - t[1])), "{t:?}");
        assert_eq!(b.pending(), 0);
        // Rate limiting does not make the target unhealthy.
        let h = b.queue.health(T0).unwrap();
        assert!(h.failing_since_ms.is_none(), "{h:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_back_off_exponentially_up_to_the_cap() {
        let b = bench(5);
        let mut p = policy();
        p.max_backoff = Duration::from_secs(20);
        let script: Script = Box::new(|_, _| {
            answer(
                503,
                Action::Transient {
                    reason: "HTTP 503: busy".into(),
                },
            )
        });
        b.run(p, script, true, Duration::from_secs(600)).await;
        let t: Vec<f64> = b.requests().iter().map(|r| r.0).collect();
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 20, "{gaps:?}");
        // Equal jitter: each wait is between half and all of its step
        // (1, 2, 4, 8, 16 s, then the 20 s cap).
        for (i, g) in gaps.iter().enumerate() {
            let step = (1u64 << i.min(20)).min(20) as f64;
            assert!(
                *g >= step / 2.0 - 0.01 && *g <= step + 0.01,
                "gap {i}: {g} ({gaps:?})"
            );
        }
        assert!(gaps[6..].iter().all(|g| *g >= 10.0 - 0.01), "{gaps:?}");
        // Nothing is dropped; the failure is on record, but it is transient.
        assert_eq!(b.pending(), 5);
        let h = b.queue.health(T0).unwrap();
        assert_eq!(h.last_error_code, 503);
        assert_eq!(h.last_error_kind, Some(FailureKind::Transient));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_configuration_pauses_sending_drops_nothing_and_degrades_health() {
        let b = bench(20);
        let script: Script = Box::new(|_, n| {
            if n < 3 {
                answer(
                    401,
                    Action::Config {
                        reason: "bad token".into(),
                    },
                )
            } else {
                ok()
            }
        });
        let mut p = policy();
        p.max_backoff = Duration::from_secs(150);
        b.run(p, script, true, Duration::from_secs(3600)).await;
        let t: Vec<f64> = b.requests().iter().map(|r| r.0).collect();
        // Retried slowly: a minute, two, then the cap (150 s).
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps.len(), 3, "{gaps:?}");
        for (g, want) in gaps.iter().zip([60.0, 120.0, 150.0]) {
            assert!((want..want + 1.0).contains(g), "{gaps:?}");
        }
        assert_eq!(b.pending(), 0);
        assert_eq!(b.queue.reported_count(T0), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_configuration_is_a_degraded_health_at_once() {
        let b = bench(3);
        let script: Script = Box::new(|_, _| {
            answer(
                401,
                Action::Config {
                    reason: "bad token".into(),
                },
            )
        });
        b.run(policy(), script, true, Duration::from_secs(30)).await;
        assert_eq!(b.requests().len(), 1);
        assert_eq!(b.pending(), 3);
        let h = b.queue.health(T0).unwrap();
        assert_eq!(h.last_error_kind, Some(FailureKind::Refused));
        let v = verdict(&h, b.clock.now_ms(), Duration::from_secs(60));
        assert!(!v.is_healthy(), "{v:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rolling_window_limit_holds_across_retries() {
        let b = bench(5000);
        let mut p = policy();
        p.limit = Limit {
            max: 6,
            window_ms: 60_000,
        };
        p.batch_size = 100;
        // Every other request fails transiently: retries count too.
        let script: Script = Box::new(|_, n| {
            if n % 2 == 1 {
                answer(
                    500,
                    Action::Transient {
                        reason: "HTTP 500".into(),
                    },
                )
            } else {
                ok()
            }
        });
        b.run(p, script, false, Duration::from_secs(600)).await;
        let t: Vec<f64> = b.requests().iter().map(|r| r.0).collect();
        assert!(t.len() >= 50, "{}", t.len());
        for (i, start) in t.iter().enumerate() {
            let in_window = t[i..].iter().take_while(|x| **x < start + 60.0).count();
            assert!(in_window <= 6, "{in_window} requests from {start} s: {t:?}");
        }
    }

    /// The most requests the server saw in any `window_s` of real (tokio)
    /// time.
    fn most_in_a_window(reqs: &[(f64, usize)], window_s: f64) -> usize {
        (0..reqs.len())
            .map(|i| {
                reqs[i..]
                    .iter()
                    .take_while(|r| r.0 < reqs[i].0 + window_s)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// 6 requests a minute, batches of 10.
    fn limited() -> Policy {
        Policy {
            batch_size: 10,
            limit: Limit {
                max: 6,
                window_ms: 60_000,
            },
            ..policy()
        }
    }

    /// Steps `clock` by `delta_ms` after `after` of paused time.
    fn step_later(clock: &Clock, after: Duration, delta_ms: i64) {
        let clock = clock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            clock.step(delta_ms);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_stepped_back_an_hour_while_sending_does_not_stop_it() {
        // 100 addresses, 10 requests at 6 a minute: ~2 minutes. The clock
        // goes back an hour after 30 s, with the window full.
        let b = bench(100);
        step_later(&b.clock, Duration::from_secs(30), -3_600_000);
        b.drain_limited(Duration::from_secs(3600)).await;
        let reqs = b.requests();
        assert_eq!(reqs.len(), 10, "{reqs:?}");
        assert_eq!(b.pending(), 0);
        // The last request within one window of when the limit allows it.
        assert!(reqs[9].0 < 61.0 + 60.0, "{reqs:?}");
        assert!(most_in_a_window(&reqs, 60.0) <= 6, "{reqs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_queued_before_the_clock_stepped_back_wait_one_flush_interval_at_most() {
        let b = bench(5);
        step_later(&b.clock, Duration::from_secs(10), -3_600_000);
        b.run(
            limited(),
            Box::new(|_, _| ok()),
            false,
            Duration::from_secs(3600),
        )
        .await;
        let reqs = b.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert!(reqs[0].0 <= 61.0, "{reqs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_stepped_forward_never_lets_more_than_the_limit_through() {
        // Two days ahead after 30 s (the window full), back after 90 s: the
        // server never sees more than 6 requests in a real minute.
        let b = bench(200);
        step_later(&b.clock, Duration::from_secs(30), 172_800_000);
        step_later(&b.clock, Duration::from_secs(90), -172_800_000);
        b.drain_limited(Duration::from_secs(3600)).await;
        let reqs = b.requests();
        assert_eq!(reqs.len(), 20, "{reqs:?}");
        assert!(most_in_a_window(&reqs, 60.0) <= 6, "{reqs:?}");
        // And at the limit's pace: 20 requests in a little over 3 minutes.
        assert!(reqs[19].0 < 190.0, "{reqs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_after_a_clock_step_keeps_the_limit_and_resumes_within_a_window() {
        for (what, step_ms) in [("ahead", 3_600_000i64), ("back", -3_600_000)] {
            let b = bench(200);
            // The first run sends 6 requests at once, then stops.
            b.drain_limited(Duration::from_secs(1)).await;
            assert_eq!(b.requests().len(), 6, "{what}");
            // Stopped for 2 s, in which the wall clock steps an hour.
            tokio::time::advance(Duration::from_secs(2)).await;
            b.clock.step(step_ms);
            b.drain_limited(Duration::from_secs(3600)).await;
            let reqs = b.requests();
            assert_eq!(reqs.len(), 20, "{what}: {reqs:?}");
            assert!(most_in_a_window(&reqs, 60.0) <= 6, "{what}: {reqs:?}");
            // The 7th within a window (and a little: the last request of
            // a run counts as sent at the restart) of the 6th.
            assert!(reqs[6].0 < 64.0, "{what}: {reqs:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_reboot_earlier_requests_count_as_at_least_the_uptime_old() {
        let b = bench(200);
        b.drain_limited(Duration::from_secs(1)).await;
        assert_eq!(b.requests().len(), 6);
        // 12 s later, 10 s after a reboot, with a stale wall clock (a
        // Raspberry Pi: a day behind).
        tokio::time::advance(Duration::from_secs(12)).await;
        b.clock.step(-86_400_000);
        let rebooted = b.clock.rebooted(10_000);
        b.run_with_clock(
            rebooted,
            limited(),
            Box::new(|_, _| ok()),
            true,
            Duration::from_secs(3600),
        )
        .await;
        let reqs = b.requests();
        assert_eq!(reqs.len(), 20, "{reqs:?}");
        assert!(most_in_a_window(&reqs, 60.0) <= 6, "{reqs:?}");
        // Counted as at least 10 s old (13 s really): sending resumes
        // within a window.
        assert!(reqs[6].0 < 64.0, "{reqs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn non_public_addresses_the_service_refuses_are_set_aside_not_a_pause() {
        // report_non_public = true queued private addresses (alone, or with
        // a public one behind them); the service rejects each, even alone.
        // That is not a configuration error (category, tags and ttl are
        // fine): they are dead-lettered with the true reason, the rest goes.
        for with_public in [false, true] {
            let b = bench(0);
            let mut addrs: Vec<IpAddr> = (1..=5u8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                .collect();
            if with_public {
                addrs.push(addr(1));
            }
            for a in &addrs {
                let one = Sighting {
                    addr: *a,
                    seen_ms: b.clock.now_ms(),
                };
                b.queue.enqueue(&[one], None, b.clock.now_ms()).unwrap();
            }
            let script: Script = Box::new(|batch, _| {
                if batch.iter().any(|a| !crate::filter::is_public(*a)) {
                    answer(
                        422,
                        Action::Rejected {
                            indices: vec![],
                            reason: "invalid address".into(),
                        },
                    )
                } else {
                    ok()
                }
            });
            b.run(policy(), script, true, Duration::from_secs(3600))
                .await;
            assert_eq!(b.pending(), 0, "with_public {with_public}");
            let dead = b.dead();
            assert_eq!(dead.len(), 5, "{dead:?}");
            assert_eq!(b.queue.reported_count(T0), usize::from(with_public));
            for e in b.queue.dead_entries(T0) {
                let (_, d) = e.unwrap();
                assert!(d.reason.contains("not a public address"), "{}", d.reason);
            }
            let h = b.queue.health(T0).unwrap();
            assert_ne!(h.last_error_kind, Some(FailureKind::Refused), "{h:?}");
            // No pause of a minute or more.
            assert!(b.requests().last().unwrap().0 < 60.0, "{:?}", b.requests());
        }
    }
}
