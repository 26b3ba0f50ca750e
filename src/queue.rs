//! Queue: the on-disk state of tjfwd, in one sled database under `state_dir`.
//!
//! The layout and encodings are defined (and frozen) in the `migrations`
//! crate; this module is the only writer. Every operation that touches more
//! than one tree is one sled transaction, so after a crash the database holds
//! either all of it or none:
//!
//! - [`Queue::enqueue`]: a chunk of sightings *and* the input checkpoint that
//!   follows them. After a crash the source is re-read from the checkpoint, so
//!   a line is either queued and passed, or neither. The addresses a chunk
//!   queues share one `order` group (schema v2: one sequence number and one
//!   `order` entry for up to [`GROUP_MAX`] of them).
//! - [`Queue::ack`]: a delivered batch leaves `pending`/`order` and enters
//!   `reported`/`expiry`. A crash between the 202 and the ack re-sends the
//!   batch (at-least-once), never loses it.
//! - [`Queue::dead_letter`]: rejected addresses leave `pending` for `dead`.
//!
//! The directory is locked (`tjfwd.lock`) for the life of a [`Queue`], so a
//! second process gets a clear error instead of a sled panic.

use std::fs::{File, OpenOptions};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use migrations::v1::{self, Checkpoint, Dead, FileId, Health, Pending, Reported, RequestLog};
use migrations::v2::{self, GROUP_MAX};
use migrations::{meta_keys, trees, MigrationError};
use sled::transaction::{abort, ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

/// Errors of the queue. Messages say what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
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

/// One sighting of an address, ready to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// Normalized, filtered address.
    pub addr: IpAddr,
    /// Event time (ms since the epoch).
    pub seen_ms: u64,
}

/// The sightings of one address in a chunk, folded: what
/// [`Queue::enqueue`] stores of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    pub addr: IpAddr,
    /// The earliest event time.
    pub first_seen_ms: u64,
    /// The latest event time (the one compared with the last report).
    pub last_seen_ms: u64,
    /// How many sightings.
    pub hits: u64,
}

impl Folded {
    /// One sighting.
    pub fn of(s: &Sighting) -> Folded {
        Folded {
            addr: s.addr,
            first_seen_ms: s.seen_ms,
            last_seen_ms: s.seen_ms,
            hits: 1,
        }
    }

    /// Folds in more sightings of the same address (min, max, sum: the
    /// order they come in does not matter).
    pub fn merge(&mut self, other: &Folded) {
        debug_assert_eq!(self.addr, other.addr);
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.hits += other.hits;
    }
}

/// Folds a chunk: one entry per address, in order of first appearance (so
/// the queue stays oldest-first within a chunk too).
///
/// The addresses are the attackers': hashed with foldhash, which is fast
/// and seeded at random per process, so that nobody can choose addresses
/// that collide in it.
pub fn fold(sightings: &[Sighting]) -> Vec<Folded> {
    use foldhash::HashMapExt;
    let mut index: foldhash::HashMap<IpAddr, usize> =
        foldhash::HashMap::with_capacity(sightings.len());
    let mut folded: Vec<Folded> = Vec::new();
    for s in sightings {
        match index.entry(s.addr) {
            std::collections::hash_map::Entry::Occupied(e) => {
                folded[*e.get()].merge(&Folded::of(s));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(folded.len());
                folded.push(Folded::of(s));
            }
        }
    }
    folded
}

/// What an [`Queue::enqueue`] did with its sightings (distinct addresses).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnqueueOutcome {
    /// Addresses that became pending.
    pub queued_new: u64,
    /// Addresses already pending (their hits and last_seen were updated).
    pub updated: u64,
    /// Addresses reported after (or too soon before) the sighting.
    pub already_reported: u64,
    /// Addresses in the dead-letter set.
    pub dead: u64,
}

/// Where a sighting would go ([`Queue::classify`]), as counted in
/// [`EnqueueOutcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Already pending: its entry is updated.
    Pending,
    /// In the dead-letter set: not queued.
    Dead,
    /// Reported after (or too soon before) the sighting: not queued.
    NotDue,
    /// Queued.
    New,
}

/// An address taken for sending, with what is needed to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub addr: IpAddr,
    /// The sequence of its `order` group when taken: the ack only applies
    /// to the address as queued in that group.
    pub seq: u64,
    /// Its place in that group (for [`QueuePos`]).
    pub index: u32,
    /// Its hit count when taken: more hits at ack time mean new sightings
    /// arrived while the request was in flight.
    pub hits: u64,
}

impl BatchItem {
    /// The place in the queue just after this address.
    pub fn next_pos(&self) -> QueuePos {
        QueuePos {
            seq: self.seq,
            index: self.index + 1,
        }
    }
}

/// A place in the queue's FIFO order: the address at `index` in the group
/// `seq` (or the first one after it, if the group is shorter or gone).
/// The default is the front of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueuePos {
    pub seq: u64,
    pub index: u32,
}

/// Policy values the queue applies inside its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `[threatjammer] ttl`, in ms.
    pub ttl_ms: u64,
    /// `[schedule] rereport_after`, in ms.
    pub rereport_after_ms: u64,
}

/// What [`Queue::verify`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    pub pending: u64,
    pub reported: u64,
    pub dead: u64,
    pub checkpoints: u64,
    /// Problems found (0: the database is sound).
    pub problems: u64,
    /// The first few problems, in words.
    pub details: Vec<String>,
    /// Every record was read (false: stopped early).
    pub complete: bool,
}

/// The open database.
pub struct Queue {
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

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("dir", &self.dir).finish()
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<MigrationError>>;

fn tx_err(e: TransactionError<MigrationError>) -> QueueError {
    match e {
        TransactionError::Abort(e) => QueueError::Format(e),
        TransactionError::Storage(e) => QueueError::Sled(e),
    }
}

fn tx_get<T: serde::de::DeserializeOwned>(
    tree: &TransactionalTree,
    what: &str,
    key: &[u8],
) -> TxResult<Option<T>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => v1::decode(what, &v).map(Some).or_else(abort),
    }
}

fn tx_get_pending(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<Pending>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => v2::decode_pending(&v).map(Some).or_else(abort),
    }
}

fn tx_counter(meta: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    let v = meta.get(key)?;
    v1::decode_u64("meta counter", v.as_deref()).or_else(abort)
}

/// Writes the `order` groups of addresses queued together, GROUP_MAX to a
/// group, from sequence `first_seq` on; returns the next free sequence.
fn tx_insert_groups(order: &TransactionalTree, first_seq: u64, keys: &[&[u8]]) -> TxResult<u64> {
    let mut seq = first_seq;
    for chunk in keys.chunks(GROUP_MAX) {
        order.insert(&v1::seq_key(seq), v2::encode_group(chunk.iter().copied()))?;
        seq += 1;
    }
    Ok(seq)
}

/// The addresses that leave their `order` groups: group sequence → keys.
type Leaving = std::collections::BTreeMap<u64, Vec<Vec<u8>>>;

/// Takes addresses out of their `order` groups: `leaving` maps a group's
/// sequence to the keys that leave it. A group left empty is removed.
fn tx_leave_groups(order: &TransactionalTree, leaving: &Leaving) -> TxResult<()> {
    for (seq, keys) in leaving {
        let Some(value) = order.get(v1::seq_key(*seq))? else {
            continue;
        };
        let members = v2::group_members(&value).or_else(abort)?;
        let gone: std::collections::HashSet<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let rest: Vec<&[u8]> = members.into_iter().filter(|m| !gone.contains(m)).collect();
        if rest.is_empty() {
            order.remove(&v1::seq_key(*seq))?;
        } else {
            order.insert(&v1::seq_key(*seq), v2::encode_group(rest))?;
        }
    }
    Ok(())
}

impl Queue {
    /// Opens (creating if needed) the database in `state_dir`, taking the
    /// directory lock and running the migrations.
    pub fn open(
        state_dir: &Path,
        cache_capacity: u64,
        policy: Policy,
    ) -> Result<Queue, QueueError> {
        let lock = lock_state_dir(state_dir)?;
        Queue::open_locked(state_dir, lock, cache_capacity, policy)
    }

    /// Opens the database of a state directory whose lock (from
    /// [`lock_state_dir`]) the caller holds; the queue keeps it.
    pub fn open_locked(
        state_dir: &Path,
        lock: File,
        cache_capacity: u64,
        policy: Policy,
    ) -> Result<Queue, QueueError> {
        let dir = state_dir.to_path_buf();
        let io = |source| QueueError::StateDir {
            dir: dir.clone(),
            source,
        };
        if let Ok(detail) = std::fs::read_to_string(dir.join(DAMAGED_MARKER)) {
            return Err(QueueError::Damaged {
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
            // sled would quietly start an empty database beside its
            // snapshot: the queue would be gone without a word.
            return Err(QueueError::Damaged {
                dir: dir.clone(),
                detail: format!("{} is missing", db_path.join("db").display()),
            });
        }
        remove_interrupted_snapshots(&dir.join("db")).map_err(io)?;
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
                QueueError::Locked {
                    dir: dir.clone(),
                    lock: dir.join("db"),
                }
            }
            sled::Error::Corruption { .. } => QueueError::Damaged {
                dir: dir.clone(),
                detail: "sled found corrupted data while opening it".into(),
            },
            _ => QueueError::Open {
                dir: dir.clone(),
                source,
            },
        })?;
        let created_by = concat!("tjfwd ", env!("CARGO_PKG_VERSION"));
        migrations::migrate(&db, created_by).map_err(|source| match source {
            MigrationError::Corrupt(detail) => QueueError::Damaged {
                dir: dir.clone(),
                detail,
            },
            MigrationError::Sled(sled::Error::Corruption { .. }) => QueueError::Damaged {
                dir: dir.clone(),
                detail: "sled found corrupted data while reading its metadata".into(),
            },
            source => QueueError::Schema {
                dir: dir.clone(),
                source,
            },
        })?;
        let meta = db.open_tree(trees::META)?;
        let now =
            v1::decode_u64("meta/next_seq", meta.get(meta_keys::NEXT_SEQ)?.as_deref()).unwrap_or(0);
        if let Some(detail) = seal_says_older(&dir, now) {
            return Err(QueueError::Damaged {
                dir: dir.clone(),
                detail,
            });
        }
        Ok(Queue {
            meta,
            pending: db.open_tree(trees::PENDING)?,
            order: db.open_tree(trees::ORDER)?,
            reported: db.open_tree(trees::REPORTED)?,
            expiry: db.open_tree(trees::EXPIRY)?,
            dead: db.open_tree(trees::DEAD)?,
            checkpoints: db.open_tree(trees::CHECKPOINTS)?,
            db,
            dir,
            policy,
            _lock: lock,
            sealed_at_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a chunk of sightings and, in the same transaction, records the
    /// input checkpoint that follows them.
    pub fn enqueue(
        &self,
        sightings: &[Sighting],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, QueueError> {
        let folded = fold(sightings);
        self.enqueue_folded(&folded, checkpoint, now_ms)
    }

    /// [`Queue::enqueue`] of sightings already folded by [`fold`] (or
    /// merged like it: each address once).
    pub fn enqueue_folded(
        &self,
        folded: &[Folded],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, QueueError> {
        self.enqueue_inner(folded, None, checkpoint, now_ms)
    }

    /// [`Queue::enqueue_folded`] of entries held back since `queued_at[i]`
    /// (one time per entry): an address this queues gets that time as its
    /// `queued_at_ms`, as if it had been written then (`tjfwd replay`
    /// writes new addresses once, after folding their later sightings).
    pub fn enqueue_folded_at(
        &self,
        folded: &[Folded],
        queued_at: &[u64],
        now_ms: u64,
    ) -> Result<EnqueueOutcome, QueueError> {
        assert_eq!(folded.len(), queued_at.len(), "one queued_at per entry");
        self.enqueue_inner(folded, Some(queued_at), None, now_ms)
    }

    fn enqueue_inner(
        &self,
        folded: &[Folded],
        queued_at: Option<&[u64]>,
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, QueueError> {
        let keys: Vec<Vec<u8>> = folded.iter().map(|f| v1::addr_key(f.addr)).collect();
        let ckpt = checkpoint.map(|(id, c)| (v1::checkpoint_key(id), v1::encode(c)));
        let policy = self.policy;
        (
            &self.meta,
            &self.pending,
            &self.order,
            &self.reported,
            &self.dead,
            &self.checkpoints,
        )
            .transaction(|(meta, pending, order, reported, dead, checkpoints)| {
                let mut out = EnqueueOutcome::default();
                let first_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                // The addresses this call queues, in order: they make the
                // groups `first_seq`, `first_seq + 1`... of GROUP_MAX each.
                let mut queued: Vec<&[u8]> = Vec::new();
                for (i, (key, f)) in keys.iter().zip(folded).enumerate() {
                    let (first, last, hits) = (f.first_seen_ms, f.last_seen_ms, f.hits);
                    if let Some(mut p) = tx_get_pending(pending, key)? {
                        p.first_seen_ms = p.first_seen_ms.min(first);
                        p.last_seen_ms = p.last_seen_ms.max(last);
                        p.hits += hits;
                        pending.insert(key.as_slice(), v2::encode_pending(&p))?;
                        out.updated += 1;
                        continue;
                    }
                    let is_dead = dead.get(key)?.is_some();
                    let r = || tx_get::<Reported>(reported, "reported", key);
                    match class_unless_pending(is_dead, r, last, policy)? {
                        Class::Dead => out.dead += 1,
                        Class::NotDue => out.already_reported += 1,
                        // (Never `Pending`: that was looked at first.)
                        Class::New | Class::Pending => {
                            let p = Pending {
                                first_seen_ms: first,
                                last_seen_ms: last,
                                hits,
                                seq: first_seq + (queued.len() / GROUP_MAX) as u64,
                                queued_at_ms: queued_at.map_or(now_ms, |q| q[i]),
                            };
                            pending.insert(key.as_slice(), v2::encode_pending(&p))?;
                            queued.push(key);
                            count += 1;
                            out.queued_new += 1;
                        }
                    }
                }
                if !queued.is_empty() {
                    let next_seq = tx_insert_groups(order, first_seq, &queued)?;
                    meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                    meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                }
                if let Some((k, v)) = &ckpt {
                    checkpoints.insert(k.as_slice(), v.as_slice())?;
                }
                Ok(out)
            })
            .map_err(tx_err)
    }

    /// What [`Queue::enqueue_folded`] would do with each entry, without
    /// writing anything (point lookups only). For a caller that holds the
    /// queue alone and writes the entries later (`tjfwd replay`).
    pub fn classify(&self, folded: &[Folded]) -> Result<Vec<Class>, QueueError> {
        folded
            .iter()
            .map(|f| {
                let key = v1::addr_key(f.addr);
                if self.pending.contains_key(&key)? {
                    return Ok(Class::Pending);
                }
                let is_dead = self.dead.contains_key(&key)?;
                let r = || v1::get::<Reported>(&self.reported, "reported", &key);
                Ok(class_unless_pending(
                    is_dead,
                    r,
                    f.last_seen_ms,
                    self.policy,
                )?)
            })
            .collect()
    }

    /// Number of pending addresses (a stored counter, not a scan).
    pub fn pending_count(&self) -> Result<u64, QueueError> {
        Ok(v1::decode_u64(
            "meta/pending_count",
            self.meta.get(meta_keys::PENDING_COUNT)?.as_deref(),
        )?)
    }

    /// Recounts the pending set and stores the count (a scan): the repair
    /// for a counter that disagrees with the tree. Returns the count.
    pub fn repair_pending_count(&self) -> Result<u64, QueueError> {
        let n = self.pending.len() as u64;
        self.meta
            .insert(meta_keys::PENDING_COUNT, &n.to_be_bytes())?;
        Ok(n)
    }

    /// When the oldest pending address was queued.
    pub fn oldest_queued_at(&self) -> Result<Option<u64>, QueueError> {
        for item in self.order.iter() {
            let (_, group) = item?;
            for key in v2::group_members(&group)? {
                if let Some(p) = v2::get_pending(&self.pending, key)? {
                    return Ok(Some(p.queued_at_ms));
                }
            }
        }
        Ok(None)
    }

    /// The oldest pending addresses (at most `n`), oldest first. Nothing is
    /// removed: see [`Queue::ack`].
    pub fn peek_batch(&self, n: usize) -> Result<Vec<BatchItem>, QueueError> {
        self.peek_batch_from(n, QueuePos::default())
    }

    /// [`Queue::peek_batch`] from a place in the queue on (`--dry-run`
    /// shows each address once: it starts after the last one shown).
    pub fn peek_batch_from(&self, n: usize, from: QueuePos) -> Result<Vec<BatchItem>, QueueError> {
        let mut out = Vec::with_capacity(n.min(1024));
        for item in self.order.range(v1::seq_key(from.seq)..) {
            if out.len() >= n {
                break;
            }
            let (seq, group) = item?;
            let seq = u64::from_be_bytes(
                seq.as_ref()
                    .try_into()
                    .map_err(|_| MigrationError::Corrupt("order key is not 8 bytes".into()))?,
            );
            let skip = if seq == from.seq {
                from.index as usize
            } else {
                0
            };
            for (index, key) in v2::group_members(&group)?
                .into_iter()
                .enumerate()
                .skip(skip)
            {
                if out.len() >= n {
                    break;
                }
                let Some(p) = v2::get_pending(&self.pending, key)? else {
                    continue;
                };
                if p.seq != seq {
                    continue;
                }
                out.push(BatchItem {
                    addr: v1::addr_from_key(key)?,
                    seq,
                    index: index as u32,
                    hits: p.hits,
                });
            }
        }
        Ok(out)
    }

    /// Acknowledges a delivered batch sent at `sent_at_ms`: its addresses
    /// enter the reported set with `expires_at = sent_at + ttl` and leave the
    /// pending set — unless a sighting that is due again arrived while the
    /// request was in flight, in which case the address is queued again at
    /// the back so the server resets its TTL once more.
    pub fn ack(&self, items: &[BatchItem], sent_at_ms: u64, now_ms: u64) -> Result<(), QueueError> {
        let policy = self.policy;
        (
            &self.meta,
            &self.pending,
            &self.order,
            &self.reported,
            &self.expiry,
        )
            .transaction(|(meta, pending, order, reported, expiry)| {
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let next_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                let mut leaving = Leaving::new();
                let mut again: Vec<Vec<u8>> = Vec::new();
                for item in items {
                    let key = v1::addr_key(item.addr);
                    let old = tx_get::<Reported>(reported, "reported", &key)?;
                    let r = Reported {
                        first_reported_ms: old.map_or(sent_at_ms, |o| o.first_reported_ms),
                        last_reported_ms: sent_at_ms,
                        expires_at_ms: sent_at_ms.saturating_add(policy.ttl_ms),
                        count: old.map_or(0, |o| o.count) + 1,
                    };
                    if let Some(o) = old {
                        expiry.remove(v1::expiry_key(o.expires_at_ms, &key))?;
                    }
                    reported.insert(key.as_slice(), v1::encode(&r))?;
                    expiry.insert(v1::expiry_key(r.expires_at_ms, &key), &[])?;

                    let Some(mut p) = tx_get_pending(pending, &key)? else {
                        continue;
                    };
                    if p.seq != item.seq {
                        continue;
                    }
                    leaving.entry(p.seq).or_default().push(key.clone());
                    if p.hits > item.hits && is_due(&r, p.last_seen_ms, policy) {
                        p.hits -= item.hits;
                        p.seq = next_seq + (again.len() / GROUP_MAX) as u64;
                        p.queued_at_ms = now_ms;
                        pending.insert(key.as_slice(), v2::encode_pending(&p))?;
                        again.push(key);
                    } else {
                        pending.remove(key.as_slice())?;
                        count = count.saturating_sub(1);
                    }
                }
                tx_leave_groups(order, &leaving)?;
                let again: Vec<&[u8]> = again.iter().map(Vec::as_slice).collect();
                let next_seq = tx_insert_groups(order, next_seq, &again)?;
                meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Moves rejected addresses from the pending set to the dead-letter set.
    pub fn dead_letter(
        &self,
        items: &[BatchItem],
        status: u16,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), QueueError> {
        (&self.meta, &self.pending, &self.order, &self.dead)
            .transaction(|(meta, pending, order, dead)| {
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let mut leaving = Leaving::new();
                for item in items {
                    let key = v1::addr_key(item.addr);
                    let Some(p) = tx_get_pending(pending, &key)? else {
                        continue;
                    };
                    leaving.entry(p.seq).or_default().push(key.clone());
                    pending.remove(key.as_slice())?;
                    count = count.saturating_sub(1);
                    let d = Dead {
                        status,
                        reason: reason.to_owned(),
                        at_ms: now_ms,
                        first_seen_ms: p.first_seen_ms,
                        last_seen_ms: p.last_seen_ms,
                        hits: p.hits,
                    };
                    dead.insert(key.as_slice(), v1::encode(&d))?;
                }
                tx_leave_groups(order, &leaving)?;
                meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Removes up to `limit` reported entries whose TTL ran out before
    /// `now_ms`. Returns how many went.
    pub fn prune_expired(&self, now_ms: u64, limit: usize) -> Result<usize, QueueError> {
        let mut keys = Vec::new();
        for item in self
            .expiry
            .range(..now_ms.to_be_bytes().to_vec())
            .take(limit)
        {
            keys.push(item?.0);
        }
        if keys.is_empty() {
            return Ok(0);
        }
        (&self.reported, &self.expiry)
            .transaction(|(reported, expiry)| {
                for k in &keys {
                    let (at, addr) = v1::split_expiry_key(k).or_else(abort)?;
                    expiry.remove(k.as_ref())?;
                    if let Some(r) = tx_get::<Reported>(reported, "reported", addr)? {
                        if r.expires_at_ms == at {
                            reported.remove(addr)?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(keys.len())
    }

    /// The checkpoint of a file identity.
    pub fn checkpoint(&self, id: &FileId) -> Result<Option<Checkpoint>, QueueError> {
        Ok(v1::get(
            &self.checkpoints,
            "checkpoint",
            &v1::checkpoint_key(id),
        )?)
    }

    /// Stores a checkpoint on its own (e.g. `start_at = "end"`).
    pub fn set_checkpoint(&self, id: &FileId, c: &Checkpoint) -> Result<(), QueueError> {
        self.checkpoints
            .insert(v1::checkpoint_key(id), v1::encode(c))?;
        Ok(())
    }

    /// When the file input first started; set to `now_ms` (and returned as
    /// None) the first time it is asked.
    pub fn input_since(&self, now_ms: u64) -> Result<Option<u64>, QueueError> {
        let old = self.meta.fetch_and_update(meta_keys::INPUT_SINCE, |v| {
            Some(v.map_or_else(|| now_ms.to_be_bytes().to_vec(), |v| v.to_vec()))
        })?;
        match old {
            None => Ok(None),
            Some(v) => Ok(Some(v1::decode_u64("meta/input_since", Some(&v))?)),
        }
    }

    /// Forgets the checkpoint of a file that is gone.
    pub fn remove_checkpoint(&self, id: &FileId) -> Result<(), QueueError> {
        self.checkpoints.remove(v1::checkpoint_key(id))?;
        Ok(())
    }

    /// Every stored checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<(FileId, Checkpoint)>, QueueError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            out.push((v1::file_id_from_key(&k)?, v1::decode("checkpoint", &v)?));
        }
        Ok(out)
    }

    /// Send times of requests within the last `window_ms` (for the rate limit).
    pub fn request_log(&self) -> Result<RequestLog, QueueError> {
        Ok(v1::get(&self.meta, "meta/request_log", meta_keys::REQUEST_LOG)?.unwrap_or_default())
    }

    /// Records a request about to be sent and makes it durable (fsync)
    /// before returning, so that no restart can forget it.
    pub fn record_request(&self, log: &RequestLog) -> Result<(), QueueError> {
        self.meta.insert(meta_keys::REQUEST_LOG, v1::encode(log))?;
        self.flush()
    }

    /// The reporter's health record.
    pub fn health(&self) -> Result<Health, QueueError> {
        Ok(v1::get(&self.meta, "meta/health", meta_keys::HEALTH)?.unwrap_or_default())
    }

    /// Stores the reporter's health record.
    pub fn set_health(&self, h: &Health) -> Result<(), QueueError> {
        self.meta.insert(meta_keys::HEALTH, v1::encode(h))?;
        Ok(())
    }

    /// Queues addresses again on the operator's request (`tjfwd resend`),
    /// whatever their reported or dead-letter state: an address leaves the
    /// dead-letter set and becomes pending (unless it already is). Returns
    /// (queued, already pending).
    pub fn requeue(&self, addrs: &[IpAddr], now_ms: u64) -> Result<(u64, u64), QueueError> {
        let keys: Vec<Vec<u8>> = addrs.iter().map(|a| v1::addr_key(*a)).collect();
        (&self.meta, &self.pending, &self.order, &self.dead)
            .transaction(|(meta, pending, order, dead)| {
                let first_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let mut already = 0;
                let mut queued: Vec<&[u8]> = Vec::new();
                for key in &keys {
                    let d = tx_get::<Dead>(dead, "dead", key)?;
                    dead.remove(key.as_slice())?;
                    if pending.get(key)?.is_some() {
                        already += 1;
                        continue;
                    }
                    let p = Pending {
                        first_seen_ms: d.as_ref().map_or(now_ms, |d| d.first_seen_ms),
                        last_seen_ms: now_ms,
                        hits: d.as_ref().map_or(1, |d| d.hits),
                        seq: first_seq + (queued.len() / GROUP_MAX) as u64,
                        queued_at_ms: now_ms,
                    };
                    pending.insert(key.as_slice(), v2::encode_pending(&p))?;
                    queued.push(key);
                    count += 1;
                }
                let next_seq = tx_insert_groups(order, first_seq, &queued)?;
                meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                Ok((queued.len() as u64, already))
            })
            .map_err(tx_err)
    }

    /// Every entry of the reported set (a scan: for operator commands).
    pub fn reported_entries(
        &self,
    ) -> impl Iterator<Item = Result<(IpAddr, Reported), QueueError>> + '_ {
        self.reported.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v1::decode("reported", &v)?))
        })
    }

    /// Every entry of the pending set, in key order (a scan).
    pub fn pending_entries(
        &self,
    ) -> impl Iterator<Item = Result<(IpAddr, Pending), QueueError>> + '_ {
        self.pending.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v2::decode_pending(&v)?))
        })
    }

    /// Every entry of the dead-letter set (a scan: for operator commands).
    pub fn dead_entries(&self) -> impl Iterator<Item = Result<(IpAddr, Dead), QueueError>> + '_ {
        self.dead.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v1::decode("dead", &v)?))
        })
    }

    /// Number of entries in the reported set (a scan: not for hot paths).
    pub fn reported_count(&self) -> usize {
        self.reported.len()
    }

    /// Number of dead-lettered addresses (a scan: not for hot paths).
    pub fn dead_count(&self) -> usize {
        self.dead.len()
    }

    /// The reported entry of an address.
    pub fn reported(&self, addr: IpAddr) -> Result<Option<Reported>, QueueError> {
        Ok(v1::get(&self.reported, "reported", &v1::addr_key(addr))?)
    }

    /// The pending entry of an address.
    pub fn pending(&self, addr: IpAddr) -> Result<Option<Pending>, QueueError> {
        Ok(v2::get_pending(&self.pending, &v1::addr_key(addr))?)
    }

    /// The dead-letter entry of an address.
    pub fn dead(&self, addr: IpAddr) -> Result<Option<Dead>, QueueError> {
        Ok(v1::get(&self.dead, "dead", &v1::addr_key(addr))?)
    }

    /// The next sequence number of the `order` tree.
    pub fn next_seq(&self) -> Result<u64, QueueError> {
        Ok(v1::decode_u64(
            "meta/next_seq",
            self.meta.get(meta_keys::NEXT_SEQ)?.as_deref(),
        )?)
    }

    /// Sets when the file input first started (`tjfwd recover`: 0, so that
    /// every retained rotated file is read).
    pub fn set_input_since(&self, ms: u64) -> Result<(), QueueError> {
        self.meta
            .insert(meta_keys::INPUT_SINCE, &ms.to_be_bytes())?;
        Ok(())
    }

    /// Puts back a reported entry salvaged from a damaged database (with its
    /// expiry key), unless a later one is already there.
    pub fn restore_reported(&self, addr: IpAddr, r: &Reported) -> Result<(), QueueError> {
        let key = v1::addr_key(addr);
        (&self.reported, &self.expiry)
            .transaction(|(reported, expiry)| {
                if let Some(old) = tx_get::<Reported>(reported, "reported", &key)? {
                    if old.last_reported_ms >= r.last_reported_ms {
                        return Ok(());
                    }
                    expiry.remove(v1::expiry_key(old.expires_at_ms, &key))?;
                }
                reported.insert(key.as_slice(), v1::encode(r))?;
                expiry.insert(v1::expiry_key(r.expires_at_ms, &key), &[])?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Puts back a dead-letter entry salvaged from a damaged database.
    pub fn restore_dead(&self, addr: IpAddr, d: &Dead) -> Result<(), QueueError> {
        self.dead.insert(v1::addr_key(addr), v1::encode(d))?;
        Ok(())
    }

    /// Reads every record of every tree and checks that the trees agree
    /// with each other and with the stored counters (a full scan: for
    /// `tjfwd recover --check`, not for hot paths).
    pub fn verify(&self) -> Verified {
        self.verify_until(&std::sync::atomic::AtomicBool::new(false), true)
    }

    /// [`Queue::verify`], giving up (with `complete: false`) once `stop` is
    /// set. Without `cross_check`, only whether every record reads back and
    /// decodes: the trees are not checked against each other, which is only
    /// meaningful while nothing writes (sled's iterators see each tree as it
    /// changes, not a snapshot of all of them).
    pub fn verify_until(
        &self,
        stop: &std::sync::atomic::AtomicBool,
        cross_check: bool,
    ) -> Verified {
        let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
        let mut v = Verified::default();
        let problem = |v: &mut Verified, what: String| {
            v.problems += 1;
            if v.details.len() < 20 {
                v.details.push(what);
            }
        };
        let count = self
            .meta
            .get(meta_keys::PENDING_COUNT)
            .map_err(QueueError::from)
            .and_then(|b| Ok(v1::decode_u64("meta/pending_count", b.as_deref())?));
        let next_seq = self
            .meta
            .get(meta_keys::NEXT_SEQ)
            .map_err(QueueError::from)
            .and_then(|b| Ok(v1::decode_u64("meta/next_seq", b.as_deref())?));
        for (name, r) in [
            ("request log", self.request_log().map(drop)),
            ("health record", self.health().map(drop)),
        ] {
            if let Err(e) = r {
                problem(&mut v, format!("{name}: {e}"));
            }
        }
        let mut max_seq = None::<u64>;
        for item in self.pending.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(QueueError::from).and_then(|(k, val)| {
                v1::addr_from_key(&k)?;
                Ok(v2::decode_pending(&val)?)
            });
            match checked {
                Ok(p) => {
                    v.pending += 1;
                    max_seq = max_seq.max(Some(p.seq));
                }
                Err(e) => {
                    problem(&mut v, format!("pending tree: {e}"));
                    break;
                }
            }
        }
        // Every address a group lists must be pending with the group's
        // sequence, once. With as many listed as pending, that makes each
        // pending address listed exactly once, in the group its `seq` names.
        let mut orders = 0u64;
        for item in self.order.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(QueueError::from).and_then(|(k, group)| {
                let seq = v1::decode_u64("order key", Some(&k))?;
                let members: Vec<Vec<u8>> = v2::group_members(&group)?
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                Ok((seq, members))
            });
            let (seq, members) = match checked {
                Ok(g) => g,
                Err(e) => {
                    problem(&mut v, format!("order tree: {e}"));
                    break;
                }
            };
            orders += members.len() as u64;
            max_seq = max_seq.max(Some(seq));
            if !cross_check {
                continue;
            }
            let mut seen = std::collections::HashSet::with_capacity(members.len());
            for key in &members {
                let addr = v1::addr_from_key(key).map_or_else(|e| e.to_string(), |a| a.to_string());
                if !seen.insert(key.as_slice()) {
                    problem(&mut v, format!("order group {seq} lists {addr} twice"));
                    continue;
                }
                match v2::get_pending(&self.pending, key) {
                    Ok(Some(p)) if p.seq == seq => {}
                    Ok(Some(p)) => problem(
                        &mut v,
                        format!(
                            "order group {seq} lists {addr}, which is pending in group {}",
                            p.seq
                        ),
                    ),
                    Ok(None) => problem(
                        &mut v,
                        format!("order group {seq} lists {addr}, which is not pending"),
                    ),
                    Err(e) => problem(&mut v, format!("pending {addr}: {e}")),
                }
            }
        }
        let count = count.map_err(|e| problem(&mut v, e.to_string())).ok();
        let next_seq = next_seq.map_err(|e| problem(&mut v, e.to_string())).ok();
        // (online, the trees and counters may have moved on between reads)
        if cross_check {
            let mut mismatches = Vec::new();
            if orders != v.pending {
                mismatches.push(format!(
                    "{orders} addresses in order groups for {} pending addresses",
                    v.pending
                ));
            }
            if let Some(c) = count.filter(|c| *c != v.pending) {
                mismatches.push(format!(
                    "pending counter says {c}, the tree holds {}",
                    v.pending
                ));
            }
            if let Some(n) = next_seq.filter(|n| max_seq.is_some_and(|m| m >= *n)) {
                mismatches.push(format!("next sequence {n} is not above {max_seq:?}"));
            }
            for m in mismatches {
                problem(&mut v, m);
            }
        }
        for item in self.reported_entries() {
            if stopped() {
                return v;
            }
            match item {
                Ok(_) => v.reported += 1,
                Err(e) => {
                    problem(&mut v, format!("reported tree: {e}"));
                    break;
                }
            }
        }
        for item in self.expiry.iter() {
            if let Err(e) = item
                .map_err(QueueError::from)
                .and_then(|(k, _)| Ok(v1::split_expiry_key(&k).map(drop)?))
            {
                problem(&mut v, format!("expiry tree: {e}"));
                break;
            }
        }
        for item in self.dead_entries() {
            match item {
                Ok(_) => v.dead += 1,
                Err(e) => {
                    problem(&mut v, format!("dead-letter tree: {e}"));
                    break;
                }
            }
        }
        match self.checkpoints() {
            Ok(c) => v.checkpoints = c.len() as u64,
            Err(e) => problem(&mut v, format!("checkpoints: {e}")),
        }
        v.complete = true;
        v
    }

    /// Writes everything to disk (fsync).
    pub fn flush(&self) -> Result<(), QueueError> {
        // The counter is read before the fsync, so the seal never claims
        // more than what is on disk.
        let next_seq = self.meta.get(meta_keys::NEXT_SEQ)?;
        self.db.flush()?;
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
}

/// Where a sighting of an address that is not pending goes: the one rule
/// of [`Queue::enqueue_folded`] and [`Queue::classify`] (never
/// [`Class::Pending`]). The reported entry is only read when the address
/// is not dead-lettered.
fn class_unless_pending<E>(
    is_dead: bool,
    reported: impl FnOnce() -> Result<Option<Reported>, E>,
    last_seen_ms: u64,
    policy: Policy,
) -> Result<Class, E> {
    if is_dead {
        return Ok(Class::Dead);
    }
    Ok(match reported()? {
        Some(r) if !is_due(&r, last_seen_ms, policy) => Class::NotDue,
        _ => Class::New,
    })
}

/// Whether a sighting at `seen_ms` of a reported address should queue it
/// again: it must come after the last report, and at least
/// `rereport_after` after it.
fn is_due(r: &Reported, seen_ms: u64, policy: Policy) -> bool {
    seen_ms > r.last_reported_ms
        && seen_ms >= r.last_reported_ms.saturating_add(policy.rereport_after_ms)
}

/// The file, in the state directory, holding the queue's sequence counter as
/// of its last fsync. sled treats a cut-off log as a torn write and opens the
/// database as it was before the cut, without a word; a counter below the
/// seal's shows that committed data is gone.
pub const SEAL: &str = "tjfwd.seal";

fn write_seal(dir: &Path, next_seq: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{SEAL}.tmp"));
    std::fs::write(&tmp, format!("next_seq {next_seq}\n"))?;
    std::fs::rename(&tmp, dir.join(SEAL))
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
    let tmp = state_dir.join(format!("{DAMAGED_MARKER}.tmp"));
    std::fs::write(&tmp, format!("{detail}\n"))?;
    std::fs::rename(&tmp, state_dir.join(DAMAGED_MARKER))
}

/// Creates the state directory (0700) if needed and takes its lock
/// (`tjfwd.lock`), held as long as the returned file is open.
pub fn lock_state_dir(state_dir: &Path) -> Result<File, QueueError> {
    let dir = state_dir.to_path_buf();
    let io = |source| QueueError::StateDir {
        dir: dir.clone(),
        source,
    };
    create_private_dir(&dir).map_err(io)?;
    crate::permissions::check_state_dir(&dir).map_err(QueueError::Unsafe)?;
    let lock_path = dir.join("tjfwd.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(QueueError::Locked {
            dir: dir.clone(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Creates `dir` (and parents) with mode 0700 for the last component.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 86_400_000;

    fn open(dir: &Path) -> Queue {
        Queue::open(
            dir,
            8 << 20,
            Policy {
                ttl_ms: TTL,
                rereport_after_ms: 0,
            },
        )
        .unwrap()
    }

    fn s(ip: &str, t: u64) -> Sighting {
        Sighting {
            addr: ip.parse().unwrap(),
            seen_ms: t,
        }
    }

    #[test]
    fn enqueue_dedupes_and_counts() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        let out = q
            .enqueue(
                &[s("1.1.1.1", 10), s("1.1.1.1", 20), s("2.2.2.2", 15)],
                None,
                100,
            )
            .unwrap();
        assert_eq!(out.queued_new, 2);
        let out = q.enqueue(&[s("1.1.1.1", 30)], None, 200).unwrap();
        assert_eq!(out.updated, 1);
        assert_eq!(q.pending_count().unwrap(), 2);
        let p = q.pending("1.1.1.1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (p.first_seen_ms, p.last_seen_ms, p.hits, p.queued_at_ms),
            (10, 30, 3, 100)
        );
        assert_eq!(q.oldest_queued_at().unwrap(), Some(100));
    }

    #[test]
    fn batches_are_fifo_and_ack_moves_to_reported() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        for i in 0..10u8 {
            q.enqueue(&[s(&format!("5.5.5.{i}"), 1)], None, u64::from(i))
                .unwrap();
        }
        let b = q.peek_batch(4).unwrap();
        let got: Vec<String> = b.iter().map(|i| i.addr.to_string()).collect();
        assert_eq!(got, ["5.5.5.0", "5.5.5.1", "5.5.5.2", "5.5.5.3"]);
        q.ack(&b, 1000, 1001).unwrap();
        assert_eq!(q.pending_count().unwrap(), 6);
        let r = q.reported("5.5.5.0".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (r.last_reported_ms, r.expires_at_ms, r.count),
            (1000, 1000 + TTL, 1)
        );
        assert_eq!(q.peek_batch(100).unwrap().len(), 6);
        assert_eq!(q.oldest_queued_at().unwrap(), Some(4));
        // A second ack of the same items is harmless.
        q.ack(&b, 1000, 1001).unwrap();
        assert_eq!(q.pending_count().unwrap(), 6);
    }

    #[test]
    fn resighting_after_report_requeues_but_older_does_not() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("9.9.9.9", 10)], None, 10).unwrap();
        let b = q.peek_batch(10).unwrap();
        q.ack(&b, 1000, 1000).unwrap();
        let out = q.enqueue(&[s("9.9.9.9", 999)], None, 1001).unwrap();
        assert_eq!(out.already_reported, 1);
        assert_eq!(q.pending_count().unwrap(), 0);
        let out = q.enqueue(&[s("9.9.9.9", 1001)], None, 1001).unwrap();
        assert_eq!(out.queued_new, 1);
        let b = q.peek_batch(10).unwrap();
        q.ack(&b, 2000, 2000).unwrap();
        let r = q.reported("9.9.9.9".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (r.first_reported_ms, r.last_reported_ms, r.count),
            (1000, 2000, 2)
        );
        // Exactly one expiry entry: pruning before the new expiry removes nothing.
        assert_eq!(q.prune_expired(1000 + TTL + 1, 100).unwrap(), 0);
        assert_eq!(q.prune_expired(2000 + TTL + 1, 100).unwrap(), 1);
        assert!(q.reported("9.9.9.9".parse().unwrap()).unwrap().is_none());
    }

    #[test]
    fn rereport_after_thins_out_resightings() {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::open(
            d.path(),
            8 << 20,
            Policy {
                ttl_ms: TTL,
                rereport_after_ms: 500,
            },
        )
        .unwrap();
        q.enqueue(&[s("9.9.9.9", 10)], None, 10).unwrap();
        q.ack(&q.peek_batch(10).unwrap(), 1000, 1000).unwrap();
        assert_eq!(
            q.enqueue(&[s("9.9.9.9", 1499)], None, 0)
                .unwrap()
                .already_reported,
            1
        );
        assert_eq!(
            q.enqueue(&[s("9.9.9.9", 1500)], None, 0)
                .unwrap()
                .queued_new,
            1
        );
    }

    #[test]
    fn sighting_during_flight_keeps_the_address_pending() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("7.7.7.7", 10), s("8.8.4.4", 10)], None, 10)
            .unwrap();
        let b = q.peek_batch(10).unwrap();
        // Sent at 1000; a new sighting at 1500 arrives before the ack.
        q.enqueue(&[s("7.7.7.7", 1500)], None, 1500).unwrap();
        q.ack(&b, 1000, 2000).unwrap();
        assert_eq!(q.pending_count().unwrap(), 1);
        let p = q.pending("7.7.7.7".parse().unwrap()).unwrap().unwrap();
        assert_eq!((p.hits, p.queued_at_ms), (1, 2000));
        assert_eq!(q.peek_batch(10).unwrap().len(), 1);
    }

    #[test]
    fn dead_letter_removes_and_blocks_requeue() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("6.6.6.6", 1), s("4.4.4.4", 1)], None, 1)
            .unwrap();
        let b = q.peek_batch(10).unwrap();
        let bad: Vec<_> = b
            .iter()
            .filter(|i| i.addr.to_string() == "6.6.6.6")
            .cloned()
            .collect();
        q.dead_letter(&bad, 422, "invalid address", 5).unwrap();
        assert_eq!(q.pending_count().unwrap(), 1);
        let dl = q.dead("6.6.6.6".parse().unwrap()).unwrap().unwrap();
        assert_eq!((dl.status, dl.reason.as_str()), (422, "invalid address"));
        assert_eq!(q.enqueue(&[s("6.6.6.6", 9)], None, 9).unwrap().dead, 1);
    }

    #[test]
    fn checkpoint_commits_with_the_chunk_and_state_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let id = FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        {
            let q = open(d.path());
            let c = Checkpoint {
                path: "/x".into(),
                offset: 77,
                updated_at_ms: 1,
            };
            q.enqueue(&[s("1.0.0.1", 1)], Some((&id, &c)), 1).unwrap();
            q.record_request(&RequestLog {
                sent_at_ms: vec![5, 6],
            })
            .unwrap();
            q.flush().unwrap();
        }
        let q = open(d.path());
        assert_eq!(q.checkpoint(&id).unwrap().unwrap().offset, 77);
        assert_eq!(q.checkpoints().unwrap().len(), 1);
        assert_eq!(q.pending_count().unwrap(), 1);
        assert_eq!(q.request_log().unwrap().sent_at_ms, vec![5, 6]);
    }

    #[test]
    fn verify_compares_the_trees_offline_only() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        q.enqueue(&[s("1.2.3.4", 5), s("5.6.7.8", 6)], None, 10)
            .unwrap();
        assert_eq!(q.verify().problems, 0);
        assert!(q.verify().complete);
        // A pending entry lost without its order entry and counter.
        q.pending
            .remove(v1::addr_key("1.2.3.4".parse().unwrap()))
            .unwrap();
        let v = q.verify();
        assert_eq!(v.problems, 3, "{:?}", v.details);
        assert!(
            v.details
                .iter()
                .any(|d| d.contains("2 addresses in order groups for 1 pending")),
            "{:?}",
            v.details
        );
        let online = q.verify_until(&std::sync::atomic::AtomicBool::new(false), false);
        assert_eq!(online.problems, 0, "{:?}", online.details);
        assert_eq!(online.pending, 1);
    }

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
        let policy = Policy {
            ttl_ms: TTL,
            rereport_after_ms: 0,
        };
        match Queue::open(dir.path(), 8 << 20, policy) {
            Err(QueueError::Damaged { detail, .. }) => {
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
        let err = Queue::open(
            d.path(),
            8 << 20,
            Policy {
                ttl_ms: 1,
                rereport_after_ms: 0,
            },
        )
        .unwrap_err();
        assert!(matches!(err, QueueError::Locked { .. }));
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

    /// A batch taken across and inside groups: acknowledging part of a
    /// group leaves the rest queued in order; the dry-run cursor resumes
    /// inside a group; more than GROUP_MAX new addresses make several groups.
    #[test]
    fn groups_keep_fifo_order_through_partial_acks() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        let addr = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        let first: Vec<Sighting> = (0..2500)
            .map(|i| Sighting {
                addr: addr(i),
                seen_ms: 1,
            })
            .collect();
        assert_eq!(q.enqueue(&first, None, 10).unwrap().queued_new, 2500);
        assert_eq!(
            q.next_seq().unwrap(),
            3,
            "2500 addresses: groups of 1000, 1000, 500"
        );
        q.enqueue(
            &[Sighting {
                addr: addr(9000),
                seen_ms: 1,
            }],
            None,
            11,
        )
        .unwrap();
        let b = q.peek_batch(1200).unwrap();
        assert_eq!(b.len(), 1200);
        assert!(b
            .iter()
            .enumerate()
            .all(|(i, item)| item.addr == addr(i as u32)));
        assert_eq!(
            (b[999].seq, b[999].index, b[1000].seq, b[1000].index),
            (0, 999, 1, 0)
        );
        // The dry-run cursor, from inside group 1.
        let rest = q.peek_batch_from(5000, b[1099].next_pos()).unwrap();
        assert_eq!(rest.len(), 1401);
        assert_eq!(
            (rest[0].addr, rest[0].seq, rest[0].index),
            (addr(1100), 1, 100)
        );
        assert_eq!(rest.last().unwrap().addr, addr(9000));
        // Acknowledge every other address of the batch.
        let acked: Vec<BatchItem> = b.iter().step_by(2).cloned().collect();
        q.ack(&acked, 100, 100).unwrap();
        assert_eq!(q.pending_count().unwrap(), 2501 - 600);
        let left = q.peek_batch(5000).unwrap();
        let want: Vec<IpAddr> = (1..1200)
            .step_by(2)
            .chain(1200..2500)
            .map(addr)
            .chain([addr(9000)])
            .collect();
        assert_eq!(left.iter().map(|i| i.addr).collect::<Vec<_>>(), want);
        assert_eq!(q.verify().problems, 0, "{:?}", q.verify().details);
        // Dead-letter the rest of group 0 (odd addresses below 1000): it goes.
        let group0: Vec<BatchItem> = left.iter().filter(|i| i.seq == 0).cloned().collect();
        assert_eq!(group0.len(), 500);
        q.dead_letter(&group0, 422, "bad", 200).unwrap();
        assert!(q.order.get(v1::seq_key(0)).unwrap().is_none());
        assert_eq!(q.oldest_queued_at().unwrap(), Some(10));
        let v = q.verify();
        assert_eq!(
            (v.problems, v.pending, v.dead),
            (0, 1401, 500),
            "{:?}",
            v.details
        );
    }

    mod model {
        //! The queue against a model: a FIFO list and three maps.
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeMap, VecDeque};

        #[derive(Debug, Clone)]
        enum Op {
            /// Sightings (address, time); `big` adds 1,500 new addresses.
            Enqueue(Vec<(u8, u64)>, bool),
            /// Take n; sightings arrive in flight; ack the items `mask` picks.
            Ack(usize, Vec<(u8, u64)>, u64),
            /// Take n; dead-letter the items `mask` picks.
            Dead(usize, u64),
            Requeue(Vec<u8>),
        }

        fn sightings() -> impl Strategy<Value = Vec<(u8, u64)>> {
            proptest::collection::vec((0u8..24, 0u64..5000), 0..16)
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (sightings(), proptest::bool::weighted(0.05)).prop_map(|(s, b)| Op::Enqueue(s, b)),
                3 => (1usize..40, sightings(), any::<u64>()).prop_map(|(n, s, m)| Op::Ack(n, s, m)),
                1 => (1usize..10, any::<u64>()).prop_map(|(n, m)| Op::Dead(n, m)),
                1 => proptest::collection::vec(0u8..24, 0..5).prop_map(Op::Requeue),
            ]
        }

        fn addr(i: u32) -> IpAddr {
            if i % 5 == 4 {
                IpAddr::V6(std::net::Ipv6Addr::from(
                    0x2001_0db8_u128 << 96 | u128::from(i),
                ))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i))
            }
        }

        #[derive(Default)]
        struct Model {
            /// FIFO of pending addresses with (first, last, hits).
            pending: VecDeque<(IpAddr, (u64, u64, u64))>,
            reported: BTreeMap<IpAddr, u64>,
            dead: BTreeMap<IpAddr, (u64, u64)>,
        }

        impl Model {
            fn find(&mut self, a: IpAddr) -> Option<&mut (u64, u64, u64)> {
                self.pending
                    .iter_mut()
                    .find(|(x, _)| *x == a)
                    .map(|(_, e)| e)
            }

            fn enqueue(&mut self, s: &[Sighting]) {
                for f in fold(s) {
                    if let Some(e) = self.find(f.addr) {
                        *e = (
                            e.0.min(f.first_seen_ms),
                            e.1.max(f.last_seen_ms),
                            e.2 + f.hits,
                        );
                    } else if self.dead.contains_key(&f.addr)
                        || self
                            .reported
                            .get(&f.addr)
                            .is_some_and(|r| f.last_seen_ms <= *r)
                    {
                    } else {
                        self.pending
                            .push_back((f.addr, (f.first_seen_ms, f.last_seen_ms, f.hits)));
                    }
                }
            }
        }

        fn to_sightings(v: &[(u8, u64)]) -> Vec<Sighting> {
            v.iter()
                .map(|&(i, t)| Sighting {
                    addr: addr(u32::from(i)),
                    seen_ms: t,
                })
                .collect()
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config(48))]
            #[test]
            fn the_queue_behaves_as_a_fifo_model(ops in proptest::collection::vec(op(), 1..30)) {
                let d = tempfile::tempdir().unwrap();
                let q = open(d.path());
                let mut m = Model::default();
                let mut big = 100u32;
                for (step, op) in ops.iter().enumerate() {
                    let now = 10_000 + step as u64;
                    match op {
                        Op::Enqueue(s, add_big) => {
                            let mut s = to_sightings(s);
                            if *add_big {
                                s.extend((0..1500).map(|i| Sighting { addr: addr(big + i), seen_ms: 7 }));
                                big += 1500;
                            }
                            q.enqueue(&s, None, now).unwrap();
                            m.enqueue(&s);
                        }
                        Op::Ack(n, flight, mask) => {
                            let b = q.peek_batch(*n).unwrap();
                            let flight = to_sightings(flight);
                            q.enqueue(&flight, None, now).unwrap();
                            m.enqueue(&flight);
                            let picked: Vec<BatchItem> = b.iter().enumerate()
                                .filter(|(i, _)| mask >> (i % 64) & 1 == 1).map(|(_, x)| x.clone()).collect();
                            q.ack(&picked, now, now).unwrap();
                            for item in &picked {
                                m.reported.insert(item.addr, now);
                                let i = m.pending.iter().position(|(x, _)| *x == item.addr).unwrap();
                                let (a, (first, last, hits)) = m.pending.remove(i).unwrap();
                                if hits > item.hits && last > now {
                                    m.pending.push_back((a, (first, last, hits - item.hits)));
                                }
                            }
                        }
                        Op::Dead(n, mask) => {
                            let b = q.peek_batch(*n).unwrap();
                            let picked: Vec<BatchItem> = b.iter().enumerate()
                                .filter(|(i, _)| mask >> (i % 64) & 1 == 1).map(|(_, x)| x.clone()).collect();
                            q.dead_letter(&picked, 422, "x", now).unwrap();
                            for item in &picked {
                                let i = m.pending.iter().position(|(x, _)| *x == item.addr).unwrap();
                                let (a, (first, _, hits)) = m.pending.remove(i).unwrap();
                                m.dead.insert(a, (first, hits));
                            }
                        }
                        Op::Requeue(list) => {
                            let addrs: Vec<IpAddr> = list.iter().map(|&i| addr(u32::from(i))).collect();
                            q.requeue(&addrs, now).unwrap();
                            for a in addrs {
                                let d = m.dead.remove(&a);
                                if m.find(a).is_none() {
                                    let (first, hits) = d.unwrap_or((now, 1));
                                    m.pending.push_back((a, (first, now, hits)));
                                }
                            }
                        }
                    }
                    let v = q.verify();
                    prop_assert_eq!(v.problems, 0, "after {:?}: {:?}", op, v.details);
                    prop_assert_eq!(q.pending_count().unwrap(), m.pending.len() as u64);
                    let all = q.peek_batch(usize::MAX).unwrap();
                    let got: Vec<(IpAddr, u64)> = all.iter().map(|i| (i.addr, i.hits)).collect();
                    let want: Vec<(IpAddr, u64)> = m.pending.iter().map(|(a, e)| (*a, e.2)).collect();
                    prop_assert_eq!(got, want, "after {:?}", op);
                    for (a, (first, last, _)) in &m.pending {
                        let p = q.pending(*a).unwrap().unwrap();
                        prop_assert_eq!((p.first_seen_ms, p.last_seen_ms), (*first, *last));
                    }
                }
            }
        }
    }
}
