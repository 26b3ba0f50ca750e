//! Checking the store: every record read back and decoded, the trees
//! checked against each other and against the stored counters; and the one
//! repair made in place, a recount of the pending counter.
//!
//! The cross-checks are the writers' invariants (stated in the `migrations`
//! crate): every address a group of target `t` lists is owed to `t` at
//! that group's sequence, once, and as many addresses are listed for `t`
//! as `t` is owed; `meta/pending_count` equals the number of `pending`
//! entries and each target's pending count what it is owed;
//! `meta/next_seq` is above every sequence in use; each `seen` entry has
//! its one `seen_time` key and each key its entry. They mean something
//! only while nothing writes (`tjfwd recover --check`, tests): sled's
//! iterators see each tree as it changes. Online, [`Store::verify_until`]
//! without `cross_check` only reads every record back.
//!
//! Nothing here writes, except [`Store::repair_pending_count`].

use std::collections::{BTreeMap, BTreeSet};

use migrations::meta_keys;
use migrations::v1;
use migrations::v3::{self, TargetId};
use migrations::v4;

use super::{Store, StoreError};

/// What [`Store::verify`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    pub pending: u64,
    pub reported: u64,
    pub dead: u64,
    pub checkpoints: u64,
    /// Last sightings kept for the denylist (`seen`).
    pub seen: u64,
    /// Problems found (0: the database is sound).
    pub problems: u64,
    /// The first few problems, in words.
    pub details: Vec<String>,
    /// Every record was read (false: stopped early).
    pub complete: bool,
}

impl Store {
    /// Reads every record of every tree and checks that the trees agree
    /// with each other and with the stored counters (a full scan: for
    /// `tjfwd recover --check`, not for hot paths).
    pub fn verify(&self) -> Verified {
        self.verify_until(&std::sync::atomic::AtomicBool::new(false), true)
    }

    /// [`Store::verify`], giving up (with `complete: false`) once `stop` is
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
            .map_err(StoreError::from)
            .and_then(|b| Ok(v1::decode_u64("meta/pending_count", b.as_deref())?));
        let next_seq = self
            .meta
            .get(meta_keys::NEXT_SEQ)
            .map_err(StoreError::from)
            .and_then(|b| Ok(v1::decode_u64("meta/next_seq", b.as_deref())?));
        // Only `tjfwd replay`'s bulk load writes it, and removes it before
        // it returns; the next open finishes a load a crash interrupted.
        match self.meta.get(meta_keys::LOADING) {
            Ok(Some(_)) if cross_check => problem(
                &mut v,
                "meta/loading: a bulk load was interrupted and not finished".into(),
            ),
            Ok(_) => {}
            Err(e) => problem(&mut v, format!("meta/loading: {e}")),
        }
        for (t, name) in &self.registered {
            for (what, r) in [
                ("request log", self.request_log(*t).map(drop)),
                ("health record", self.health(*t).map(drop)),
            ] {
                if let Err(e) = r {
                    problem(&mut v, format!("target {name}: {what}: {e}"));
                }
            }
        }
        let mut max_seq = None::<u64>;
        // Per target: the entries that owe it, and the addresses its groups
        // list.
        let mut owed: BTreeMap<TargetId, u64> = BTreeMap::new();
        let mut listed: BTreeMap<TargetId, u64> = BTreeMap::new();
        for item in self.pending.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(StoreError::from).and_then(|(k, val)| {
                v1::addr_from_key(&k)?;
                Ok(v3::decode_intake(&val)?)
            });
            match checked {
                Ok(e) => {
                    v.pending += 1;
                    for o in &e.owed {
                        *owed.entry(o.target).or_default() += 1;
                        max_seq = max_seq.max(Some(o.seq));
                    }
                }
                Err(e) => {
                    problem(&mut v, format!("pending tree: {e}"));
                    break;
                }
            }
        }
        // Every address a group of target t lists must be owed to t at the
        // group's sequence, once. With as many listed as owed, each owed
        // address is listed exactly once, in the group its entry names.
        for item in self.order.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(StoreError::from).and_then(|(k, group)| {
                let (t, seq) = v3::split_order_key(&k)?;
                let (_, members) = v3::decode_group(&group)?;
                let members: Vec<Vec<u8>> = members.into_iter().map(<[u8]>::to_vec).collect();
                Ok((t, seq, members))
            });
            let (t, seq, members) = match checked {
                Ok(g) => g,
                Err(e) => {
                    problem(&mut v, format!("order tree: {e}"));
                    break;
                }
            };
            *listed.entry(t).or_default() += members.len() as u64;
            max_seq = max_seq.max(Some(seq));
            if !cross_check {
                continue;
            }
            let mut seen = std::collections::HashSet::with_capacity(members.len());
            for key in &members {
                let addr = v1::addr_from_key(key).map_or_else(|e| e.to_string(), |a| a.to_string());
                if !seen.insert(key.as_slice()) {
                    problem(
                        &mut v,
                        format!("target {t}: order group {seq} lists {addr} twice"),
                    );
                    continue;
                }
                let entry = self
                    .pending
                    .get(key)
                    .map_err(StoreError::from)
                    .and_then(|e| Ok(e.map(|e| v3::decode_intake(&e)).transpose()?));
                match entry {
                    Ok(Some(e)) if e.seq_for(t) == Some(seq) => {}
                    Ok(Some(e)) => problem(
                        &mut v,
                        format!(
                            "target {t}: order group {seq} lists {addr}, which it owes in group {:?}",
                            e.seq_for(t)
                        ),
                    ),
                    Ok(None) => problem(
                        &mut v,
                        format!("target {t}: order group {seq} lists {addr}, which is not pending"),
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
            for t in owed.keys().chain(listed.keys()).collect::<BTreeSet<_>>() {
                let (o, l) = (
                    owed.get(t).copied().unwrap_or(0),
                    listed.get(t).copied().unwrap_or(0),
                );
                if o != l {
                    mismatches.push(format!(
                        "target {t}: {l} addresses in order groups for {o} pending addresses"
                    ));
                }
            }
            for (t, _) in &self.registered {
                let o = owed.get(t).copied().unwrap_or(0);
                match self.pending_count_for(*t) {
                    Ok(c) if c != o => mismatches.push(format!(
                        "target {t}: pending counter says {c}, the tree holds {o}"
                    )),
                    Ok(_) => {}
                    Err(e) => mismatches.push(format!("target {t}: {e}")),
                }
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
        for item in self.reported.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(StoreError::from).and_then(|(k, val)| {
                let (_, addr) = v3::split_target_addr_key(&k)?;
                v1::addr_from_key(addr)?;
                Ok(v1::decode::<v1::Reported>("reported", &val).map(drop)?)
            });
            match checked {
                Ok(()) => v.reported += 1,
                Err(e) => {
                    problem(&mut v, format!("reported tree: {e}"));
                    break;
                }
            }
        }
        for item in self.expiry.iter() {
            if let Err(e) = item
                .map_err(StoreError::from)
                .and_then(|(k, _)| Ok(v3::split_expiry_key(&k).map(drop)?))
            {
                problem(&mut v, format!("expiry tree: {e}"));
                break;
            }
        }
        for item in self.dead.iter() {
            let checked = item.map_err(StoreError::from).and_then(|(k, val)| {
                let (_, addr) = v3::split_target_addr_key(&k)?;
                v1::addr_from_key(addr)?;
                Ok(v1::decode::<v1::Dead>("dead", &val).map(drop)?)
            });
            match checked {
                Ok(()) => v.dead += 1,
                Err(e) => {
                    problem(&mut v, format!("dead-letter tree: {e}"));
                    break;
                }
            }
        }
        // The denylist's last sightings: each `seen` entry with exactly
        // its `seen_time` key, and each key with its entry.
        for item in self.seen.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(StoreError::from).and_then(|(k, val)| {
                let addr = v1::addr_from_key(&k)?;
                Ok((k, addr, v4::decode_seen(&val)?))
            });
            match checked {
                Ok((k, addr, at)) => {
                    v.seen += 1;
                    if cross_check
                        && !self
                            .seen_time
                            .contains_key(v4::seen_time_key(at, &k))
                            .unwrap_or(false)
                    {
                        problem(&mut v, format!("seen {addr} at {at} has no time key"));
                    }
                }
                Err(e) => {
                    problem(&mut v, format!("seen tree: {e}"));
                    break;
                }
            }
        }
        for item in self.seen_time.iter() {
            if stopped() {
                return v;
            }
            let checked = item.map_err(StoreError::from).and_then(|(k, _)| {
                let (at, addr) = v4::split_seen_time_key(&k)?;
                Ok((at, v1::addr_from_key(addr)?, addr.to_vec()))
            });
            match checked {
                Ok((at, addr, key)) if cross_check => {
                    let entry = self
                        .seen
                        .get(&key)
                        .map_err(StoreError::from)
                        .and_then(|e| Ok(e.map(|e| v4::decode_seen(&e)).transpose()?));
                    if !matches!(entry, Ok(Some(t)) if t == at) {
                        problem(
                            &mut v,
                            format!("seen_time lists {addr} at {at}, seen holds {entry:?}"),
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    problem(&mut v, format!("seen_time tree: {e}"));
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

    /// Recounts the pending set, and what each target owes, and stores the
    /// counts (a scan): the repair for counters that disagree with the
    /// tree. Returns the number of pending entries.
    pub fn repair_pending_count(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        let mut owed: BTreeMap<TargetId, u64> = BTreeMap::new();
        for item in self.pending.iter() {
            let (_, val) = item?;
            n += 1;
            for o in v3::decode_intake(&val)?.owed {
                *owed.entry(o.target).or_default() += 1;
            }
        }
        for (t, _) in &self.registered {
            let c = owed.get(t).copied().unwrap_or(0);
            self.targets.insert(
                v3::field_key(*t, v3::fields::PENDING_COUNT),
                &c.to_be_bytes(),
            )?;
        }
        self.meta
            .insert(meta_keys::PENDING_COUNT, &n.to_be_bytes())?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{open, s};

    #[test]
    fn verify_compares_the_trees_offline_only() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        q.enqueue(&[s("1.2.3.4", 5), s("5.6.7.8", 6)], None, 10)
            .unwrap();
        assert_eq!(q.verify().problems, 0);
        assert!(q.verify().complete);
        // A pending entry lost without its order entry and counters: the
        // group, the target's listing, the target's counter and the
        // store's counter each disagree.
        q.pending
            .remove(v1::addr_key("1.2.3.4".parse().unwrap()))
            .unwrap();
        let v = q.verify();
        assert_eq!(v.problems, 4, "{:?}", v.details);
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
    fn verify_checks_the_denylist_index_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        q.enqueue(&[s("1.2.3.4", 5)], None, 10).unwrap();
        let b = q.peek_batch(0, 10).unwrap();
        q.ack(0, &b, 20, 20).unwrap();
        let v = q.verify();
        assert_eq!((v.problems, v.seen), (0, 1), "{:?}", v.details);
        let key = v1::addr_key("1.2.3.4".parse().unwrap());
        // The entry moved without its key: both directions disagree.
        q.seen.insert(&key, &v4::encode_seen(7)).unwrap();
        let v = q.verify();
        assert_eq!(v.problems, 2, "{:?}", v.details);
        assert!(v.details[0].contains("has no time key"), "{:?}", v.details);
        assert!(
            v.details[1].contains("seen_time lists 1.2.3.4 at 5"),
            "{:?}",
            v.details
        );
        q.seen.insert(&key, &[9u8][..]).unwrap();
        assert!(q.verify().details[0].contains("seen tree"));
    }
}
