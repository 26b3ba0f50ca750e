//! `[input] listen_tcp`: accepts Cowrie's `[output_socketlog]` connections
//! (JSON lines over TCP, Python's default separators); each connection is
//! an [`Input`].
//!
//! Data received here has no file to re-read, so its position is committed
//! after the fsync ([`Commit::AfterFlush`]): every chunk read from a
//! connection is queued *and flushed to disk* (sled fsync) before anything
//! more is read from that connection. A crash can therefore cost only what
//! was still in flight: bytes in the kernel's socket buffers and in Cowrie's
//! send buffer, never data tjfwd had read. (A chunk held while the storage
//! fails is retried until it is stored, or the daemon stops or reopens the
//! database: then that connection is closed, and that chunk is lost with it.)
//!
//! Blocking threads, one per connection (at most `max_connections`; more are
//! refused with a logged, counted close), with short read timeouts so that a
//! stop request is noticed quickly. Lines longer than `max_line_bytes` are
//! skipped without being buffered whole.

use std::borrow::Borrow;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Context, Ended, Input, Next, Ready, StartError};
use crate::config::Config;
use crate::errors::chain;
use crate::pipeline::{Commit, Pipeline};
use crate::source::LineSplitter;
use crate::stats::Stats;
use crate::store::StoreError;
use crate::supervisor::Lifetime;

/// The target of this input's log events: the module it was born in (text
/// logs show it; `--log-level` filters select it).
const LOG_TARGET: &str = "tjfwd::socket";
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(200);
/// Bytes read from a connection at a time (and queued in one transaction).
const READ_BYTES: usize = 64 * 1024;

/// The socket input, when the daemon was handed the listening socket of
/// `[input] listen_tcp` ([`Context::input_tcp`], bound before the daemon
/// started: [`crate::listeners::Listeners`]; never with `--drain`, which
/// reads files only). It serves that socket: it binds nothing itself.
pub(super) fn prepare(config: &Config, ctx: &Context) -> Result<Option<Ready>, StartError> {
    let Some(listener) = ctx.input_tcp.clone() else {
        return Ok(None);
    };
    if ctx.drain {
        return Ok(None);
    }
    let socket = Listener {
        pipeline: ctx.pipeline.clone(),
        stop: ctx.stop.clone(),
        max_line: config.input.max_line_bytes,
        max_connections: config.input.max_connections,
    };
    Ok(Some(Ready {
        name: "socket input",
        thread: "tjfwd-listen",
        // It accepts connections until the daemon stops.
        lifetime: Lifetime::UntilStopped,
        run: Box::new(move || socket.run(listener)),
    }))
}

/// Joins the connection threads that have ended. One that panicked takes
/// this thread down with the same panic, for the daemon's supervisor to see
/// ([`crate::supervisor`]): a connection must not die unnoticed.
fn reap(threads: &mut Vec<std::thread::JoinHandle<()>>) {
    let mut i = 0;
    while i < threads.len() {
        if threads[i].is_finished() {
            if let Err(panic) = threads.swap_remove(i).join() {
                std::panic::resume_unwind(panic);
            }
        } else {
            i += 1;
        }
    }
}

/// What the listener and its connections share.
#[derive(Clone)]
pub(super) struct Listener {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) max_line: usize,
    pub(super) max_connections: usize,
}

impl Listener {
    /// Accepts connections on `listener` (non-blocking) until stopped;
    /// returns when every connection thread has finished. A connection
    /// thread that panicked takes this thread down with its panic ([`reap`]).
    pub(super) fn run(self, listener: impl Borrow<TcpListener>) -> Ended {
        let listener = listener.borrow();
        let addr = listener.local_addr().ok();
        tracing::info!(target: LOG_TARGET, listen = ?addr, "accepting Cowrie socketlog connections");
        let active = Arc::new(AtomicUsize::new(0));
        let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            reap(&mut threads);
            match listener.accept() {
                Ok((stream, peer)) => {
                    if active.load(Ordering::Acquire) >= self.max_connections {
                        tracing::warn!(target: LOG_TARGET, %peer, max = self.max_connections, "too many socketlog connections: refusing one");
                        drop(stream);
                        continue;
                    }
                    active.fetch_add(1, Ordering::AcqRel);
                    let me = self.clone();
                    let active = active.clone();
                    let spawned = std::thread::Builder::new()
                        .name("tjfwd-socket".into())
                        .spawn(move || {
                            me.connection(stream, peer);
                            active.fetch_sub(1, Ordering::AcqRel);
                        });
                    match spawned {
                        Ok(h) => threads.push(h),
                        Err(e) => {
                            tracing::error!(target: LOG_TARGET, error = %e, "cannot start a connection thread");
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => super::pause(&self.stop, TICK),
                Err(e) => {
                    tracing::warn!(target: LOG_TARGET, error = %e, "accepting a socketlog connection failed");
                    super::pause(&self.stop, TICK);
                }
            }
        }
        // Connections waiting (a full queue, a retry) stop waiting now.
        for h in &threads {
            h.thread().unpark();
        }
        for h in threads {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Ended::Stopped
    }

    /// Reads one connection to its end (or until stopped).
    fn connection(&self, stream: TcpStream, peer: SocketAddr) {
        tracing::info!(target: LOG_TARGET, %peer, "socketlog connection opened");
        if let Err(e) = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(TICK)))
        {
            tracing::warn!(target: LOG_TARGET, %peer, error = %e, "cannot set up a socketlog connection");
            return;
        }
        let mut conn = Connection {
            stream,
            peer,
            buf: vec![0u8; READ_BYTES],
            lines: LineSplitter::default(),
            chunk: Vec::new(),
            max_line: self.max_line,
            stats: self.pipeline.stats().clone(),
        };
        super::run(&mut conn, &self.pipeline, &self.stop);
        if conn.lines.pending() > 0 {
            tracing::debug!(target: LOG_TARGET, %peer, bytes = conn.lines.pending(), "socketlog connection closed in the middle of a line");
        }
        tracing::info!(target: LOG_TARGET, %peer, "socketlog connection closed");
    }
}

/// One socketlog connection.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// What one read takes in.
    buf: Vec<u8>,
    /// Cuts the stream into whole lines.
    lines: LineSplitter,
    /// The whole lines of the last read: the chunk handed out.
    chunk: Vec<u8>,
    max_line: usize,
    /// Lines skipped as too long are counted here.
    stats: Arc<Stats>,
}

impl Input for Connection {
    fn poll_interval(&self) -> Duration {
        TICK
    }

    fn next_chunk(&mut self, _now_ms: u64) -> Next<'_> {
        // A full queue: `run` does not get here, and the data stays in the
        // kernel's buffers (and then Cowrie's) rather than being read.
        let n = match self.stream.read(&mut self.buf) {
            Ok(0) => return Next::End,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                // The read waited: ask again at once.
                return Next::Idle(Duration::ZERO);
            }
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, peer = %self.peer, error = %e, "socketlog connection failed");
                return Next::End;
            }
        };
        self.chunk.clear();
        match self
            .lines
            .push(&self.buf[..n], self.max_line, &self.stats, &mut self.chunk)
        {
            None => Next::Idle(Duration::ZERO),
            // On disk before more is read from this connection.
            Some(_) => Next::Chunk {
                lines: &self.chunk,
                commit: Commit::AfterFlush,
            },
        }
    }

    /// Stored and on disk: the next read acknowledges it (TCP's window
    /// opens again for Cowrie).
    fn commit(&mut self) {}

    fn not_stored(&mut self, error: &StoreError) {
        tracing::error!(target: LOG_TARGET, peer = %self.peer, error = %chain(error), "cannot queue addresses from the socket; not reading more from it until this works");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_thread_that_panicked_takes_the_listener_down_with_its_panic() {
        let ok = std::thread::spawn(|| {});
        let failed = std::thread::spawn(|| std::panic::panic_any("connection broke"));
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let running = std::thread::spawn(move || {
            let _ = held.recv();
        });
        while !(ok.is_finished() && failed.is_finished()) {
            std::thread::yield_now();
        }
        let mut threads = vec![ok, failed, running];
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reap(&mut threads)))
            .expect_err("the panic is passed on");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"connection broke"));
        // What still runs is kept.
        assert_eq!(threads.len(), 1);
        assert!(!threads[0].is_finished());
        drop(hold);
    }
}
