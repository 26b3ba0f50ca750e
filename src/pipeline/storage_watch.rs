//! The storage watch: what a failed write to the store means for the
//! daemon.
//!
//! sled fails every write after an I/O error (a full disk...), even once
//! space is freed: only a new instance can use the database again. So every
//! part of the daemon that writes to the store (the inputs, through
//! [`super::Pipeline`]; the schedulers; the control socket's enqueue) shows
//! its storage errors to the watch, which asks the daemon to reopen the
//! database once the state directory takes writes again. Until then the
//! writers keep what they could not write (nothing is lost) and retry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::errors::chain;
use crate::store::StoreError;

/// The target of this file's log events: the daemon's, where the watch was
/// born (text logs show it; `--log-level` filters select it).
const LOG_TARGET: &str = "tjfwd::daemon";

/// After a storage error: whether the state directory is writable again,
/// in which case the daemon reopens the database (sled fails every write
/// after an I/O error, even once space is freed: only a new instance can
/// use it).
#[derive(Debug, Clone)]
pub struct StorageWatch {
    /// The state directory, where the probe is written.
    dir: PathBuf,
    /// Woken to ask the daemon for a new database.
    reopen: Arc<Notify>,
}

impl StorageWatch {
    /// A watch over the state directory `dir` that wakes `reopen` when the
    /// database must be opened anew.
    pub fn new(dir: PathBuf, reopen: Arc<Notify>) -> StorageWatch {
        StorageWatch { dir, reopen }
    }

    /// Looks at a failed queue operation; true when a reopen was asked for.
    pub fn recovered(&self, e: &StoreError) -> bool {
        if !matches!(e, StoreError::Sled(sled::Error::Io(_))) || !storage_writable(&self.dir) {
            return false;
        }
        tracing::warn!(target: LOG_TARGET, error = %chain(e), "the queue failed to write, and the state directory is writable now: the database will be reopened");
        self.reopen.notify_one();
        true
    }
}

/// Whether the state directory takes a write of a few segments again (the
/// room sled needs to go on), tested with a scratch file.
fn storage_writable(dir: &Path) -> bool {
    use std::io::Write;
    let probe = dir.join("space.probe");
    let ok = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; 2 << 20])?;
            f.sync_all()
        })
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
