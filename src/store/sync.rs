//! Making the database durable: the fsyncs sled 0.34 does not do.
//!
//! sled's `Db::flush()` writes its log with `pwrite` and
//! `sync_file_range(2)` on Linux: that starts and waits for the write-back
//! of the pages, but makes neither the disk's cache nor the file's metadata
//! (its size) durable, and is no `fsync`. Only sled's background flusher
//! calls `fsync`, about every 500 ms. sled also never fsyncs a directory:
//! not when it creates its files, nor after it renames a new snapshot into
//! place and removes the old ones, nor for its blob files (values over
//! about 128 KiB, written without any sync). A power cut could then lose
//! what a flush had "saved", or leave a snapshot naming log records that
//! never reached the disk (sled then calls the database corrupted).
//!
//! So [`DiskSync`] does it after sled: `fdatasync(2)` of the log file `db`
//! (an fsync of an inode syncs its dirty pages whichever descriptor wrote
//! them), `fsync(2)` of each blob file not synced yet and of the `blobs`
//! directory when there are new ones. [`sync_tree`] fsyncs every file and
//! directory of the database and the state directory, at open: before sled
//! reads its files (what a process killed before its fsync left in the page
//! cache is made durable before anything is built on it: sled's new
//! snapshot would otherwise vouch for it) and after (the snapshot sled wrote
//! while opening, and the directory entries of a new database).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// fsync(2) of a directory: makes the entries created, renamed or removed
/// in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An fsync error as a storage error naming what could not be synced (an
/// I/O error, as sled's own: the storage watch treats it the same).
fn sync_error(path: &Path, e: io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(io::Error::new(
        e.kind(),
        format!("cannot make {} durable (fsync): {e}", path.display()),
    )))
}

/// fsync(2) of every file and directory under `dir` (sled's database
/// directory: a flat directory and its `blobs` subdirectory), then of `dir`
/// itself. Missing is not an error.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// The fsyncs after a sled flush (see the module documentation).
#[derive(Debug)]
pub struct DiskSync {
    /// sled's database directory (`<state_dir>/db`).
    db_dir: PathBuf,
    /// Its log file, open for the fsyncs.
    log: File,
    /// The blob files already synced (blob names are never reused: they
    /// are log sequence numbers).
    blobs: Mutex<HashSet<OsString>>,
}

impl DiskSync {
    /// For the database in `db_dir`, opened by sled (its log file exists).
    pub fn new(db_dir: &Path) -> Result<DiskSync, StoreError> {
        let path = db_dir.join("db");
        let log = File::open(&path).map_err(|e| sync_error(&path, e))?;
        let sync = DiskSync {
            db_dir: db_dir.to_path_buf(),
            log,
            blobs: Mutex::new(HashSet::new()),
        };
        // Every blob there now was synced by the open's sync_tree.
        let names = sync.blob_names().map_err(|e| sync_error(db_dir, e))?;
        sync.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(names);
        Ok(sync)
    }

    fn blob_names(&self) -> io::Result<Vec<OsString>> {
        match std::fs::read_dir(self.db_dir.join("blobs")) {
            Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Makes durable what sled's flush wrote: `fdatasync` of the log, then
    /// `fsync` of each new blob file and of the blobs directory.
    pub fn sync(&self) -> Result<(), StoreError> {
        let log = self.db_dir.join("db");
        self.log.sync_data().map_err(|e| sync_error(&log, e))?;
        let blobs_dir = self.db_dir.join("blobs");
        let names = self.blob_names().map_err(|e| sync_error(&blobs_dir, e))?;
        let mut synced = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = false;
        for name in names {
            if synced.contains(&name) {
                continue;
            }
            let path = blobs_dir.join(&name);
            match File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                // Removed by sled in the meantime: nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(sync_error(&path, e)),
            }
            synced.insert(name);
            new = true;
        }
        if new {
            sync_dir(&blobs_dir).map_err(|e| sync_error(&blobs_dir, e))?;
        }
        Ok(())
    }
}

/// Writes `contents` to `dir/name` durably and atomically: a temporary
/// file, fsynced, renamed over the name, and the directory fsynced. Readers
/// see the old or the new contents, before and after a power cut.
pub fn write_durably(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}
