//! Delivery: what the store keeps about sending addresses to the report
//! API.
//!
//! - The pending addresses, in FIFO order (`pending`, and the `order`
//!   groups that list them): [`Store::peek_batch`] takes the oldest,
//!   [`Store::ack`] and [`Store::dead_letter`] settle the API's answer.
//! - The reported mirror (`reported`, `expiry`): what the API holds and
//!   until when. It decides whether a new sighting is due again
//!   ([`is_due`]); entries go once their TTL ran out
//!   ([`Store::prune_expired`]).
//! - The dead letters (`dead`): addresses the API rejected, kept until the
//!   operator resends them ([`Store::requeue`]).
//! - The request log (the rate limit's rolling window, across restarts) and
//!   the reporter's health, in `meta`.
//!
//! This is the state of delivery to the one report target. The intake
//! ([`Store::enqueue`], [`Store::classify`]) reads it to place each
//! sighting (pending, dead-lettered, reported and [`is_due`] or not) and
//! queues new addresses through [`tx_insert_groups`]; [`Store::verify`]
//! checks it; the input positions do not touch it.
//!
//! Invariants, each kept within one sled transaction:
//!
//! - Every `pending` entry's `seq` names the `order` group that lists its
//!   address, and every address a group lists is pending with that group's
//!   `seq`: an address is in exactly one group, and no group is empty. The
//!   FIFO order is the groups' order, then each group's own.
//! - `meta/pending_count` equals the number of `pending` entries.
//! - Each `reported` entry has exactly one `expiry` key, which carries its
//!   `expires_at_ms`.
//! - An ack is at-least-once: a crash between the API's 202 and
//!   [`Store::ack`] sends the batch again, never loses it. The ack settles
//!   an address only as it was taken (same group, [`BatchItem::seq`]); one
//!   sighted again, and due, while the request was in flight stays pending,
//!   at the back.
//! - A request is in the request log, on disk, before it is sent
//!   ([`Store::record_request`]), so no restart can forget it.

use std::net::IpAddr;

use migrations::v1::{self, Dead, Health, Pending, Reported, RequestLog};
use migrations::v2::{self, GROUP_MAX};
use migrations::{meta_keys, MigrationError};
use sled::transaction::{abort, TransactionalTree};
use sled::Transactional;

use super::tx::{tx_counter, tx_err, tx_get, tx_get_pending, TxResult};
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

// Taking a batch: the oldest pending addresses, in FIFO order.
impl Store {
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
}

// The API's answer: delivered (reported) or rejected (dead letters).
impl Store {
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
}

// The pending entries, one by one and all of them (operator commands).
impl Store {
    /// The pending entry of an address.
    pub fn pending(&self, addr: IpAddr) -> Result<Option<Pending>, StoreError> {
        Ok(v2::get_pending(&self.pending, &v1::addr_key(addr))?)
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
}

// The reported mirror: what the API holds, and until when.
impl Store {
    /// The reported entry of an address.
    pub fn reported(&self, addr: IpAddr) -> Result<Option<Reported>, StoreError> {
        Ok(v1::get(&self.reported, "reported", &v1::addr_key(addr))?)
    }

    /// Number of entries in the reported set (a scan: not for hot paths).
    pub fn reported_count(&self) -> usize {
        self.reported.len()
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
}

// The dead letters, and resending addresses on the operator's request.
impl Store {
    /// The dead-letter entry of an address.
    pub fn dead(&self, addr: IpAddr) -> Result<Option<Dead>, StoreError> {
        Ok(v1::get(&self.dead, "dead", &v1::addr_key(addr))?)
    }

    /// Number of dead-lettered addresses (a scan: not for hot paths).
    pub fn dead_count(&self) -> usize {
        self.dead.len()
    }

    /// Every entry of the dead-letter set (a scan: for operator commands).
    pub fn dead_entries(&self) -> impl Iterator<Item = Result<(IpAddr, Dead), StoreError>> + '_ {
        self.dead.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v1::decode("dead", &v)?))
        })
    }

    /// Puts back a dead-letter entry salvaged from a damaged database.
    pub fn restore_dead(&self, addr: IpAddr, d: &Dead) -> Result<(), StoreError> {
        self.dead.insert(v1::addr_key(addr), v1::encode(d))?;
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
}

// The rate limit's request log and the reporter's health.
impl Store {
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
}

/// Writes the `order` groups of addresses queued together, GROUP_MAX to a
/// group, from sequence `first_seq` on; returns the next free sequence.
pub(super) fn tx_insert_groups(
    order: &TransactionalTree,
    first_seq: u64,
    keys: &[&[u8]],
) -> TxResult<u64> {
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

/// Whether a sighting at `seen_ms` of a reported address should queue it
/// again: it must come after the last report, and at least
/// `rereport_after` after it.
pub(super) fn is_due(r: &Reported, seen_ms: u64, policy: Policy) -> bool {
    seen_ms > r.last_reported_ms
        && seen_ms >= r.last_reported_ms.saturating_add(policy.rereport_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{open, s, TTL};
    use crate::store::Sighting;

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
}
