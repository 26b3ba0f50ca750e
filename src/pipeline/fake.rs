//! A [`Queue`] for tests that fails on demand, records every call, and lets
//! a test wait for calls (no sleeps): the storage failures of the error
//! policy's tests, without a full disk.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use migrations::v1::{Checkpoint, FileId};

use super::Queue;
use crate::config::Config;
use crate::store::{EnqueueOutcome, Sighting, Store, StoreError};

/// The store as the daemon opens it for `config` (`daemon::open_queue`,
/// which this layer cannot use: the daemon is above it): the state
/// directory, its cache, every enabled target.
pub(crate) fn open_store(config: &Config) -> Store {
    Store::open(
        &config.state_dir,
        config.storage.cache_capacity,
        &crate::targets::store_specs(config.target_sections()),
    )
    .unwrap()
}

/// A call to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Enqueue {
        sightings: Vec<Sighting>,
        checkpoint: Option<(FileId, Checkpoint)>,
        ok: bool,
    },
    Flush {
        ok: bool,
    },
}

/// The error a full disk gives (what the storage watch acts on).
pub(crate) fn disk_full() -> StoreError {
    StoreError::Sled(sled::Error::Io(std::io::Error::other(
        "No space left on device (a test)",
    )))
}

/// Fails the next `fail_enqueues` enqueues and `fail_flushes` flushes
/// (`u32::MAX`: all), then delegates to `inner` (or succeeds, queuing each
/// sighting as new, when there is none).
#[derive(Default)]
pub(crate) struct FakeQueue {
    inner: Option<Arc<Store>>,
    fail_enqueues: Mutex<u32>,
    fail_flushes: Mutex<u32>,
    /// What `pending_count` says when there is no `inner`.
    pub(crate) pending: Mutex<u64>,
    calls: Mutex<Vec<Call>>,
    called: Condvar,
}

impl FakeQueue {
    /// Fails the next `enqueues` enqueues and `flushes` flushes (`u32::MAX`:
    /// all of them).
    pub(crate) fn failing(enqueues: u32, flushes: u32) -> FakeQueue {
        FakeQueue {
            fail_enqueues: enqueues.into(),
            fail_flushes: flushes.into(),
            ..FakeQueue::default()
        }
    }

    /// Delegates what does not fail to `store`.
    pub(crate) fn over(mut self, store: Arc<Store>) -> FakeQueue {
        self.inner = Some(store);
        self
    }

    /// Every call so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until at least `n` calls were made (failing the test after a
    /// minute: a bound that only a broken test reaches).
    pub(crate) fn wait_calls(&self, n: usize) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        let (calls, timeout) = self
            .called
            .wait_timeout_while(calls, Duration::from_secs(60), |c| c.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} calls: {:?}",
            calls.len(),
            *calls
        );
        calls.clone()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.called.notify_all();
    }

    /// Whether this call fails (and counts it down).
    fn fails(counter: &Mutex<u32>) -> bool {
        let mut n = counter.lock().unwrap();
        match *n {
            0 => false,
            u32::MAX => true,
            _ => {
                *n -= 1;
                true
            }
        }
    }
}

impl Queue for FakeQueue {
    fn enqueue(
        &self,
        sightings: &[Sighting],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let ok = !FakeQueue::fails(&self.fail_enqueues);
        self.record(Call::Enqueue {
            sightings: sightings.to_vec(),
            checkpoint: checkpoint.map(|(id, c)| (*id, c.clone())),
            ok,
        });
        if !ok {
            return Err(disk_full());
        }
        match &self.inner {
            Some(store) => store.enqueue(sightings, checkpoint, now_ms),
            None => Ok(EnqueueOutcome {
                queued_new: sightings.len() as u64,
                ..EnqueueOutcome::default()
            }),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        let ok = !FakeQueue::fails(&self.fail_flushes);
        self.record(Call::Flush { ok });
        if !ok {
            return Err(disk_full());
        }
        match &self.inner {
            Some(store) => store.flush(),
            None => Ok(()),
        }
    }

    fn pending_count(&self) -> Result<u64, StoreError> {
        match &self.inner {
            Some(store) => store.pending_count(),
            None => Ok(*self.pending.lock().unwrap()),
        }
    }
}
