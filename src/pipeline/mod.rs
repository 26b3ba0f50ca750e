//! The pipeline: a chunk of lines from an input → decoded, selected and
//! filtered into sightings → queued in the store together with the chunk's
//! position → counted, and the schedulers woken.
//!
//! Every way addresses enter the queue goes through here: the daemon's
//! inputs ([`crate::inputs`]: the file, the socket), `tjfwd recover`'s
//! rebuild from the logs, and the control socket's enqueue (`tjfwd replay`
//! through a running daemon). `tjfwd replay` without a daemon selects with
//! [`select_lines`] and keeps its own folding writer (a batch job, with its
//! own performance needs).
//!
//! | file               | what                                                      |
//! |--------------------|-----------------------------------------------------------|
//! | `mod.rs`           | [`Pipeline`]: select, queue with the position, count; backpressure |
//! | `select.rs`        | [`select_lines`]: decode, select, filter (the hot path); [`count_enqueued`] |
//! | `storage_watch.rs` | [`StorageWatch`]: when a failed write means "reopen the database" |
//!
//! # Invariants
//!
//! - A chunk's position never gets ahead of its addresses. It is committed
//!   either in the enqueue transaction itself ([`Commit::InTransaction`]: a
//!   file checkpoint), or by the input once [`Pipeline::queue`] returned,
//!   which it does only after the store was flushed to disk
//!   ([`Commit::AfterFlush`]: the socket input reads on only then).
//! - A storage failure loses nothing: [`Pipeline::queue`] returns it
//!   ([`Failure`]) before anything was counted or the position committed, and
//!   the caller still holds the sightings. Whoever the caller, the error has
//!   been shown to the storage watch first, so the daemon reopens a database
//!   that sled gave up on.
//! - What the inputs do about a failure is one policy, in one place
//!   ([`crate::inputs::run`]): log it, pause the input (status shows it),
//!   retry the same sightings with backoff, stop when the database is being
//!   reopened.

mod select;
mod storage_watch;

use std::sync::Arc;

use migrations::v1::{Checkpoint, FileId};
use tokio::sync::Notify;

use crate::config::Config;
use crate::filter::Rules;
use crate::source::lines_of;
use crate::stats::Stats;
use crate::store::{EnqueueOutcome, Sighting, Store, StoreError};

/// Wakes every scheduler waiting on `notify` (one per enabled target:
/// `notify_one` alone would wake only one of them, and the others would
/// sleep until their own timeout), and leaves a permit for one that is
/// busy now, so that it looks again when it is done.
pub fn wake_all(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

pub use select::{count_enqueued, select_lines};
pub use storage_watch::StorageWatch;

/// How a chunk's position is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// In the enqueue transaction: the file checkpoint after the chunk (None
    /// when the chunk has no file identity yet, or no position at all).
    InTransaction(Option<(FileId, Checkpoint)>),
    /// By the input itself, once the chunk is on disk: [`Pipeline::queue`]
    /// flushes the store (fsync) before it returns.
    AfterFlush,
}

/// A chunk that could not be queued. Nothing was counted and its position
/// not committed: the caller still holds the sightings, and may retry them.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    /// What the store said.
    pub error: StoreError,
    /// The storage watch asked the daemon to reopen the database (the disk
    /// takes writes again, but this sled instance never will): the caller
    /// stops, and what it held is read again by the next run where the
    /// input can (a file, from its checkpoint).
    pub reopen: bool,
}

/// What the pipeline needs of the store: [`Store`], or in tests one that
/// fails on demand.
pub trait Queue: Send + Sync {
    /// [`Store::enqueue`].
    fn enqueue(
        &self,
        sightings: &[Sighting],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError>;
    /// [`Store::flush`].
    fn flush(&self) -> Result<(), StoreError>;
    /// [`Store::pending_count`].
    fn pending_count(&self) -> Result<u64, StoreError>;
}

impl Queue for Store {
    fn enqueue(
        &self,
        sightings: &[Sighting],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        Store::enqueue(self, sightings, checkpoint, now_ms)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Store::flush(self)
    }

    fn pending_count(&self) -> Result<u64, StoreError> {
        Store::pending_count(self)
    }
}

/// What the pipeline works with, shared by every input of a daemon run.
pub struct Pipeline {
    /// Where the sightings go (with file checkpoints, in one transaction).
    queue: Arc<dyn Queue>,
    /// The select and filter rules.
    rules: Rules,
    /// The daemon's counters (a command's own when no daemon runs).
    stats: Arc<Stats>,
    /// Wakes the schedulers when an address was newly queued.
    notify: Arc<Notify>,
    /// Shown every storage error (none outside the daemon: a command fails
    /// instead, and is run again).
    storage: Option<StorageWatch>,
    /// `[queue] max_pending`: the inputs read nothing more at or above it.
    max_pending: u64,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("rules", &self.rules)
            .field("storage", &self.storage)
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline into `queue` with the configured rules and `[queue]
    /// max_pending`, counting into `stats` and waking `notify`.
    pub fn new(
        queue: Arc<dyn Queue>,
        config: &Config,
        stats: Arc<Stats>,
        notify: Arc<Notify>,
    ) -> Pipeline {
        Pipeline {
            queue,
            rules: Rules::from_config(config),
            stats,
            notify,
            storage: None,
            max_pending: config.queue.max_pending,
        }
    }

    /// Shows every storage error to `watch` (the daemon's pipeline).
    pub fn with_storage_watch(mut self, watch: StorageWatch) -> Pipeline {
        self.storage = Some(watch);
        self
    }

    /// The counters it adds to (the inputs count what they skip there too).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Wakes the schedulers (as a newly queued address does): for the end
    /// of the input in drain mode.
    pub fn wake(&self) {
        wake_all(&self.notify);
    }

    /// The pipeline function: a chunk of whole lines (each ending in a
    /// newline) into the queue, its position committed as `commit` says.
    /// [`Pipeline::select`] into `scratch` (cleared first), then
    /// [`Pipeline::queue`].
    pub fn ingest(
        &self,
        lines: &[u8],
        commit: &Commit,
        now_ms: u64,
        scratch: &mut Vec<Sighting>,
    ) -> Result<EnqueueOutcome, Failure> {
        scratch.clear();
        self.select(lines, now_ms, scratch);
        self.queue(scratch, commit, now_ms)
    }

    /// Decodes, selects and filters whole lines, appending the sightings to
    /// `out`; counts the lines read, the events selected and the lines
    /// skipped (with why).
    pub fn select(&self, lines: &[u8], now_ms: u64, out: &mut Vec<Sighting>) {
        select_lines(lines_of(lines), &self.rules, &self.stats, now_ms, out);
    }

    /// Queues sightings and commits their position: in the transaction
    /// ([`Commit::InTransaction`]), or by flushing the store to disk before
    /// returning ([`Commit::AfterFlush`]). Then counts what was queued and
    /// wakes the schedulers if an address is new.
    ///
    /// A storage error is shown to the storage watch, then returned: nothing
    /// was counted, and the caller decides what to do with the sightings
    /// (the inputs retry them, a command fails).
    pub fn queue(
        &self,
        sightings: &[Sighting],
        commit: &Commit,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, Failure> {
        let stored = match commit {
            Commit::InTransaction(checkpoint) => self.queue.enqueue(
                sightings,
                checkpoint.as_ref().map(|(id, c)| (id, c)),
                now_ms,
            ),
            Commit::AfterFlush => self
                .queue
                .enqueue(sightings, None, now_ms)
                .and_then(|out| self.queue.flush().map(|()| out)),
        };
        match stored {
            Ok(out) => {
                count_enqueued(&self.stats, &out);
                if out.queued_new > 0 {
                    wake_all(&self.notify);
                }
                Ok(out)
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// A storage error met outside [`Pipeline::queue`] (an input reading its
    /// position from the store): shown to the storage watch the same way.
    pub fn failed(&self, error: StoreError) -> Failure {
        let reopen = self.storage.as_ref().is_some_and(|w| w.recovered(&error));
        Failure { error, reopen }
    }

    /// Whether the queue has room for more (backpressure): below
    /// `[queue] max_pending`, the inputs read; at it, they wait for the
    /// schedulers to send. Records the pause in the counters (status,
    /// metrics, log).
    pub fn has_room(&self) -> bool {
        has_room(&*self.queue, self.max_pending, &self.stats)
    }
}

/// [`Pipeline::has_room`].
fn has_room(queue: &dyn Queue, max_pending: u64, stats: &Stats) -> bool {
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

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
