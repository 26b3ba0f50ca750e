//! Tests of the store as a whole (a model-based test of its operations),
//! and what the tests in each file share: a store in a temporary directory
//! ([`open`]) and a sighting written short ([`s`]).

use super::*;
use std::net::IpAddr;
use std::path::Path;

pub(super) const TTL: u64 = 86_400_000;

/// The target of the tests: the first a new store registers.
pub(super) const T: TargetId = 0;

/// One target, as tjfwd's first: Threat Jammer's policy with `rereport_after`.
pub(super) fn one_target(rereport_after_ms: u64) -> Vec<TargetSpec> {
    vec![TargetSpec {
        name: "threatjammer".into(),
        policy: Policy {
            ttl_ms: TTL,
            rereport_after_ms,
        },
    }]
}

pub(super) fn open(dir: &Path) -> Store {
    let q = Store::open(dir, 8 << 20, &one_target(0)).unwrap();
    assert_eq!(q.target_id("threatjammer"), Some(T));
    q
}

pub(super) fn s(ip: &str, t: u64) -> Sighting {
    Sighting {
        addr: ip.parse().unwrap(),
        seen_ms: t,
    }
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
                        let b = q.peek_batch(T, *n).unwrap();
                        let flight = to_sightings(flight);
                        q.enqueue(&flight, None, now).unwrap();
                        m.enqueue(&flight);
                        let picked: Vec<BatchItem> = b.iter().enumerate()
                            .filter(|(i, _)| mask >> (i % 64) & 1 == 1).map(|(_, x)| x.clone()).collect();
                        q.ack(T, &picked, now, now).unwrap();
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
                        let b = q.peek_batch(T, *n).unwrap();
                        let picked: Vec<BatchItem> = b.iter().enumerate()
                            .filter(|(i, _)| mask >> (i % 64) & 1 == 1).map(|(_, x)| x.clone()).collect();
                        q.dead_letter(T, &picked, 422, "x", now).unwrap();
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
                let all = q.peek_batch(T, usize::MAX).unwrap();
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

/// Two targets never hold each other back: each has its own FIFO, mirror
/// and dead letters, and an address leaves the store only when neither
/// owes it.
#[test]
fn targets_keep_their_own_queues() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = one_target(0);
    specs.push(TargetSpec {
        name: "second".into(),
        policy: Policy {
            ttl_ms: TTL,
            rereport_after_ms: 1000,
        },
    });
    let q = Store::open(dir.path(), 8 << 20, &specs).unwrap();
    let (a, b) = (T, q.target_id("second").unwrap());
    assert_ne!(a, b);
    let ip = |i: u8| -> IpAddr { format!("11.0.0.{i}").parse().unwrap() };
    let sightings: Vec<Sighting> = (0..5).map(|i| s(&format!("11.0.0.{i}"), 10)).collect();
    assert_eq!(q.enqueue(&sightings, None, 10).unwrap().queued_new, 5);
    assert_eq!(
        (
            q.pending_count_for(a).unwrap(),
            q.pending_count_for(b).unwrap()
        ),
        (5, 5)
    );
    // One entry an address, owed to both at the same group.
    assert_eq!(q.pending(ip(0)).unwrap().unwrap().owed.len(), 2);

    // A delivers three; B still owes all five, in its own order.
    let batch = q.peek_batch(a, 3).unwrap();
    q.ack(a, &batch, 100, 100).unwrap();
    assert_eq!(q.pending_count_for(a).unwrap(), 2);
    assert_eq!(q.pending_count().unwrap(), 5, "B still owes them");
    let order_b: Vec<IpAddr> = q
        .peek_batch(b, 10)
        .unwrap()
        .iter()
        .map(|i| i.addr)
        .collect();
    assert_eq!(order_b, (0..5).map(ip).collect::<Vec<_>>());
    assert!(q.reported(a, ip(0)).unwrap().is_some());
    assert!(q.reported(b, ip(0)).unwrap().is_none());

    // A sighting of 11.0.0.0 after A's report: A owes it again, at the back
    // of A's FIFO; B keeps it at the front of its own.
    let out = q.enqueue(&[s("11.0.0.0", 200)], None, 300).unwrap();
    assert_eq!(out.updated, 1);
    let order_a: Vec<IpAddr> = q
        .peek_batch(a, 10)
        .unwrap()
        .iter()
        .map(|i| i.addr)
        .collect();
    assert_eq!(order_a, [ip(3), ip(4), ip(0)]);
    assert_eq!(q.peek_batch(b, 1).unwrap()[0].addr, ip(0));
    assert_eq!(q.oldest_queued_at(b).unwrap(), Some(10));

    // B rejects 11.0.0.4: dead for B only; A still owes it.
    let four: Vec<BatchItem> = q
        .peek_batch(b, 10)
        .unwrap()
        .into_iter()
        .filter(|i| i.addr == ip(4))
        .collect();
    q.dead_letter(b, &four, 422, "bad", 400).unwrap();
    assert!(q.dead(b, ip(4)).unwrap().is_some());
    assert!(q.dead(a, ip(4)).unwrap().is_none());
    assert_eq!(q.pending(ip(4)).unwrap().unwrap().owed.len(), 1);

    // Both deliver everything: nothing is left, and the trees agree.
    let all_a = q.peek_batch(a, 10).unwrap();
    q.ack(a, &all_a, 500, 500).unwrap();
    let all_b = q.peek_batch(b, 10).unwrap();
    assert_eq!(all_b.len(), 4);
    q.ack(b, &all_b, 600, 600).unwrap();
    assert_eq!(q.pending_count().unwrap(), 0);
    assert_eq!(
        (
            q.pending_count_for(a).unwrap(),
            q.pending_count_for(b).unwrap()
        ),
        (0, 0)
    );
    let v = q.verify();
    assert_eq!(
        (v.problems, v.pending, v.dead),
        (0, 0, 1),
        "{:?}",
        v.details
    );

    // A new sighting: B reported it 0.7 s ago (rereport_after 1 s), A did
    // not thin re-reports out: only A owes it.
    assert_eq!(
        q.enqueue(&[s("11.0.0.1", 1300)], None, 1300)
            .unwrap()
            .queued_new,
        1
    );
    assert_eq!(q.pending(ip(1)).unwrap().unwrap().seq_for(b), None);
    assert!(q.pending(ip(1)).unwrap().unwrap().seq_for(a).is_some());
    // The operator resends it: B owes it again too.
    assert_eq!(q.requeue(&[ip(1)], 1400).unwrap(), (1, 0));
    assert_eq!(q.pending(ip(1)).unwrap().unwrap().owed.len(), 2);
    assert_eq!(q.verify().problems, 0, "{:?}", q.verify().details);

    // Reopened for A alone: B's state is kept (its id, its queue).
    drop(q);
    let q = Store::open(dir.path(), 8 << 20, &one_target(0)).unwrap();
    assert_eq!(q.target_id("second"), None);
    assert!(q
        .registered()
        .iter()
        .any(|(id, n)| *id == b && n == "second"));
    assert_eq!(q.pending_count_for(b).unwrap(), 1);
    // A target enabled later gets a new id, not B's.
    drop(q);
    let mut three = specs.clone();
    three.push(TargetSpec {
        name: "third".into(),
        policy: specs[0].policy,
    });
    let q = Store::open(dir.path(), 8 << 20, &three).unwrap();
    assert_eq!(q.target_id("second"), Some(b));
    let c = q.target_id("third").unwrap();
    assert!(c != a && c != b);
}
