//! The denylist: tjfwd's own list of attackers, for the operator's
//! firewalls (`[feed]`, `tjfwd export`).
//!
//! It lists every address tjfwd selected (that passed the filter), from
//! the moment it is queued until a TTL (`[feed] ttl`, given when it is
//! read) after its last sighting, whatever the targets did with it. Its
//! two sources:
//!
//! - the `pending` entries, each with its last sighting: a pending address
//!   is listed for as long as a served target owes it (an entry owed only
//!   to targets no longer enabled counts by its last sighting);
//! - `seen`, the last sighting of each selected address that is no longer
//!   pending, and `seen_time`, the same in time order. They are written,
//!   inside the transaction that makes the change, when an entry leaves
//!   `pending` ([`Store::ack`], [`Store::dead_letter`]) and when a sighting
//!   of an address that is not pending does not queue it (the intake:
//!   reported too recently, dead-lettered, or no target served).
//!
//! An address can be in both (queued again after it left): the later
//! sighting counts. Times are event times, never later than the wall clock
//! when they were written ([`tx_note_seen`]).
//!
//! Invariants (`migrations::v4`): each `seen` entry has exactly one
//! `seen_time` key, with its time, and each key its entry; the two are
//! only written together, in one transaction. [`Store::prune_seen`] takes
//! the oldest from `seen_time` (a range scan from its start), never a scan
//! of `seen`.

use std::collections::HashSet;
use std::net::IpAddr;

use migrations::v1;
use migrations::v4;
use sled::transaction::{abort, TransactionalTree};
use sled::Transactional;

use super::tx::{tx_err, TxResult};
use super::{Store, StoreError};

/// An address on the denylist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub addr: IpAddr,
    /// Its last sighting (ms since the epoch, event time).
    pub last_seen_ms: u64,
    /// A served target still owes a report of it: it stays listed until
    /// then, whatever its last sighting.
    pub pending: bool,
}

/// Records, inside a transaction, that the address of `key` was last seen
/// at `at_ms` (event time; the caller caps it at its wall clock), unless
/// `seen` already holds a later sighting; its `seen_time` key moves with
/// it.
pub(super) fn tx_note_seen(
    seen: &TransactionalTree,
    seen_time: &TransactionalTree,
    key: &[u8],
    at_ms: u64,
) -> TxResult<()> {
    let old = match seen.get(key)? {
        Some(v) => Some(v4::decode_seen(&v).or_else(abort)?),
        None => None,
    };
    if old.is_some_and(|o| o >= at_ms) {
        return Ok(());
    }
    if let Some(o) = old {
        seen_time.remove(v4::seen_time_key(o, key))?;
    }
    seen.insert(key, &v4::encode_seen(at_ms))?;
    seen_time.insert(v4::seen_time_key(at_ms, key), &[])?;
    Ok(())
}

impl Store {
    /// The denylist at `now_ms` for a TTL of `ttl_ms`: every pending
    /// address a served target owes, and every other address whose last
    /// sighting is less than `ttl_ms` before `now_ms`; sorted by address,
    /// each once. (Two scans: for the feed's cached snapshot and `export`,
    /// not for hot paths.)
    pub fn denylist(&self, now_ms: u64, ttl_ms: u64) -> Result<Vec<Listed>, StoreError> {
        let served: HashSet<_> = self.served.iter().map(|s| s.id).collect();
        let fresh = |at: u64| at.saturating_add(ttl_ms) > now_ms;
        let mut out = Vec::new();
        for item in self.pending.iter() {
            let (k, v) = item?;
            let e = migrations::v3::decode_intake(&v)?;
            let pending = e.owed.iter().any(|o| served.contains(&o.target));
            out.push(Listed {
                addr: v1::addr_from_key(&k)?,
                last_seen_ms: e.last_seen_ms,
                pending,
            });
        }
        for item in self.seen.iter() {
            let (k, v) = item?;
            out.push(Listed {
                addr: v1::addr_from_key(&k)?,
                last_seen_ms: v4::decode_seen(&v)?,
                pending: false,
            });
        }
        // One per address: pending if either says so, the later sighting.
        out.sort_unstable_by_key(|l| l.addr);
        out.dedup_by(|later, kept| {
            if later.addr != kept.addr {
                return false;
            }
            kept.pending |= later.pending;
            kept.last_seen_ms = kept.last_seen_ms.max(later.last_seen_ms);
            true
        });
        out.retain(|l| l.pending || fresh(l.last_seen_ms));
        Ok(out)
    }

    /// The last sighting `seen` holds of an address (one no longer
    /// pending, or since it was).
    pub fn seen(&self, addr: IpAddr) -> Result<Option<u64>, StoreError> {
        match self.seen.get(v1::addr_key(addr))? {
            None => Ok(None),
            Some(v) => Ok(Some(v4::decode_seen(&v)?)),
        }
    }

    /// Every entry of `seen`, in key order (a scan: for `tjfwd recover`).
    pub fn seen_entries(&self) -> impl Iterator<Item = Result<(IpAddr, u64), StoreError>> + '_ {
        self.seen.iter().map(|item| {
            let (k, v) = item?;
            Ok((v1::addr_from_key(&k)?, v4::decode_seen(&v)?))
        })
    }

    /// Records the last sightings of addresses that were not queued (a
    /// replay's reported and dead-lettered ones, which it does not write
    /// through [`Store::enqueue`]), as the intake does: in one transaction,
    /// each capped at `now_ms`, none for an address that is pending (its
    /// entry holds its sightings).
    pub fn note_sightings(&self, folded: &[super::Folded], now_ms: u64) -> Result<(), StoreError> {
        let keys: Vec<Vec<u8>> = folded.iter().map(|f| v1::addr_key(f.addr)).collect();
        (&self.pending, &self.seen, &self.seen_time)
            .transaction(|(pending, seen, seen_time)| {
                for (key, f) in keys.iter().zip(folded) {
                    if pending.get(key)?.is_none() {
                        tx_note_seen(seen, seen_time, key, f.last_seen_ms.min(now_ms))?;
                    }
                }
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Puts back a last sighting salvaged from a damaged database, unless
    /// a later one is already there.
    pub fn restore_seen(&self, addr: IpAddr, at_ms: u64) -> Result<(), StoreError> {
        let key = v1::addr_key(addr);
        (&self.seen, &self.seen_time)
            .transaction(|(seen, seen_time)| tx_note_seen(seen, seen_time, &key, at_ms))
            .map_err(tx_err)
    }

    /// Removes up to `limit` entries of `seen` whose last sighting is
    /// before `before_ms` (now minus the TTL: they are off the list), the
    /// oldest first, through the time index. Returns how many went.
    pub fn prune_seen(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        for item in self
            .seen_time
            .range(..v4::seen_time_key(before_ms, &[]))
            .take(limit)
        {
            keys.push(item?.0);
        }
        if keys.is_empty() {
            return Ok(0);
        }
        (&self.seen, &self.seen_time)
            .transaction(|(seen, seen_time)| {
                for k in &keys {
                    let (at, addr) = v4::split_seen_time_key(k).or_else(abort)?;
                    seen_time.remove(k.as_ref())?;
                    // Only the entry this key stands for (one written in
                    // between has its own, later key).
                    let current = match seen.get(addr)? {
                        Some(v) => Some(v4::decode_seen(&v).or_else(abort)?),
                        None => None,
                    };
                    if current == Some(at) {
                        seen.remove(addr)?;
                    }
                }
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{one_target, open, s, T};

    const TTL: u64 = 24 * 3_600_000;

    fn listed(q: &Store, now: u64) -> Vec<(String, u64, bool)> {
        q.denylist(now, TTL)
            .unwrap()
            .into_iter()
            .map(|l| (l.addr.to_string(), l.last_seen_ms, l.pending))
            .collect()
    }

    /// Queued: listed at once, whatever its last sighting (a replay of old
    /// logs queues addresses last seen long ago).
    #[test]
    fn a_queued_address_is_listed_while_pending() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("1.1.1.1", 10)], None, 10 * TTL).unwrap();
        assert_eq!(listed(&q, 10 * TTL), [("1.1.1.1".into(), 10, true)]);
        assert_eq!(q.seen("1.1.1.1".parse().unwrap()).unwrap(), None);
    }

    /// Reported: listed until the TTL after the last sighting, including
    /// the sightings that did not queue it again (rereport_after), then
    /// gone; pruning removes it through the time index.
    #[test]
    fn listed_until_the_ttl_after_the_last_sighting_even_when_not_queued_again() {
        let d = tempfile::tempdir().unwrap();
        let hour = 3_600_000;
        let q = Store::open(d.path(), 8 << 20, &one_target(6 * hour)).unwrap();
        q.enqueue(&[s("9.9.9.9", 1_000)], None, 1_000).unwrap();
        q.ack(T, &q.peek_batch(T, 10).unwrap(), 2_000, 2_000)
            .unwrap();
        assert_eq!(q.pending_count().unwrap(), 0);
        assert_eq!(listed(&q, 3_000), [("9.9.9.9".into(), 1_000, false)]);
        // Seen again an hour later: too soon to report again, not queued,
        // but its last sighting moves.
        let out = q.enqueue(&[s("9.9.9.9", hour)], None, hour).unwrap();
        assert_eq!(out.already_reported, 1);
        assert_eq!(q.pending_count().unwrap(), 0);
        assert_eq!(q.seen("9.9.9.9".parse().unwrap()).unwrap(), Some(hour));
        // An older sighting (a replay) does not move it back.
        q.enqueue(&[s("9.9.9.9", 500)], None, hour).unwrap();
        assert_eq!(q.seen("9.9.9.9".parse().unwrap()).unwrap(), Some(hour));
        // Listed past the TTL after the first sighting, gone at the TTL
        // after the last.
        assert_eq!(listed(&q, 1_000 + TTL + 1).len(), 1);
        assert_eq!(listed(&q, hour + TTL - 1).len(), 1);
        assert!(listed(&q, hour + TTL).is_empty());
        // Pruning before that time keeps it; after, removes it and its key.
        assert_eq!(q.prune_seen(hour, 100).unwrap(), 0);
        assert_eq!(q.prune_seen(hour + 1, 100).unwrap(), 1);
        assert_eq!(q.seen("9.9.9.9".parse().unwrap()).unwrap(), None);
        assert!(q.seen_time.is_empty());
        assert_eq!(q.verify().problems, 0, "{:?}", q.verify().details);
    }

    /// A dead-lettered address is still an attacker: listed until the TTL
    /// after its last sighting, later sightings included; one queued
    /// again is pending, and listed, again.
    #[test]
    fn dead_letters_and_requeues_stay_listed() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("6.6.6.6", 100), s("7.7.7.7", 100)], None, 100)
            .unwrap();
        let b = q.peek_batch(T, 10).unwrap();
        q.dead_letter(T, &b[..1], 422, "bad", 200).unwrap();
        q.enqueue(&[s("6.6.6.6", 300)], None, 300).unwrap();
        assert_eq!(
            listed(&q, 400),
            [
                ("6.6.6.6".into(), 300, false),
                ("7.7.7.7".into(), 100, true)
            ]
        );
        // Acked, then sighted again much later and due: pending again;
        // its old `seen` entry and its pending entry merge into one.
        q.ack(T, &q.peek_batch(T, 10).unwrap(), 500, 500).unwrap();
        q.enqueue(&[s("7.7.7.7", 2 * TTL)], None, 2 * TTL).unwrap();
        assert_eq!(q.seen("7.7.7.7".parse().unwrap()).unwrap(), Some(100));
        let l = listed(&q, 2 * TTL);
        assert_eq!(l, [("7.7.7.7".into(), 2 * TTL, true)]);
        assert_eq!(q.verify().problems, 0, "{:?}", q.verify().details);
    }

    /// A sighting dated ahead of the clock counts from the clock.
    #[test]
    fn a_sighting_from_the_future_counts_from_now() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path());
        q.enqueue(&[s("8.8.8.8", 100)], None, 100).unwrap();
        q.ack(T, &q.peek_batch(T, 10).unwrap(), 200, 200).unwrap();
        // Dated far ahead: due again, queued; once acked, its last
        // sighting is the clock's time then.
        q.enqueue(&[s("8.8.8.8", 10 * TTL)], None, 300).unwrap();
        q.ack(T, &q.peek_batch(T, 10).unwrap(), 400, 400).unwrap();
        assert_eq!(q.seen("8.8.8.8".parse().unwrap()).unwrap(), Some(400));
        assert!(listed(&q, 400 + TTL).is_empty());
    }

    /// The list survives a restart, and an address that only targets no
    /// longer enabled owe counts by its last sighting.
    #[test]
    fn survives_a_restart_and_a_target_disabled() {
        let d = tempfile::tempdir().unwrap();
        {
            let q = open(d.path());
            q.enqueue(&[s("1.2.3.4", 100), s("5.6.7.8", 100)], None, 100)
                .unwrap();
            let b = q.peek_batch(T, 10).unwrap();
            q.ack(T, &b[..1], 200, 200).unwrap();
            q.flush().unwrap();
        }
        let q = open(d.path());
        assert_eq!(
            listed(&q, 300),
            [
                ("1.2.3.4".into(), 100, false),
                ("5.6.7.8".into(), 100, true)
            ]
        );
        drop(q);
        let q = Store::open(d.path(), 8 << 20, &[]).unwrap();
        assert_eq!(listed(&q, 300).len(), 2);
        assert_eq!(listed(&q, 100 + TTL), []);
    }
}
