//! Scheduler: decides when to send, sends through the [`Reporter`], and
//! applies the answer to the queue.
//!
//! - A batch (oldest first, at most `batch_size`) goes out when `batch_size`
//!   addresses are pending or the oldest has waited `flush_interval`.
//! - No more than `max_requests_per_minute` attempts in any rolling window,
//!   retries included. Each attempt is recorded and fsynced *before* it is
//!   sent ([`Queue::record_request`]), so a restart cannot reset the window.
//! - 202 acks the batch; 429 waits (Retry-After, else a window); transient
//!   failures back off exponentially with jitter up to `max_backoff`; 413
//!   splits; 400/422 isolate the rejected addresses (by the indices the server
//!   names, else by bisection) into the dead-letter set while the rest is
//!   delivered; configuration/auth errors drop nothing and retry slowly.
//! - Nothing is removed from the queue except by an ack or a dead-letter move,
//!   so an abandoned request (shutdown, crash) is simply sent again later.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use migrations::v1::{Health, RequestLog};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::errors::chain;
use crate::queue::{BatchItem, Queue, QueueError, QueuePos};
use crate::ratelimit::{backoff, Limit};
use crate::reporter::{classify, Action, Reporter};
use crate::stats::Stats;

/// Scheduler settings, from `[schedule]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most addresses in one request.
    pub batch_size: usize,
    /// Longest time an address waits for a batch to fill.
    pub flush_interval: Duration,
    /// The API's rolling-window limit.
    pub limit: Limit,
    /// Cap on the transient-failure backoff (and on the slow retry after
    /// configuration errors).
    pub max_backoff: Duration,
    /// Drain mode: send what is pending without waiting for the flush
    /// interval once the input is read, and stop when nothing is left.
    pub drain: bool,
    /// The request's other fields, for dry-run logs (`type=… ttl=… tags=…`).
    pub describe: String,
}

/// Sends batches until shut down.
pub struct Scheduler {
    queue: Arc<Queue>,
    /// None in dry-run mode: batches are logged, never sent.
    reporter: Option<Reporter>,
    settings: Settings,
    stats: Arc<Stats>,
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
    /// Consecutive transient failures.
    transient_failures: u32,
    /// Consecutive configuration/auth failures.
    config_failures: u32,
    /// Batch size in use: lowered when the server answers 413.
    batch_cap: usize,
    /// Dry run: the place in the queue after the last address logged.
    dry_run_cursor: QueuePos,
    /// Told about storage errors (the daemon reopens the database once the
    /// disk is writable again).
    storage_watch: Option<crate::daemon::StorageWatch>,
}

/// What to do next.
enum Step {
    Send,
    Wait(Option<Duration>),
    Done,
}

impl Scheduler {
    /// A scheduler over `queue`; `reporter` None means dry run.
    pub fn new(
        queue: Arc<Queue>,
        reporter: Option<Reporter>,
        settings: Settings,
        stats: Arc<Stats>,
        notify: Arc<Notify>,
        input_done: Arc<AtomicBool>,
        flush_now: Arc<AtomicBool>,
    ) -> Scheduler {
        Scheduler {
            batch_cap: settings.batch_size,
            queue,
            reporter,
            settings,
            stats,
            notify,
            input_done,
            flush_now,
            blocked_until: None,
            transient_failures: 0,
            config_failures: 0,
            dry_run_cursor: QueuePos::default(),
            storage_watch: None,
        }
    }

    /// Reports storage errors to `watch` (see [`crate::daemon::StorageWatch`]).
    pub fn with_storage_watch(mut self, watch: crate::daemon::StorageWatch) -> Scheduler {
        self.storage_watch = Some(watch);
        self
    }

    /// Runs until `shutdown` completes (or, in drain mode, until the queue is
    /// empty). An in-flight request is abandoned unacknowledged at shutdown.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        if self.reporter.is_some() {
            if let Err(e) = self.settle_last_request() {
                tracing::warn!(error = %chain(&e), "cannot update the request log");
            }
        }
        let mut last_prune = 0u64;
        loop {
            let now = now_ms();
            if now.saturating_sub(last_prune) >= 60_000 {
                last_prune = now;
                self.prune(now);
            }
            let step = match self.next_step(now) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "cannot read the queue; retrying in 5 s");
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
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = self.notify.notified() => {}
                        _ = &mut shutdown => return,
                    }
                }
                Step::Send => {
                    let result = tokio::select! {
                        r = self.send_batch() => r,
                        _ = &mut shutdown => return,
                    };
                    if let Err(e) = result {
                        tracing::error!(error = %chain(&e), "storage error while sending; nothing was lost, retrying in 5 s");
                        if let Some(w) = &self.storage_watch {
                            w.recovered(&e);
                        }
                        self.block_for(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Counts the most recent request of a previous run as sent now.
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
    fn settle_last_request(&self) -> Result<(), QueueError> {
        let now = now_ms();
        let mut log = self.queue.request_log()?;
        match log.sent_at_ms.last_mut() {
            Some(last) if *last < now => *last = now,
            _ => return Ok(()),
        }
        self.queue.record_request(&log)
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
                    tracing::warn!(error = %chain(&e), "cannot prune the reported set");
                    return;
                }
            }
        }
    }

    fn next_step(&self, now: u64) -> Result<Step, QueueError> {
        let flushing = self.flush_now.load(Ordering::Acquire);
        let draining = flushing || (self.settings.drain && self.input_done.load(Ordering::Acquire));
        let pending = if self.reporter.is_none() {
            // Dry run: what has not been logged yet.
            self.queue
                .peek_batch_from(self.batch_cap, self.dry_run_cursor)?
                .len() as u64
        } else {
            self.queue.pending_count()?
        };
        if pending == 0 {
            if flushing {
                self.flush_now.store(false, Ordering::Release);
            }
            let done = self.settings.drain && self.input_done.load(Ordering::Acquire);
            return Ok(if done { Step::Done } else { Step::Wait(None) });
        }
        if let Some(until) = self.blocked_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Ok(Step::Wait(Some(left)));
            }
        }
        if (pending as usize) < self.batch_cap && !draining {
            if let Some(oldest) = self.queue.oldest_queued_at()? {
                let due = oldest.saturating_add(self.settings.flush_interval.as_millis() as u64);
                if due > now {
                    // At most flush_interval, even if the wall clock went back.
                    let wait = ms(due - now).min(self.settings.flush_interval);
                    return Ok(Step::Wait(Some(wait)));
                }
            }
        }
        if self.reporter.is_some() {
            let log = self.queue.request_log()?;
            let next = self.settings.limit.next_allowed(&log.sent_at_ms, now);
            if next > now {
                Stats::add(&self.stats.rate_limit_waits, 1);
                return Ok(Step::Wait(Some(ms(next - now))));
            }
        }
        Ok(Step::Send)
    }

    /// Sends the oldest batch, isolating rejected addresses if needed.
    async fn send_batch(&mut self) -> Result<(), QueueError> {
        let Some(reporter) = self.reporter.clone() else {
            self.dry_run_batch()?;
            return Ok(());
        };
        let items = self.queue.peek_batch(self.batch_cap)?;
        if items.is_empty() {
            // The counter said something is pending, the tree says no.
            let n = self.queue.repair_pending_count()?;
            tracing::warn!(
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
        while let Some(batch) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            self.wait_for_slot().await?;
            let (sent_at, action) = self.attempt(&reporter, &batch).await?;
            match action {
                Action::Delivered => {
                    self.queue.ack(&batch, sent_at, now_ms())?;
                    // The success first, then the counters: a scrape of
                    // /metrics (or a status) that sees the batch counted
                    // also sees the success, never a moment of "reported,
                    // and still failing".
                    let health = self.record_health(None);
                    Stats::add(&self.stats.requests_ok, 1);
                    Stats::add(&self.stats.addresses_reported, batch.len() as u64);
                    tracing::info!(addresses = batch.len(), "batch reported");
                    self.transient_failures = 0;
                    self.config_failures = 0;
                    health?;
                    // On disk now (one fsync a batch, at most 6 a minute):
                    // a crash after this does not send the batch again. Only
                    // the moment between the 202 and this line can.
                    self.queue.flush()?;
                    accepted_any = true;
                    for (item, status, reason) in suspects.drain(..) {
                        self.dead_letter(&[item], status, &reason)?;
                    }
                }
                Action::RateLimited { wait } => {
                    let wait = wait.unwrap_or(ms(self.settings.limit.window_ms));
                    tracing::warn!(
                        wait_s = wait.as_secs(),
                        "the API says too many requests (429): waiting"
                    );
                    Stats::add(&self.stats.rate_limit_waits, 1);
                    self.block_for(wait);
                    self.record_health(Some((429, "too many requests".into())))?;
                    return Ok(());
                }
                Action::Transient { status, reason } => {
                    self.transient_failures += 1;
                    let delay = backoff(
                        self.transient_failures,
                        self.settings.max_backoff,
                        &mut rand::thread_rng(),
                    );
                    tracing::warn!(%reason, attempt = self.transient_failures, retry_in_s = delay.as_secs_f32(), "sending failed; will retry");
                    Stats::add(&self.stats.retries, 1);
                    self.block_for(delay);
                    self.record_health(Some((status, reason)))?;
                    return Ok(());
                }
                Action::TooLarge => {
                    if batch.len() == 1 {
                        self.config_error(
                            413,
                            "the API says one address is too large a request (413); check api_url"
                                .into(),
                        )?;
                        return Ok(());
                    }
                    let half = batch.len().div_ceil(2);
                    self.batch_cap = self.batch_cap.min(half);
                    tracing::warn!(
                        batch_size = self.batch_cap,
                        "the API says the request is too large (413): splitting batches"
                    );
                    push_halves(&mut work, batch);
                }
                Action::Rejected {
                    status,
                    indices,
                    reason,
                } => {
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
                Action::Config { status, reason } => {
                    self.config_error(status, reason)?;
                    return Ok(());
                }
            }
        }
        if !accepted_any && !suspects.is_empty() {
            let (item, status, reason) = suspects.swap_remove(0);
            let known_good = self.queue.reported(item.addr)?.is_some();
            if suspects.is_empty() && !known_good {
                self.dead_letter(&[item], status, &reason)?;
            } else {
                self.config_error(
                    status,
                    format!("the API rejects every address, even alone ({reason}); check [threatjammer] category, tags and ttl"),
                )?;
            }
        }
        Ok(())
    }

    fn block_for(&mut self, d: Duration) {
        self.blocked_until = Some(Instant::now() + d);
    }

    /// Waits (inside a send) until the rate limit allows one more attempt.
    async fn wait_for_slot(&self) -> Result<(), QueueError> {
        loop {
            let now = now_ms();
            let log = self.queue.request_log()?;
            let next = self.settings.limit.next_allowed(&log.sent_at_ms, now);
            if next <= now {
                return Ok(());
            }
            Stats::add(&self.stats.rate_limit_waits, 1);
            tokio::time::sleep(ms(next - now)).await;
        }
    }

    /// One request: recorded durably first, then sent; its record is moved
    /// to the time the answer came. Returns the send time and the action.
    async fn attempt(
        &mut self,
        reporter: &Reporter,
        batch: &[BatchItem],
    ) -> Result<(u64, Action), QueueError> {
        let sent_at = now_ms();
        let mut log = self.queue.request_log()?;
        self.settings.limit.prune(&mut log.sent_at_ms, sent_at);
        log.sent_at_ms.push(sent_at);
        self.queue.record_request(&log)?;
        Stats::add(&self.stats.requests, 1);

        let addrs: Vec<IpAddr> = batch.iter().map(|b| b.addr).collect();
        let reply = reporter.send(&addrs).await;
        self.stats.count_reply(reply.status);

        let done = now_ms();
        let mut log = self.queue.request_log()?;
        if let Some(t) = log.sent_at_ms.iter_mut().rev().find(|t| **t == sent_at) {
            *t = done.max(sent_at);
        }
        self.queue.record_request(&RequestLog {
            sent_at_ms: log.sent_at_ms,
        })?;
        let action = classify(&reply, SystemTime::now());
        tracing::debug!(status = ?reply.status, addresses = batch.len(), "API answered");
        Ok((sent_at, action))
    }

    fn dead_letter(
        &self,
        items: &[BatchItem],
        status: u16,
        reason: &str,
    ) -> Result<(), QueueError> {
        for i in items {
            tracing::warn!(address = %i.addr, status, %reason, "the API rejected an address: moved to the dead-letter set (tjfwd resend --dead-letter retries it)");
        }
        Stats::add(&self.stats.addresses_dead_lettered, items.len() as u64);
        self.queue.dead_letter(items, status, reason, now_ms())
    }

    fn config_error(&mut self, status: u16, reason: String) -> Result<(), QueueError> {
        self.config_failures += 1;
        // Retry slowly: a minute at first, then up to max_backoff.
        let delay = Duration::from_secs(60 * u64::from(self.config_failures.min(10)))
            .min(self.settings.max_backoff.max(Duration::from_secs(1)));
        tracing::error!(status, %reason, retry_in_s = delay.as_secs(), "sending is paused; nothing is dropped");
        self.block_for(delay);
        self.record_health(Some((status, reason)))
    }

    fn record_health(&self, error: Option<(u16, String)>) -> Result<(), QueueError> {
        let now = now_ms();
        let mut h = self.queue.health()?;
        match error {
            None => {
                h.last_success_ms = Some(now);
                h.failing_since_ms = None;
            }
            Some((status, message)) => {
                h.last_error_ms = Some(now);
                h.last_error_status = status;
                h.last_error_message = message;
                h.failing_since_ms.get_or_insert(now);
            }
        }
        self.queue.set_health(&Health { ..h })
    }

    fn dry_run_batch(&mut self) -> Result<(), QueueError> {
        let items = self
            .queue
            .peek_batch_from(self.batch_cap, self.dry_run_cursor)?;
        let Some(last) = items.last() else {
            return Ok(());
        };
        self.dry_run_cursor = last.next_pos();
        let addrs: Vec<String> = items.iter().map(|i| i.addr.to_string()).collect();
        tracing::info!(
            dry_run = true,
            count = addrs.len(),
            request = %self.settings.describe,
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
