//! Backward compatibility: databases written by each released schema
//! version are checked in under `tests/fixtures/vN/` and must keep opening
//! (and migrating) with their content intact.
//!
//! Write a fixture only for a *new* schema version, once, and never again:
//! `cargo test -p migrations --test fixtures -- --ignored write_v2_fixture`.
//! (`write_v1_fixture` is kept to show how the v1 one was made; it writes
//! v1 by hand, since `migrate` now goes on to v2.)

use std::path::{Path, PathBuf};

use migrations::v1::{self, Checkpoint, FileId, Pending, Reported};
use migrations::v2;
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
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(version), tmp.path());
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
    let p: Pending = v2::get_pending(&db.open_tree(trees::PENDING).unwrap(), &key)
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.first_seen_ms, p.last_seen_ms, p.hits, p.queued_at_ms),
        (1000, 2000, 3, 2500)
    );
    // Migrated: the v1 order entry is now a group of one, same key.
    let order = db.open_tree(trees::ORDER).unwrap();
    let group = order.get(v1::seq_key(0)).unwrap().unwrap();
    assert_eq!(v2::group_members(&group).unwrap(), [key.as_slice()]);
    assert_eq!(order.len(), 1);
    assert_eq!(pending_count(&db), 1);
    let rkey = v1::addr_key(REPORTED_ADDR.parse().unwrap());
    let r: Reported = v1::get(&db.open_tree(trees::REPORTED).unwrap(), "r", &rkey)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.last_reported_ms, r.expires_at_ms, r.count),
        (20, 86_400_020, 2)
    );
    assert!(db
        .open_tree(trees::EXPIRY)
        .unwrap()
        .contains_key(v1::expiry_key(r.expires_at_ms, &rkey))
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
        .get(v1::seq_key(5))
        .unwrap()
        .unwrap();
    assert_eq!(
        v2::group_members(&group).unwrap(),
        keys.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    let pending = db.open_tree(trees::PENDING).unwrap();
    for (i, key) in keys.iter().enumerate() {
        let p: Pending = v2::get_pending(&pending, key).unwrap().unwrap();
        assert_eq!(
            (p.seq, p.hits, p.first_seen_ms),
            (5, 1 + i as u64, 1000 + i as u64)
        );
    }
    assert_eq!(pending_count(&db), 3);
    assert_eq!(checkpoint_offset(&db), 8192);
}
