//! `[input] cowrie_json`: Cowrie's JSON log, tailed across rotations
//! ([`crate::source::Tailer`]).
//!
//! Its position is the checkpoint of the file a chunk came from, written in
//! the same transaction as the chunk's addresses
//! ([`Commit::InTransaction`]): after a crash both happened or neither, and
//! the file is read again from the checkpoint. The tailer reads ahead of
//! what is committed, and only a stored chunk moves it on. It works in
//! bounded steps ([`Tailer::next_step`]): skipping a line of gigabytes, it
//! comes back between steps, so a stop request is seen within one.

use std::sync::Arc;
use std::time::Duration;

use super::{Context, Input, Next, Ready, StartError};
use crate::config::Config;
use crate::errors::chain;
use crate::pipeline::Commit;
use crate::source::{Chunk, SourceError, Step, Tailer};
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use crate::supervisor::Lifetime;

/// The target of this input's log events: the daemon's, where the ingest
/// thread was born (text logs show it; `--log-level` filters select it).
const LOG_TARGET: &str = "tjfwd::daemon";

/// The file input: a tailer and the chunk it last read.
pub(super) struct FileInput {
    tailer: Tailer,
    /// Where the tailer reads (and, across rotations, updates) the
    /// checkpoints.
    store: Arc<Store>,
    /// Lines skipped by the tailer (too long) are counted here.
    stats: Arc<Stats>,
    /// The chunk last handed out.
    chunk: Chunk,
    /// `[input] poll_interval`: the wait when there is nothing new.
    poll: Duration,
    /// Ends at the end of the input instead of waiting for more.
    drain: bool,
    /// Consecutive failures to read the file.
    io_failures: u32,
}

/// In drain mode, reading fails this many times in a row (over a few
/// seconds of backoff) before the input gives up: `run --drain` must end.
const DRAIN_READ_ATTEMPTS: u32 = 4;

/// The file input, when `[input] cowrie_json` is set.
pub(super) fn prepare(config: &Config, ctx: &Context) -> Result<Option<Ready>, StartError> {
    let Some(path) = &config.input.cowrie_json else {
        return Ok(None);
    };
    // What is not a file that can be tailed (a FIFO, a device, a
    // directory) is refused now, with the reason, rather than retried for
    // ever. A file that is missing (Cowrie creates it) or not readable yet
    // (permissions being fixed) is retried, with health degraded: the
    // queue already held is still sent.
    if let Err(e) = crate::source::open_tailable(path) {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            return Err(StartError(
                format!("cannot read [input] cowrie_json = {}: {e}", path.display()).into(),
            ));
        }
    }
    let input = &config.input;
    let tailer = Tailer::new(path.clone(), input.start_at, input.max_line_bytes).with_grace(
        input
            .poll_interval
            .saturating_mul(20)
            .max(Duration::from_secs(10)),
    );
    let mut file = FileInput {
        tailer,
        store: ctx.store.clone(),
        stats: ctx.pipeline.stats().clone(),
        chunk: Chunk::default(),
        poll: input.poll_interval,
        drain: ctx.drain,
        io_failures: 0,
    };
    let (pipeline, stop) = (ctx.pipeline.clone(), ctx.stop.clone());
    Ok(Some(Ready {
        name: "ingest thread",
        thread: "tjfwd-ingest",
        // It ends by itself at the end of a drain, or to have the database
        // reopened.
        lifetime: Lifetime::MayFinish,
        run: Box::new(move || super::run(&mut file, &pipeline, &stop)),
    }))
}

impl Input for FileInput {
    fn poll_interval(&self) -> Duration {
        self.poll
    }

    fn next_chunk(&mut self, now_ms: u64) -> Next<'_> {
        match self
            .tailer
            .next_step(&self.store, &self.stats, &mut self.chunk, now_ms)
        {
            Ok(step) => {
                self.stats.set_input_error(None);
                self.io_failures = 0;
                match step {
                    Step::Chunk => Next::Chunk {
                        lines: self.chunk.data(),
                        commit: Commit::InTransaction(self.chunk.checkpoint(now_ms)),
                    },
                    // Inside a line too long, being skipped: go on at once,
                    // once `run` has looked at the stop request.
                    Step::Busy => Next::Idle(Duration::ZERO),
                    Step::Idle if self.drain => Next::End,
                    Step::Idle => Next::Idle(self.poll),
                }
            }
            Err(e) => {
                match &e {
                    SourceError::Io { .. } => {
                        self.stats.set_input_error(Some(chain(&e).to_string()));
                        self.io_failures += 1;
                        if self.drain && self.io_failures >= DRAIN_READ_ATTEMPTS {
                            tracing::error!(target: LOG_TARGET, error = %chain(&e), "cannot read the input; --drain gives up on it and sends what is queued");
                            return Next::End;
                        }
                    }
                    SourceError::Queue(_) => {
                        tracing::warn!(target: LOG_TARGET, error = %chain(&e), "cannot read the input; retrying")
                    }
                }
                Next::Failed(match e {
                    SourceError::Queue(e) => Some(e),
                    SourceError::Io { .. } => None,
                })
            }
        }
    }

    fn commit(&mut self) {
        self.tailer.commit();
    }

    fn not_stored(&mut self, error: &StoreError) {
        tracing::error!(target: LOG_TARGET, error = %chain(error), "cannot queue addresses; the input is not advanced and will be read again");
    }
}
