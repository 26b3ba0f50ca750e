//! Store: the on-disk state of tjfwd, in one sled database under `state_dir`.
//!
//! The layout and encodings are defined (and frozen) in the `migrations`
//! crate; this module is the only writer. Every operation that touches more
//! than one tree is one sled transaction, so after a crash the database holds
//! either all of it or none:
//!
//! - [`Store::enqueue`]: a chunk of sightings *and* the input checkpoint that
//!   follows them. After a crash the source is re-read from the checkpoint, so
//!   a line is either queued and passed, or neither. The addresses a chunk
//!   queues share one `order` group (schema v2: one sequence number and one
//!   `order` entry for up to [`GROUP_MAX`] of them).
//! - [`Store::ack`]: a delivered batch leaves `pending`/`order` and enters
//!   `reported`/`expiry`. A crash between the 202 and the ack re-sends the
//!   batch (at-least-once), never loses it.
//! - [`Store::dead_letter`]: rejected addresses leave `pending` for `dead`.
//!
//! The directory is locked (`tjfwd.lock`) for the life of a [`Store`], so a
//! second process gets a clear error instead of a sled panic.

use std::fs::File;
use std::path::PathBuf;

use migrations::MigrationError;

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

/// Policy values the queue applies inside its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `[threatjammer] ttl`, in ms.
    pub ttl_ms: u64,
    /// `[schedule] rereport_after`, in ms.
    pub rereport_after_ms: u64,
}

/// The open database.
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    meta: sled::Tree,
    pending: sled::Tree,
    order: sled::Tree,
    reported: sled::Tree,
    expiry: sled::Tree,
    dead: sled::Tree,
    checkpoints: sled::Tree,
    policy: Policy,
    /// Held (locked) for the life of the queue.
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
