//! [`Live`]: a target whose settings a reload of the configuration
//! (SIGHUP) replaces while its scheduler runs.
//!
//! The daemon hands each scheduler a `Live` around its target and keeps a
//! clone; a reload builds the target again from the new sections and puts
//! it in ([`Live::replace`]). The next request uses it; one in flight ends
//! with the target it started with. Nothing here knows what changed: the
//! daemon decides which settings a reload may change (the others keep
//! their running values, so the policy the scheduler read once, and the
//! store's view of the target, stay true).

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio::sync::Notify;

use super::{Answer, Policy, Selection, Target};
use crate::stats::Quota;
use crate::store::{BatchItem, Store, StoreError, TargetId};

/// A target that can be replaced while it runs (see the module doc).
/// Clones share it.
pub struct Live<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    /// The target in use.
    current: RwLock<Arc<T>>,
    /// Signalled at each replacement; a permit is kept when the scheduler
    /// is not waiting (it is sending), so it is not missed.
    reloaded: Notify,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Target> Live<T> {
    /// `target`, replaceable.
    pub fn new(target: T) -> Live<T> {
        Live {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(target)),
                reloaded: Notify::new(),
            }),
        }
    }

    /// Puts `target` in place of the one in use, and tells the scheduler.
    pub fn replace(&self, target: T) {
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(target);
        self.shared.reloaded.notify_one();
    }

    /// The target in use.
    fn current(&self) -> Arc<T> {
        self.shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl<T: Target> Target for Live<T> {
    type Reply = T::Reply;

    fn name(&self) -> &'static str {
        self.current().name()
    }

    fn policy(&self) -> Policy {
        self.current().policy()
    }

    fn describe(&self) -> String {
        self.current().describe()
    }

    fn preview(&self, batch: &[BatchItem], now_ms: u64) -> String {
        self.current().preview(batch, now_ms)
    }

    fn select(
        &self,
        queue: &Store,
        t: TargetId,
        n: usize,
        now_ms: u64,
    ) -> Result<Selection, StoreError> {
        self.current().select(queue, t, n, now_ms)
    }

    fn quota(&self, reply: &Self::Reply, now_ms: u64) -> Option<Quota> {
        self.current().quota(reply, now_ms)
    }

    fn send(&self, batch: &[BatchItem]) -> impl Future<Output = Self::Reply> + Send {
        let target = self.current();
        async move { target.send(batch).await }
    }

    fn classify(&self, reply: &Self::Reply, now: SystemTime) -> Answer {
        self.current().classify(reply, now)
    }

    fn rejects_everything_hint(&self) -> &'static str {
        self.current().rejects_everything_hint()
    }

    fn reloaded(&self) -> impl Future<Output = ()> + Send {
        self.shared.reloaded.notified()
    }
}
