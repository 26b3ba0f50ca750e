//! Loading addresses new to the queue in bulk: `tjfwd replay`'s held
//! addresses ([`Store::load_new`]), and finishing a load that a crash
//! interrupted ([`Store::finish_interrupted_load`], at open).
//!
//! A load is the one change to several trees that is not one sled
//! transaction. sled 0.34 spends about a third more time on an insert in a
//! transaction than on a plain one (the transaction reads every key before
//! its commit writes it: two descents of the tree instead of one), and the
//! final write of a replay is a third of its wall time, with nothing else
//! to overlap. So a load writes, in this order:
//!
//! 1. one transaction with everything but the entries: the `order` groups
//!    that list the new addresses, the counters (`meta/next_seq`,
//!    `meta/pending_count`, the targets' pending counts) and the intent
//!    record `meta/loading` (the sequence range of those groups);
//! 2. an fsync ([`Store::flush`]): the intent is durable before any entry
//!    it covers is written;
//! 3. the `pending` entries, with plain inserts, in key order (8–18%
//!    faster than in queue order, in a microbenchmark of 50,000 keys);
//! 4. an fsync, then the removal of the intent (made durable by the
//!    caller's next flush).
//!
//! A crash between 1 and 4 leaves groups that list addresses whose entries
//! may be missing: any subset of them (each insert is atomic); a crash
//! after 4 but before the removal was made durable leaves the intent with
//! every entry written. At open,
//! while the intent is there, [`Store::finish_interrupted_load`] keeps in
//! those groups exactly the addresses whose entries were written, fixes the
//! counters to match, and removes the intent, in one transaction: the
//! queue is then as if the load had written only those entries, and the
//! replay, which has no checkpoint, is run again (it queues nothing twice).
//! What was written before the crash is kept, as with the one transaction
//! per chunk of before. `tests/powercut.rs` cuts the power at the start of
//! each fsync of sled's log during a replay.
//!
//! Preconditions (the caller's, `tjfwd replay`'s): it holds the store
//! alone, and no address it loads is pending. That is what lets the
//! inserts skip reading the entries first.

use std::collections::BTreeSet;

use migrations::meta_keys;
use migrations::v1;
use migrations::v2::GROUP_MAX;
use migrations::v3::{self, Intake, Owed};
use migrations::v4;
use sled::transaction::abort;
use sled::Transactional;

use super::delivery::tx_insert_groups;
use super::denylist::tx_note_seen;
use super::intake::{Class, EnqueueOutcome, Folded, Owes};
use super::tx::{tx_counter, tx_err, TargetCounts};
use super::{Store, StoreError};

/// `pos` of an entry not queued for a target.
const NOT_OWED: u32 = u32::MAX;

/// An address key (4 or 16 bytes, [`v1::addr_key`]) without an allocation.
#[derive(Clone, Copy)]
struct Key {
    len: u8,
    bytes: [u8; 16],
}

impl Key {
    fn of(addr: std::net::IpAddr) -> Key {
        let k = v1::addr_key(addr);
        let mut bytes = [0u8; 16];
        bytes[..k.len()].copy_from_slice(&k);
        Key {
            len: k.len() as u8,
            bytes,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Store {
    /// Queues addresses new to the queue, held back since `queued_at[i]`
    /// (one time per entry), as [`Store::enqueue_folded`] would have if it
    /// had been called then (each entry gets that time as its
    /// `queued_at_ms`), in the steps of this module's documentation
    /// (`tjfwd replay` writes new addresses once, after folding their later
    /// sightings).
    ///
    /// `owes[i]` names the targets that [`Store::classify_owed`] found take
    /// entry `i` when it was held back: their dead letters and reports are
    /// not read again (a third of the write's time with three targets).
    /// That holds because the caller holds the store alone since then and
    /// writes neither dead letters nor reports, and because a target that
    /// takes a sighting takes any later one too (the entry's last sighting
    /// only grows). The other targets are looked up as
    /// [`Store::enqueue_folded`] does, so a later sighting folded in still
    /// makes a target that had reported it owe it again.
    pub fn load_new(
        &self,
        folded: &[Folded],
        queued_at: &[u64],
        owes: &[Owes],
        now_ms: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        assert_eq!(folded.len(), queued_at.len(), "one queued_at per entry");
        assert_eq!(folded.len(), owes.len(), "one owes per entry");
        if folded.is_empty() {
            return Ok(EnqueueOutcome::default());
        }
        let trees = self.lookups()?;
        let served = &self.served;
        let n = served.len();
        // Compact, for a load of 100,000 addresses: keys without an
        // allocation each, and per target indices into `folded`.
        let keys: Vec<Key> = folded.iter().map(|f| Key::of(f.addr)).collect();
        let mut out = EnqueueOutcome::default();
        // Per served target, the entries queued for it, in order.
        let mut queued: Vec<Vec<u32>> = vec![Vec::new(); n];
        // Entry i's place in each served target's list: `places(i)[si]`
        // (`NOT_OWED`: not queued for it).
        let mut pos: Vec<u32> = vec![NOT_OWED; folded.len() * n];
        let mut not_queued: Vec<(&[u8], u64)> = Vec::new();
        let mut counts = TargetCounts::default();
        for (i, (key, f)) in keys.iter().zip(folded).enumerate() {
            let (class, takes) =
                self.targets_taking(key.as_slice(), f.last_seen_ms, now_ms, owes[i], trees)?;
            match class {
                Class::New => out.queued_new += 1,
                Class::NotDue => out.already_reported += 1,
                _ => out.dead += 1,
            }
            if class != Class::New {
                not_queued.push((key.as_slice(), f.last_seen_ms.min(now_ms)));
                continue;
            }
            for (si, t) in served.iter().enumerate().filter(|(si, _)| takes.has(*si)) {
                pos[i * n + si] = queued[si].len() as u32;
                queued[si].push(i as u32);
                counts.add(t.id, 1);
            }
        }
        // 1. Everything but the entries, and the intent.
        let (first_seq, next_seq) = (
            &self.meta,
            &self.targets,
            &self.order,
            &self.seen,
            &self.seen_time,
        )
            .transaction(|(meta, targets, order, seen, seen_time)| {
                if meta.get(meta_keys::LOADING)?.is_some() {
                    return sled::transaction::abort(migrations::MigrationError::Corrupt(
                        "meta/loading: a load is already under way".into(),
                    ));
                }
                let first_seq = tx_counter(meta, meta_keys::NEXT_SEQ)?;
                let count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                let mut next_seq = first_seq;
                for (t, list) in served.iter().zip(&queued) {
                    let mut seq = first_seq;
                    for group in list.chunks(GROUP_MAX) {
                        let members: Vec<&[u8]> =
                            group.iter().map(|&i| keys[i as usize].as_slice()).collect();
                        let times: Vec<u64> =
                            group.iter().map(|&i| queued_at[i as usize]).collect();
                        seq = tx_insert_groups(order, t.id, seq, &members, &times)?;
                    }
                    next_seq = next_seq.max(seq);
                }
                if next_seq != first_seq {
                    meta.insert(meta_keys::NEXT_SEQ, &next_seq.to_be_bytes())?;
                    meta.insert(
                        meta_keys::PENDING_COUNT,
                        &(count + out.queued_new).to_be_bytes(),
                    )?;
                    counts.write(targets)?;
                    meta.insert(
                        meta_keys::LOADING,
                        &v4::encode_loading(first_seq, next_seq)[..],
                    )?;
                }
                for (key, at) in &not_queued {
                    tx_note_seen(seen, seen_time, key, *at)?;
                }
                Ok((first_seq, next_seq))
            })
            .map_err(tx_err)?;
        if next_seq == first_seq {
            return Ok(out);
        }
        // 2. The intent and the groups durable before any entry.
        self.flush()?;
        // 3. The entries, in key order.
        let places = |i: usize| &pos[i * n..(i + 1) * n];
        let mut order: Vec<u32> = (0..folded.len() as u32)
            .filter(|&i| places(i as usize).iter().any(|&p| p != NOT_OWED))
            .collect();
        order.sort_unstable_by(|&a, &b| {
            keys[a as usize].as_slice().cmp(keys[b as usize].as_slice())
        });
        for i in order {
            let i = i as usize;
            let f = &folded[i];
            let mut e = Intake {
                first_seen_ms: f.first_seen_ms,
                last_seen_ms: f.last_seen_ms,
                hits: f.hits,
                owed: served
                    .iter()
                    .zip(places(i))
                    .filter(|(_, &p)| p != NOT_OWED)
                    .map(|(t, &p)| Owed {
                        target: t.id,
                        seq: first_seq + (p as usize / GROUP_MAX) as u64,
                    })
                    .collect(),
            };
            e.owed.sort_unstable();
            let before = self
                .pending
                .insert(keys[i].as_slice(), v3::encode_intake(&e))?;
            debug_assert!(before.is_none(), "loaded {}, which was pending", f.addr);
        }
        // 4. Durable, then the intent goes.
        self.flush()?;
        self.meta.remove(meta_keys::LOADING)?;
        Ok(out)
    }

    /// Finishes a load that a crash interrupted (this module's
    /// documentation), if `meta/loading` says there is one: keeps in the
    /// groups it wrote the addresses whose `pending` entries were written
    /// (and owe that group's target at its sequence), fixes the counters
    /// and removes the intent, in one transaction. Returns the addresses
    /// kept and dropped (target by target), `None` when no load was under
    /// way. Called by [`Store::open_locked`] before anything else reads
    /// the queue.
    pub(super) fn finish_interrupted_load(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let Some(intent) = self.meta.get(meta_keys::LOADING)? else {
            return Ok(None);
        };
        let (first, next) = v4::decode_loading(&intent)?;
        // Nothing else writes while the store opens: the groups' keys can
        // be listed outside the transaction.
        let mut groups = Vec::new();
        for &(t, _) in &self.registered {
            for kv in self
                .order
                .range(v3::order_key(t, first)..v3::order_key(t, next))
            {
                let (key, _) = kv?;
                groups.push((t, v3::split_order_key(&key)?.1, key));
            }
        }
        let (kept, dropped) = (&self.meta, &self.targets, &self.order, &self.pending)
            .transaction(|(meta, targets, order, pending)| {
                let (mut kept, mut dropped) = (0u64, 0u64);
                let mut counts = TargetCounts::default();
                let mut absent = BTreeSet::new();
                for (t, seq, key) in &groups {
                    let Some(value) = order.get(key)? else {
                        continue;
                    };
                    let (at, members) = v3::decode_group(&value).or_else(abort)?;
                    let listed = members.len();
                    let mut keep = Vec::with_capacity(listed);
                    for m in members {
                        let owed = match pending.get(m)? {
                            Some(e) => {
                                v3::decode_intake(&e).or_else(abort)?.seq_for(*t) == Some(*seq)
                            }
                            None => {
                                absent.insert(m.to_vec());
                                false
                            }
                        };
                        if owed {
                            keep.push(m);
                        }
                    }
                    let lost = (listed - keep.len()) as u64;
                    kept += keep.len() as u64;
                    dropped += lost;
                    counts.add(*t, -(lost as i64));
                    if keep.is_empty() {
                        order.remove(key.as_ref())?;
                    } else if lost > 0 {
                        order.insert(key.as_ref(), v3::encode_group(at, keep))?;
                    }
                }
                let count = tx_counter(meta, meta_keys::PENDING_COUNT)?;
                meta.insert(
                    meta_keys::PENDING_COUNT,
                    &count.saturating_sub(absent.len() as u64).to_be_bytes(),
                )?;
                counts.write(targets)?;
                meta.remove(meta_keys::LOADING)?;
                Ok((kept, dropped))
            })
            .map_err(tx_err)?;
        self.flush()?;
        Ok(Some((kept, dropped)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{s, TTL};
    use crate::store::{Policy, Sighting, TargetSpec};
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use std::net::IpAddr;

    /// Addresses new to the queue: across three groups of each target.
    const NEW: usize = 2_500;
    /// Owed to targets 1 and 2 only (0 reported it after its sighting).
    const X: &str = "192.0.2.1";
    /// Owed to targets 0 and 1 only (2 dead-lettered it).
    const Y: &str = "2001:db8::1";
    /// Pending before the load, for every target.
    const Z: &str = "198.51.100.1";

    fn open(dir: &std::path::Path) -> Store {
        let policy = Policy {
            ttl_ms: TTL,
            rereport_after_ms: 0,
        };
        let specs: Vec<TargetSpec> = ["threatjammer", "abuseipdb", "crowdsec"]
            .map(|name| TargetSpec {
                name: name.into(),
                policy,
            })
            .into();
        Store::open(dir, 8 << 20, &specs).unwrap()
    }

    /// Three targets; X reported to 0 at 5000 and to 1 and 2 at 1000, Y
    /// dead-lettered by 2 and reported to 0 and 1 at 1000, Z pending.
    fn with_history(dir: &std::path::Path) -> Store {
        let q = open(dir);
        q.enqueue(&[s(X, 10), s(Y, 10)], None, 100).unwrap();
        for t in 0..3 {
            let batch = q.peek_batch(t, 10).unwrap();
            let (y, x): (Vec<_>, Vec<_>) = batch.into_iter().partition(|b| b.addr == ip(Y));
            let at = if t == 0 { 5000 } else { 1000 };
            q.ack(t, &x, at, at).unwrap();
            if t == 2 {
                q.dead_letter(t, &y, 422, "rejected", 1000).unwrap();
            } else {
                q.ack(t, &y, 1000, 1000).unwrap();
            }
        }
        q.enqueue(&[s(Z, 2000)], None, 2000).unwrap();
        q
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The addresses a replay would load: X, the new ones, Y.
    fn loaded() -> Vec<IpAddr> {
        let mut v = vec![ip(X)];
        v.extend((0..NEW).map(|i| IpAddr::from([10, 0, (i >> 8) as u8, i as u8])));
        v.push(ip(Y));
        v
    }

    /// One sighting of each of `addrs`, at 3000.
    fn at_3000(addrs: &[IpAddr]) -> Vec<Sighting> {
        addrs
            .iter()
            .map(|&addr| Sighting {
                addr,
                seen_ms: 3000,
            })
            .collect()
    }

    /// Loads `addrs` as `tjfwd replay` does: classified, then loaded,
    /// each with one sighting at 3000. Returns the sequences it used.
    fn load(q: &Store, addrs: &[IpAddr]) -> (u64, u64) {
        let folded = super::super::intake::fold(&at_3000(addrs));
        let owes: Vec<Owes> = q
            .classify_owed(&folded, 3000)
            .unwrap()
            .into_iter()
            .map(|(class, owes)| {
                assert_eq!(class, Class::New);
                owes
            })
            .collect();
        let first = next_seq(q);
        let at = vec![3000; folded.len()];
        let out = q.load_new(&folded, &at, &owes, 3000).unwrap();
        assert_eq!(out.queued_new, addrs.len() as u64);
        assert!(q.meta.get(meta_keys::LOADING).unwrap().is_none());
        (first, next_seq(q))
    }

    fn next_seq(q: &Store) -> u64 {
        v1::decode_u64(
            "next_seq",
            q.meta.get(meta_keys::NEXT_SEQ).unwrap().as_deref(),
        )
        .unwrap()
    }

    /// Each target's FIFO.
    fn fifos(q: &Store) -> Vec<Vec<IpAddr>> {
        (0..3)
            .map(|t| {
                q.peek_batch(t, 10_000)
                    .unwrap()
                    .into_iter()
                    .map(|b| b.addr)
                    .collect()
            })
            .collect()
    }

    fn sound(q: &Store) {
        let v = q.verify();
        assert_eq!(v.problems, 0, "{:?}", v.details);
    }

    #[test]
    fn a_load_queues_as_enqueue_does() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (with_history(da.path()), with_history(db.path()));
        let addrs = loaded();
        load(&a, &addrs);
        b.enqueue(&at_3000(&addrs), None, 3000).unwrap();
        sound(&a);
        assert_eq!(fifos(&a), fifos(&b));
        assert_eq!(a.pending_count().unwrap(), b.pending_count().unwrap());
        for addr in &addrs {
            assert_eq!(a.pending(*addr).unwrap(), b.pending(*addr).unwrap());
        }
        let f = fifos(&a);
        assert_eq!(f[0].len(), NEW + 2, "Z, the new ones, Y");
        assert!(!f[0].contains(&ip(X)) && !f[2].contains(&ip(Y)));
        assert_eq!(f[1].len(), NEW + 3);
    }

    /// A crash during a load leaves any subset of its entries written (and
    /// the intent, and the groups): the next open keeps exactly those, in
    /// their places in each FIFO, with the counters to match; the same
    /// load again (the replay run again) queues the others, each once.
    #[test]
    fn an_interrupted_load_is_finished_at_the_next_open() {
        let addrs = loaded();
        let mut sorted = addrs.clone();
        sorted.sort_by_key(|a| v1::addr_key(*a));
        let mut shuffled = addrs.clone();
        shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        let subsets: Vec<(&str, Vec<IpAddr>)> = vec![
            ("every entry written", addrs.clone()),
            ("none written", vec![]),
            ("the first 1,000 in key order", sorted[..1000].to_vec()),
            ("a random half", shuffled[..addrs.len() / 2].to_vec()),
            ("all but X and Y", addrs[1..addrs.len() - 1].to_vec()),
        ];
        for (what, written) in subsets {
            let d = tempfile::tempdir().unwrap();
            let q = with_history(d.path());
            let before = fifos(&q);
            let (first, next) = load(&q, &addrs);
            let whole = fifos(&q);
            // The crash: the entries not written gone, the intent still there.
            for a in &addrs {
                if !written.contains(a) {
                    q.pending.remove(v1::addr_key(*a)).unwrap();
                }
            }
            q.meta
                .insert(meta_keys::LOADING, &v4::encode_loading(first, next)[..])
                .unwrap();
            q.flush().unwrap();
            assert!(
                q.verify().problems > 0,
                "{what}: an unfinished load is found"
            );
            drop(q);
            let q = open(d.path());
            sound(&q);
            assert!(q.meta.get(meta_keys::LOADING).unwrap().is_none(), "{what}");
            assert_eq!(
                q.pending_count().unwrap(),
                1 + written.len() as u64,
                "{what}"
            );
            let kept: Vec<Vec<IpAddr>> = whole
                .iter()
                .map(|f| {
                    f.iter()
                        .copied()
                        .filter(|a| *a == ip(Z) || written.contains(a))
                        .collect()
                })
                .collect();
            assert_eq!(fifos(&q), kept, "{what}");
            // The replay again: what is pending is not loaded twice.
            let rest: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !written.contains(a))
                .collect();
            if !rest.is_empty() {
                load(&q, &rest);
            }
            sound(&q);
            assert_eq!(q.pending_count().unwrap(), 1 + addrs.len() as u64, "{what}");
            let mut after: Vec<Vec<IpAddr>> = fifos(&q);
            let mut expected = whole.clone();
            for f in after.iter_mut().chain(expected.iter_mut()) {
                f.sort();
            }
            assert_eq!(after, expected, "{what}: every address once in each FIFO");
            assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 3, "Z");
        }
    }
}
