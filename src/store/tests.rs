//! Unit tests of the store (split among its files in the next commits).

use super::*;
use std::path::Path;

pub(super) const TTL: u64 = 86_400_000;

pub(super) fn open(dir: &Path) -> Store {
    Store::open(
        dir,
        8 << 20,
        Policy {
            ttl_ms: TTL,
            rereport_after_ms: 0,
        },
    )
    .unwrap()
}

pub(super) fn s(ip: &str, t: u64) -> Sighting {
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
    let q = Store::open(
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
        #![proptest_config(ProptestConfig::with_cases(48))]
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
