//! The store: all of tjfwd's state, in one sled database under `state_dir`.
//!
//! What it holds:
//!
//! - the pending addresses, in FIFO order (`pending`, `order`, and the
//!   counters `meta/next_seq` and `meta/pending_count`);
//! - the reported mirror: what the report API holds, and until when
//!   (`reported`, `expiry`);
//! - the dead letters: addresses the API rejected (`dead`);
//! - the input positions: a checkpoint per input file (`checkpoints`), and
//!   when the file input first started (`meta/input_since`);
//! - the rate limit's request log and the reporter's health (`meta`).
//!
//! The format (tree names, key and value encodings, the schema version and
//! the migrations from older versions) is defined, and frozen, in the
//! `migrations` crate: `migrations/src/lib.rs`. This module is its only
//! writer.
//!
//! Invariants:
//!
//! - Every change that touches more than one tree is one sled transaction,
//!   so after a crash the database holds all of it or none of it. The trees
//!   agree as the `migrations` crate states (each pending address in
//!   exactly one `order` group, the one its entry names; the pending
//!   counter equal to the number of entries; one `expiry` key per reported
//!   entry); [`Store::verify`] checks it.
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
//! | `open.rs`     | opening: the directory lock, sled's lock, the seal, the migrations; the fsync |
//! | `configured.rs` | [`Store::open_configured`]: the configuration mapped onto `open` |
//! | `intake.rs`   | sightings coming in: folded, each placed (new, pending, not due, dead); the pending counter |
//! | `delivery.rs` | sending: batches in FIFO order, ack, dead letters, the reported mirror and its expiry, resend, the request log, health, the scans behind `export` |
//! | `inputs.rs`   | input positions: the file checkpoints, `input_since`          |
//! | `verify.rs`   | reading every record back, the cross-checks; the pending recount |
//! | `tx.rs`       | reads inside transactions                                     |
//!
//! `delivery.rs` is the state of delivery to the report API; the intake
//! reads it and queues into it through two functions there (see its top),
//! and `inputs.rs` and `open.rs` do not touch it.

use std::fs::File;
use std::path::PathBuf;

use migrations::MigrationError;

mod configured;
mod delivery;
mod inputs;
mod intake;
mod open;
mod tx;
mod verify;

pub use delivery::{BatchItem, QueuePos};
pub use intake::{fold, Class, EnqueueOutcome, Folded, Sighting};
pub use open::{lock_state_dir, mark_damaged, seal_says_older, DAMAGED_MARKER, SEAL};
pub use verify::Verified;

/// Errors of the store. Messages say what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state directory {dir} is in use by another tjfwd process (lock file {lock}); \
         stop it first, or give this one another state_dir"
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("cannot use state directory {dir}: {source}; check that it exists and that this user may write to it")]
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
    #[error("cannot open the database in {dir}: {source}")]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("database in {dir}: {source}")]
    Schema {
        dir: PathBuf,
        #[source]
        source: MigrationError,
    },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("{0}")]
    Format(#[from] MigrationError),
}

/// Policy values the store applies inside its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `[threatjammer] ttl`, in ms.
    pub ttl_ms: u64,
    /// `[schedule] rereport_after`, in ms.
    pub rereport_after_ms: u64,
}

/// The open store: the sled database and its trees, the directory lock held.
pub struct Store {
    /// The database: [`Store::flush`] syncs it.
    db: sled::Db,
    /// The state directory (for messages, the seal and the DAMAGED marker).
    dir: PathBuf,
    /// Counters, the request log, health, `input_since` (`migrations::meta_keys`).
    meta: sled::Tree,
    /// Delivery: each pending address's entry.
    pending: sled::Tree,
    /// Delivery: the FIFO order, in groups of addresses queued together.
    order: sled::Tree,
    /// Delivery: the reported mirror.
    reported: sled::Tree,
    /// Delivery: when each reported entry expires, in time order (pruning).
    expiry: sled::Tree,
    /// Delivery: the dead letters.
    dead: sled::Tree,
    /// Input positions: a checkpoint per file identity.
    checkpoints: sled::Tree,
    /// The TTL and the re-report interval, applied inside transactions.
    policy: Policy,
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
