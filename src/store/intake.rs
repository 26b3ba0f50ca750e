//! Intake: the sightings of attacker addresses that the inputs hand over,
//! folded per address ([`fold`]) and placed in one transaction per chunk.
//!
//! Each distinct address of a chunk is placed, for each served target, by
//! one rule ([`class_unless_pending`], for both [`Store::enqueue`] and
//! [`Store::classify`]), and counted once in [`EnqueueOutcome`]:
//!
//! - already pending (some target owes it): its entry is updated (earliest
//!   first sighting, latest last sighting, hits added), and any other
//!   target that takes it now owes it too;
//! - for each target that does not owe it yet: dead-lettered there, not
//!   queued; reported there and this sighting not due again (not after the
//!   last report, or within the target's `rereport_after` of it): not
//!   queued; otherwise that target owes it, at the back of its FIFO, in
//!   order of first appearance;
//! - not pending and queued by no target: its last sighting is kept for
//!   the denylist (`seen`, in the same transaction: `denylist.rs`).
//!
//! Invariants:
//!
//! - A chunk's sightings and the input checkpoint that follows them are one
//!   transaction: after a crash a line is either queued and passed, or
//!   neither.
//! - The addresses one call queues for a target share its `order` groups:
//!   one sequence number and one `order` entry for up to `GROUP_MAX` of
//!   them; the targets' groups of one call share their sequence numbers.
//! - [`Store::pending_count`] (addresses some target owes) is a stored
//!   counter, not a scan: the inputs' backpressure (`[queue] max_pending`)
//!   reads it on every chunk.

use std::net::IpAddr;

use migrations::meta_keys;
use migrations::v1::{self, Checkpoint, FileId, Reported};
use migrations::v2::GROUP_MAX;
use migrations::v3::{self, Intake, Owed};
use sled::Transactional;

use super::delivery::{is_due, tx_insert_groups};
use super::denylist::tx_note_seen;
use super::tx::{tx_counter, tx_err, tx_get, tx_get_intake, TargetCounts};
use super::{Policy, Store, StoreError};

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
/// [`EnqueueOutcome`]. Across targets: `New` if any target takes it, else
/// `NotDue` if any target reported it recently, else `Dead` (declared in
/// that order of precedence, from `Dead` up: `max` picks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// The served targets that take an address ([`Store::classify_owed`]): bit
/// `i` is the store's `i`-th served target. Empty unless [`Class::New`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owes(u64);

/// Which of the trees [`Store::targets_taking`] reads hold anything.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lookups {
    dead: bool,
    reported: bool,
}

impl Owes {
    fn with(self, served_index: usize) -> Owes {
        assert!(served_index < 64, "at most 64 targets");
        Owes(self.0 | 1 << served_index)
    }

    pub(super) fn has(self, served_index: usize) -> bool {
        self.0 & (1 << served_index) != 0
    }
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
        self.enqueue_inner(folded, checkpoint, now_ms)
    }

    fn enqueue_inner(
        &self,
        folded: &[Folded],
        checkpoint: Option<(&FileId, &Checkpoint)>,
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let keys: Vec<Vec<u8>> = folded.iter().map(|f| v1::addr_key(f.addr)).collect();
        let ckpt = checkpoint.map(|(id, c)| (v1::checkpoint_key(id), v1::encode(c)));
        let served = &self.served;
        (
            &self.meta,
            &self.targets,
            &self.pending,
            &self.order,
            &self.reported,
            &self.dead,
            &self.checkpoints,
            &self.seen,
            &self.seen_time,
        )
            .transaction(
                |(meta, targets, pending, order, reported, dead, checkpoints, seen, seen_time)| {
                    let mut out = EnqueueOutcome::default();
                    let first_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                    let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                    let mut counts = TargetCounts::default();
                    // Per served target, the addresses this call queues for
                    // it, in order, and when each was queued: they make its
                    // groups `first_seq`, `first_seq + 1`... of GROUP_MAX.
                    let mut queued: Vec<(Vec<&[u8]>, Vec<u64>)> =
                        vec![(Vec::new(), Vec::new()); served.len()];
                    for (key, f) in keys.iter().zip(folded) {
                        let (first, last, hits) = (f.first_seen_ms, f.last_seen_ms, f.hits);
                        let entry = tx_get_intake(pending, key)?;
                        let mut owed_now = Vec::new();
                        let mut class = Class::Dead;
                        for (si, t) in served.iter().enumerate() {
                            if entry.as_ref().is_some_and(|e| e.seq_for(t.id).is_some()) {
                                continue;
                            }
                            let tkey = v3::target_addr_key(t.id, key);
                            let is_dead = dead.get(&tkey)?.is_some();
                            let r = || tx_get::<Reported>(reported, "reported", &tkey);
                            match class_unless_pending(is_dead, r, last, now_ms, t.policy)? {
                                Class::New | Class::Pending => owed_now.push(si),
                                c => class = class.max(c),
                            }
                        }
                        let at = now_ms;
                        let mut owe = |e: &mut Intake| {
                            for &si in &owed_now {
                                let (list, times) = &mut queued[si];
                                e.owed.push(Owed {
                                    target: served[si].id,
                                    seq: first_seq + (list.len() / GROUP_MAX) as u64,
                                });
                                list.push(key.as_slice());
                                times.push(at);
                                counts.add(served[si].id, 1);
                            }
                            e.owed.sort_unstable();
                        };
                        match entry {
                            Some(mut e) => {
                                e.first_seen_ms = e.first_seen_ms.min(first);
                                e.last_seen_ms = e.last_seen_ms.max(last);
                                e.hits += hits;
                                owe(&mut e);
                                pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                                out.updated += 1;
                            }
                            None if !owed_now.is_empty() => {
                                let mut e = Intake {
                                    first_seen_ms: first,
                                    last_seen_ms: last,
                                    hits,
                                    owed: Vec::with_capacity(owed_now.len()),
                                };
                                owe(&mut e);
                                pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                                count += 1;
                                out.queued_new += 1;
                            }
                            None => {
                                // Not queued, still an attacker: its last
                                // sighting keeps it on the denylist.
                                tx_note_seen(seen, seen_time, key, last.min(now_ms))?;
                                match class {
                                    Class::NotDue => out.already_reported += 1,
                                    _ => out.dead += 1,
                                }
                            }
                        }
                    }
                    let mut next_seq = first_seq;
                    for (t, (list, times)) in served.iter().zip(&queued) {
                        next_seq =
                            next_seq.max(tx_insert_groups(order, t.id, first_seq, list, times)?);
                    }
                    if next_seq != first_seq {
                        meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                        meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                        counts.write(targets)?;
                    }
                    if let Some((k, v)) = &ckpt {
                        checkpoints.insert(k.as_slice(), v.as_slice())?;
                    }
                    Ok(out)
                },
            )
            .map_err(tx_err)
    }

    /// What [`Store::enqueue_folded`] would do with each entry, without
    /// writing anything (point lookups only). For a caller that holds the
    /// store alone and writes the entries later (`tjfwd replay`).
    pub fn classify(&self, folded: &[Folded], now_ms: u64) -> Result<Vec<Class>, StoreError> {
        Ok(self
            .classify_owed(folded, now_ms)?
            .into_iter()
            .map(|(class, _)| class)
            .collect())
    }

    /// [`Store::classify`], and for a [`Class::New`] entry the targets that
    /// take it (for [`Store::load_new`]).
    pub fn classify_owed(
        &self,
        folded: &[Folded],
        now_ms: u64,
    ) -> Result<Vec<(Class, Owes)>, StoreError> {
        let trees = self.lookups()?;
        folded
            .iter()
            .map(|f| {
                let key = v1::addr_key(f.addr);
                if self.pending.contains_key(&key)? {
                    return Ok((Class::Pending, Owes::default()));
                }
                self.targets_taking(&key, f.last_seen_ms, now_ms, Owes::default(), trees)
            })
            .collect()
    }

    /// Whether [`Store::targets_taking`] must read the dead letters and the
    /// reports: a first replay finds neither, and one look saves their
    /// point lookups (two per address and target).
    pub(super) fn lookups(&self) -> Result<Lookups, StoreError> {
        Ok(Lookups {
            dead: self.dead.first()?.is_some(),
            reported: self.reported.first()?.is_some(),
        })
    }

    /// The served targets that take a sighting of `key` (not pending) last
    /// seen at `last_seen_ms`: those in `known` without a look, the others
    /// by their dead letters and reports; [`Class::New`] when one does,
    /// else why none does.
    pub(super) fn targets_taking(
        &self,
        key: &[u8],
        last_seen_ms: u64,
        now_ms: u64,
        known: Owes,
        trees: Lookups,
    ) -> Result<(Class, Owes), StoreError> {
        let mut class = Class::Dead;
        let mut owes = known;
        for (si, t) in self.served.iter().enumerate() {
            if known.has(si) {
                continue;
            }
            let tkey = v3::target_addr_key(t.id, key);
            let is_dead = trees.dead && self.dead.contains_key(&tkey)?;
            let r = || match trees.reported {
                true => v1::get::<Reported>(&self.reported, "reported", &tkey),
                false => Ok(None),
            };
            match class_unless_pending(is_dead, r, last_seen_ms, now_ms, t.policy)? {
                Class::New | Class::Pending => owes = owes.with(si),
                c => class = class.max(c),
            }
        }
        if owes != Owes::default() {
            class = Class::New;
        }
        Ok((class, owes))
    }

    /// Number of pending addresses, owed to any target (a stored counter,
    /// not a scan).
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        Ok(v1::decode_u64(
            "meta/pending_count",
            self.meta.get(meta_keys::PENDING_COUNT)?.as_deref(),
        )?)
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
    now_ms: u64,
    policy: Policy,
) -> Result<Class, E> {
    if is_dead {
        return Ok(Class::Dead);
    }
    Ok(match reported()? {
        Some(r) if !is_due(&r, last_seen_ms, now_ms, policy) => Class::NotDue,
        _ => Class::New,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{one_target, open, s, T, TTL};

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
        assert_eq!((p.first_seen_ms, p.last_seen_ms, p.hits), (10, 30, 3));
        assert_eq!(q.oldest_queued_at(T).unwrap(), Some(100));
    }

    #[test]
    fn resighting_after_report_requeues_but_older_does_not() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("9.9.9.9", 10)], None, 10).unwrap();
        let b = q.peek_batch(T, 10).unwrap();
        q.ack(T, &b, 1000, 1000).unwrap();
        let out = q.enqueue(&[s("9.9.9.9", 999)], None, 1001).unwrap();
        assert_eq!(out.already_reported, 1);
        assert_eq!(q.pending_count().unwrap(), 0);
        let out = q.enqueue(&[s("9.9.9.9", 1001)], None, 1001).unwrap();
        assert_eq!(out.queued_new, 1);
        let b = q.peek_batch(T, 10).unwrap();
        q.ack(T, &b, 2000, 2000).unwrap();
        let r = q.reported(T, "9.9.9.9".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (r.first_reported_ms, r.last_reported_ms, r.count),
            (1000, 2000, 2)
        );
        // Exactly one expiry entry: pruning before the new expiry removes nothing.
        assert_eq!(q.prune_expired(1000 + TTL + 1, 100).unwrap(), 0);
        assert_eq!(q.prune_expired(2000 + TTL + 1, 100).unwrap(), 1);
        assert!(q.reported(T, "9.9.9.9".parse().unwrap()).unwrap().is_none());
    }

    #[test]
    fn rereport_after_thins_out_resightings() {
        let d = tempfile::tempdir().unwrap();
        let q = Store::open(d.path(), 8 << 20, &one_target(500)).unwrap();
        q.enqueue(&[s("9.9.9.9", 10)], None, 10).unwrap();
        q.ack(T, &q.peek_batch(T, 10).unwrap(), 1000, 1000).unwrap();
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
}
