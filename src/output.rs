//! What the commands print: standard output and standard error, where a
//! reader that went away is not an error.
//!
//! `println!` panics when standard output is a pipe whose reader has exited
//! (`tjfwd replay --dry-run FILE | head -3`: "failed printing to stdout:
//! Broken pipe", exit 101). Rust ignores SIGPIPE, so such a write fails
//! with EPIPE instead. The writers here take that as the reader's choice,
//! as ripgrep does: from then on they drop what they are given and report
//! success. The command still does what it is for (a replay queues, a
//! flush sends: a closed pipe must not undo half of it) and exits as it
//! would have, with no error message. Any other error (a full disk behind
//! `> file`) is returned to the caller, which reports it.
//!
//! Every command prints through [`stdout`] (and [`stderr`] for its own
//! messages); nothing in a command uses `print!`, `println!` or
//! `eprintln!`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to standard output met a closed pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The same for standard error.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// The process's standard output, where a closed pipe ends the output
/// quietly (see the module doc). Unbuffered beyond what `std::io::Stdout`
/// does (a line at a time): wrap it in a `BufWriter` for many lines.
pub fn stdout() -> Output {
    Output {
        target: Target::Stdout,
    }
}

/// The process's standard error, the same way. Its callers usually ignore
/// the result: there is nowhere left to report a failure to write it.
pub fn stderr() -> Output {
    Output {
        target: Target::Stderr,
    }
}

/// A writer from [`stdout`] or [`stderr`].
#[derive(Debug, Clone, Copy)]
pub struct Output {
    target: Target,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
}

impl Output {
    /// `op`'s result, with a closed pipe taken as success (and remembered).
    fn guard<T>(&self, done: T, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let closed = match self.target {
            Target::Stdout => &STDOUT_CLOSED,
            Target::Stderr => &STDERR_CLOSED,
        };
        guard(closed, done, op)
    }
}

/// `op`'s result, unless `closed`; a closed pipe sets `closed` and is
/// taken as success (`done`).
fn guard<T>(closed: &AtomicBool, done: T, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if closed.load(Ordering::Relaxed) {
        return Ok(done);
    }
    match op() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            closed.store(true, Ordering::Relaxed);
            Ok(done)
        }
        r => r,
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guard(buf.len(), || match self.target {
            Target::Stdout => io::stdout().write(buf),
            Target::Stderr => io::stderr().write(buf),
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // One lock for the whole buffer, so that lines of two threads do
        // not interleave.
        self.guard((), || match self.target {
            Target::Stdout => io::stdout().lock().write_all(buf),
            Target::Stderr => io::stderr().lock().write_all(buf),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.guard((), || match self.target {
            Target::Stdout => io::stdout().flush(),
            Target::Stderr => io::stderr().flush(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real thing, a pipe whose reader exited, is tested on the binary
    /// (`tests/commands.rs`); here the rule itself.
    #[test]
    fn a_closed_pipe_is_success_and_is_remembered() {
        let closed = AtomicBool::new(false);
        let broken = || Err::<usize, _>(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(guard(&closed, 7, broken).unwrap(), 7);
        assert!(closed.load(Ordering::Relaxed));
        // Nothing is attempted any more.
        let never = || -> io::Result<usize> { panic!("written after the pipe closed") };
        assert_eq!(guard(&closed, 3, never).unwrap(), 3);
    }

    #[test]
    fn other_errors_are_errors() {
        let closed = AtomicBool::new(false);
        let full = || Err::<(), _>(io::Error::from(io::ErrorKind::StorageFull));
        let e = guard(&closed, (), full).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(!closed.load(Ordering::Relaxed));
        assert_eq!(guard(&closed, 0, || Ok(5)).unwrap(), 5);
    }
}
