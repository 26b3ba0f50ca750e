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
}

/// The file input, when `[input] cowrie_json` is set.
pub(super) fn prepare(config: &Config, ctx: &Context) -> Result<Option<Ready>, StartError> {
    let Some(path) = &config.input.cowrie_json else {
        return Ok(None);
    };
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
            Ok(Step::Chunk) => Next::Chunk {
                lines: self.chunk.data(),
                commit: Commit::InTransaction(self.chunk.checkpoint(now_ms)),
            },
            // Inside a line too long, being skipped: go on at once, once
            // `run` has looked at the stop request.
            Ok(Step::Busy) => Next::Idle(Duration::ZERO),
            Ok(Step::Idle) if self.drain => Next::End,
            Ok(Step::Idle) => Next::Idle(self.poll),
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, error = %chain(&e), "cannot read the input; retrying");
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
