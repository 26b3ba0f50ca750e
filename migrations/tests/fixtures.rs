//! Backward compatibility: databases written by each released schema
//! version are checked in under `tests/fixtures/vN/` and must keep opening
//! (and migrating) with their content intact.
//!
//! Write a fixture only for a *new* schema version, once, and never again:
//! `cargo test -p migrations --test fixtures -- --ignored write_v4_fixture`.
//! (The older writers are kept to show how their fixtures were made; those
//! write their version by hand, since `migrate` now goes on to the newest.)

use std::path::{Path, PathBuf};

use migrations::v1::{self, Checkpoint, FileId, Pending, Reported};
use migrations::v2;
use migrations::v3::{self, Intake, Owed};
use migrations::v4;
use migrations::{meta_keys, migrate, stored_version, trees, SCHEMA_VERSION};

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A copy of fixture `version`, opened and migrated to the current schema.
fn open_fixture(version: u32) -> (tempfile::TempDir, sled::Db) {
    open_fixture_dir(&format!("v{version}"), version)
}

/// A copy of the fixture in `tests/fixtures/{name}`, of schema `version`,
/// opened and migrated to the current schema.
fn open_fixture_dir(name: &str, version: u32) -> (tempfile::TempDir, sled::Db) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}")),
        tmp.path(),
    );
    let db = sled::Config::new().path(tmp.path()).open().unwrap();
    assert_eq!(stored_version(&db).unwrap(), version);
    let m = migrate(&db, "test").unwrap();
    assert_eq!((m.from, m.to), (version, SCHEMA_VERSION));
    assert_eq!(stored_version(&db).unwrap(), SCHEMA_VERSION);
    (tmp, db)
}

fn write_checkpoint(db: &sled::Db, offset: u64, updated_at_ms: u64) {
    let c = Checkpoint {
        path: "/var/log/cowrie/cowrie.json".into(),
        offset,
        updated_at_ms,
    };
    db.open_tree(trees::CHECKPOINTS)
        .unwrap()
        .insert(v1::checkpoint_key(&FILE), v1::encode(&c))
        .unwrap();
}

fn checkpoint_offset(db: &sled::Db) -> u64 {
    let c: Checkpoint = v1::get(
        &db.open_tree(trees::CHECKPOINTS).unwrap(),
        "c",
        &v1::checkpoint_key(&FILE),
    )
    .unwrap()
    .unwrap();
    c.offset
}

fn pending_count(db: &sled::Db) -> u64 {
    let meta = db.open_tree(trees::META).unwrap();
    v1::decode_u64("c", meta.get(meta_keys::PENDING_COUNT).unwrap().as_deref()).unwrap()
}

/// A `targets` counter of target `t`.
fn target_count(db: &sled::Db, t: v3::TargetId, field: &[u8]) -> u64 {
    let targets = db.open_tree(trees::TARGETS).unwrap();
    let v = targets.get(v3::field_key(t, field)).unwrap();
    v1::decode_u64("c", v.as_deref()).unwrap()
}

fn intake(db: &sled::Db, key: &[u8]) -> Intake {
    let v = db.open_tree(trees::PENDING).unwrap().get(key).unwrap();
    v3::decode_intake(&v.unwrap()).unwrap()
}

/// Threat Jammer (id 0) owes it, at group `seq`.
fn owed_to_tj(seq: u64) -> Vec<Owed> {
    vec![Owed {
        target: v3::THREATJAMMER,
        seq,
    }]
}

const PENDING_ADDR: &str = "11.0.0.1";
const REPORTED_ADDR: &str = "2a01:4f8::1";
const FILE: FileId = FileId {
    dev: 2049,
    ino: 1234,
    fingerprint: 0x0123_4567_89ab_cdef,
};

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v1_fixture() {
    let dir = fixture(1);
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new().path(&dir).open().unwrap();
    // What `migrate` did when v1 was the newest schema.
    let meta = db.open_tree(trees::META).unwrap();
    meta.insert(meta_keys::CREATED_BY, "tjfwd fixture").unwrap();
    v1::create(&db).unwrap();
    meta.insert(meta_keys::SCHEMA_VERSION, &1u32.to_be_bytes())
        .unwrap();
    let key = v1::addr_key(PENDING_ADDR.parse().unwrap());
    let p = Pending {
        first_seen_ms: 1000,
        last_seen_ms: 2000,
        hits: 3,
        seq: 0,
        queued_at_ms: 2500,
    };
    db.open_tree(trees::PENDING)
        .unwrap()
        .insert(&key, v1::encode(&p))
        .unwrap();
    db.open_tree(trees::ORDER)
        .unwrap()
        .insert(v1::seq_key(0), key.clone())
        .unwrap();
    let meta = db.open_tree(trees::META).unwrap();
    meta.insert(meta_keys::NEXT_SEQ, &1u64.to_be_bytes())
        .unwrap();
    meta.insert(meta_keys::PENDING_COUNT, &1u64.to_be_bytes())
        .unwrap();
    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let r = Reported {
        first_reported_ms: 10,
        last_reported_ms: 20,
        expires_at_ms: 86_400_020,
        count: 2,
    };
    db.open_tree(trees::REPORTED)
        .unwrap()
        .insert(&rkey, v1::encode(&r))
        .unwrap();
    db.open_tree(trees::EXPIRY)
        .unwrap()
        .insert(v1::expiry_key(r.expires_at_ms, &rkey), &[])
        .unwrap();
    write_checkpoint(&db, 4096, 30);
    db.flush().unwrap();
}

#[test]
fn v1_fixture_opens_and_keeps_its_content() {
    let (_tmp, db) = open_fixture(1);

    let key = v1::addr_key(PENDING_ADDR.parse().unwrap());
    let p = intake(&db, &key);
    assert_eq!((p.first_seen_ms, p.last_seen_ms, p.hits), (1000, 2000, 3));
    assert_eq!(p.owed, owed_to_tj(0));
    // Migrated: the v1 order entry is now a group of one, same key, with
    // the entry's queued_at_ms.
    let order = db.open_tree(trees::ORDER).unwrap();
    let group = order.get(v3::order_key(0, 0)).unwrap().unwrap();
    assert_eq!(
        v3::decode_group(&group).unwrap(),
        (2500, vec![key.as_slice()])
    );
    assert_eq!(order.len(), 1);
    assert_eq!(pending_count(&db), 1);
    assert_eq!(target_count(&db, 0, v3::fields::PENDING_COUNT), 1);
    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let r: Reported = v1::get(
        &db.open_tree(trees::REPORTED).unwrap(),
        "r",
        &v3::target_addr_key(0, &rkey),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (r.last_reported_ms, r.expires_at_ms, r.count),
        (20, 86_400_020, 2)
    );
    assert!(db
        .open_tree(trees::EXPIRY)
        .unwrap()
        .contains_key(v3::expiry_key(0, r.expires_at_ms, &rkey))
        .unwrap());
    assert_eq!(checkpoint_offset(&db), 4096);
}

const V2_PENDING: [&str; 3] = ["11.0.0.2", "2a01:4f8::2", "11.0.0.3"];

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v2_fixture() {
    let dir = fixture(2);
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new().path(&dir).open().unwrap();
    assert_eq!(migrate(&db, "tjfwd fixture").unwrap().to, 2);
    // Three addresses queued together (group 5), as one enqueue writes them.
    let keys: Vec<Vec<u8>> = V2_PENDING
        .iter()
        .map(|a| v1::addr_key(a.parse().unwrap()))
        .collect();
    let pending = db.open_tree(trees::PENDING).unwrap();
    for (i, key) in keys.iter().enumerate() {
        let p = Pending {
            first_seen_ms: 1000 + i as u64,
            last_seen_ms: 2000,
            hits: 1 + i as u64,
            seq: 5,
            queued_at_ms: 2500,
        };
        pending.insert(key, v2::encode_pending(&p)).unwrap();
    }
    db.open_tree(trees::ORDER)
        .unwrap()
        .insert(
            v1::seq_key(5),
            v2::encode_group(keys.iter().map(Vec::as_slice)),
        )
        .unwrap();
    let meta = db.open_tree(trees::META).unwrap();
    meta.insert(meta_keys::NEXT_SEQ, &6u64.to_be_bytes())
        .unwrap();
    meta.insert(meta_keys::PENDING_COUNT, &3u64.to_be_bytes())
        .unwrap();
    write_checkpoint(&db, 8192, 40);
    db.flush().unwrap();
}

#[test]
fn v2_fixture_opens_and_keeps_its_content() {
    let (_tmp, db) = open_fixture(2);
    let keys: Vec<Vec<u8>> = V2_PENDING
        .iter()
        .map(|a| v1::addr_key(a.parse().unwrap()))
        .collect();
    let group = db
        .open_tree(trees::ORDER)
        .unwrap()
        .get(v3::order_key(0, 5))
        .unwrap()
        .unwrap();
    assert_eq!(
        v3::decode_group(&group).unwrap(),
        (2500, keys.iter().map(Vec::as_slice).collect::<Vec<_>>())
    );
    for (i, key) in keys.iter().enumerate() {
        let p = intake(&db, key);
        assert_eq!(
            (p.owed.clone(), p.hits, p.first_seen_ms),
            (owed_to_tj(5), 1 + i as u64, 1000 + i as u64)
        );
    }
    assert_eq!(pending_count(&db), 3);
    assert_eq!(target_count(&db, 0, v3::fields::PENDING_COUNT), 3);
    assert_eq!(checkpoint_offset(&db), 8192);
}

/// A v2 database with delivery state of every kind (pending, reported with
/// its expiry, a dead letter, the request log, a failing health record),
/// written by hand in the v2 layout (`migrate` now goes on to v3): what
/// migration 2 -> 3 moves to target 0.
#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v2_delivery_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-delivery");
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new().path(&dir).open().unwrap();
    let meta = db.open_tree(trees::META).unwrap();
    meta.insert(meta_keys::CREATED_BY, "tjfwd fixture").unwrap();
    v1::create(&db).unwrap();
    meta.insert(meta_keys::SCHEMA_VERSION, &2u32.to_be_bytes())
        .unwrap();
    let key = v1::addr_key(PENDING_ADDR.parse().unwrap());
    let p = Pending {
        first_seen_ms: 1000,
        last_seen_ms: 2000,
        hits: 3,
        seq: 7,
        queued_at_ms: 2500,
    };
    db.open_tree(trees::PENDING)
        .unwrap()
        .insert(&key, v2::encode_pending(&p))
        .unwrap();
    db.open_tree(trees::ORDER)
        .unwrap()
        .insert(v1::seq_key(7), v2::encode_group([key.as_slice()]))
        .unwrap();
    meta.insert(meta_keys::NEXT_SEQ, &8u64.to_be_bytes())
        .unwrap();
    meta.insert(meta_keys::PENDING_COUNT, &1u64.to_be_bytes())
        .unwrap();
    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let r = Reported {
        first_reported_ms: 10,
        last_reported_ms: 20,
        expires_at_ms: 86_400_020,
        count: 2,
    };
    db.open_tree(trees::REPORTED)
        .unwrap()
        .insert(&rkey, v1::encode(&r))
        .unwrap();
    db.open_tree(trees::EXPIRY)
        .unwrap()
        .insert(v1::expiry_key(r.expires_at_ms, &rkey), &[])
        .unwrap();
    let dkey = v1::addr_key(DEAD_ADDR.parse().unwrap());
    let d = v1::Dead {
        status: 422,
        reason: "not a public address".into(),
        at_ms: 50,
        first_seen_ms: 40,
        last_seen_ms: 45,
        hits: 2,
    };
    db.open_tree(trees::DEAD)
        .unwrap()
        .insert(&dkey, v1::encode(&d))
        .unwrap();
    meta.insert(
        meta_keys::REQUEST_LOG,
        v1::encode(&v1::RequestLog {
            sent_at_ms: vec![60, 70],
        }),
    )
    .unwrap();
    meta.insert(
        meta_keys::HEALTH,
        v1::encode(&v1::Health {
            last_success_ms: Some(20),
            last_error_ms: Some(80),
            last_error_status: 401,
            last_error_message: "the API refused the token".into(),
            failing_since_ms: Some(75),
        }),
    )
    .unwrap();
    write_checkpoint(&db, 16384, 90);
    db.flush().unwrap();
}

const DEAD_ADDR: &str = "11.0.0.9";

#[test]
fn v2_delivery_state_becomes_threat_jammers() {
    let (_tmp, db) = open_fixture_dir("v2-delivery", 2);
    let key = v1::addr_key(PENDING_ADDR.parse().unwrap());
    let p = intake(&db, &key);
    assert_eq!((p.first_seen_ms, p.last_seen_ms, p.hits), (1000, 2000, 3));
    assert_eq!(p.owed, owed_to_tj(7));
    let group = db
        .open_tree(trees::ORDER)
        .unwrap()
        .get(v3::order_key(0, 7))
        .unwrap()
        .unwrap();
    assert_eq!(
        v3::decode_group(&group).unwrap(),
        (2500, vec![key.as_slice()])
    );
    let targets = db.open_tree(trees::TARGETS).unwrap();
    assert_eq!(
        targets
            .get(v3::field_key(0, v3::fields::NAME))
            .unwrap()
            .unwrap()
            .as_ref(),
        b"threatjammer"
    );
    assert_eq!(target_count(&db, 0, v3::fields::PENDING_COUNT), 1);
    assert_eq!(pending_count(&db), 1);

    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let reported = db.open_tree(trees::REPORTED).unwrap();
    let r: Reported = v1::get(&reported, "r", &v3::target_addr_key(0, &rkey))
        .unwrap()
        .unwrap();
    assert_eq!((r.last_reported_ms, r.count), (20, 2));
    assert_eq!(reported.len(), 1);
    let expiry = db.open_tree(trees::EXPIRY).unwrap();
    let (k, _) = expiry.iter().next().unwrap().unwrap();
    assert_eq!(
        v3::split_expiry_key(&k).unwrap(),
        (0, 86_400_020, rkey.as_slice())
    );
    assert_eq!(expiry.len(), 1);

    let dkey = v1::addr_key(DEAD_ADDR.parse().unwrap());
    let dead = db.open_tree(trees::DEAD).unwrap();
    let d: v1::Dead = v1::get(&dead, "d", &v3::target_addr_key(0, &dkey))
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.hits), (422, 2));
    assert_eq!(dead.len(), 1);

    let log: v1::RequestLog = v1::get(&targets, "l", &v3::field_key(0, v3::fields::REQUEST_LOG))
        .unwrap()
        .unwrap();
    assert_eq!(log.sent_at_ms, [60, 70]);
    let h = v3::decode_health(
        &targets
            .get(v3::field_key(0, v3::fields::HEALTH))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        h,
        v3::Health {
            last_success_ms: Some(20),
            last_error_ms: Some(80),
            last_error_code: 401,
            last_error_kind: Some(v1::FailureKind::Refused),
            last_error_message: "the API refused the token".into(),
            failing_since_ms: Some(75),
        }
    );
    let meta = db.open_tree(trees::META).unwrap();
    assert!(!meta.contains_key(meta_keys::REQUEST_LOG).unwrap());
    assert!(!meta.contains_key(meta_keys::HEALTH).unwrap());
    assert_eq!(checkpoint_offset(&db), 16384);
}

const V3_PENDING: [&str; 2] = ["11.0.0.4", "2a01:4f8::4"];

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v3_fixture() {
    let dir = fixture(3);
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new().path(&dir).open().unwrap();
    assert_eq!(migrate(&db, "tjfwd fixture").unwrap().to, 3);
    let keys: Vec<Vec<u8>> = V3_PENDING
        .iter()
        .map(|a| v1::addr_key(a.parse().unwrap()))
        .collect();
    let targets = db.open_tree(trees::TARGETS).unwrap();
    targets
        .insert(v3::field_key(0, v3::fields::NAME), "threatjammer")
        .unwrap();
    targets
        .insert(v3::field_key(1, v3::fields::NAME), "abuseipdb")
        .unwrap();
    // The first address owed to both targets at group 3; the second to
    // target 1 at group 3 and to target 0 at group 4 (queued again for it
    // after it had reported it).
    let pending = db.open_tree(trees::PENDING).unwrap();
    let owed = [
        vec![Owed { target: 0, seq: 3 }, Owed { target: 1, seq: 3 }],
        vec![Owed { target: 0, seq: 4 }, Owed { target: 1, seq: 3 }],
    ];
    for (i, key) in keys.iter().enumerate() {
        let e = Intake {
            first_seen_ms: 1000,
            last_seen_ms: 2000 + i as u64,
            hits: 4,
            owed: owed[i].clone(),
        };
        pending.insert(key, v3::encode_intake(&e)).unwrap();
    }
    let order = db.open_tree(trees::ORDER).unwrap();
    // Target 0: both at group 3, then the second again at group 4 (so
    // only the first stays in group 3); target 1: both at group 3.
    order
        .insert(
            v3::order_key(0, 3),
            v3::encode_group(2500, [keys[0].as_slice()]),
        )
        .unwrap();
    order
        .insert(
            v3::order_key(0, 4),
            v3::encode_group(2600, [keys[1].as_slice()]),
        )
        .unwrap();
    order
        .insert(
            v3::order_key(1, 3),
            v3::encode_group(2500, keys.iter().map(Vec::as_slice)),
        )
        .unwrap();
    let meta = db.open_tree(trees::META).unwrap();
    meta.insert(meta_keys::NEXT_SEQ, &5u64.to_be_bytes())
        .unwrap();
    meta.insert(meta_keys::PENDING_COUNT, &2u64.to_be_bytes())
        .unwrap();
    targets
        .insert(
            v3::field_key(0, v3::fields::PENDING_COUNT),
            &2u64.to_be_bytes(),
        )
        .unwrap();
    targets
        .insert(
            v3::field_key(1, v3::fields::PENDING_COUNT),
            &2u64.to_be_bytes(),
        )
        .unwrap();
    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let r = Reported {
        first_reported_ms: 10,
        last_reported_ms: 20,
        expires_at_ms: 86_400_020,
        count: 1,
    };
    db.open_tree(trees::REPORTED)
        .unwrap()
        .insert(v3::target_addr_key(1, &rkey), v1::encode(&r))
        .unwrap();
    db.open_tree(trees::EXPIRY)
        .unwrap()
        .insert(v3::expiry_key(1, r.expires_at_ms, &rkey), &[])
        .unwrap();
    targets
        .insert(
            v3::field_key(1, v3::fields::HEALTH),
            v3::encode_health(&v3::Health {
                last_success_ms: Some(20),
                last_error_ms: Some(30),
                last_error_code: 429,
                last_error_kind: Some(v1::FailureKind::RateLimited),
                last_error_message: "daily limit".into(),
                failing_since_ms: None,
            }),
        )
        .unwrap();
    write_checkpoint(&db, 32768, 50);
    db.flush().unwrap();
}

#[test]
fn v3_fixture_opens_and_keeps_its_content() {
    let (_tmp, db) = open_fixture(3);
    let keys: Vec<Vec<u8>> = V3_PENDING
        .iter()
        .map(|a| v1::addr_key(a.parse().unwrap()))
        .collect();
    assert_eq!(
        intake(&db, &keys[1]).owed,
        [Owed { target: 0, seq: 4 }, Owed { target: 1, seq: 3 }]
    );
    assert_eq!(intake(&db, &keys[0]).seq_for(1), Some(3));
    let group = db
        .open_tree(trees::ORDER)
        .unwrap()
        .get(v3::order_key(0, 4))
        .unwrap()
        .unwrap();
    assert_eq!(
        v3::decode_group(&group).unwrap(),
        (2600, vec![keys[1].as_slice()])
    );
    assert_eq!(target_count(&db, 1, v3::fields::PENDING_COUNT), 2);
    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let r: Reported = v1::get(
        &db.open_tree(trees::REPORTED).unwrap(),
        "r",
        &v3::target_addr_key(1, &rkey),
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.count, 1);
    let h = db
        .open_tree(trees::TARGETS)
        .unwrap()
        .get(v3::field_key(1, v3::fields::HEALTH))
        .unwrap()
        .unwrap();
    assert_eq!(
        v3::decode_health(&h).unwrap().last_error_kind,
        Some(v1::FailureKind::RateLimited)
    );
    assert_eq!(pending_count(&db), 2);
    assert_eq!(checkpoint_offset(&db), 32768);
    // v3 -> v4: the reported address is on the denylist, its last report
    // standing in for its last sighting; the pending ones are listed by
    // their own entries.
    let seen = db.open_tree(trees::SEEN).unwrap();
    assert_eq!(
        v4::decode_seen(&seen.get(&rkey).unwrap().unwrap()).unwrap(),
        20
    );
    assert_eq!(seen.len(), 1);
    let seen_time = db.open_tree(trees::SEEN_TIME).unwrap();
    assert!(seen_time
        .contains_key(v4::seen_time_key(20, &rkey))
        .unwrap());
    assert_eq!(seen_time.len(), 1);
}

const V4_SEEN: [(&str, u64); 2] = [("11.0.0.9", 5_000), ("2a01:4f8::9", 6_000)];

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v4_fixture() {
    let dir = fixture(4);
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new().path(&dir).open().unwrap();
    assert_eq!(migrate(&db, "tjfwd fixture").unwrap().to, 4);
    db.open_tree(trees::TARGETS)
        .unwrap()
        .insert(v3::field_key(0, v3::fields::NAME), "threatjammer")
        .unwrap();
    let seen = db.open_tree(trees::SEEN).unwrap();
    let seen_time = db.open_tree(trees::SEEN_TIME).unwrap();
    for (a, at) in V4_SEEN {
        let key = v1::addr_key(a.parse().unwrap());
        seen.insert(&key, &v4::encode_seen(at)).unwrap();
        seen_time.insert(v4::seen_time_key(at, &key), &[]).unwrap();
    }
    write_checkpoint(&db, 65536, 70);
    db.flush().unwrap();
}

#[test]
fn v4_fixture_opens_and_keeps_its_content() {
    let (_tmp, db) = open_fixture(4);
    let seen = db.open_tree(trees::SEEN).unwrap();
    let seen_time = db.open_tree(trees::SEEN_TIME).unwrap();
    for (a, at) in V4_SEEN {
        let key = v1::addr_key(a.parse().unwrap());
        assert_eq!(
            v4::decode_seen(&seen.get(&key).unwrap().unwrap()).unwrap(),
            at
        );
        assert!(seen_time.contains_key(v4::seen_time_key(at, &key)).unwrap());
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(checkpoint_offset(&db), 65536);
}
