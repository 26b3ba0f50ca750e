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
use std::net::IpAddr;
use std::path::PathBuf;

use migrations::v1::{self, Checkpoint, Dead, FileId, Health, Pending, Reported, RequestLog};
use migrations::v2::{self, GROUP_MAX};
use migrations::{meta_keys, MigrationError};
use sled::transaction::{abort, TransactionalTree};
use sled::Transactional;

use tx::{tx_counter, tx_err, tx_get, tx_get_pending, TxResult};

mod inputs;
mod open;
mod tx;
mod verify;

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

/// One sighting of an address, ready to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// Normalized, filtered address.
    pub addr: IpAddr,
    /// Event time (ms since the epoch).
    pub seen_ms: u64,
}

/// The sightings of one address in a chunk, folded: what
/// [`Store::enqueue`] stores of them.
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

/// What an [`Store::enqueue`] did with its sightings (distinct addresses).
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

/// Where a sighting would go ([`Store::classify`]), as counted in
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

impl Store {
    /// Queues a chunk of sightings and, in the same transaction, records the
    /// input checkpoint that follows them.
    pub fn enqueue(
        &self,
        sightings: &[Sighting],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let folded = fold(sightings);
        self.enqueue_folded(&folded, checkpoint, now_ms)
    }

    /// [`Store::enqueue`] of sightings already folded by [`fold`] (or
    /// merged like it: each address once).
    pub fn enqueue_folded(
        &self,
        folded: &[Folded],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        self.enqueue_inner(folded, None, checkpoint, now_ms)
    }

    /// [`Store::enqueue_folded`] of entries held back since `queued_at[i]`
    /// (one time per entry): an address this queues gets that time as its
    /// `queued_at_ms`, as if it had been written then (`tjfwd replay`
    /// writes new addresses once, after folding their later sightings).
    pub fn enqueue_folded_at(
        &self,
        folded: &[Folded],
        queued_at: &[u64],
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        assert_eq!(folded.len(), queued_at.len(), "one queued_at per entry");
        self.enqueue_inner(folded, Some(queued_at), None, now_ms)
    }

    fn enqueue_inner(
        &self,
        folded: &[Folded],
        queued_at: Option<&[u64]>,
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
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

    /// What [`Store::enqueue_folded`] would do with each entry, without
    /// writing anything (point lookups only). For a caller that holds the
    /// queue alone and writes the entries later (`tjfwd replay`).
    pub fn classify(&self, folded: &[Folded]) -> Result<Vec<Class>, StoreError> {
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
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        Ok(v1::decode_u64(
            "meta/pending_count",
            self.meta.get(meta_keys::PENDING_COUNT)?.as_deref(),
        )?)
    }

    /// When the oldest pending address was queued.
    pub fn oldest_queued_at(&self) -> Result<Option<u64>, StoreError> {
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
    /// removed: see [`Store::ack`].
    pub fn peek_batch(&self, n: usize) -> Result<Vec<BatchItem>, StoreError> {
        self.peek_batch_from(n, QueuePos::default())
    }

    /// [`Store::peek_batch`] from a place in the queue on (`--dry-run`
    /// shows each address once: it starts after the last one shown).
    pub fn peek_batch_from(&self, n: usize, from: QueuePos) -> Result<Vec<BatchItem>, StoreError> {
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
    pub fn ack(&self, items: &[BatchItem], sent_at_ms: u64, now_ms: u64) -> Result<(), StoreError> {
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
    ) -> Result<(), StoreError> {
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
    pub fn prune_expired(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
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

    /// Send times of requests within the last `window_ms` (for the rate limit).
    pub fn request_log(&self) -> Result<RequestLog, StoreError> {
        Ok(v1::get(&self.meta, "meta/request_log", meta_keys::REQUEST_LOG)?.unwrap_or_default())
    }

    /// Records a request about to be sent and makes it durable (fsync)
    /// before returning, so that no restart can forget it.
    pub fn record_request(&self, log: &RequestLog) -> Result<(), StoreError> {
        self.meta.insert(meta_keys::REQUEST_LOG, v1::encode(log))?;
        self.flush()
    }

    /// The reporter's health record.
    pub fn health(&self) -> Result<Health, StoreError> {
        Ok(v1::get(&self.meta, "meta/health", meta_keys::HEALTH)?.unwrap_or_default())
    }

    /// Stores the reporter's health record.
    pub fn set_health(&self, h: &Health) -> Result<(), StoreError> {
        self.meta.insert(meta_keys::HEALTH, v1::encode(h))?;
        Ok(())
    }

    /// Queues addresses again on the operator's request (`tjfwd resend`),
    /// whatever their reported or dead-letter state: an address leaves the
    /// dead-letter set and becomes pending (unless it already is). Returns
    /// (queued, already pending).
    pub fn requeue(&self, addrs: &[IpAddr], now_ms: u64) -> Result<(u64, u64), StoreError> {
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
    ) -> impl Iterator<Item = Result<(IpAddr, Reported), StoreError>> + '_ {
        self.reported.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v1::decode("reported", &v)?))
        })
    }

    /// Every entry of the pending set, in key order (a scan).
    pub fn pending_entries(
        &self,
    ) -> impl Iterator<Item = Result<(IpAddr, Pending), StoreError>> + '_ {
        self.pending.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v2::decode_pending(&v)?))
        })
    }

    /// Every entry of the dead-letter set (a scan: for operator commands).
    pub fn dead_entries(&self) -> impl Iterator<Item = Result<(IpAddr, Dead), StoreError>> + '_ {
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
    pub fn reported(&self, addr: IpAddr) -> Result<Option<Reported>, StoreError> {
        Ok(v1::get(&self.reported, "reported", &v1::addr_key(addr))?)
    }

    /// The pending entry of an address.
    pub fn pending(&self, addr: IpAddr) -> Result<Option<Pending>, StoreError> {
        Ok(v2::get_pending(&self.pending, &v1::addr_key(addr))?)
    }

    /// The dead-letter entry of an address.
    pub fn dead(&self, addr: IpAddr) -> Result<Option<Dead>, StoreError> {
        Ok(v1::get(&self.dead, "dead", &v1::addr_key(addr))?)
    }

    /// Puts back a reported entry salvaged from a damaged database (with its
    /// expiry key), unless a later one is already there.
    pub fn restore_reported(&self, addr: IpAddr, r: &Reported) -> Result<(), StoreError> {
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
    pub fn restore_dead(&self, addr: IpAddr, d: &Dead) -> Result<(), StoreError> {
        self.dead.insert(v1::addr_key(addr), v1::encode(d))?;
        Ok(())
    }
}

/// Where a sighting of an address that is not pending goes: the one rule
/// of [`Store::enqueue_folded`] and [`Store::classify`] (never
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

#[cfg(test)]
mod tests;
