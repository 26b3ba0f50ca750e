//! Inputs: where the lines come from. An input is a plug-in: it hands out
//! chunks of whole lines, each with how its position is committed, and
//! knows nothing of decoding, the queue or failures, which are the
//! [`Pipeline`]'s and [`run`]'s, the same for every input.
//!
//! | file        | what                                                           |
//! |-------------|----------------------------------------------------------------|
//! | `mod.rs`    | the [`Input`] trait, [`run`] (one input through the pipeline, the error policy), [`start_enabled`] |
//! | `file.rs`   | `[input] cowrie_json`: the tailer; the checkpoint is written in the enqueue transaction |
//! | `socket.rs` | `[input] listen_tcp`: Cowrie's socketlog, on the socket the daemon was handed; a chunk is acknowledged (more is read) after the fsync |
//!
//! Adding an input (a message broker, say: its acknowledgement after the
//! fsync, like the socket's) is one new file, with its [`Input`] and a
//! `prepare` that builds it from the configuration, and one line in
//! [`start_enabled`].
//!
//! # Invariants (every input alike, enforced by [`run`])
//!
//! - Backpressure: nothing is read while the queue holds `[queue]
//!   max_pending` addresses ([`Pipeline::has_room`]); status shows why.
//! - A chunk is committed ([`Input::commit`]) only once the pipeline stored
//!   it: in the same transaction ([`Commit::InTransaction`]), or flushed to
//!   disk ([`Commit::AfterFlush`]).
//! - One error policy. A storage error is shown to the storage watch (by
//!   the pipeline); when the daemon reopens the database the input stops,
//!   its chunk uncommitted (read again by the next run where the input can:
//!   a file from its checkpoint). Otherwise it is logged (by the input:
//!   what it means for its data), the inputs are marked paused (status,
//!   metrics), and the same sightings are retried after a backoff of 1 s
//!   doubling up to 30 s, nothing more being read meanwhile. A read error is
//!   logged by the input and retried after the same backoff (or ends the
//!   input: a closed connection).
//! - Stopping: an input stops at a chunk boundary; its waits end as soon as
//!   the daemon stops (the threads are unparked).
//! - Supervised: each input's thread is started through the daemon's
//!   [`Supervisor`], as a component with its name and [`Lifetime`] (the
//!   file input may finish: a drain read to its end, a reopen; the socket
//!   input runs until stopped), so one that panics or ends early stops the
//!   daemon instead of dying unnoticed. A socket connection's panic is
//!   raised again in the listener's thread.

mod file;
mod socket;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::config::Config;
use crate::errors::chain;
use crate::pipeline::{Commit, Pipeline};
use crate::store::{Store, StoreError};
use crate::supervisor::{Lifetime, Supervisor};

/// A source of lines: the next chunk of them, and how its position is
/// committed.
pub trait Input {
    /// How long to wait before looking again when the queue is full.
    fn poll_interval(&self) -> Duration;

    /// The next chunk of whole lines (each ending in a newline), or why
    /// there is none. Called again only once the chunk it returned was
    /// stored and committed (a chunk that failed to store is retried from
    /// the sightings selected out of it).
    fn next_chunk(&mut self, now_ms: u64) -> Next<'_>;

    /// The chunk last handed out is stored (and on disk, for
    /// [`Commit::AfterFlush`]): advance past it.
    fn commit(&mut self);

    /// Storing the chunk last handed out failed; it stays uncommitted, and
    /// will be retried. Logs what this means for the input's data.
    fn not_stored(&mut self, error: &StoreError);
}

/// What [`Input::next_chunk`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// Whole lines, and how their position is committed.
    Chunk { lines: &'a [u8], commit: Commit },
    /// Nothing now: ask again after this long (zero when the input waited
    /// itself, e.g. a read timeout).
    Idle(Duration),
    /// The input ended: a file read to its end in drain mode, a closed
    /// connection.
    End,
    /// Reading failed (the input logged why); retried after a backoff. A
    /// storage error among it is shown to the storage watch.
    Failed(Option<StoreError>),
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The input ended ([`Next::End`]).
    Done,
    /// The daemon stopped.
    Stopped,
    /// The storage failed and the daemon reopens the database: the last
    /// chunk was not committed.
    Reopen,
}

/// Feeds `input` through `pipeline` until it ends, `stop` is set, or the
/// database must be reopened; applies the error policy of the module doc.
pub fn run(input: &mut dyn Input, pipeline: &Pipeline, stop: &AtomicBool) -> Ended {
    let mut sightings = Vec::new();
    // A chunk read and selected but not stored yet: its position, and when
    // it was read.
    let mut held: Option<(Commit, u64)> = None;
    let mut failures = 0u32;
    while !stop.load(Ordering::Acquire) {
        if !pipeline.has_room() {
            pause(stop, input.poll_interval());
            continue;
        }
        let (commit, now) = match held.take() {
            Some(h) => h,
            None => {
                let now = now_ms();
                match input.next_chunk(now) {
                    Next::Chunk { lines, commit } => {
                        sightings.clear();
                        pipeline.select(lines, now, &mut sightings);
                        (commit, now)
                    }
                    Next::Idle(wait) => {
                        pause(stop, wait);
                        continue;
                    }
                    Next::End => return Ended::Done,
                    Next::Failed(storage) => {
                        failures += 1;
                        if storage.is_some_and(|e| pipeline.failed(e).reopen) {
                            return Ended::Reopen;
                        }
                        pause(stop, backoff(failures));
                        continue;
                    }
                }
            }
        };
        match pipeline.queue(&sightings, &commit, now) {
            Ok(_) => {
                input.commit();
                if failures > 0 {
                    pipeline.stats().set_paused(None);
                }
                failures = 0;
            }
            Err(f) if f.reopen => return Ended::Reopen,
            Err(f) => {
                failures += 1;
                input.not_stored(&f.error);
                pipeline
                    .stats()
                    .set_paused(Some(format!("cannot write the queue: {}", chain(&f.error))));
                held = Some((commit, now));
                pause(stop, backoff(failures));
            }
        }
    }
    Ended::Stopped
}

/// The wait before retrying after `failures` consecutive failures: 1 s
/// doubling, at most 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
}

/// Waits `d`, or until `stop` is set (whoever sets it unparks the thread).
fn pause(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::park_timeout(left);
    }
}

/// What the inputs of a daemon run share.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where every input's chunks go.
    pub pipeline: Arc<Pipeline>,
    /// The store, for inputs that keep their position in it (the file
    /// input's tailer reads its checkpoints).
    pub store: Arc<Store>,
    /// Set when the daemon stops.
    pub stop: Arc<AtomicBool>,
    /// `tjfwd run --drain`: inputs that can end read to their end and
    /// stop; the others do not start.
    pub drain: bool,
    /// Set once every input has ended or stopped (at once when none runs),
    /// not when one stopped for the database to be reopened: the end of the
    /// input, in drain mode.
    pub done: Arc<AtomicBool>,
    /// The listening socket of `[input] listen_tcp`, bound (non-blocking)
    /// before the daemon started ([`crate::listeners::Listeners`]): the
    /// socket input serves it, and binds nothing itself. None: no socket
    /// input.
    pub input_tcp: Option<Arc<TcpListener>>,
}

/// An input built from the configuration, ready to run on a thread of its
/// own, under the supervisor.
struct Ready {
    /// Its name as a component of the daemon ("ingest thread"...): what a
    /// failure names.
    name: &'static str,
    /// The thread's name.
    thread: &'static str,
    /// Whether it may end on its own.
    lifetime: Lifetime,
    /// Its run (mostly [`run`] over it).
    run: Box<dyn FnOnce() -> Ended + Send>,
}

/// An input could not be set up (its configuration...): the daemon does not
/// start. (The listening socket of `[input] listen_tcp` is bound before the
/// daemon starts: [`crate::listeners::ListenError`].)
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StartError(Box<dyn std::error::Error + Send + Sync>);

/// The inputs of a daemon run, on their threads (which the supervisor
/// joins).
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<Thread>,
}

impl Running {
    /// Tells every input to stop (at its next chunk boundary) and ends their
    /// waits; the supervisor waits for them ([`Supervisor::join`]).
    pub fn stop(mut self) {
        self.signal();
        self.threads.clear();
    }

    fn signal(&self) {
        self.stop.store(true, Ordering::Release);
        for t in &self.threads {
            t.unpark();
        }
    }
}

/// Dropped without [`Running::stop`] (the daemon failed to start after
/// them): the inputs are told to stop all the same.
impl Drop for Running {
    fn drop(&mut self) {
        self.signal();
    }
}

/// Builds every enabled input from the configuration, then starts each on
/// its own thread, through `sup` (see the module doc). Nothing starts when
/// one cannot be built. Adding an input is one line here.
pub fn start_enabled(
    config: &Config,
    ctx: &Context,
    sup: &mut Supervisor,
) -> Result<Running, StartError> {
    let ready: Vec<Ready> = [file::prepare(config, ctx)?, socket::prepare(config, ctx)?]
        .into_iter()
        .flatten()
        .collect();
    let running = Arc::new(AtomicUsize::new(ready.len()));
    if ready.is_empty() {
        ctx.done.store(true, Ordering::Release);
    }
    let threads = ready
        .into_iter()
        .filter_map(|r| {
            let (running, done, pipeline) =
                (running.clone(), ctx.done.clone(), ctx.pipeline.clone());
            // None: the OS refused the thread, a failure the supervisor
            // records (and the daemon stops on).
            sup.thread(r.name, r.thread, r.lifetime, move || {
                let ended = (r.run)();
                if ended != Ended::Reopen && running.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                    pipeline.wake();
                }
            })
        })
        .collect();
    Ok(Running {
        stop: ctx.stop.clone(),
        threads,
    })
}

#[cfg(test)]
mod tests;
