//! Delivery: what the store keeps about sending addresses to each report
//! target. Every method takes the target's id ([`TargetId`]): targets
//! never share a queue position, a mirror, dead letters, a request log or
//! a health record.
//!
//! - The pending addresses, in each target's FIFO order (`pending`, and the
//!   target's `order` groups that list them): [`Store::peek_batch`] takes
//!   the oldest, [`Store::ack`] and [`Store::dead_letter`] settle the
//!   target's answer.
//! - The reported mirror (`reported`, `expiry`): what the target holds and
//!   until when. It decides whether a new sighting is due again
//!   ([`is_due`]); entries go once their TTL ran out
//!   ([`Store::prune_expired`]).
//! - The dead letters (`dead`): addresses the target rejected, kept until
//!   the operator resends them ([`Store::requeue`]).
//! - The request log (the rate limit's rolling window, across restarts) and
//!   the target's health, in `targets`.
//!
//! The intake ([`Store::enqueue`], [`Store::classify`]) reads this state to
//! place each sighting (pending, dead-lettered, reported and [`is_due`] or
//! not) and queues new addresses through [`tx_insert_groups`];
//! [`Store::verify`] checks it; the input positions do not touch it.
//!
//! Invariants, each kept within one sled transaction:
//!
//! - For each target `t` an entry owes ([`Intake::owed`]) at group `s`,
//!   `t`'s group `s` lists the address; every address a group of `t` lists
//!   is owed to `t` at that group: an address is in one group of each
//!   target that owes it, and no group is empty. A target's FIFO order is
//!   its groups' order, then each group's own.
//! - An entry exists while some target owes it; `meta/pending_count`
//!   counts entries, each target's pending count the entries owed to it.
//!   When it goes, its last sighting goes to `seen`, for the denylist
//!   (`denylist.rs`).
//! - Each `reported` entry has exactly one `expiry` key, which carries its
//!   `expires_at_ms`.
//! - An ack is at-least-once: a crash between the target's success and
//!   [`Store::ack`] sends the batch again, never loses it. The ack settles
//!   an address only as it was taken (same group, [`BatchItem::seq`]); one
//!   sighted again, and due, while the request was in flight stays owed,
//!   at the back of that target's FIFO.
//! - A request is in the request log, on disk, before it is sent
//!   ([`Store::record_request`]), so no restart can forget it.

use std::net::IpAddr;

use migrations::meta_keys;
use migrations::v1::{self, Dead, Reported, RequestLog};
use migrations::v2::GROUP_MAX;
use migrations::v3::{self, Health, Intake, Owed, TargetId};
use sled::transaction::{abort, TransactionalTree};
use sled::Transactional;

use super::denylist::tx_note_seen;
use super::tx::{tx_counter, tx_err, tx_get, tx_get_intake, TargetCounts, TxResult};
use super::{Policy, Store, StoreError};

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
    /// Its first sighting (event time, ms) when taken, from its pending
    /// entry: what a target may say of the attack (a report's comment).
    pub first_seen_ms: u64,
    /// Its latest sighting (event time, ms) when taken (a report's date).
    pub last_seen_ms: u64,
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

/// A place in a target's FIFO order: the address at `index` in the group
/// `seq` (or the first one after it, if the group is shorter or gone).
/// The default is the front of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueuePos {
    pub seq: u64,
    pub index: u32,
}

// Taking a batch: the oldest pending addresses, in FIFO order.
impl Store {
    /// The groups of target `t` from sequence `from` on, in order.
    fn groups_from(
        &self,
        t: TargetId,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        self.order
            .range(v3::order_key(t, from).to_vec()..)
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.first() == Some(&t)))
            .map(|item| {
                let (k, v) = item?;
                let (_, seq) = v3::split_order_key(&k)?;
                Ok((seq, v))
            })
    }

    /// When the oldest address target `t` owes was queued for it.
    pub fn oldest_queued_at(&self, t: TargetId) -> Result<Option<u64>, StoreError> {
        for item in self.groups_from(t, 0) {
            let (seq, group) = item?;
            let (at, members) = v3::decode_group(&group)?;
            for key in members {
                if owed_at(&self.pending, key, t)? == Some(seq) {
                    return Ok(Some(at));
                }
            }
        }
        Ok(None)
    }

    /// The oldest addresses target `t` owes (at most `n`), oldest first.
    /// Nothing is removed: see [`Store::ack`].
    pub fn peek_batch(&self, t: TargetId, n: usize) -> Result<Vec<BatchItem>, StoreError> {
        self.peek_batch_from(t, n, QueuePos::default())
    }

    /// [`Store::peek_batch`] from a place in the queue on (`--dry-run`
    /// shows each address once: it starts after the last one shown).
    pub fn peek_batch_from(
        &self,
        t: TargetId,
        n: usize,
        from: QueuePos,
    ) -> Result<Vec<BatchItem>, StoreError> {
        let mut out = Vec::with_capacity(n.min(1024));
        for item in self.groups_from(t, from.seq) {
            if out.len() >= n {
                break;
            }
            let (seq, group) = item?;
            let skip = if seq == from.seq {
                from.index as usize
            } else {
                0
            };
            let (_, members) = v3::decode_group(&group)?;
            for (index, key) in members.into_iter().enumerate().skip(skip) {
                if out.len() >= n {
                    break;
                }
                let Some(e) = v3_get_intake(&self.pending, key)? else {
                    continue;
                };
                if e.seq_for(t) != Some(seq) {
                    continue;
                }
                out.push(BatchItem {
                    addr: v1::addr_from_key(key)?,
                    seq,
                    index: index as u32,
                    hits: e.hits,
                    first_seen_ms: e.first_seen_ms,
                    last_seen_ms: e.last_seen_ms,
                });
            }
        }
        Ok(out)
    }

    /// Number of addresses target `t` owes (a stored counter, not a scan).
    pub fn pending_count_for(&self, t: TargetId) -> Result<u64, StoreError> {
        let v = self
            .targets
            .get(v3::field_key(t, v3::fields::PENDING_COUNT))?;
        Ok(v1::decode_u64("target pending count", v.as_deref())?)
    }

    /// Calls `f` with each address target `t` owes, in its FIFO order (a
    /// scan of the target's whole queue, holding one group at a time: for
    /// a target that chooses its batch among everything it owes, see
    /// `crate::targets::Target::select`).
    pub fn visit_owed(&self, t: TargetId, mut f: impl FnMut(BatchItem)) -> Result<(), StoreError> {
        for item in self.groups_from(t, 0) {
            let (seq, group) = item?;
            let (_, members) = v3::decode_group(&group)?;
            for (index, key) in members.into_iter().enumerate() {
                let Some(e) = v3_get_intake(&self.pending, key)? else {
                    continue;
                };
                if e.seq_for(t) != Some(seq) {
                    continue;
                }
                f(BatchItem {
                    addr: v1::addr_from_key(key)?,
                    seq,
                    index: index as u32,
                    hits: e.hits,
                    first_seen_ms: e.first_seen_ms,
                    last_seen_ms: e.last_seen_ms,
                });
            }
        }
        Ok(())
    }
}

// The target's answer: delivered (reported) or rejected (dead letters).
impl Store {
    /// Acknowledges a batch target `t` accepted, sent at `sent_at_ms`: its
    /// addresses enter `t`'s reported set with `expires_at = sent_at +
    /// ttl`, and `t` no longer owes them — unless a sighting that is due
    /// again arrived while the request was in flight, in which case the
    /// address is queued again at the back of `t`'s FIFO so that the
    /// service resets its TTL once more.
    pub fn ack(
        &self,
        t: TargetId,
        items: &[BatchItem],
        sent_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let policy = self.serving(t)?.policy;
        (
            &self.meta,
            &self.targets,
            &self.pending,
            &self.order,
            &self.reported,
            &self.expiry,
            &self.seen,
            &self.seen_time,
        )
            .transaction(
                |(meta, targets, pending, order, reported, expiry, seen, seen_time)| {
                    let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                    let next_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                    let mut counts = TargetCounts::default();
                    let mut leaving = Leaving::new();
                    let mut again: Vec<Vec<u8>> = Vec::new();
                    for item in items {
                        let key = v1::addr_key(item.addr);
                        let tkey = v3::target_addr_key(t, &key);
                        let old = tx_get::<Reported>(reported, "reported", &tkey)?;
                        let r = Reported {
                            first_reported_ms: old.map_or(sent_at_ms, |o| o.first_reported_ms),
                            last_reported_ms: sent_at_ms,
                            expires_at_ms: sent_at_ms.saturating_add(policy.ttl_ms),
                            count: old.map_or(0, |o| o.count) + 1,
                        };
                        if let Some(o) = old {
                            expiry.remove(v3::expiry_key(t, o.expires_at_ms, &key))?;
                        }
                        reported.insert(tkey, v1::encode(&r))?;
                        expiry.insert(v3::expiry_key(t, r.expires_at_ms, &key), &[])?;

                        let Some(mut e) = tx_get_intake(pending, &key)? else {
                            continue;
                        };
                        if e.seq_for(t) != Some(item.seq) {
                            continue;
                        }
                        leaving.entry(item.seq).or_default().push(key.clone());
                        if e.hits > item.hits && is_due(&r, e.last_seen_ms, now_ms, policy) {
                            // Owed again, at the back. Alone in owing it, the
                            // target counts hits anew from its report.
                            if e.owed.len() == 1 {
                                e.hits -= item.hits;
                            }
                            set_owed(&mut e, t, next_seq + (again.len() / GROUP_MAX) as u64);
                            pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                            again.push(key);
                        } else {
                            e.owed.retain(|o| o.target != t);
                            counts.add(t, -1);
                            if e.owed.is_empty() {
                                pending.remove(key.as_slice())?;
                                count = count.saturating_sub(1);
                                let at = e.last_seen_ms.min(now_ms);
                                tx_note_seen(seen, seen_time, &key, at)?;
                            } else {
                                pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                            }
                        }
                    }
                    tx_leave_groups(order, t, &leaving)?;
                    let again: Vec<&[u8]> = again.iter().map(Vec::as_slice).collect();
                    let times = vec![now_ms; again.len()];
                    let next_seq = tx_insert_groups(order, t, next_seq, &again, &times)?;
                    meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                    meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                    counts.write(targets)?;
                    Ok(())
                },
            )
            .map_err(tx_err)
    }

    /// Moves addresses target `t` rejected from its queue to its
    /// dead-letter set.
    pub fn dead_letter(
        &self,
        t: TargetId,
        items: &[BatchItem],
        status: u16,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        (
            &self.meta,
            &self.targets,
            &self.pending,
            &self.order,
            &self.dead,
            &self.seen,
            &self.seen_time,
        )
            .transaction(|(meta, targets, pending, order, dead, seen, seen_time)| {
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let mut counts = TargetCounts::default();
                let mut leaving = Leaving::new();
                for item in items {
                    let key = v1::addr_key(item.addr);
                    let Some(mut e) = tx_get_intake(pending, &key)? else {
                        continue;
                    };
                    let Some(seq) = e.seq_for(t) else {
                        continue;
                    };
                    leaving.entry(seq).or_default().push(key.clone());
                    e.owed.retain(|o| o.target != t);
                    counts.add(t, -1);
                    if e.owed.is_empty() {
                        pending.remove(key.as_slice())?;
                        count = count.saturating_sub(1);
                        tx_note_seen(seen, seen_time, &key, e.last_seen_ms.min(now_ms))?;
                    } else {
                        pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                    }
                    let d = Dead {
                        status,
                        reason: reason.to_owned(),
                        at_ms: now_ms,
                        first_seen_ms: e.first_seen_ms,
                        last_seen_ms: e.last_seen_ms,
                        hits: e.hits,
                    };
                    dead.insert(v3::target_addr_key(t, &key), v1::encode(&d))?;
                }
                tx_leave_groups(order, t, &leaving)?;
                meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                counts.write(targets)?;
                Ok(())
            })
            .map_err(tx_err)
    }
}

// Released: the target will not report it (it did not qualify), and
// keeps no trace of it.
impl Store {
    /// Target `t` no longer owes these addresses, although it never
    /// reported them: as [`Store::ack`] without the reported mirror, as
    /// [`Store::dead_letter`] without the dead letter (an address that did
    /// not reach the target's threshold in time, e.g. AbuseIPDB's
    /// `min_attempts`). A later sighting queues it again like a new one.
    /// Applies only to an address as taken (same group, [`BatchItem::seq`]).
    pub fn release(&self, t: TargetId, items: &[BatchItem]) -> Result<(), StoreError> {
        (&self.meta, &self.targets, &self.pending, &self.order)
            .transaction(|(meta, targets, pending, order)| {
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let mut counts = TargetCounts::default();
                let mut leaving = Leaving::new();
                for item in items {
                    let key = v1::addr_key(item.addr);
                    let Some(mut e) = tx_get_intake(pending, &key)? else {
                        continue;
                    };
                    if e.seq_for(t) != Some(item.seq) {
                        continue;
                    }
                    leaving.entry(item.seq).or_default().push(key.clone());
                    e.owed.retain(|o| o.target != t);
                    counts.add(t, -1);
                    if e.owed.is_empty() {
                        pending.remove(key.as_slice())?;
                        count = count.saturating_sub(1);
                    } else {
                        pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                    }
                }
                tx_leave_groups(order, t, &leaving)?;
                meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                counts.write(targets)?;
                Ok(())
            })
            .map_err(tx_err)
    }
}

// The pending entries, one by one and all of them (operator commands).
impl Store {
    /// The pending entry of an address (with the targets that owe it).
    pub fn pending(&self, addr: IpAddr) -> Result<Option<Intake>, StoreError> {
        v3_get_intake(&self.pending, &v1::addr_key(addr))
    }

    /// Every entry of the pending set, in key order (a scan).
    pub fn pending_entries(
        &self,
    ) -> impl Iterator<Item = Result<(IpAddr, Intake), StoreError>> + '_ {
        self.pending.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v3::decode_intake(&v)?))
        })
    }
}

// The reported mirror: what each target holds, and until when.
impl Store {
    /// Target `t`'s reported entry of an address.
    pub fn reported(&self, t: TargetId, addr: IpAddr) -> Result<Option<Reported>, StoreError> {
        target_record(&self.reported, "reported", t, addr)
    }

    /// Number of entries in `t`'s reported set (a scan: not for hot paths).
    pub fn reported_count(&self, t: TargetId) -> usize {
        self.reported.scan_prefix([t]).count()
    }

    /// Every entry of `t`'s reported set (a scan: for operator commands).
    pub fn reported_entries(
        &self,
        t: TargetId,
    ) -> impl Iterator<Item = Result<(IpAddr, Reported), StoreError>> + '_ {
        target_records(&self.reported, "reported", t)
    }

    /// Removes up to `limit` reported entries, of any registered target,
    /// whose TTL ran out before `now_ms`. Returns how many went.
    pub fn prune_expired(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        for (t, _) in &self.registered {
            let from = v3::expiry_key(*t, 0, &[]);
            let to = v3::expiry_key(*t, now_ms, &[]);
            for item in self.expiry.range(from..to).take(limit - keys.len()) {
                keys.push(item?.0);
            }
            if keys.len() >= limit {
                break;
            }
        }
        if keys.is_empty() {
            return Ok(0);
        }
        (&self.reported, &self.expiry)
            .transaction(|(reported, expiry)| {
                for k in &keys {
                    let (t, at, addr) = v3::split_expiry_key(k).or_else(abort)?;
                    expiry.remove(k.as_ref())?;
                    let tkey = v3::target_addr_key(t, addr);
                    if let Some(r) = tx_get::<Reported>(reported, "reported", &tkey)? {
                        if r.expires_at_ms == at {
                            reported.remove(tkey)?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(keys.len())
    }

    /// Puts back a reported entry of target `t` salvaged from a damaged
    /// database (with its expiry key), unless a later one is already there.
    pub fn restore_reported(
        &self,
        t: TargetId,
        addr: IpAddr,
        r: &Reported,
    ) -> Result<(), StoreError> {
        let key = v1::addr_key(addr);
        let tkey = v3::target_addr_key(t, &key);
        (&self.reported, &self.expiry)
            .transaction(|(reported, expiry)| {
                if let Some(old) = tx_get::<Reported>(reported, "reported", &tkey)? {
                    if old.last_reported_ms >= r.last_reported_ms {
                        return Ok(());
                    }
                    expiry.remove(v3::expiry_key(t, old.expires_at_ms, &key))?;
                }
                reported.insert(tkey.as_slice(), v1::encode(r))?;
                expiry.insert(v3::expiry_key(t, r.expires_at_ms, &key), &[])?;
                Ok(())
            })
            .map_err(tx_err)
    }
}

// The dead letters, and resending addresses on the operator's request.
impl Store {
    /// Target `t`'s dead-letter entry of an address.
    pub fn dead(&self, t: TargetId, addr: IpAddr) -> Result<Option<Dead>, StoreError> {
        target_record(&self.dead, "dead", t, addr)
    }

    /// Number of addresses `t` dead-lettered (a scan: not for hot paths).
    pub fn dead_count(&self, t: TargetId) -> usize {
        self.dead.scan_prefix([t]).count()
    }

    /// Every entry of `t`'s dead-letter set (a scan: for operator commands).
    pub fn dead_entries(
        &self,
        t: TargetId,
    ) -> impl Iterator<Item = Result<(IpAddr, Dead), StoreError>> + '_ {
        target_records(&self.dead, "dead", t)
    }

    /// Puts back a dead-letter entry of target `t` salvaged from a damaged
    /// database.
    pub fn restore_dead(&self, t: TargetId, addr: IpAddr, d: &Dead) -> Result<(), StoreError> {
        self.dead
            .insert(v3::target_addr_key(t, &v1::addr_key(addr)), v1::encode(d))?;
        Ok(())
    }

    /// Queues addresses again on the operator's request (`tjfwd resend`)
    /// for every served target, whatever their reported or dead-letter
    /// state there: an address leaves each target's dead-letter set and
    /// each target owes it (unless it already did). Returns (queued: owed
    /// anew by some target, already pending for all).
    pub fn requeue(&self, addrs: &[IpAddr], now_ms: u64) -> Result<(u64, u64), StoreError> {
        self.requeue_for(addrs, now_ms, None)
    }

    /// [`Store::requeue`] for target `only` alone (every served target
    /// when None): the other targets' sets are not touched.
    pub fn requeue_for(
        &self,
        addrs: &[IpAddr],
        now_ms: u64,
        only: Option<TargetId>,
    ) -> Result<(u64, u64), StoreError> {
        let keys: Vec<Vec<u8>> = addrs.iter().map(|a| v1::addr_key(*a)).collect();
        let served: Vec<&super::Served> = self
            .served
            .iter()
            .filter(|t| only.is_none_or(|o| o == t.id))
            .collect();
        let served = &served;
        (
            &self.meta,
            &self.targets,
            &self.pending,
            &self.order,
            &self.dead,
        )
            .transaction(|(meta, targets, pending, order, dead)| {
                let first_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                let mut count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let mut counts = TargetCounts::default();
                let (mut queued_n, mut already) = (0, 0);
                let mut queued: Vec<Vec<&[u8]>> = vec![Vec::new(); served.len()];
                for key in &keys {
                    let mut from_dead: Option<Dead> = None;
                    for t in served {
                        let tkey = v3::target_addr_key(t.id, key);
                        if let Some(d) = tx_get::<Dead>(dead, "dead", &tkey)? {
                            from_dead.get_or_insert(d);
                        }
                        dead.remove(tkey)?;
                    }
                    let existing = tx_get_intake(pending, key)?;
                    let mut e = existing.clone().unwrap_or_else(|| Intake {
                        first_seen_ms: from_dead.as_ref().map_or(now_ms, |d| d.first_seen_ms),
                        last_seen_ms: now_ms,
                        hits: from_dead.as_ref().map_or(1, |d| d.hits),
                        owed: Vec::new(),
                    });
                    let mut anew = false;
                    for (si, t) in served.iter().enumerate() {
                        if e.seq_for(t.id).is_some() {
                            continue;
                        }
                        e.owed.push(Owed {
                            target: t.id,
                            seq: first_seq + (queued[si].len() / GROUP_MAX) as u64,
                        });
                        queued[si].push(key);
                        counts.add(t.id, 1);
                        anew = true;
                    }
                    if !anew {
                        already += 1;
                        continue;
                    }
                    e.owed.sort_unstable();
                    if existing.is_none() {
                        count += 1;
                    }
                    pending.insert(key.as_slice(), v3::encode_intake(&e))?;
                    queued_n += 1;
                }
                let mut next_seq = first_seq;
                for (t, list) in served.iter().zip(&queued) {
                    let times = vec![now_ms; list.len()];
                    next_seq =
                        next_seq.max(tx_insert_groups(order, t.id, first_seq, list, &times)?);
                }
                meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                meta.insert(meta_keys::PENDING_COUNT, &count.to_be_bytes())?;
                counts.write(targets)?;
                Ok((queued_n, already))
            })
            .map_err(tx_err)
    }
}

// Each target's rate limit request log and health.
impl Store {
    /// Send times of target `t`'s recent requests (for its rate limit).
    pub fn request_log(&self, t: TargetId) -> Result<RequestLog, StoreError> {
        let key = v3::field_key(t, v3::fields::REQUEST_LOG);
        Ok(v1::get(&self.targets, "request log", &key)?.unwrap_or_default())
    }

    /// Target `t`'s recent request times as of the clocks `now`, in
    /// today's wall clock frame and never ahead of it, whatever the wall
    /// clock did since they were written (`clock::restate`).
    pub fn request_times(
        &self,
        t: TargetId,
        now: &v3::RequestClock,
    ) -> Result<Vec<u64>, StoreError> {
        let log = self.request_log(t)?;
        let written = self.request_clock(t)?;
        Ok(crate::clock::restate(
            &log.sent_at_ms,
            written.as_ref(),
            now,
        ))
    }

    /// The clocks when target `t`'s request log was written (None: written
    /// before they were stored): see `clock::restate`.
    pub fn request_clock(&self, t: TargetId) -> Result<Option<v3::RequestClock>, StoreError> {
        match self
            .targets
            .get(v3::field_key(t, v3::fields::REQUEST_CLOCK))?
        {
            None => Ok(None),
            Some(v) => Ok(Some(v3::decode_request_clock(&v)?)),
        }
    }

    /// Stores target `t`'s request log, its times in the wall-clock frame
    /// of `written` (the clocks now), the two in one batch, and makes them
    /// durable (fsync) before returning: a request is recorded so before it
    /// is sent, so that no restart can forget it.
    pub fn record_request(
        &self,
        t: TargetId,
        log: &RequestLog,
        written: &v3::RequestClock,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(v3::field_key(t, v3::fields::REQUEST_LOG), v1::encode(log));
        batch.insert(
            v3::field_key(t, v3::fields::REQUEST_CLOCK),
            v3::encode_request_clock(written).to_vec(),
        );
        self.targets.apply_batch(batch)?;
        self.flush()
    }

    /// Target `t`'s health record.
    pub fn health(&self, t: TargetId) -> Result<Health, StoreError> {
        match self.targets.get(v3::field_key(t, v3::fields::HEALTH))? {
            None => Ok(Health::default()),
            Some(v) => Ok(v3::decode_health(&v)?),
        }
    }

    /// Stores target `t`'s health record.
    pub fn set_health(&self, t: TargetId, h: &Health) -> Result<(), StoreError> {
        self.targets
            .insert(v3::field_key(t, v3::fields::HEALTH), v3::encode_health(h))?;
        Ok(())
    }
}

/// Target `t`'s record of an address in a tree keyed by target and address
/// (`reported`, `dead`).
fn target_record<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    what: &str,
    t: TargetId,
    addr: IpAddr,
) -> Result<Option<T>, StoreError> {
    let key = v3::target_addr_key(t, &v1::addr_key(addr));
    Ok(v1::get(tree, what, &key)?)
}

/// Every record of target `t` in a tree keyed by target and address (a
/// scan).
fn target_records<'a, T: serde::de::DeserializeOwned>(
    tree: &'a sled::Tree,
    what: &'a str,
    t: TargetId,
) -> impl Iterator<Item = Result<(IpAddr, T), StoreError>> + 'a {
    tree.scan_prefix([t]).map(move |item| {
        let (k, v) = item?;
        let (_, addr) = v3::split_target_addr_key(&k)?;
        Ok((v1::addr_from_key(addr)?, v1::decode(what, &v)?))
    })
}

/// The pending entry at `key`, decoded.
fn v3_get_intake(tree: &sled::Tree, key: &[u8]) -> Result<Option<Intake>, StoreError> {
    Ok(tree.get(key)?.map(|v| v3::decode_intake(&v)).transpose()?)
}

/// The group at which target `t` owes the address of `key`, if it does.
fn owed_at(tree: &sled::Tree, key: &[u8], t: TargetId) -> Result<Option<u64>, StoreError> {
    Ok(v3_get_intake(tree, key)?.and_then(|e| e.seq_for(t)))
}

/// Makes target `t` owe the entry at group `seq` (in place of any other).
fn set_owed(e: &mut Intake, t: TargetId, seq: u64) {
    e.owed.retain(|o| o.target != t);
    e.owed.push(Owed { target: t, seq });
    e.owed.sort_unstable();
}

/// Writes target `t`'s `order` groups of addresses queued together,
/// GROUP_MAX to a group, from sequence `first_seq` on, each group's time
/// the earliest of its addresses' `times`; returns the next free sequence.
pub(super) fn tx_insert_groups(
    order: &TransactionalTree,
    t: TargetId,
    first_seq: u64,
    keys: &[&[u8]],
    times: &[u64],
) -> TxResult<u64> {
    let mut seq = first_seq;
    for (chunk, at) in keys.chunks(GROUP_MAX).zip(times.chunks(GROUP_MAX)) {
        let at = at.iter().copied().min().unwrap_or(0);
        order.insert(
            &v3::order_key(t, seq),
            v3::encode_group(at, chunk.iter().copied()),
        )?;
        seq += 1;
    }
    Ok(seq)
}

/// The addresses that leave a target's `order` groups: sequence → keys.
type Leaving = std::collections::BTreeMap<u64, Vec<Vec<u8>>>;

/// Takes addresses out of target `t`'s `order` groups: `leaving` maps a
/// group's sequence to the keys that leave it. A group left empty is
/// removed.
fn tx_leave_groups(order: &TransactionalTree, t: TargetId, leaving: &Leaving) -> TxResult<()> {
    for (seq, keys) in leaving {
        let gkey = v3::order_key(t, *seq);
        let Some(value) = order.get(gkey)? else {
            continue;
        };
        let (at, members) = v3::decode_group(&value).or_else(abort)?;
        let gone: std::collections::HashSet<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let rest: Vec<&[u8]> = members.into_iter().filter(|m| !gone.contains(m)).collect();
        if rest.is_empty() {
            order.remove(&gkey)?;
        } else {
            order.insert(&gkey, v3::encode_group(at, rest))?;
        }
    }
    Ok(())
}

/// Whether a sighting at `seen_ms` of a reported address should queue it
/// again: it must come after the last report, and at least
/// `rereport_after` after it. A report time ahead of the clock (`now_ms`)
/// was written before the wall clock stepped back: when the report really
/// was is unknown, so the address is due (a report that resets the
/// service's TTL early is harmless; one missed lets its entry expire while
/// the attacker goes on).
pub(super) fn is_due(r: &Reported, seen_ms: u64, now_ms: u64, policy: Policy) -> bool {
    if crate::clock::from_the_future(r.last_reported_ms, now_ms) {
        return true;
    }
    seen_ms > r.last_reported_ms
        && seen_ms >= r.last_reported_ms.saturating_add(policy.rereport_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{one_target, open, s, T, TTL};
    use crate::store::Sighting;

    #[test]
    fn a_report_dated_ahead_of_the_clock_does_not_stop_its_ttl_reset() {
        // Reported while the clock was two days ahead (day 12), then the
        // clock was put right (day 10). The attacker is seen again a
        // little later: due again, although the report seems to be "in
        // the future" and rereport_after (an hour) has not passed since.
        let day = 86_400_000;
        let d = tempfile::tempdir().unwrap();
        let q = Store::open(d.path(), 8 << 20, &one_target(3_600_000)).unwrap();
        q.enqueue(&[s("5.5.5.5", 12 * day)], None, 12 * day)
            .unwrap();
        let b = q.peek_batch(T, 10).unwrap();
        q.ack(T, &b, 12 * day, 12 * day + 1).unwrap();
        assert_eq!(q.pending_count().unwrap(), 0);
        let seen = crate::store::fold(&[s("5.5.5.5", 10 * day + 60_000)]);
        assert_eq!(
            q.classify(&seen, 10 * day + 60_000).unwrap(),
            vec![crate::store::Class::New]
        );
        let out = q
            .enqueue(&[s("5.5.5.5", 10 * day + 60_000)], None, 10 * day + 60_000)
            .unwrap();
        assert_eq!(out.queued_new, 1);
        // Within the tolerance of small corrections, the rule holds: not
        // due within the hour after the report.
        let b = q.peek_batch(T, 10).unwrap();
        q.ack(T, &b, 10 * day + 60_000, 10 * day + 60_001).unwrap();
        let out = q
            .enqueue(&[s("5.5.5.5", 10 * day + 63_000)], None, 10 * day + 58_000)
            .unwrap();
        assert_eq!((out.queued_new, out.already_reported), (0, 1));
    }

    #[test]
    fn batches_are_fifo_and_ack_moves_to_reported() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        for i in 0..10u8 {
            q.enqueue(&[s(&format!("5.5.5.{i}"), 1)], None, u64::from(i))
                .unwrap();
        }
        let b = q.peek_batch(T, 4).unwrap();
        let got: Vec<String> = b.iter().map(|i| i.addr.to_string()).collect();
        assert_eq!(got, ["5.5.5.0", "5.5.5.1", "5.5.5.2", "5.5.5.3"]);
        q.ack(T, &b, 1000, 1001).unwrap();
        assert_eq!(q.pending_count().unwrap(), 6);
        let r = q.reported(T, "5.5.5.0".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (r.last_reported_ms, r.expires_at_ms, r.count),
            (1000, 1000 + TTL, 1)
        );
        assert_eq!(q.peek_batch(T, 100).unwrap().len(), 6);
        assert_eq!(q.oldest_queued_at(T).unwrap(), Some(4));
        // A second ack of the same items is harmless.
        q.ack(T, &b, 1000, 1001).unwrap();
        assert_eq!(q.pending_count().unwrap(), 6);
    }

    #[test]
    fn sighting_during_flight_keeps_the_address_pending() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("7.7.7.7", 10), s("8.8.4.4", 10)], None, 10)
            .unwrap();
        let b = q.peek_batch(T, 10).unwrap();
        // Sent at 1000; a new sighting at 1500 arrives before the ack.
        q.enqueue(&[s("7.7.7.7", 1500)], None, 1500).unwrap();
        q.ack(T, &b, 1000, 2000).unwrap();
        assert_eq!(q.pending_count().unwrap(), 1);
        let p = q.pending("7.7.7.7".parse().unwrap()).unwrap().unwrap();
        assert_eq!(p.hits, 1);
        assert_eq!(q.oldest_queued_at(T).unwrap(), Some(2000));
        assert_eq!(q.peek_batch(T, 10).unwrap().len(), 1);
    }

    #[test]
    fn dead_letter_removes_and_blocks_requeue() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("6.6.6.6", 1), s("4.4.4.4", 1)], None, 1)
            .unwrap();
        let b = q.peek_batch(T, 10).unwrap();
        let bad: Vec<_> = b
            .iter()
            .filter(|i| i.addr.to_string() == "6.6.6.6")
            .cloned()
            .collect();
        q.dead_letter(T, &bad, 422, "invalid address", 5).unwrap();
        assert_eq!(q.pending_count().unwrap(), 1);
        let dl = q.dead(T, "6.6.6.6".parse().unwrap()).unwrap().unwrap();
        assert_eq!((dl.status, dl.reason.as_str()), (422, "invalid address"));
        assert_eq!(q.enqueue(&[s("6.6.6.6", 9)], None, 9).unwrap().dead, 1);
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
        let b = q.peek_batch(T, 1200).unwrap();
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
        let rest = q.peek_batch_from(T, 5000, b[1099].next_pos()).unwrap();
        assert_eq!(rest.len(), 1401);
        assert_eq!(
            (rest[0].addr, rest[0].seq, rest[0].index),
            (addr(1100), 1, 100)
        );
        assert_eq!(rest.last().unwrap().addr, addr(9000));
        // Acknowledge every other address of the batch.
        let acked: Vec<BatchItem> = b.iter().step_by(2).cloned().collect();
        q.ack(T, &acked, 100, 100).unwrap();
        assert_eq!(q.pending_count().unwrap(), 2501 - 600);
        let left = q.peek_batch(T, 5000).unwrap();
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
        q.dead_letter(T, &group0, 422, "bad", 200).unwrap();
        assert!(q.order.get(v1::seq_key(0)).unwrap().is_none());
        assert_eq!(q.oldest_queued_at(T).unwrap(), Some(10));
        let v = q.verify();
        assert_eq!(
            (v.problems, v.pending, v.dead),
            (0, 1401, 500),
            "{:?}",
            v.details
        );
    }

    /// `release` takes an address out of the target's queue with no
    /// trace (no mirror entry, no dead letter), only as it was taken; the
    /// scan sees what the target owes, with the entry's times.
    #[test]
    fn release_forgets_the_address_for_the_target_and_visit_owed_sees_the_queue() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(
            &[s("6.6.6.6", 1), s("4.4.4.4", 2), s("6.6.6.6", 5)],
            None,
            7,
        )
        .unwrap();
        let mut seen = Vec::new();
        q.visit_owed(T, |i| seen.push(i)).unwrap();
        assert_eq!(seen.len(), 2);
        let six = seen
            .iter()
            .find(|i| i.addr.to_string() == "6.6.6.6")
            .unwrap();
        assert_eq!((six.first_seen_ms, six.last_seen_ms, six.hits), (1, 5, 2));
        assert_eq!(seen, q.peek_batch(T, 10).unwrap());
        // Taken at another group: not released.
        let mut stale = six.clone();
        stale.seq += 1;
        q.release(T, &[stale]).unwrap();
        assert_eq!(q.pending_count_for(T).unwrap(), 2);
        q.release(T, std::slice::from_ref(six)).unwrap();
        assert_eq!(q.pending_count_for(T).unwrap(), 1);
        assert_eq!(q.pending_count().unwrap(), 1);
        let six = six.addr;
        assert!(q.pending(six).unwrap().is_none());
        assert!(q.reported(T, six).unwrap().is_none());
        assert!(q.dead(T, six).unwrap().is_none());
        assert_eq!(q.verify().problems, 0, "{:?}", q.verify().details);
        // Seen again: queued like a new address.
        assert_eq!(
            q.enqueue(&[s("6.6.6.6", 9)], None, 9).unwrap().queued_new,
            1
        );
    }
}
