//! Which addresses AbuseIPDB's next request carries: its hook
//! [`Target::select`](crate::targets::Target::select), a scan of all the
//! target owes (fine at a few requests a day, and bounded by `[queue]
//! max_pending`).
//!
//! Each address owed is, in this order:
//!
//! 1. **too old** when its last sighting is more than 60 days old
//!    (AbuseIPDB's reporting policy): dead-lettered with that reason, never
//!    sent ([`Selection::stale`]);
//! 2. **held back** while it has not shown `min_attempts` attempts within
//!    `attempts_window`, or **released** once its last sighting is older
//!    than the window and it still has not ([`Selection::unqualified`]).
//!    The pending entry keeps only (first sighting, last sighting, hits),
//!    so an address qualifies when those counts *guarantee* `min_attempts`
//!    in some window: its span `[first, last]` is covered by `k =
//!    floor((last - first) / window) + 1` windows, so one of them holds at
//!    least `ceil(hits / k)` attempts (pigeonhole). Sound: an address that
//!    did not qualify is never reported; one that did may wait for a
//!    sighting more. With `min_attempts = 1` everything qualifies;
//! 3. otherwise **a candidate**, grouped by attacker: an IPv4 address is
//!    an attacker, an IPv6 /64 is one (a host rotating through the
//!    addresses of its /64 is one attacker, not thousands).
//!
//! The batch is filled round-robin over the attackers, ranked by the
//! addresses of theirs selected in the last 24 hours (fewest first: an
//! attacker that got a slot goes behind those that did not), then by
//! their total hits (most active first), then by their oldest sighting:
//! each attacker's most active address in the first pass, its next in the
//! second, and so on. So when the day's quota is smaller than what waits,
//! the most active attackers go first, and a flood of addresses from one
//! /64 takes one slot a pass: it fills what the others leave, never their
//! place. The memory of what was selected is the target's, in memory: a
//! restart or a reload forgets it (the ranking by hits remains).
//!
//! Memory: a first scan sums hits per attacker (a few dozen bytes per
//! distinct attacker owed), a second keeps at most the batch's addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::store::{BatchItem, Store, StoreError, TargetId};
use crate::targets::Selection;

/// AbuseIPDB takes reports of attacks at most this old.
pub const MAX_AGE: Duration = Duration::from_secs(60 * 86_400);

/// The reason stored with an address too old to report.
pub const TOO_OLD_REASON: &str =
    "last seen more than 60 days ago: AbuseIPDB accepts reports of attacks at most 60 days old";

/// Most addresses settled (dead-lettered or released) by one selection:
/// the rest are by the next ones.
const SETTLE_MAX: usize = 10_000;

/// How long a selected address counts against its attacker's rank.
const SERVED_FOR_MS: u64 = 86_400_000;

/// Largest memory of selected attackers; beyond, it starts afresh.
const SERVED_MAX: usize = 200_000;

/// When an address is worth a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Attempts needed within `window_ms`.
    pub min_attempts: u32,
    /// `attempts_window`, ms.
    pub window_ms: u64,
}

impl Rules {
    /// Whether `item`'s counts guarantee `min_attempts` attempts within
    /// one window (see the module doc).
    pub fn qualifies(&self, item: &BatchItem) -> bool {
        if self.min_attempts <= 1 {
            return true;
        }
        let span = item.last_seen_ms.saturating_sub(item.first_seen_ms);
        let windows = span / self.window_ms.max(1) + 1;
        item.hits.div_ceil(windows) >= u64::from(self.min_attempts)
    }
}

/// The attacker an address belongs to: the address itself (IPv4, as
/// IPv4-mapped IPv6), or its /64 (IPv6). The two never collide: a /64's
/// low 64 bits are zero, an IPv4-mapped address's are not.
pub fn attacker(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

/// The attackers selected lately: attacker → (addresses selected, when
/// last).
#[derive(Debug, Default)]
pub struct Served(HashMap<u128, (u32, u64)>);

impl Served {
    fn count(&self, a: u128) -> u32 {
        self.0.get(&a).map_or(0, |e| e.0)
    }

    fn record(&mut self, batch: &[BatchItem], now_ms: u64) {
        self.0
            .retain(|_, (_, at)| at.saturating_add(SERVED_FOR_MS) > now_ms);
        if self.0.len() > SERVED_MAX {
            self.0.clear();
        }
        for item in batch {
            let e = self.0.entry(attacker(item.addr)).or_insert((0, now_ms));
            e.0 = e.0.saturating_add(1);
            e.1 = now_ms;
        }
    }
}

/// An attacker's sums over its candidate addresses.
#[derive(Debug, Clone, Copy)]
struct Agg {
    hits: u64,
    oldest: u64,
    count: usize,
}

/// What the next request carries (see the module doc): at most `n`
/// addresses of those target `t` owes in `queue`, at `now_ms`.
pub fn select(
    queue: &Store,
    t: TargetId,
    n: usize,
    now_ms: u64,
    rules: Rules,
    served: &mut Served,
) -> Result<Selection, StoreError> {
    let mut sel = Selection::default();
    let oldest_ok = now_ms.saturating_sub(MAX_AGE.as_millis() as u64);
    let candidate = |item: &BatchItem| item.last_seen_ms >= oldest_ok && rules.qualifies(item);

    // First scan: settle, hold back, and sum the candidates per attacker.
    let mut attackers: HashMap<u128, Agg> = HashMap::new();
    let mut recheck_ms: Option<u64> = None;
    queue.visit_owed(t, |item| {
        if item.last_seen_ms < oldest_ok {
            if sel.stale.len() < SETTLE_MAX {
                sel.stale.push((item, TOO_OLD_REASON.to_string()));
            }
        } else if !rules.qualifies(&item) {
            let until = item.last_seen_ms.saturating_add(rules.window_ms);
            if until <= now_ms {
                if sel.unqualified.len() < SETTLE_MAX {
                    sel.unqualified.push(item);
                }
            } else {
                sel.waiting += 1;
                let left = until - now_ms;
                recheck_ms = Some(recheck_ms.map_or(left, |r| r.min(left)));
            }
        } else {
            let a = attackers.entry(attacker(item.addr)).or_insert(Agg {
                hits: 0,
                oldest: item.first_seen_ms,
                count: 0,
            });
            a.hits = a.hits.saturating_add(item.hits);
            a.oldest = a.oldest.min(item.first_seen_ms);
            a.count += 1;
        }
    })?;
    sel.recheck = recheck_ms.map(Duration::from_millis);
    if attackers.is_empty() || n == 0 {
        return Ok(sel);
    }

    // The rank, and how many addresses each attacker gets (round-robin).
    let mut ranked: Vec<(u128, Agg)> = attackers.into_iter().collect();
    ranked.sort_by(|(ka, a), (kb, b)| {
        served
            .count(*ka)
            .cmp(&served.count(*kb))
            .then(b.hits.cmp(&a.hits))
            .then(a.oldest.cmp(&b.oldest))
            .then(ka.cmp(kb))
    });
    let mut quota = vec![0usize; ranked.len()];
    let mut active: Vec<usize> = (0..ranked.len()).collect();
    let mut total = 0;
    'passes: while !active.is_empty() {
        for &i in &active {
            if total == n {
                break 'passes;
            }
            quota[i] += 1;
            total += 1;
        }
        active.retain(|&i| quota[i] < ranked[i].1.count);
    }
    let rank: HashMap<u128, usize> = ranked
        .iter()
        .enumerate()
        .filter(|(i, _)| quota[*i] > 0)
        .map(|(i, (k, _))| (*k, i))
        .collect();

    // Second scan: each chosen attacker's most active addresses.
    let better = |a: &BatchItem, b: &BatchItem| {
        b.hits
            .cmp(&a.hits)
            .then(a.first_seen_ms.cmp(&b.first_seen_ms))
            .then((a.seq, a.index).cmp(&(b.seq, b.index)))
    };
    let mut picks: HashMap<usize, Vec<BatchItem>> = HashMap::new();
    queue.visit_owed(t, |item| {
        if !candidate(&item) {
            return;
        }
        let Some(&i) = rank.get(&attacker(item.addr)) else {
            return;
        };
        let k = quota[i];
        let list = picks.entry(i).or_default();
        list.push(item);
        if list.len() > 2 * k + 16 {
            list.sort_by(better);
            list.truncate(k);
        }
    })?;
    let mut order: Vec<(usize, Vec<BatchItem>)> = picks
        .into_iter()
        .map(|(i, mut list)| {
            list.sort_by(better);
            list.truncate(quota[i]);
            (i, list)
        })
        .collect();
    order.sort_by_key(|(i, _)| *i);
    let mut batch = Vec::with_capacity(total);
    for pass in 0.. {
        let before = batch.len();
        for (_, list) in &order {
            if let Some(item) = list.get(pass) {
                batch.push(item.clone());
            }
        }
        if batch.len() == before || batch.len() >= n {
            break;
        }
    }
    batch.truncate(n);
    served.record(&batch, now_ms);
    sel.batch = batch;
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Policy, Sighting, TargetSpec};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const DAY: u64 = 86_400_000;
    const NOW: u64 = 1_800_000_000_000;

    fn item(hits: u64, first: u64, last: u64) -> BatchItem {
        BatchItem {
            addr: "203.0.113.1".parse().unwrap(),
            seq: 0,
            index: 0,
            hits,
            first_seen_ms: first,
            last_seen_ms: last,
        }
    }

    #[test]
    fn an_address_qualifies_only_when_its_counts_guarantee_the_attempts() {
        let r = Rules {
            min_attempts: 5,
            window_ms: 3_600_000,
        };
        let h = 3_600_000;
        // 5 hits within one window.
        assert!(r.qualifies(&item(5, 0, h - 1)));
        // 5 hits over two windows' span: maybe 3 + 2: not sure.
        assert!(!r.qualifies(&item(5, 0, h)));
        // 9 hits over two windows: one holds at least 5.
        assert!(r.qualifies(&item(9, 0, 2 * h - 1)));
        assert!(!r.qualifies(&item(4, 0, 0)));
        let one = Rules {
            min_attempts: 1,
            window_ms: h,
        };
        assert!(one.qualifies(&item(1, 0, 100 * h)));
    }

    #[test]
    fn attackers_are_ipv4_addresses_and_ipv6_slash_64s() {
        let a = |s: &str| attacker(s.parse().unwrap());
        assert_eq!(a("2001:db8:1:2::1"), a("2001:db8:1:2:ffff::9"));
        assert_ne!(a("2001:db8:1:2::1"), a("2001:db8:1:3::1"));
        assert_ne!(a("192.0.2.1"), a("192.0.2.2"));
        assert_eq!(a("192.0.2.1"), a("::ffff:192.0.2.1"));
        assert_ne!(a("::"), a("0.0.0.0"));
    }

    /// The target's id: the first a new store gives.
    const T: TargetId = 0;

    fn store(dir: &std::path::Path) -> Store {
        let spec = TargetSpec {
            name: "abuseipdb".into(),
            policy: Policy {
                ttl_ms: DAY,
                rereport_after_ms: DAY,
            },
        };
        Store::open(dir, 64 << 20, &[spec]).unwrap()
    }

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))
    }

    fn v6(i: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_0001_0002u128 << 64) | u128::from(i),
        ))
    }

    /// 100,000 addresses of one /64, each seen twice, queued mixed with
    /// 1,000 IPv4 attackers seen once each (before, among and after the
    /// flood): with a quota of a few small requests, the 1,000 go in the
    /// first requests; the /64 gets one slot a pass.
    #[test]
    fn a_slash_64_flood_cannot_crowd_out_the_other_attackers() {
        let d = tempfile::tempdir().unwrap();
        let q = store(d.path());
        let mut sightings = Vec::new();
        let mut next_v4 = 0;
        for i in 0..100_000u64 {
            if i % 100 == 0 {
                sightings.push(Sighting {
                    addr: v4(next_v4),
                    seen_ms: NOW - 1000,
                });
                next_v4 += 1;
            }
            for _ in 0..2 {
                sightings.push(Sighting {
                    addr: v6(i),
                    seen_ms: NOW - 2000,
                });
            }
        }
        for chunk in sightings.chunks(10_000) {
            q.enqueue(chunk, None, NOW).unwrap();
        }
        assert_eq!(next_v4, 1000);
        assert_eq!(q.pending_count_for(T).unwrap(), 101_000);
        let rules = Rules {
            min_attempts: 1,
            window_ms: 7_200_000,
        };
        let mut served = Served::default();
        let started = std::time::Instant::now();
        // Requests of 400: the first three carry the 1,000 IPv4 attackers.
        let mut sent_v4 = 0;
        let mut sent_v6 = 0;
        for request in 0..3 {
            let sel = select(&q, T, 400, NOW, rules, &mut served).unwrap();
            assert_eq!(sel.batch.len(), 400);
            let v6_here = sel.batch.iter().filter(|i| i.addr.is_ipv6()).count();
            sent_v6 += v6_here;
            sent_v4 += 400 - v6_here;
            // The /64 is the most active attacker: first in its pass, then
            // behind every attacker not served yet.
            assert!(v6_here <= 1 || request == 2, "request {request}: {v6_here}");
            q.ack(T, &sel.batch, NOW, NOW).unwrap();
        }
        assert_eq!(sent_v4, 1000, "the /64 took {sent_v6} slots");
        assert!(sent_v6 <= 200, "{sent_v6}");
        // Then the /64 has what is left.
        let sel = select(&q, T, 400, NOW, rules, &mut served).unwrap();
        assert!(sel.batch.iter().all(|i| i.addr.is_ipv6()));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_most_active_attackers_go_first_one_address_each_a_pass() {
        let d = tempfile::tempdir().unwrap();
        let q = store(d.path());
        let s = |addr: IpAddr, n: usize| {
            vec![
                Sighting {
                    addr,
                    seen_ms: NOW - 5000
                };
                n
            ]
        };
        // A: one IPv4 address, 3 hits; B: a /64, two addresses of 2 and 5
        // hits; C: 1 hit.
        for batch in [s(v4(1), 3), s(v6(1), 2), s(v6(2), 5), s(v4(2), 1)] {
            q.enqueue(&batch, None, NOW).unwrap();
        }
        let rules = Rules {
            min_attempts: 1,
            window_ms: 1000,
        };
        let sel = select(&q, T, 10, NOW, rules, &mut Served::default()).unwrap();
        let got: Vec<IpAddr> = sel.batch.iter().map(|i| i.addr).collect();
        // B (7 hits) then A (3) then C (1); B's second address last.
        assert_eq!(got, vec![v6(2), v4(1), v4(2), v6(1)]);
        let sel = select(&q, T, 2, NOW, rules, &mut Served::default()).unwrap();
        let got: Vec<IpAddr> = sel.batch.iter().map(|i| i.addr).collect();
        assert_eq!(got, vec![v6(2), v4(1)]);
    }

    #[test]
    fn old_and_unqualified_addresses_are_settled_and_the_rest_waits() {
        let d = tempfile::tempdir().unwrap();
        let q = store(d.path());
        let one = |addr, seen_ms| Sighting { addr, seen_ms };
        // Too old (61 days); below 3 attempts and out of its window; below
        // and still in it (an hour left); qualified (3 within the window).
        q.enqueue(&[one(v4(1), NOW - 61 * DAY)], None, NOW).unwrap();
        q.enqueue(&[one(v4(2), NOW - 3 * 3_600_000)], None, NOW)
            .unwrap();
        q.enqueue(&[one(v4(3), NOW - 3_600_000)], None, NOW)
            .unwrap();
        q.enqueue(&[one(v4(4), NOW - 10); 3], None, NOW).unwrap();
        let rules = Rules {
            min_attempts: 3,
            window_ms: 2 * 3_600_000,
        };
        let sel = select(&q, T, 10, NOW, rules, &mut Served::default()).unwrap();
        assert_eq!(sel.stale.len(), 1);
        assert_eq!(sel.stale[0].0.addr, v4(1));
        assert_eq!(sel.stale[0].1, TOO_OLD_REASON);
        assert_eq!(
            sel.unqualified.iter().map(|i| i.addr).collect::<Vec<_>>(),
            vec![v4(2)]
        );
        assert_eq!(sel.waiting, 1);
        assert_eq!(sel.recheck, Some(Duration::from_secs(3600)));
        assert_eq!(
            sel.batch.iter().map(|i| i.addr).collect::<Vec<_>>(),
            vec![v4(4)]
        );
    }
}
