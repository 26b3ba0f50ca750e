//! The store: all of tjfwd's state, in one sled database under `state_dir`.
//!
//! What it holds:
//!
//! - the pending addresses: one entry per address (`pending`), with the
//!   report targets that still owe a report of it, and for each target its
//!   FIFO order (`order`; the counters `meta/next_seq`,
//!   `meta/pending_count` and each target's pending count);
//! - per report target ([`TargetId`], registered by name in `targets`):
//!   the reported mirror, what the service holds and until when
//!   (`reported`, `expiry`); the dead letters, addresses it rejected
//!   (`dead`); its rate limit's request log and its health (`targets`);
//! - the input positions: a checkpoint per input file (`checkpoints`), and
//!   when the file input first started (`meta/input_since`);
//! - tjfwd's own denylist (`[feed]`, `tjfwd export`): every pending
//!   address, and the last sighting of each selected address that is no
//!   longer pending (`seen`, `seen_time`), listed until a TTL after it.
//!
//! The format (tree names, key and value encodings, the schema version and
//! the migrations from older versions) is defined, and frozen, in the
//! `migrations` crate: `migrations/src/lib.rs`. This module is its only
//! writer.
//!
//! Invariants:
//!
//! - Every change that touches more than one tree is one sled transaction,
//!   so after a crash the database holds all of it or none of it; the one
//!   exception, `tjfwd replay`'s bulk load (`load.rs`), leaves an intent
//!   record durable before it writes outside its transaction, and the next
//!   open finishes what it left half-done. The trees
//!   agree as the `migrations` crate states (a pending address in one
//!   `order` group of each target that owes it, the one its entry names;
//!   the counters equal to what they count; one `expiry` key per reported
//!   entry); [`Store::verify`] checks it.
//! - Targets never hold each other back: each has its own FIFO, mirror,
//!   dead letters, request log and health; an address leaves a target's
//!   queue only when that target accepted or rejected it, and its entry
//!   goes when no target owes it any more.
//! - A [`Store`] holds the state directory's lock (`tjfwd.lock`) for its
//!   whole life, so a second process gets a clear error instead of a sled
//!   panic.
//! - A database that the seal ([`SEAL`]) shows to have lost committed
//!   writes, or one marked damaged ([`DAMAGED_MARKER`]), is not opened.
//!
//! One file per concern, each stating its own invariants at its top:
//!
//! | file          | what                                                          |
//! |---------------|---------------------------------------------------------------|
//! | `open.rs`     | opening: the directory lock, sled's lock, the seal, the migrations; the flush |
//! | `swap.rs`     | replacing the database (`recover`) in steps a crash cannot leave half-done |
//! | `sync.rs`     | the fsyncs sled 0.34 does not do: its log, blobs and directories  |
//! | `intake.rs`   | sightings coming in: folded, each placed (new, pending, not due, dead); the pending counter |
//! | `load.rs`     | `tjfwd replay`'s bulk load of new addresses, and finishing one a crash interrupted |
//! | `delivery.rs` | sending, per target: batches in FIFO order, ack, dead letters, the reported mirror and its expiry, resend, the request log, health, the scans behind `export` |
//! | `inputs.rs`   | input positions: the file checkpoints, `input_since`          |
//! | `denylist.rs` | the denylist: the last sightings kept past `pending`, the list, its pruning |
//! | `verify.rs`   | reading every record back, the cross-checks; the pending recount |
//! | `tx.rs`       | reads inside transactions                                     |
//!
//! `delivery.rs` is the state of delivery to the report targets; the
//! intake reads it and queues into it through the functions named at its
//! top, and `inputs.rs` does not touch it. `open.rs` registers the targets
//! the store is opened for.

use std::fs::File;
use std::path::PathBuf;

use migrations::MigrationError;

mod delivery;
mod denylist;
mod inputs;
mod intake;
mod load;
mod open;
mod swap;
mod sync;
mod tx;
mod verify;

pub use delivery::{BatchItem, QueuePos};
pub use denylist::Listed;
pub use intake::{fold, Class, EnqueueOutcome, Folded, Owes, Sighting};
pub use migrations::v3::{Health, Intake, TargetId};
pub use open::{lock_state_dir, mark_damaged, seal_says_older, DAMAGED_MARKER, SEAL};
pub use swap::{
    commit as replace_database, finish_interrupted as finish_interrupted_recover, Finished,
    RECOVER_JOURNAL, RECOVER_NEW, RECOVER_SCRATCH,
};
pub use verify::Verified;

/// Errors of the store. Messages say what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state directory {dir} is in use by another tjfwd process (lock file {lock}); \
         stop it first, or give this one another state_dir"
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("cannot use state directory {dir} (check that it exists and that this user may write to it)")]
    StateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the database in {dir} is damaged ({detail}); tjfwd has deleted nothing. \
         Stop every tjfwd using this state_dir, then run `tjfwd recover` with the same \
         configuration: it moves the damaged database aside (nothing is deleted) and \
         rebuilds the queue from it and from the Cowrie logs still on disk"
    )]
    Damaged { dir: PathBuf, detail: String },
    /// The state directory is not safe to use (see `crate::permissions`).
    #[error("refusing the state directory: {0}")]
    Unsafe(String),
    #[error("cannot open the database in {dir}")]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("database in {dir}")]
    Schema {
        dir: PathBuf,
        #[source]
        source: MigrationError,
    },
    #[error("storage error")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Format(#[from] MigrationError),
}

/// What "due again" means for a target, applied inside the store's
/// transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long the service keeps a report (Threat Jammer: `[targets.threatjammer]
    /// ttl`), in ms: the reported mirror's entries expire then.
    pub ttl_ms: u64,
    /// A sighting less than this after the last report does not queue the
    /// address again (`rereport_after`), in ms.
    pub rereport_after_ms: u64,
}

/// A report target the store is opened to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// Its name (its configuration section): its identity in the database.
    pub name: String,
    pub policy: Policy,
}

/// A target the store serves: the intake queues addresses for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Its number in the database.
    pub id: TargetId,
    pub name: String,
    pub policy: Policy,
}

/// The open store: the sled database and its trees, the directory lock held.
pub struct Store {
    /// The database: [`Store::flush`] syncs it.
    db: sled::Db,
    /// The fsyncs sled does not do (see `sync.rs`).
    disk: sync::DiskSync,
    /// The state directory (for messages, the seal and the DAMAGED marker).
    dir: PathBuf,
    /// Counters, `input_since` (`migrations::meta_keys`).
    meta: sled::Tree,
    /// Per target: its name, pending count, request log and health
    /// (`migrations::v3::fields`).
    targets: sled::Tree,
    /// Every target the database knows, by id (sorted).
    registered: Vec<(TargetId, String)>,
    /// The targets this store was opened to serve.
    served: Vec<Served>,
    /// Delivery: each pending address's entry, with the targets owing it.
    pending: sled::Tree,
    /// Delivery: each target's FIFO order, in groups of addresses queued
    /// together.
    order: sled::Tree,
    /// Delivery: each target's reported mirror.
    reported: sled::Tree,
    /// Delivery: when each reported entry expires, in time order per
    /// target (pruning).
    expiry: sled::Tree,
    /// Delivery: each target's dead letters.
    dead: sled::Tree,
    /// Input positions: a checkpoint per file identity.
    checkpoints: sled::Tree,
    /// The denylist: the last sighting of each selected address that is
    /// no longer pending (`migrations::v4`).
    seen: sled::Tree,
    /// The denylist: `seen` in time order (pruning).
    seen_time: sled::Tree,
    /// Held (locked) for the life of the store.
    _lock: File,
    /// When the seal was last written (ms; see [`SEAL`]).
    sealed_at_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

#[cfg(test)]
mod tests;
