//! The supervisor: every thread and task of a run of the daemon is started
//! through it, so that none can die unnoticed.
//!
//! A daemon whose ingest thread panicked but whose `/healthz` still says ok
//! is worse than a daemon that exits: nothing reads the input, nothing
//! alerts, and `run --drain` waits forever for an input that will never say
//! it is done. So a component's end is judged when it happens:
//!
//! - a panic, or an error returned, is a failure, whatever the component;
//! - a component started as [`Lifetime::UntilStopped`] (the control socket,
//!   the admin endpoint, the socket input, the schedulers of a running
//!   daemon) that ends before [`Supervisor::stop`] was called is a failure
//!   ("ended unexpectedly");
//! - a component started as [`Lifetime::MayFinish`] (the background check
//!   of the database, the ingest thread, the schedulers of `--drain`) may
//!   end on its own.
//!
//! Invariants:
//!
//! - The first failure is recorded *before* anything else learns that the
//!   component ended, on the failing thread itself: from then on
//!   [`Tripped::failure`] (read by `/healthz`) reports it, and
//!   [`Supervisor::until`] returns it instead of the event it waited for.
//!   Every failure is logged at `error` with the component's name and the
//!   cause; later ones (e.g. a panic while stopping) are logged too, the
//!   first is the one returned.
//! - Nothing is waited for without a bound: [`Supervisor::join`] waits at
//!   most its `patience` for the components to end once they were asked to
//!   stop; one that has not ended by then is a failure ("did not stop"),
//!   its task is aborted and its thread left behind (the process is about
//!   to exit).
//! - The supervisor starts and watches; it does not know how to stop a
//!   component. The owner (the daemon) asks each to stop through the
//!   component's own signal, after calling [`Supervisor::stop`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

/// Whether a component may end on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Runs until it is asked to stop: ending earlier is a failure.
    UntilStopped,
    /// May end on its own when its work is done (a panic is still a failure).
    MayFinish,
}

/// Why a component failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It panicked, with this message.
    Panicked(String),
    /// It returned this error.
    Failed(String),
    /// It ended while it should have run until stopped.
    Ended,
    /// It was asked to stop and had not ended after this long.
    Stuck(Duration),
    /// It could not be started (the OS refused a thread).
    NotStarted(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Panicked(m) => write!(f, "panicked: {m}"),
            Cause::Failed(e) => write!(f, "failed: {e}"),
            Cause::Ended => f.write_str("ended unexpectedly"),
            Cause::Stuck(d) => write!(f, "did not stop within {}", humantime::format_duration(*d)),
            Cause::NotStarted(e) => write!(f, "could not be started: {e}"),
        }
    }
}

/// A component's failure: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {component} {cause}")]
pub struct Failure {
    /// The component's name, as it was started ("ingest thread"...).
    pub component: String,
    /// What happened to it.
    pub cause: Cause,
}

/// What a component returns: nothing, or a result whose error is a failure.
pub trait Outcome {
    /// The error to report, if any.
    fn error(self) -> Option<String>;
}

impl Outcome for () {
    fn error(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display> Outcome for Result<(), E> {
    fn error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// A view of the first failure, for whoever must not report "ok" once a
/// component failed (`/healthz`). Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct Tripped(watch::Receiver<Option<Failure>>);

impl Tripped {
    /// A view that never reports a failure (nothing is supervised).
    pub fn never() -> Tripped {
        Tripped(watch::channel(None).1)
    }

    /// The first failure, if a component failed.
    pub fn failure(&self) -> Option<Failure> {
        self.0.borrow().clone()
    }
}

/// Completes when a component has ended (however it ended).
#[derive(Debug)]
pub struct Finished(oneshot::Receiver<()>);

impl Finished {
    /// Waits until the component has ended.
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

/// What the components and the supervisor share.
struct Shared {
    /// The first failure (later ones are logged only).
    failure: watch::Sender<Option<Failure>>,
    /// Set by [`Supervisor::stop`]: from then on ending is expected.
    stopping: AtomicBool,
    /// How many components have ended.
    ended: watch::Sender<usize>,
}

impl Shared {
    /// Records a failure (the first one wins) and logs it.
    fn trip(&self, failure: Failure) {
        tracing::error!(component = %failure.component, cause = %failure.cause, "{failure}: stopping tjfwd");
        self.failure.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(failure);
                true
            } else {
                false
            }
        });
    }

    /// Judges how a component ended, then counts it as ended.
    fn ended(&self, name: &str, lifetime: Lifetime, end: Result<Option<String>, String>) {
        let cause = match end {
            Err(panic) => Some(Cause::Panicked(panic)),
            Ok(Some(error)) => Some(Cause::Failed(error)),
            Ok(None)
                if lifetime == Lifetime::UntilStopped && !self.stopping.load(Ordering::Acquire) =>
            {
                Some(Cause::Ended)
            }
            Ok(None) => None,
        };
        if let Some(cause) = cause {
            self.trip(Failure {
                component: name.to_string(),
                cause,
            });
        }
        self.ended.send_modify(|n| *n += 1);
    }
}

/// How a component runs, to wait for it and to abort it.
enum Handle {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
    /// It never started (its failure is recorded).
    None,
}

/// A started component.
struct Member {
    name: String,
    /// Set when it has ended.
    done: Arc<AtomicBool>,
    handle: Handle,
}

/// Starts the components of a run and watches them (see the module doc).
pub struct Supervisor {
    shared: Arc<Shared>,
    members: Vec<Member>,
    /// Test only: components to sabotage, by name prefix.
    #[cfg(test)]
    faults: Vec<(String, Fault)>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    /// A supervisor with no component yet.
    pub fn new() -> Supervisor {
        Supervisor {
            shared: Arc::new(Shared {
                failure: watch::channel(None).0,
                stopping: AtomicBool::new(false),
                ended: watch::channel(0).0,
            }),
            members: Vec::new(),
            #[cfg(test)]
            faults: Vec::new(),
        }
    }

    /// The view of the first failure (for `/healthz`).
    pub fn tripped(&self) -> Tripped {
        Tripped(self.shared.failure.subscribe())
    }

    /// The first failure so far, if any.
    pub fn failure(&self) -> Option<Failure> {
        self.shared.failure.borrow().clone()
    }

    /// Starts `f` on a thread of its own named `thread_name`; returns the
    /// thread (to unpark it), or None when the OS refused to start it (a
    /// failure, which [`Supervisor::until`] then returns).
    pub fn thread<F, O>(
        &mut self,
        name: &str,
        thread_name: &str,
        lifetime: Lifetime,
        f: F,
    ) -> Option<std::thread::Thread>
    where
        F: FnOnce() -> O + Send + 'static,
        O: Outcome,
    {
        #[cfg(test)]
        let f = {
            let fault = self.fault(name);
            move || match fault {
                Some(fault) => fault.strike(),
                None => f().error(),
            }
        };
        #[cfg(not(test))]
        let f = move || f().error();
        let shared = self.shared.clone();
        let done = Arc::new(AtomicBool::new(false));
        let (owned, flag) = (name.to_string(), done.clone());
        let spawned = std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                let end = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(panic_message);
                flag.store(true, Ordering::Release);
                shared.ended(&owned, lifetime, end);
            });
        let (handle, thread) = match spawned {
            Ok(h) => {
                let t = h.thread().clone();
                (Handle::Thread(h), Some(t))
            }
            Err(e) => {
                done.store(true, Ordering::Release);
                self.shared.trip(Failure {
                    component: name.to_string(),
                    cause: Cause::NotStarted(e.to_string()),
                });
                self.shared.ended.send_modify(|n| *n += 1);
                (Handle::None, None)
            }
        };
        self.members.push(Member {
            name: name.to_string(),
            done,
            handle,
        });
        thread
    }

    /// Starts `fut` as a task on the current tokio runtime.
    pub fn task<F>(&mut self, name: &str, lifetime: Lifetime, fut: F) -> Finished
    where
        F: Future + Send + 'static,
        F::Output: Outcome,
    {
        #[cfg(test)]
        let fault = self.fault(name);
        let shared = self.shared.clone();
        let done = Arc::new(AtomicBool::new(false));
        let (owned, flag) = (name.to_string(), done.clone());
        let (finished, on_finish) = oneshot::channel();
        let handle = tokio::spawn(async move {
            // Dropped at the end, also if the task is aborted.
            let _finished = finished;
            let end = CatchUnwind(Box::pin(async move {
                #[cfg(test)]
                if let Some(fault) = fault {
                    return fault.strike_async().await;
                }
                fut.await.error()
            }))
            .await
            .map_err(panic_message);
            flag.store(true, Ordering::Release);
            shared.ended(&owned, lifetime, end);
        });
        self.members.push(Member {
            name: name.to_string(),
            done,
            handle: Handle::Task(handle),
        });
        Finished(on_finish)
    }

    /// Waits for `event`, unless a component fails first: then returns
    /// that failure (also when both happened).
    pub async fn until<T>(&self, event: impl Future<Output = T>) -> Result<T, Failure> {
        let mut failed = self.shared.failure.subscribe();
        let t = tokio::select! {
            biased;
            _ = failed.wait_for(Option::is_some) => None,
            t = event => Some(t),
        };
        match (self.failure(), t) {
            (Some(f), _) => Err(f),
            (None, Some(t)) => Ok(t),
            // The sender lives in `self`: wait_for cannot fail.
            (None, None) => unreachable!("a failure was signalled but not recorded"),
        }
    }

    /// From now on a component that ends is not a failure (unless it
    /// panics or returns an error): call it before asking them to stop.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
    }

    /// Waits, at most `patience`, for every component to end (call
    /// [`Supervisor::stop`] and ask them to stop first). Returns the first
    /// failure of the run, if there was one: a component that has not
    /// ended in time is one.
    pub async fn join(mut self, patience: Duration) -> Result<(), Failure> {
        self.stop();
        let all = self.members.len();
        let mut ended = self.shared.ended.subscribe();
        let in_time = tokio::time::timeout(patience, ended.wait_for(|n| *n >= all))
            .await
            .is_ok();
        for m in std::mem::take(&mut self.members) {
            let finished = m.done.load(Ordering::Acquire);
            if !in_time && !finished {
                self.shared.trip(Failure {
                    component: m.name.clone(),
                    cause: Cause::Stuck(patience),
                });
            }
            match m.handle {
                // It has ended: joining takes no time.
                Handle::Thread(h) if finished => {
                    let _ = tokio::task::spawn_blocking(move || h.join()).await;
                }
                // Left behind: the process is about to exit.
                Handle::Thread(_) | Handle::None => {}
                Handle::Task(h) => {
                    if !finished {
                        h.abort();
                    }
                    let _ = h.await;
                }
            }
        }
        match self.failure() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Test only: the fault planned for the component `name`, if any.
    #[cfg(test)]
    fn fault(&self, name: &str) -> Option<Fault> {
        self.faults
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, f)| *f)
    }

    /// Test only: makes the components whose names start with `prefix`
    /// misbehave as `fault` says, in place of their work.
    #[cfg(test)]
    pub(crate) fn sabotage(&mut self, prefix: &str, fault: Fault) {
        self.faults.push((prefix.to_string(), fault));
    }
}

/// Test only: how a sabotaged component misbehaves, at once.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// It panics.
    Panic,
    /// It returns (without doing its work).
    Return,
}

#[cfg(test)]
impl Fault {
    /// Misbehaves; what the component "returned" (nothing).
    fn strike(self) -> Option<String> {
        match self {
            Fault::Panic => panic!("injected fault"),
            Fault::Return => None,
        }
    }

    async fn strike_async(self) -> Option<String> {
        // A real await first, as a task's work would have.
        tokio::task::yield_now().await;
        self.strike()
    }
}

/// The message of a panic's payload.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// A future that catches a panic of the future it wraps, where it happens
/// (so the failure is recorded by the task itself, not by whoever joins it).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests;
