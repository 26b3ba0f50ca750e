//! The pipeline function and its error policy: what is committed when, what
//! is counted, and that every storage failure is shown to the storage
//! watch, which asks for a reopen only when that can help.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use migrations::v1::{Checkpoint, FileId};
use tokio::sync::Notify;

use super::fake::{disk_full, open_store, Call, FakeQueue};
use super::*;
use crate::config::Config;

/// A selected line from a public address (with its newline).
pub(crate) fn login(ip: &str) -> String {
    format!(
        r#"{{"eventid":"cowrie.login.failed","src_ip":"{ip}","timestamp":"2026-01-01T00:00:00.000000Z","session":"a1"}}"#
    ) + "\n"
}

/// Whether `n` was notified (consumes the permit).
pub(crate) fn notified(n: &Notify) -> bool {
    let f = std::pin::pin!(n.notified());
    matches!(
        f.poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(())
    )
}

struct Env {
    dir: tempfile::TempDir,
    stats: Arc<Stats>,
    /// The schedulers' wake-up.
    notify: Arc<Notify>,
    /// The daemon's "reopen the database".
    reopen: Arc<Notify>,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            stats: Arc::default(),
            notify: Arc::default(),
            reopen: Arc::default(),
        }
    }

    fn config(&self) -> Config {
        Config::default_for_tests(self.dir.path().join("state"))
    }

    /// A pipeline into `queue`, its storage watch over `watched`.
    fn pipeline(&self, queue: Arc<dyn Queue>, watched: &Path) -> Pipeline {
        Pipeline::new(
            queue,
            &self.config(),
            self.stats.clone(),
            self.notify.clone(),
        )
        .with_storage_watch(StorageWatch::new(
            watched.to_path_buf(),
            self.reopen.clone(),
        ))
    }
}

fn checkpoint(offset: u64) -> (FileId, Checkpoint) {
    (
        FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        },
        Checkpoint {
            path: "/var/log/cowrie/cowrie.json".into(),
            offset,
            updated_at_ms: 5,
        },
    )
}

#[test]
fn a_chunk_is_queued_with_its_checkpoint_in_one_transaction_and_counted() {
    let env = Env::new();
    let store = Arc::new(open_store(&env.config()));
    let p = env.pipeline(store.clone(), env.dir.path());
    let lines = login("11.7.7.7") + "not json\n" + &login("11.7.7.8");
    let (id, c) = checkpoint(lines.len() as u64);
    let out = p
        .ingest(
            lines.as_bytes(),
            &Commit::InTransaction(Some((id, c.clone()))),
            now(),
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(out.queued_new, 2);
    assert_eq!(store.checkpoint(&id).unwrap(), Some(c));
    assert_eq!(store.pending_count().unwrap(), 2);
    assert_eq!(Stats::get(&env.stats.lines_read), 3);
    assert_eq!(Stats::get(&env.stats.events_selected), 2);
    assert_eq!(Stats::get(&env.stats.queued_new), 2);
    assert_eq!(env.stats.skipped(crate::stats::SkipReason::NotJson), 1);
    assert!(notified(&env.notify), "the schedulers are woken");
    // Seen again: an update, which wakes nobody.
    p.ingest(
        login("11.7.7.7").as_bytes(),
        &Commit::InTransaction(None),
        now(),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(Stats::get(&env.stats.queued_updates), 1);
    assert!(!notified(&env.notify));
}

#[test]
fn after_flush_means_the_queue_is_flushed_before_the_call_returns() {
    let env = Env::new();
    let q = Arc::new(FakeQueue::default());
    let p = env.pipeline(q.clone(), env.dir.path());
    p.ingest(
        login("11.7.7.7").as_bytes(),
        &Commit::AfterFlush,
        now(),
        &mut Vec::new(),
    )
    .unwrap();
    let calls = q.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        matches!(&calls[0], Call::Enqueue { checkpoint: None, ok: true, sightings } if sightings.len() == 1)
    );
    assert_eq!(calls[1], Call::Flush { ok: true });
    assert_eq!(Stats::get(&env.stats.queued_new), 1);
}

#[test]
fn a_storage_failure_is_shown_to_the_watch_which_asks_for_a_reopen_and_nothing_is_counted() {
    for commit in [
        Commit::InTransaction(Some(checkpoint(9))),
        Commit::AfterFlush,
    ] {
        let env = Env::new();
        let q = Arc::new(FakeQueue::failing(u32::MAX, 0));
        // The state directory takes writes again: a new sled instance can
        // go on where this one gave up.
        let p = env.pipeline(q.clone(), env.dir.path());
        let f = p
            .ingest(
                login("11.7.7.7").as_bytes(),
                &commit,
                now(),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(f.reopen, "{commit:?}");
        assert!(matches!(f.error, StoreError::Sled(sled::Error::Io(_))));
        assert!(
            notified(&env.reopen),
            "{commit:?}: the daemon is asked to reopen"
        );
        assert_eq!(Stats::get(&env.stats.queued_new), 0);
        assert!(!notified(&env.notify));
        // Nothing flushed after a failed enqueue.
        assert_eq!(q.calls().len(), 1, "{:?}", q.calls());
    }
}

#[test]
fn a_failed_flush_is_a_failure_of_the_chunk() {
    let env = Env::new();
    let q = Arc::new(FakeQueue::failing(0, 1));
    let p = env.pipeline(q.clone(), env.dir.path());
    let f = p
        .queue(
            &[Sighting {
                addr: "11.7.7.7".parse().unwrap(),
                seen_ms: 1,
            }],
            &Commit::AfterFlush,
            now(),
        )
        .unwrap_err();
    assert!(f.reopen);
    assert_eq!(Stats::get(&env.stats.queued_new), 0);
    assert!(!notified(&env.notify));
}

#[test]
fn the_watch_asks_for_a_reopen_only_when_it_can_help() {
    let env = Env::new();
    let q = Arc::new(FakeQueue::failing(u32::MAX, 0));
    let commit = Commit::InTransaction(None);
    // The state directory does not take writes (here: it is not there).
    let p = env.pipeline(q.clone(), &env.dir.path().join("missing"));
    let f = p.queue(&[], &commit, now()).unwrap_err();
    assert!(!f.reopen);
    assert!(!notified(&env.reopen));
    // Not an I/O error: a new instance would not do better.
    let p = env.pipeline(q.clone(), env.dir.path());
    let f = p.failed(StoreError::Unsafe("a test".into()));
    assert!(!f.reopen);
    assert!(!notified(&env.reopen));
    // No watch (a command): the error is the caller's.
    let p = Pipeline::new(q, &env.config(), env.stats.clone(), env.notify.clone());
    assert!(!p.queue(&[], &commit, now()).unwrap_err().reopen);
    assert!(!p.failed(disk_full()).reopen);
    assert!(!notified(&env.reopen));
}

#[test]
fn has_room_below_max_pending_and_says_why_not_at_it() {
    let env = Env::new();
    let q = Arc::new(FakeQueue::default());
    let mut config = env.config();
    config.queue.max_pending = 10;
    let p = Pipeline::new(q.clone(), &config, env.stats.clone(), env.notify.clone());
    *q.pending.lock().unwrap() = 9;
    assert!(p.has_room());
    assert_eq!(env.stats.paused(), None);
    *q.pending.lock().unwrap() = 10;
    assert!(!p.has_room());
    let why = env.stats.paused().unwrap();
    assert!(why.starts_with("the queue is full: 10 pending"), "{why}");
    *q.pending.lock().unwrap() = 3;
    assert!(p.has_room());
    assert_eq!(env.stats.paused(), None);
    // Another reason to pause is not the backpressure's to clear.
    env.stats
        .set_paused(Some("cannot write the queue: a test".into()));
    assert!(p.has_room());
    assert!(env.stats.paused().is_some());
}

fn now() -> u64 {
    crate::clock::now_ms()
}
