//! Opening the store and making it durable: the state directory and its
//! lock, sled's own lock, the seal, the migrations, and the fsync.
//!
//! Invariants:
//!
//! - A [`Store`] holds the directory lock (`tjfwd.lock`, taken by
//!   [`lock_state_dir`]) for its whole life, so one process at most uses a
//!   state directory, and a second one gets [`StoreError::Locked`]. sled's
//!   own lock, which the background threads of a database this process (or
//!   one that just exited) closed may hold a moment longer, is waited for.
//! - Nothing is opened while a [`DAMAGED_MARKER`] is in the directory, nor a
//!   database whose sequence counter is below the one its [`SEAL`] records:
//!   sled opens a cut-off log as it was before the cut, without a word, and
//!   the seal is how that loss is noticed. The seal never claims more than
//!   is on disk: [`Store::flush`] reads the counter before the fsync.
//! - The database is brought to the current schema (the `migrations` crate)
//!   before anything else reads it; a newer one is refused, untouched.
//! - Snapshots that sled left half-written are removed before it opens
//!   ([`remove_interrupted_snapshots`]).
//! - A bulk load that a crash interrupted (`meta/loading`, see `load.rs`)
//!   is finished before the store is returned.

use std::fs::{File, OpenOptions};
use std::path::Path;

use migrations::v1;
use migrations::v3;
use migrations::{meta_keys, trees, MigrationError};

use super::{swap, sync, Served, Store, StoreError, TargetId, TargetSpec};

impl Store {
    /// Opens (creating if needed) the database in `state_dir`, taking the
    /// directory lock and running the migrations, to serve `targets` (the
    /// enabled report targets: the intake queues addresses for them; a
    /// target seen for the first time gets its id).
    pub fn open(
        state_dir: &Path,
        cache_capacity: u64,
        targets: &[TargetSpec],
    ) -> Result<Store, StoreError> {
        let lock = lock_state_dir(state_dir)?;
        Store::open_locked(state_dir, lock, cache_capacity, targets)
    }

    /// Opens the database of a state directory whose lock (from
    /// [`lock_state_dir`]) the caller holds; the store keeps it.
    pub fn open_locked(
        state_dir: &Path,
        lock: File,
        cache_capacity: u64,
        targets: &[TargetSpec],
    ) -> Result<Store, StoreError> {
        let dir = state_dir.to_path_buf();
        let io = |source| StoreError::StateDir {
            dir: dir.clone(),
            source,
        };
        match swap::finish_interrupted(&dir).map_err(io)? {
            swap::Finished::Nothing => {}
            swap::Finished::Undone => tracing::warn!(
                dir = %dir.display(),
                "an interrupted `tjfwd recover` had not replaced the database yet: its unfinished new database was removed, the database is as before it"
            ),
            swap::Finished::Completed { aside } => tracing::warn!(
                dir = %dir.display(),
                old = aside.as_deref().unwrap_or("none"),
                "an interrupted `tjfwd recover` had decided to replace the database: the replacement was completed"
            ),
        }
        if let Ok(detail) = std::fs::read_to_string(dir.join(DAMAGED_MARKER)) {
            return Err(StoreError::Damaged {
                dir: dir.clone(),
                detail: format!(
                    "found by an earlier check, see {}: {}",
                    DAMAGED_MARKER,
                    detail.lines().next().unwrap_or("")
                ),
            });
        }
        let db_path = dir.join("db");
        if db_path.exists() && !db_path.join("db").exists() {
            if read_seal(&dir).is_some() {
                // sled would quietly start an empty database beside its
                // snapshot: the queue would be gone without a word.
                return Err(StoreError::Damaged {
                    dir: dir.clone(),
                    detail: format!("{} is missing", db_path.join("db").display()),
                });
            }
            // Never sealed: a first start cut off (a power cut) before its
            // new database was durable. Nothing was ever saved in it.
            set_aside_unfinished(&dir).map_err(io)?;
        }
        remove_interrupted_snapshots(&db_path).map_err(io)?;
        // What a process killed before its fsync left in the page cache is
        // made durable before sled reads it (and writes a snapshot that
        // vouches for it).
        sync::sync_tree(&db_path).map_err(io)?;
        // We hold tjfwd.lock, so no other tjfwd uses the directory: sled's
        // own lock can only be held for a moment more by the background
        // threads of a database this process (or one that just exited)
        // has closed. Wait for them rather than fail.
        let lock_deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let opened = loop {
            let r = sled::Config::new()
                .path(dir.join("db"))
                .cache_capacity(cache_capacity)
                .mode(sled::Mode::LowSpace)
                .open();
            match &r {
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"))
                        && std::time::Instant::now() < lock_deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => break r,
            }
        };
        let db = opened.map_err(|source| match &source {
            // sled's own lock: a process that just closed the database
            // may still hold it for a moment (its flusher thread).
            sled::Error::Io(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked {
                    dir: dir.clone(),
                    lock: dir.join("db"),
                }
            }
            sled::Error::Corruption { .. } => StoreError::Damaged {
                dir: dir.clone(),
                detail: "sled found corrupted data while opening it".into(),
            },
            _ => StoreError::Open {
                dir: dir.clone(),
                source,
            },
        })?;
        let created_by = concat!("tjfwd ", env!("CARGO_PKG_VERSION"));
        migrations::migrate(&db, created_by).map_err(|source| match source {
            MigrationError::Corrupt(detail) => StoreError::Damaged {
                dir: dir.clone(),
                detail,
            },
            MigrationError::Sled(sled::Error::Corruption { .. }) => StoreError::Damaged {
                dir: dir.clone(),
                detail: "sled found corrupted data while reading its metadata".into(),
            },
            source => StoreError::Schema {
                dir: dir.clone(),
                source,
            },
        })?;
        let meta = db.open_tree(trees::META)?;
        let now =
            v1::decode_u64("meta/next_seq", meta.get(meta_keys::NEXT_SEQ)?.as_deref()).unwrap_or(0);
        if let Some(detail) = seal_says_older(&dir, now) {
            return Err(StoreError::Damaged {
                dir: dir.clone(),
                detail,
            });
        }
        let targets_tree = db.open_tree(trees::TARGETS)?;
        let (registered, served) = register(&targets_tree, targets)?;
        // The migrations' and registrations' writes, the snapshot sled
        // wrote while opening (renamed into place, old ones removed), and
        // the entries of a new database's files, made durable.
        db.flush()?;
        sync::sync_tree(&db_path).map_err(io)?;
        sync::sync_dir(&dir).map_err(io)?;
        let disk = sync::DiskSync::new(&db_path)?;
        if read_seal(&dir).is_none() {
            // A database is sealed once it is durable: an unsealed one
            // without its log file is a first start that a power cut
            // interrupted (see above).
            write_seal(&dir, now).map_err(io)?;
        }
        let store = Store {
            meta,
            targets: targets_tree,
            registered,
            served,
            pending: db.open_tree(trees::PENDING)?,
            order: db.open_tree(trees::ORDER)?,
            reported: db.open_tree(trees::REPORTED)?,
            expiry: db.open_tree(trees::EXPIRY)?,
            dead: db.open_tree(trees::DEAD)?,
            checkpoints: db.open_tree(trees::CHECKPOINTS)?,
            seen: db.open_tree(trees::SEEN)?,
            seen_time: db.open_tree(trees::SEEN_TIME)?,
            db,
            disk,
            dir,
            _lock: lock,
            sealed_at_ms: std::sync::atomic::AtomicU64::new(0),
        };
        if let Some((kept, dropped)) = store.finish_interrupted_load()? {
            tracing::warn!(
                dir = %store.dir.display(),
                kept,
                dropped,
                "a `tjfwd replay` was interrupted while it wrote the addresses it had read: the queue keeps those it had written (kept, target by target), the others were taken out of it (dropped); run the replay again to queue them"
            );
        }
        Ok(store)
    }

    /// The targets this store serves (those it was opened with), in that
    /// order.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// The target that `tjfwd status`, `/metrics` and `/healthz` describe:
    /// the first served one (id 0 when none is). One target is enabled
    /// today; showing each is the multi-target status's work.
    pub fn first_target(&self) -> TargetId {
        self.served.first().map_or(0, |s| s.id)
    }

    /// The id of a served target.
    pub fn target_id(&self, name: &str) -> Option<TargetId> {
        self.served.iter().find(|s| s.name == name).map(|s| s.id)
    }

    /// Every target the database has ever known (ids and names): their
    /// mirrors still expire and their state still shows.
    pub fn registered(&self) -> &[(TargetId, String)] {
        &self.registered
    }

    /// The served target `t`, or an error naming it.
    pub(super) fn serving(&self, t: TargetId) -> Result<&Served, StoreError> {
        self.served.iter().find(|s| s.id == t).ok_or_else(|| {
            StoreError::Format(MigrationError::Corrupt(format!(
                "target {t} is not served by this store"
            )))
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes everything written so far durable: sled's flush (its log
    /// written and `sync_file_range`d), then `fdatasync` of the log and
    /// `fsync` of new blob files (`sync::DiskSync`); then, at most once a
    /// second, the seal (written durably, after what it vouches for).
    pub fn flush(&self) -> Result<(), StoreError> {
        // The counter is read before the fsync, so the seal never claims
        // more than what is on disk.
        let next_seq = self.meta.get(meta_keys::NEXT_SEQ)?;
        self.db.flush()?;
        self.disk.sync()?;
        // At most once a second (the socket input flushes every chunk): a
        // seal that lags behind only checks a little less.
        let now = crate::clock::now_ms();
        let last = self.sealed_at_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) < 1000 {
            return Ok(());
        }
        self.sealed_at_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
        if let Ok(n) = v1::decode_u64("meta/next_seq", next_seq.as_deref()) {
            if let Err(e) = write_seal(&self.dir, n) {
                tracing::warn!(error = %e, "cannot write {SEAL}", );
            }
        }
        Ok(())
    }

    /// The next sequence number of the `order` tree: the counter that the
    /// seal records ([`seal_says_older`]).
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(v1::decode_u64(
            "meta/next_seq",
            self.meta.get(meta_keys::NEXT_SEQ)?.as_deref(),
        )?)
    }
}

/// The file, in the state directory, holding the store's sequence counter as
/// of its last fsync. sled treats a cut-off log as a torn write and opens the
/// database as it was before the cut, without a word; a counter below the
/// seal's shows that committed data is gone.
pub const SEAL: &str = "tjfwd.seal";

/// Writes the seal durably (temporary file fsynced, renamed, directory
/// fsynced): only ever after the fsync of what it vouches for.
fn write_seal(dir: &Path, next_seq: u64) -> std::io::Result<()> {
    sync::write_durably(dir, SEAL, format!("next_seq {next_seq}\n").as_bytes())
}

/// Moves `db` aside as `db.unfinished-<ms>`: the database of a first start
/// that never became durable (never sealed), whose log file is missing.
fn set_aside_unfinished(dir: &Path) -> std::io::Result<()> {
    let aside = dir.join(format!("db.unfinished-{}", crate::clock::now_ms()));
    tracing::warn!(
        db = %dir.join("db").display(),
        moved_to = %aside.display(),
        "the database of an interrupted first start (never saved, its log file missing) is moved aside; starting with a new one"
    );
    std::fs::rename(dir.join("db"), &aside)?;
    sync::sync_dir(dir)
}

/// Whether the seal in `dir` shows a database whose sequence counter is
/// `next_seq` to have lost committed data; if so, the explanation.
pub fn seal_says_older(dir: &Path, next_seq: u64) -> Option<String> {
    let sealed = read_seal(dir)?;
    (next_seq < sealed).then(|| {
        let seal = dir.join(SEAL);
        format!(
            "it is older than its last save: its sequence counter is {next_seq}, {} records \
             {sealed}, so a part of it was lost (a truncated or damaged file, or a copy \
             restored from a backup; if you restored it on purpose, delete {} and start again)",
            seal.display(),
            seal.display()
        )
    })
}

/// The sequence counter the seal records, if there is a readable seal.
fn read_seal(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(SEAL)).ok()?;
    text.trim().strip_prefix("next_seq ")?.parse().ok()
}

/// The file, in the state directory, that records that the database was
/// found damaged while running: later starts refuse until `tjfwd recover`.
pub const DAMAGED_MARKER: &str = "DAMAGED";

/// Records that the database in `state_dir` is damaged (see [`DAMAGED_MARKER`]).
pub fn mark_damaged(state_dir: &Path, detail: &str) -> std::io::Result<()> {
    sync::write_durably(state_dir, DAMAGED_MARKER, format!("{detail}\n").as_bytes())
}

/// Creates the state directory (0700) if needed and takes its lock
/// (`tjfwd.lock`), held as long as the returned file is open.
pub fn lock_state_dir(state_dir: &Path) -> Result<File, StoreError> {
    let dir = state_dir.to_path_buf();
    let io = |source| StoreError::StateDir {
        dir: dir.clone(),
        source,
    };
    create_private_dir(&dir).map_err(io)?;
    crate::permissions::check_state_dir(&dir).map_err(StoreError::Unsafe)?;
    let lock_path = dir.join("tjfwd.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.clone(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Creates `dir` (and parents) with mode 0700 for the last component, and
/// makes the new entries durable (fsync of each parent of a directory
/// created).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    let existing = dir.ancestors().skip(1).find(|a| a.is_dir());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for created in dir.ancestors() {
        if Some(created) == existing {
            break;
        }
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync::sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Removes the snapshots sled left unfinished (`snap.<lsn>.generating`).
///
/// sled 0.34 writes a snapshot only while opening the database (after
/// replaying its log): to `snap.<lsn>.generating`, synced, then renamed to
/// `snap.<lsn>`. But it also takes `.generating` files for snapshots, and
/// the last in name order wins, so a process killed while writing one (a
/// kill -9 or an OOM kill during start-up) left a database that every later
/// open refused as corrupt ("Read corrupted data") — tjfwd could then never
/// start again. Such a file was never in use: the open that wrote it had not
/// finished, so the database is the previous snapshot plus the log, which
/// is what sled reads once the file is gone. Called with the directory lock
/// held, so no other process is writing one.
fn remove_interrupted_snapshots(db_dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(db_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %entry.path().display(), "removing a database snapshot left unfinished by a crash");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Every target a database knows: its id and its name.
type Registered = Vec<(TargetId, String)>;

/// Reads the targets the database knows and gives each of `specs` that
/// it does not know yet the smallest free id. Returns every registered
/// target and the served ones, in the order of `specs`.
fn register(
    tree: &sled::Tree,
    specs: &[TargetSpec],
) -> Result<(Registered, Vec<Served>), StoreError> {
    let mut registered = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        if let Some((&id, v3::fields::NAME)) = k.split_first() {
            let name = String::from_utf8(v.to_vec()).map_err(|_| {
                MigrationError::Corrupt(format!("target {id}: its name is not UTF-8"))
            })?;
            registered.push((id, name));
        }
    }
    let mut served = Vec::with_capacity(specs.len());
    for spec in specs {
        let id = match registered.iter().find(|(_, n)| *n == spec.name) {
            Some((id, _)) => *id,
            None => {
                let id = (0..v3::MAX_TARGETS as TargetId)
                    .find(|i| registered.iter().all(|(r, _)| r != i))
                    .ok_or_else(|| {
                        MigrationError::Corrupt(format!(
                            "no free target id for {}: {} targets are registered",
                            spec.name,
                            registered.len()
                        ))
                    })?;
                tree.insert(v3::field_key(id, v3::fields::NAME), spec.name.as_bytes())?;
                registered.push((id, spec.name.clone()));
                id
            }
        };
        served.push(Served {
            id,
            name: spec.name.clone(),
            policy: spec.policy,
        });
    }
    registered.sort();
    Ok((registered, served))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{one_target, open, s};

    #[test]
    fn a_database_behind_its_seal_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path());
            q.enqueue(&[s("1.2.3.4", 5)], None, 10).unwrap();
            q.flush().unwrap();
        }
        assert_eq!(read_seal(dir.path()), Some(1));
        // As if the database had lost its last writes since the seal.
        write_seal(dir.path(), 7).unwrap();
        match Store::open(dir.path(), 8 << 20, &one_target(0)) {
            Err(StoreError::Damaged { detail, .. }) => {
                assert!(detail.contains("older than its last save"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        // Deleting the seal (a backup restored on purpose) opens it again.
        std::fs::remove_file(dir.path().join(SEAL)).unwrap();
        assert_eq!(open(dir.path()).pending_count().unwrap(), 1);
    }

    #[test]
    fn second_open_is_refused_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let _q = open(d.path());
        let err = Store::open(d.path(), 8 << 20, &one_target(0)).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(err.to_string().contains(&d.path().display().to_string()));
    }

    #[test]
    fn a_snapshot_left_half_written_by_a_crash_does_not_stop_the_next_open() {
        // sled writes its snapshot while opening, to snap.<lsn>.generating,
        // then renames it; killed in between, it left a file that every
        // later open read as the snapshot and refused as corrupt (found by
        // tests/chaos.rs after ~400 kill -9).
        let d = tempfile::tempdir().unwrap();
        {
            let q = open(d.path());
            q.enqueue(&[s("1.1.1.1", 10), s("2.2.2.2", 20)], None, 100)
                .unwrap();
            q.flush().unwrap();
        }
        drop(open(d.path())); // an open that writes a snapshot
        let half = d.path().join("db").join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&half, [0xab; 100]).unwrap();
        let q = open(d.path());
        assert_eq!(q.pending_count().unwrap(), 2);
        assert!(q.pending("1.1.1.1".parse().unwrap()).unwrap().is_some());
        assert!(!half.exists());
    }
}
