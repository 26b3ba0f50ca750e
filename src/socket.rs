//! Socket input: accepts Cowrie's `[output_socketlog]` connections (JSON
//! lines over TCP, Python's default separators) and queues the addresses.
//!
//! Data received here has no file to re-read, so every chunk read from a
//! connection is queued *and flushed to disk* (sled fsync) before anything
//! more is read from that connection. A crash can therefore cost only what
//! was still in flight: bytes in the kernel's socket buffers and in Cowrie's
//! send buffer, never data tjfwd had read.
//!
//! Blocking threads, one per connection (at most `max_connections`; more are
//! refused with a logged, counted close), with short read timeouts so that a
//! stop request is noticed quickly. Lines longer than `max_line_bytes` are
//! skipped without being buffered whole.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::errors::chain;
use crate::filter::Rules;
use crate::source::{lines_of, LineSplitter};
use crate::stats::Stats;
use crate::store::Store;

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(200);
/// Bytes read from a connection at a time (and queued in one transaction).
const READ_BYTES: usize = 64 * 1024;

/// What the listener and its connections share.
#[derive(Clone)]
pub struct SocketInput {
    pub queue: Arc<Store>,
    pub rules: Rules,
    pub stats: Arc<Stats>,
    pub notify: Arc<Notify>,
    pub stop: Arc<AtomicBool>,
    pub max_line: usize,
    pub max_connections: usize,
    /// `[queue] max_pending`: no reading at or above it (backpressure).
    pub max_pending: u64,
}

/// Binds the listening socket (so that a bad address fails at start).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
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

impl SocketInput {
    /// Accepts connections until stopped; returns when every connection
    /// thread has finished.
    pub fn run(self, listener: TcpListener) {
        let addr = listener.local_addr().ok();
        tracing::info!(listen = ?addr, "accepting Cowrie socketlog connections");
        let active = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            reap(&mut threads);
            match listener.accept() {
                Ok((stream, peer)) => {
                    if active.load(Ordering::Acquire) >= self.max_connections {
                        tracing::warn!(%peer, max = self.max_connections, "too many socketlog connections: refusing one");
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
                            tracing::error!(error = %e, "cannot start a connection thread");
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a socketlog connection failed");
                    std::thread::sleep(TICK);
                }
            }
        }
        for h in threads {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Reads one connection to its end (or until stopped).
    fn connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        tracing::info!(%peer, "socketlog connection opened");
        if let Err(e) = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(TICK)))
        {
            tracing::warn!(%peer, error = %e, "cannot set up a socketlog connection");
            return;
        }
        let mut buf = vec![0u8; READ_BYTES];
        let mut lines = LineSplitter::default();
        let mut chunk = Vec::new();
        let mut sightings = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            // A full queue: leave the data in the kernel's buffers (and
            // then Cowrie's) rather than read what could not be queued.
            if !crate::daemon::has_room(&self.queue, self.max_pending, &self.stats) {
                std::thread::sleep(TICK);
                continue;
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "socketlog connection failed");
                    break;
                }
            };
            chunk.clear();
            if lines
                .push(&buf[..n], self.max_line, &self.stats, &mut chunk)
                .is_none()
            {
                continue;
            }
            let now = now_ms();
            sightings.clear();
            crate::daemon::select_lines(
                lines_of(&chunk),
                &self.rules,
                &self.stats,
                now,
                &mut sightings,
            );
            // On disk before more is read from this connection.
            let mut failures = 0u32;
            loop {
                let stored = self
                    .queue
                    .enqueue(&sightings, None, now)
                    .and_then(|out| self.queue.flush().map(|_| out));
                match stored {
                    Ok(out) => {
                        if failures > 0 {
                            self.stats.set_paused(None);
                        }
                        crate::daemon::count_enqueued(&self.stats, &out);
                        if out.queued_new > 0 {
                            self.notify.notify_one();
                        }
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::error!(%peer, error = %chain(&e), "cannot queue addresses from the socket; not reading more from it until this works");
                        self.stats
                            .set_paused(Some(format!("cannot write the queue: {}", chain(&e))));
                        if self.stop.load(Ordering::Acquire) {
                            return;
                        }
                        std::thread::sleep(TICK * failures.min(50));
                    }
                }
            }
        }
        if lines.pending() > 0 {
            tracing::debug!(%peer, bytes = lines.pending(), "socketlog connection closed in the middle of a line");
        }
        tracing::info!(%peer, "socketlog connection closed");
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
