//! tjfwd's on-disk schema: the sled trees, their frozen key and value
//! encodings, and the ordered migrations that bring any older database up to
//! [`SCHEMA_VERSION`].
//!
//! This crate depends on sled, serde and bincode only — never on the main
//! crate — so that the format is defined in one place and cannot drift with
//! the code that uses it.
//!
//! # Layout, schema v4 (current)
//!
//! One sled database. Tree names are part of the format:
//!
//! | tree          | key                                   | value                 |
//! |---------------|---------------------------------------|-----------------------|
//! | `meta`        | ASCII name (see [`meta_keys`])         | per key, see there    |
//! | `pending`     | address ([`v1::addr_key`])             | [`v3::Intake`], as [`v3::encode_intake`] |
//! | `order`       | target id ‖ group sequence, u64 BE ([`v3::order_key`]) | when, and which addresses, were queued together for it ([`v3::encode_group`]) |
//! | `targets`     | target id ‖ field ([`v3::field_key`])   | per field, see [`v3::fields`] |
//! | `reported`    | target id ‖ address                   | [`v1::Reported`]      |
//! | `expiry`      | target id ‖ expires_at ms u64 BE ‖ address | empty            |
//! | `dead`        | target id ‖ address                   | [`v1::Dead`]          |
//! | `checkpoints` | [`v1::checkpoint_key`] (dev‖ino‖fp)    | [`v1::Checkpoint`]    |
//! | `seen`        | address                               | the last sighting of an address no longer pending ([`v4::encode_seen`]) |
//! | `seen_time`   | last sighting ms u64 BE ‖ address ([`v4::seen_time_key`]) | empty |
//!
//! Addresses are 4 bytes (IPv4) or 16 bytes (IPv6), network order; an
//! IPv4-mapped IPv6 address is stored as IPv4. A target id is one byte
//! ([`v3::TargetId`], below [`v3::MAX_TARGETS`]), given when a target is
//! first enabled and never reused; `targets/{id}name` names it. Values are
//! one version byte followed by bincode 1.3 (default options:
//! little-endian, fixed-width integers), except `pending` entries (version
//! byte 3, then bincode with variable-length integers:
//! [`v3::encode_intake`]) and `order` groups (version byte 3:
//! [`v3::encode_group`]). Counters in `meta` and `targets` are raw u64 big-endian. Times are
//! milliseconds since the Unix epoch.
//!
//! Invariants kept by the writers (in single transactions, but for the
//! bulk load below): for every
//! `pending` entry and every target `t` it owes at group `s`
//! ([`v3::Intake::owed`]), `t`'s `order` group `s` lists the address;
//! every address a group of `t` lists is owed to `t` at that group (so no
//! group is empty, and an address is in one group of each target that
//! owes it); `meta/pending_count` equals the number of `pending`
//! entries and `targets/{t}pending_count` the number of entries that owe
//! `t`; each `reported` entry has exactly one `expiry` key, with the same
//! target, carrying its `expires_at_ms`; each `seen` entry has exactly one
//! `seen_time` key, carrying its time, and each `seen_time` key its `seen`
//! entry.
//!
//! The one exception: while `meta/loading` ([`meta_keys::LOADING`]) is
//! there, the `order` groups in its sequence range may list addresses
//! that have no `pending` entry, and the counters count them. `tjfwd
//! replay` writes it, with those groups and counters, in one transaction
//! before it writes their entries outside any, and removes it once they
//! are durable; an open that finds it keeps in those groups only the
//! addresses whose entries were written, fixes the counters and removes it.
//! It needs no new schema version: only a crash during a replay leaves it
//! behind, and the next open of the tjfwd that wrote it removes it. (An
//! older tjfwd opening such a database would skip the addresses without an
//! entry when it takes a batch, as it skips any group member that is not
//! owed, but would keep counting them as pending.)
//!
//! ## The denylist's last sightings (v3 → v4)
//!
//! tjfwd's own denylist (`[feed]`, `tjfwd export`) lists every address it
//! selected while it is pending and until a TTL after its last sighting.
//! A `pending` entry holds that sighting; `seen` keeps it for the
//! addresses no longer pending, so a pending address costs nothing more:
//! see [`v4`]. Migration 3 → 4 seeds `seen` from the reported mirrors.
//!
//! ## Why one entry per address, not one per target (v2 → v3)
//!
//! Targets must not hold each other back: each has its own place in the
//! queue, its own mirror, dead letters, request log and health. Copying
//! the queue per target would cost three `pending` entries an address
//! with three targets (sled stores an entry at ~100 bytes beyond its
//! value: over the 200-byte budget an address). In v3 an address has one
//! `pending` entry, its sightings and the targets that still owe it, each
//! with the group it waits in: usually the same sequence for all, stored
//! as one sequence and a mask (19 bytes for one target or three). Each
//! target has its own FIFO of groups (`order` keys start with its id): a
//! group lists up to [`v2::GROUP_MAX`] addresses at ~5 bytes each, so a
//! target's share of the order costs a few bytes an address. A target
//! that reports an address and sees it again while another still owes it
//! queues it anew at the back of its own FIFO; the others keep their
//! place. The time an address was queued moves from its entry to its
//! group (all a group's addresses were queued by one write), so each
//! target counts its flush interval from its own wait.
//!
//! # Schema v3 (migrated by step 4)
//!
//! As v4, without `seen` and `seen_time`.
//!
//! # Schema v2 (migrated by step 3)
//!
//! As v3, without `targets`: `pending` values are [`v1::Pending`] as
//! [`v2::encode_pending`] (version byte 2; one `seq` and the time it was
//! queued, no targets), `order` values are [`v2::encode_group`]s (no time),
//! `reported`, `expiry` and `dead` keys have no target id, and the one
//! target's request log and health are `meta/request_log` and
//! `meta/health` ([`v1::Health`], with an HTTP status and no kind).
//! Migration 2 → 3 ([`v3::from_v2`]) makes all of it target 0's, Threat
//! Jammer's.
//!
//! ## Why groups (v1 → v2)
//!
//! Schema v1 had one `order` entry per pending address (sequence → address).
//! sled 0.34 stores such an append-only tree badly: a queue of 50,000
//! addresses took 250 bytes on disk per address for `order` alone (more than
//! `pending`, 157), and its insert cost as much as the `pending` insert. In
//! v2 the addresses that one write queues (a chunk of the log, a resend)
//! share one sequence number and one `order` entry listing them, at most
//! [`v2::GROUP_MAX`] to a group. FIFO order is kept: groups in sequence
//! order, addresses in their group's order.
//!
//! A `pending` value was 41 bytes (five fixed-width u64); in v2 the two
//! later times are stored as differences from `first_seen_ms` and every
//! integer in as few bytes as it needs: ~24 bytes for a replayed address.
//! sled's space and insert time grow with its node sizes: 50,000 random
//! addresses took 157 bytes an address on disk with 41-byte values and
//! 126 with 24-byte ones, and 5.3 against 4.8 us an insert.
//!
//! # Schema v1 (migrated by step 2)
//!
//! As v2, except that `order` holds one entry per pending address: its
//! sequence (u64 big-endian) → its address key, raw, and that `pending`
//! values are [`v1::encode`]d like the others. Migration 1 → 2 rewrites
//! each `order` entry as a group of one under the same key, and each
//! `pending` value in the v2 encoding; nothing else changes.
//!
//! # Compatibility rule
//!
//! A database whose `meta/schema_version` is newer than this binary's is
//! refused, never rewritten. An older one is migrated forward step by step;
//! each step is a function in [`MIGRATIONS`] and never changes once released.

use std::fmt;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 4;

/// Tree names (part of the on-disk format).
pub mod trees {
    pub const META: &str = "meta";
    pub const PENDING: &str = "pending";
    pub const ORDER: &str = "order";
    pub const REPORTED: &str = "reported";
    pub const EXPIRY: &str = "expiry";
    pub const DEAD: &str = "dead";
    pub const CHECKPOINTS: &str = "checkpoints";
    /// Per target (v3): its name, counters and records.
    pub const TARGETS: &str = "targets";
    /// The denylist (v4): the last sighting of each selected address that
    /// is no longer pending ([`crate::v4`]).
    pub const SEEN: &str = "seen";
    /// The denylist (v4): `seen` in time order, for pruning.
    pub const SEEN_TIME: &str = "seen_time";
    /// Every tree of schema v1 (and v2: the same names), in a stable order.
    pub const ALL_V1: [&str; 7] = [META, PENDING, ORDER, REPORTED, EXPIRY, DEAD, CHECKPOINTS];
}

/// Keys of the `meta` tree.
pub mod meta_keys {
    /// u32 big-endian: the schema version of the database.
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    /// UTF-8: the program and version that created the database (informative).
    pub const CREATED_BY: &[u8] = b"created_by";
    /// u64 big-endian: the next `order` sequence number to hand out.
    pub const NEXT_SEQ: &[u8] = b"next_seq";
    /// u64 big-endian: number of entries in `pending` (sled's `len` is a scan).
    pub const PENDING_COUNT: &[u8] = b"pending_count";
    /// v2 only (v3: per target, [`crate::v3::fields::REQUEST_LOG`]):
    /// [`crate::v1::RequestLog`], send times of recent API requests.
    pub const REQUEST_LOG: &[u8] = b"request_log";
    /// v2 only (v3: per target, [`crate::v3::fields::HEALTH`]):
    /// [`crate::v1::Health`], last success and last error of the reporter.
    pub const HEALTH: &[u8] = b"health";
    /// u64 big-endian: when the file input first started (ms). Rotated files
    /// written since then that no checkpoint names were never seen and are
    /// read whole; older ones predate tjfwd. Absent until the first start.
    pub const INPUT_SINCE: &[u8] = b"input_since";
    /// [`crate::v4::encode_loading`]: present only while `tjfwd replay`
    /// loads new addresses in bulk, or after a crash interrupted it. The
    /// `order` groups in its sequence range may list addresses whose
    /// `pending` entries were not written; tjfwd's open keeps in them only
    /// those whose entries were, fixes the counters and removes it (v4,
    /// added without a schema change: a database holds it only between a
    /// crashed replay and the next open).
    pub const LOADING: &[u8] = b"loading";
}

/// Errors of opening and migrating a database.
#[derive(Debug)]
pub enum MigrationError {
    /// The database was written by a newer tjfwd.
    TooNew { found: u32, supported: u32 },
    /// `meta` has no schema version but other trees hold data.
    NotTjfwd,
    /// A stored value could not be decoded.
    Corrupt(String),
    /// sled failed.
    Sled(sled::Error),
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationError::TooNew { found, supported } => write!(
                f,
                "the database has schema version {found}, but this tjfwd supports at most \
                 version {supported}: it was written by a newer tjfwd. Upgrade tjfwd, or point \
                 state_dir at another directory; the database was left untouched"
            ),
            MigrationError::NotTjfwd => write!(
                f,
                "the database holds data but no schema version: it is not a tjfwd database, \
                 or its meta tree is damaged; move it aside and start again"
            ),
            MigrationError::Corrupt(what) => write!(f, "damaged database: {what}"),
            // Its cause is its source, shown after it.
            MigrationError::Sled(_) => write!(f, "storage error"),
        }
    }
}

impl std::error::Error for MigrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrationError::Sled(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sled::Error> for MigrationError {
    fn from(e: sled::Error) -> Self {
        MigrationError::Sled(e)
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Version found on disk (0 for a new, empty database).
    pub from: u32,
    /// Version now on disk (always [`SCHEMA_VERSION`]).
    pub to: u32,
}

/// One migration step: brings a database at version `to - 1` to `to`.
pub struct Migration {
    pub to: u32,
    pub description: &'static str,
    pub run: fn(&sled::Db) -> Result<(), MigrationError>,
}

/// The ordered migrations. Released steps never change.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        description: "create the v1 trees and counters",
        run: v1::create,
    },
    Migration {
        to: 2,
        description:
            "order entries become groups (each v1 entry a group of one); compact pending values",
        run: v2::from_v1,
    },
    Migration {
        to: 3,
        description: "delivery state per target: the v2 state becomes Threat Jammer's (id 0)",
        run: v3::from_v2,
    },
    Migration {
        to: 4,
        description: "the denylist's last sightings, seeded from the reported mirrors",
        run: v4::from_v3,
    },
];

/// Reads the schema version stored in `db` (0 if none).
pub fn stored_version(db: &sled::Db) -> Result<u32, MigrationError> {
    let meta = db.open_tree(trees::META)?;
    match meta.get(meta_keys::SCHEMA_VERSION)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| {
                MigrationError::Corrupt("meta/schema_version is not 4 bytes".into())
            })?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Brings `db` to [`SCHEMA_VERSION`], refusing a newer database.
///
/// `created_by` is recorded in a new database (e.g. `"tjfwd 0.1.0"`).
pub fn migrate(db: &sled::Db, created_by: &str) -> Result<Migrated, MigrationError> {
    migrate_to(db, created_by, SCHEMA_VERSION)
}

/// [`migrate`], stopping at version `to` (tests of one step).
fn migrate_to(db: &sled::Db, created_by: &str, to: u32) -> Result<Migrated, MigrationError> {
    let found = stored_version(db)?;
    if found > SCHEMA_VERSION {
        return Err(MigrationError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == 0 {
        for name in trees::ALL_V1 {
            if name != trees::META && !db.open_tree(name)?.is_empty() {
                return Err(MigrationError::NotTjfwd);
            }
        }
        db.open_tree(trees::META)?
            .insert(meta_keys::CREATED_BY, created_by.as_bytes())?;
    }
    for step in MIGRATIONS.iter().filter(|m| m.to > found && m.to <= to) {
        (step.run)(db)?;
        db.open_tree(trees::META)?
            .insert(meta_keys::SCHEMA_VERSION, &step.to.to_be_bytes())?;
        db.flush()?;
    }
    Ok(Migrated {
        from: found,
        to: to.max(found),
    })
}

/// FNV-1a, 64 bit: the file fingerprint hash (frozen: checkpoints key on it).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Schema v1 encodings.
pub mod v1 {
    use super::MigrationError;
    use serde::{de::DeserializeOwned, Deserialize, Serialize};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The version byte that starts every v1 value.
    pub const VALUE_VERSION: u8 = 1;

    /// Creates the v1 trees and zeroed counters (migration 0 → 1).
    pub fn create(db: &sled::Db) -> Result<(), MigrationError> {
        for name in super::trees::ALL_V1 {
            db.open_tree(name)?;
        }
        let meta = db.open_tree(super::trees::META)?;
        meta.insert(super::meta_keys::NEXT_SEQ, &0u64.to_be_bytes())?;
        meta.insert(super::meta_keys::PENDING_COUNT, &0u64.to_be_bytes())?;
        Ok(())
    }

    /// A queued address: reported at the next batch that takes it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Pending {
        /// Time of the first sighting since it was last reported (event time).
        pub first_seen_ms: u64,
        /// Time of the latest sighting (event time).
        pub last_seen_ms: u64,
        /// Sightings since it was queued.
        pub hits: u64,
        /// Its key in `order`.
        pub seq: u64,
        /// Wall-clock time it was queued: the flush interval counts from here.
        pub queued_at_ms: u64,
    }

    /// An address the API accepted: the local mirror of the private denylist.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Reported {
        pub first_reported_ms: u64,
        pub last_reported_ms: u64,
        /// When its TTL in the denylist runs out; its `expiry` key carries it.
        pub expires_at_ms: u64,
        /// Number of accepted reports.
        pub count: u64,
    }

    /// An address the API rejected, kept for the operator (`resend --dead-letter`).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Dead {
        /// HTTP status of the rejection.
        pub status: u16,
        /// The API's reason, trimmed and escaped (never raw server text).
        pub reason: String,
        pub at_ms: u64,
        pub first_seen_ms: u64,
        pub last_seen_ms: u64,
        pub hits: u64,
    }

    /// How far an input file has been read.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Checkpoint {
        /// The path it was last read under (informative; identity is the key).
        pub path: String,
        /// Byte offset just after the last consumed line.
        pub offset: u64,
        pub updated_at_ms: u64,
    }

    /// Send times of recent requests (rate limit across restarts).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RequestLog {
        pub sent_at_ms: Vec<u64>,
    }

    /// The reporter's last outcomes, for `status` and health.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Health {
        pub last_success_ms: Option<u64>,
        pub last_error_ms: Option<u64>,
        /// HTTP status of the last error (0 for a transport error).
        pub last_error_status: u16,
        pub last_error_message: String,
        /// Since when sends have been failing (None when the last one succeeded).
        pub failing_since_ms: Option<u64>,
    }

    /// What kind of failure a health record's last error was. Stored in
    /// v3 health records by variant number (frozen: 0, 1, 2 in this order).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum FailureKind {
        /// The service asked us to slow down: waiting is all it takes.
        RateLimited,
        /// It may go away by itself (no answer, a server error...).
        Transient,
        /// The service refuses our credentials or configuration: the
        /// operator must act.
        Refused,
    }

    impl Health {
        /// The kind of the last error. Schema v1 and v2 records belong to
        /// the Threat Jammer target and carry its HTTP status only, so the
        /// kind follows from the status, by the rule this format always
        /// meant: 429 is rate limiting; any other 4xx but 408 (timeout) and
        /// 413 (split and retried) refuses our request; the rest (0 for no
        /// answer, 408, 5xx, other statuses) is transient.
        pub fn failure_kind(&self) -> FailureKind {
            match self.last_error_status {
                429 => FailureKind::RateLimited,
                408 | 413 => FailureKind::Transient,
                400..=499 => FailureKind::Refused,
                _ => FailureKind::Transient,
            }
        }
    }

    /// Encodes a value: version byte, then bincode.
    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = vec![VALUE_VERSION];
        // bincode into a Vec cannot fail for these plain types.
        bincode::serialize_into(&mut out, value).expect("bincode encoding of a plain struct");
        out
    }

    /// Decodes a value written by [`encode`].
    pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, MigrationError> {
        match bytes.split_first() {
            Some((&VALUE_VERSION, rest)) => bincode::deserialize(rest)
                .map_err(|e| MigrationError::Corrupt(format!("{what}: {e}"))),
            Some((v, _)) => Err(MigrationError::Corrupt(format!(
                "{what}: unknown value version {v}"
            ))),
            None => Err(MigrationError::Corrupt(format!("{what}: empty value"))),
        }
    }

    /// The stored form of an address: 4 bytes for IPv4 (also IPv4-mapped
    /// IPv6), 16 for IPv6.
    pub fn addr_key(ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.octets().to_vec(),
                None => v6.octets().to_vec(),
            },
        }
    }

    /// Inverse of [`addr_key`].
    pub fn addr_from_key(key: &[u8]) -> Result<IpAddr, MigrationError> {
        match key.len() {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(key).expect("length checked"),
            ))),
            16 => Ok(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(key).expect("length checked"),
            ))),
            n => Err(MigrationError::Corrupt(format!("address key of {n} bytes"))),
        }
    }

    /// `order` key.
    pub fn seq_key(seq: u64) -> [u8; 8] {
        seq.to_be_bytes()
    }

    /// `expiry` key: expires_at then address, so a range scan from the start
    /// yields the entries that run out first.
    pub fn expiry_key(expires_at_ms: u64, addr: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(8 + addr.len());
        k.extend_from_slice(&expires_at_ms.to_be_bytes());
        k.extend_from_slice(addr);
        k
    }

    /// Splits an `expiry` key.
    pub fn split_expiry_key(key: &[u8]) -> Result<(u64, &[u8]), MigrationError> {
        if key.len() != 12 && key.len() != 24 {
            return Err(MigrationError::Corrupt(format!(
                "expiry key of {} bytes",
                key.len()
            )));
        }
        let (t, a) = key.split_at(8);
        Ok((u64::from_be_bytes(t.try_into().expect("8 bytes")), a))
    }

    /// Identity of an input file: device, inode, and the fingerprint of its
    /// first bytes ([`super::fnv1a64`]), so that a reused inode is a new file.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct FileId {
        pub dev: u64,
        pub ino: u64,
        pub fingerprint: u64,
    }

    /// `checkpoints` key of a file identity.
    pub fn checkpoint_key(id: &FileId) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[..8].copy_from_slice(&id.dev.to_be_bytes());
        k[8..16].copy_from_slice(&id.ino.to_be_bytes());
        k[16..].copy_from_slice(&id.fingerprint.to_be_bytes());
        k
    }

    /// Inverse of [`checkpoint_key`].
    pub fn file_id_from_key(key: &[u8]) -> Result<FileId, MigrationError> {
        if key.len() != 24 {
            return Err(MigrationError::Corrupt(format!(
                "checkpoint key of {} bytes",
                key.len()
            )));
        }
        let word = |i: usize| u64::from_be_bytes(key[i..i + 8].try_into().expect("8 bytes"));
        Ok(FileId {
            dev: word(0),
            ino: word(8),
            fingerprint: word(16),
        })
    }

    /// A u64 counter as stored in `meta`.
    pub fn decode_u64(what: &str, bytes: Option<&[u8]>) -> Result<u64, MigrationError> {
        match bytes {
            None => Ok(0),
            Some(b) => Ok(u64::from_be_bytes(b.try_into().map_err(|_| {
                MigrationError::Corrupt(format!("{what} is not 8 bytes"))
            })?)),
        }
    }

    /// Reads a value and decodes it, if present.
    pub fn get<T: DeserializeOwned>(
        tree: &sled::Tree,
        what: &str,
        key: &[u8],
    ) -> Result<Option<T>, MigrationError> {
        tree.get(key)?.map(|v| decode(what, &v)).transpose()
    }
}

/// Schema v2: `order` groups and compact `pending` values (the rest is as
/// in [`v1`]).
pub mod v2 {
    use super::v1::Pending;
    use super::{trees, MigrationError};
    use bincode::Options;
    use serde::{Deserialize, Serialize};

    /// The first byte of every v2 `pending` value.
    pub const PENDING_VERSION: u8 = 2;

    /// How a [`Pending`] entry is stored in v2: the later times as
    /// differences from the first sighting (wrapping, so that any values
    /// round-trip), in bincode with variable-length integers.
    #[derive(Serialize, Deserialize)]
    struct StoredPending {
        first_seen_ms: u64,
        last_seen_after_first: i64,
        hits: u64,
        seq: u64,
        queued_at_after_first: i64,
    }

    /// bincode 1.3: little-endian, variable-length integers (a u64 below
    /// 251 is one byte, below 2^16 three, below 2^32 five, else nine;
    /// signed ones zigzagged first), no trailing bytes.
    fn options() -> impl Options {
        bincode::DefaultOptions::new()
            .with_little_endian()
            .with_varint_encoding()
            .reject_trailing_bytes()
    }

    /// Encodes a `pending` value: [`PENDING_VERSION`], then the entry.
    pub fn encode_pending(p: &Pending) -> Vec<u8> {
        let stored = StoredPending {
            first_seen_ms: p.first_seen_ms,
            last_seen_after_first: p.last_seen_ms.wrapping_sub(p.first_seen_ms) as i64,
            hits: p.hits,
            seq: p.seq,
            queued_at_after_first: p.queued_at_ms.wrapping_sub(p.first_seen_ms) as i64,
        };
        let mut out = vec![PENDING_VERSION];
        options()
            .serialize_into(&mut out, &stored)
            .expect("bincode encoding of a plain struct");
        out
    }

    /// Decodes a value written by [`encode_pending`].
    pub fn decode_pending(bytes: &[u8]) -> Result<Pending, MigrationError> {
        let stored: StoredPending = match bytes.split_first() {
            Some((&PENDING_VERSION, rest)) => options()
                .deserialize(rest)
                .map_err(|e| MigrationError::Corrupt(format!("pending: {e}")))?,
            Some((v, _)) => {
                return Err(MigrationError::Corrupt(format!(
                    "pending: unknown value version {v}"
                )))
            }
            None => return Err(MigrationError::Corrupt("pending: empty value".into())),
        };
        Ok(Pending {
            first_seen_ms: stored.first_seen_ms,
            last_seen_ms: stored
                .first_seen_ms
                .wrapping_add(stored.last_seen_after_first as u64),
            hits: stored.hits,
            seq: stored.seq,
            queued_at_ms: stored
                .first_seen_ms
                .wrapping_add(stored.queued_at_after_first as u64),
        })
    }

    /// Reads a `pending` value and decodes it, if present.
    pub fn get_pending(tree: &sled::Tree, key: &[u8]) -> Result<Option<Pending>, MigrationError> {
        tree.get(key)?.map(|v| decode_pending(&v)).transpose()
    }

    /// The first byte of every group value.
    pub const GROUP_VERSION: u8 = 2;

    /// The most addresses one group lists: the API's largest batch. A
    /// larger group would make each acknowledgement rewrite a longer value
    /// (a batch taken from the middle of a group rewrites what is left).
    pub const GROUP_MAX: usize = 1000;

    /// An `order` value: the addresses queued together under one sequence
    /// number, in queue order. Encoded as [`GROUP_VERSION`], then each
    /// address key ([`super::v1::addr_key`]) as its length (4 or 16, one
    /// byte) and its bytes: a group of one IPv4 address is 6 bytes.
    pub struct Group;

    /// Encodes a group of address keys (each 4 or 16 bytes).
    pub fn encode_group<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = vec![GROUP_VERSION];
        for k in keys {
            debug_assert!(
                k.len() == 4 || k.len() == 16,
                "address key of {} bytes",
                k.len()
            );
            out.push(k.len() as u8);
            out.extend_from_slice(k);
        }
        out
    }

    /// The address keys of a group, in order; an error for anything
    /// [`encode_group`] cannot have written (an empty group included).
    pub fn group_members(value: &[u8]) -> Result<Vec<&[u8]>, MigrationError> {
        let corrupt = |what: &str| Err(MigrationError::Corrupt(format!("order group: {what}")));
        let Some((&GROUP_VERSION, mut rest)) = value.split_first() else {
            return corrupt("unknown value version");
        };
        let mut out = Vec::with_capacity(rest.len() / 5);
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            if (len != 4 && len != 16) || tail.len() < len {
                return corrupt("bad address length");
            }
            let (key, tail) = tail.split_at(len);
            out.push(key);
            rest = tail;
        }
        if out.is_empty() {
            return corrupt("empty");
        }
        Ok(out)
    }

    /// Migration 1 → 2: every v1 `order` entry (sequence → raw address key)
    /// becomes a group of one under the same key (each `pending` entry's
    /// `seq` already names its entry), and every `pending` value is
    /// written again in the v2 encoding.
    ///
    /// Written in atomic batches of 1,000 and resumable: a v1 `order`
    /// value is 4 or 16 bytes, a group of one 6 or 18, and a `pending`
    /// value starts with its version byte, so a migration cut short by a
    /// crash converts the rest when it runs again (the schema version is
    /// only raised after the last batch). A value that is neither is left
    /// as it is for `tjfwd recover --check` to report, rather than making
    /// the database unopenable. Once per database: 15.7 s and 172 MiB peak
    /// RSS for 1,000,000 pending addresses on the benchmark machine
    /// (README "Benchmarks").
    pub fn from_v1(db: &sled::Db) -> Result<(), MigrationError> {
        rewrite(&db.open_tree(trees::ORDER)?, |v| {
            (v.len() == 4 || v.len() == 16).then(|| encode_group([v]))
        })?;
        rewrite(&db.open_tree(trees::PENDING)?, |v| {
            super::v1::decode::<Pending>("pending", v)
                .ok()
                .map(|p| encode_pending(&p))
        })
    }

    /// Replaces each value `convert` has a new one for, in atomic batches.
    pub(crate) fn rewrite(
        tree: &sled::Tree,
        convert: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), MigrationError> {
        const BATCH: usize = 1_000;
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            let mut last = None;
            for item in tree.range(from.as_slice()..).take(BATCH) {
                let (k, v) = item?;
                if let Some(new) = convert(&v) {
                    batch.insert(k.clone(), new);
                }
                n += 1;
                last = Some(k);
            }
            tree.apply_batch(batch)?;
            match last {
                Some(k) if n == BATCH => {
                    from = k.to_vec();
                    from.push(0); // the next key after k
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Schema v3: delivery state per report target.
///
/// Each target (Threat Jammer, AbuseIPDB, ...) has a small number, its
/// [`TargetId`](v3::TargetId), given once and never reused; the `targets` tree holds its
/// name and its own counters and records. What an address owes is kept in
/// one `pending` entry, whatever the number of targets: its sightings, and
/// for each target that still owes a report of it, the `order` group it
/// waits in ([`Intake::owed`](v3::Intake::owed)). `reported`, `expiry` and `dead` keys start
/// with the target's id, so each target has its own mirror of what it
/// accepted, its own expiries and its own dead letters.
pub mod v3 {
    use super::v1::{self, FailureKind};
    use super::{meta_keys, trees, MigrationError};
    use bincode::Options;
    use serde::{Deserialize, Serialize};

    /// A target's number in the database.
    pub type TargetId = u8;

    /// Ids are below this (the owed set is a 32-bit mask).
    pub const MAX_TARGETS: usize = 32;

    /// The target of every v1 and v2 database: its state became id 0's.
    pub const THREATJAMMER: TargetId = 0;

    /// Its name, as registered by the migration.
    pub const THREATJAMMER_NAME: &str = "threatjammer";

    /// The first byte of every v3 `pending` value.
    pub const INTAKE_VERSION: u8 = 3;

    /// The first byte of a v3 health record.
    pub const HEALTH_VERSION: u8 = 3;

    /// Field names of the `targets` tree (key: id, then the name).
    pub mod fields {
        /// UTF-8: the target's name (its configuration section).
        pub const NAME: &[u8] = b"name";
        /// u64 big-endian: the addresses this target owes a report of.
        pub const PENDING_COUNT: &[u8] = b"pending_count";
        /// [`super::v1::RequestLog`], v1-encoded: its recent request times.
        pub const REQUEST_LOG: &[u8] = b"request_log";
        /// [`super::Health`]: its last outcomes.
        pub const HEALTH: &[u8] = b"health";
        /// u64 big-endian: every `order` group below this sequence holds
        /// nothing this target owes (a hint: 0, or absent, is always true).
        pub const HEAD_SEQ: &[u8] = b"head_seq";
        /// [`super::RequestClock`]: the clocks when `request_log` was last
        /// written (written with it, in one batch). Absent in databases
        /// written before it existed: the log's times are then taken as
        /// the wall clock's.
        pub const REQUEST_CLOCK: &[u8] = b"request_clock";
    }

    /// The clocks at the moment a request log was written, so that its
    /// wall-clock times can be turned into true ages later, across wall
    /// clock steps: the boot's id and the time since boot
    /// (`CLOCK_BOOTTIME`, which no clock step moves) with the wall clock.
    /// Every time in the log was written in that wall clock's frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RequestClock {
        /// `/proc/sys/kernel/random/boot_id`, its 16 bytes (all zero:
        /// unknown, never the same boot as another).
        pub boot_id: [u8; 16],
        /// ms since boot.
        pub boot_ms: u64,
        /// The wall clock, ms since the epoch.
        pub wall_ms: u64,
    }

    /// The version byte of a [`RequestClock`] value.
    pub const REQUEST_CLOCK_VERSION: u8 = 1;

    /// Encodes a [`RequestClock`]: the version, the boot id, then boot and
    /// wall ms as u64 big-endian (33 bytes).
    pub fn encode_request_clock(c: &RequestClock) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = REQUEST_CLOCK_VERSION;
        out[1..17].copy_from_slice(&c.boot_id);
        out[17..25].copy_from_slice(&c.boot_ms.to_be_bytes());
        out[25..33].copy_from_slice(&c.wall_ms.to_be_bytes());
        out
    }

    /// Decodes a value written by [`encode_request_clock`].
    pub fn decode_request_clock(bytes: &[u8]) -> Result<RequestClock, MigrationError> {
        let bad = |why: &str| MigrationError::Corrupt(format!("request clock: {why}"));
        let bytes: &[u8; 33] = bytes
            .try_into()
            .map_err(|_| bad(&format!("{} bytes, not 33", bytes.len())))?;
        if bytes[0] != REQUEST_CLOCK_VERSION {
            return Err(bad(&format!("unknown value version {}", bytes[0])));
        }
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Ok(RequestClock {
            boot_id: bytes[1..17].try_into().expect("16 bytes"),
            boot_ms: u64_at(17),
            wall_ms: u64_at(25),
        })
    }

    /// A `targets` key: the id, then the field.
    pub fn field_key(target: TargetId, field: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + field.len());
        k.push(target);
        k.extend_from_slice(field);
        k
    }

    /// An `order` key: the id, then the group's sequence (u64 big-endian),
    /// so that each target's groups are a range of their own, in order.
    pub fn order_key(target: TargetId, seq: u64) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = target;
        k[1..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    /// Splits an [`order_key`].
    pub fn split_order_key(key: &[u8]) -> Result<(TargetId, u64), MigrationError> {
        match key {
            [t, seq @ ..] if seq.len() == 8 => {
                Ok((*t, u64::from_be_bytes(seq.try_into().expect("8 bytes"))))
            }
            _ => Err(MigrationError::Corrupt(format!(
                "order key of {} bytes",
                key.len()
            ))),
        }
    }

    /// A `reported` or `dead` key: the id, then the address key.
    pub fn target_addr_key(target: TargetId, addr: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + addr.len());
        k.push(target);
        k.extend_from_slice(addr);
        k
    }

    /// Splits a [`target_addr_key`].
    pub fn split_target_addr_key(key: &[u8]) -> Result<(TargetId, &[u8]), MigrationError> {
        match key.split_first() {
            Some((&t, addr)) if addr.len() == 4 || addr.len() == 16 => Ok((t, addr)),
            _ => Err(MigrationError::Corrupt(format!(
                "target address key of {} bytes",
                key.len()
            ))),
        }
    }

    /// An `expiry` key: the id, expires_at (u64 big-endian), the address:
    /// a range scan of one target's prefix yields what runs out first.
    pub fn expiry_key(target: TargetId, expires_at_ms: u64, addr: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(9 + addr.len());
        k.push(target);
        k.extend_from_slice(&expires_at_ms.to_be_bytes());
        k.extend_from_slice(addr);
        k
    }

    /// Splits an [`expiry_key`].
    pub fn split_expiry_key(key: &[u8]) -> Result<(TargetId, u64, &[u8]), MigrationError> {
        if key.len() != 13 && key.len() != 25 {
            return Err(MigrationError::Corrupt(format!(
                "expiry key of {} bytes",
                key.len()
            )));
        }
        let (t, rest) = key.split_at(1);
        let (at, addr) = rest.split_at(8);
        Ok((
            t[0],
            u64::from_be_bytes(at.try_into().expect("8 bytes")),
            addr,
        ))
    }

    /// A target that owes a report of an address, and the `order` group
    /// the address waits in for it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Owed {
        pub target: TargetId,
        pub seq: u64,
    }

    /// A `pending` entry: an address some target still owes a report of.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Intake {
        /// Time of the first sighting since the entry was made (event time).
        pub first_seen_ms: u64,
        /// Time of the latest sighting (event time).
        pub last_seen_ms: u64,
        /// Sightings since the entry was made.
        pub hits: u64,
        /// The targets that owe a report of it, by id, each at most once,
        /// never empty (an entry nobody owes is removed).
        pub owed: Vec<Owed>,
    }

    impl Intake {
        /// The group it waits in for `target`, if that target owes it.
        pub fn seq_for(&self, target: TargetId) -> Option<u64> {
            self.owed.iter().find(|o| o.target == target).map(|o| o.seq)
        }
    }

    /// How an [`Intake`] is stored: the later times as differences from
    /// the first sighting (as in v2), and the owed set as the smallest
    /// sequence among them with the mask of the targets that wait at it,
    /// then the others: an address queued for three targets at once costs
    /// one sequence and one mask byte, not three pairs.
    #[derive(Serialize, Deserialize)]
    struct StoredIntake {
        first_seen_ms: u64,
        last_seen_after_first: i64,
        hits: u64,
        seq: u64,
        mask: u32,
        others: Vec<(TargetId, u64)>,
    }

    /// bincode 1.3 with variable-length integers, as v2's `pending`.
    fn options() -> impl Options {
        bincode::DefaultOptions::new()
            .with_little_endian()
            .with_varint_encoding()
            .reject_trailing_bytes()
    }

    /// Encodes a `pending` value: [`INTAKE_VERSION`], then the entry.
    /// Panics on an entry [`decode_intake`] would refuse (no target, a
    /// target twice, an id of [`MAX_TARGETS`] or more): a writer's bug.
    pub fn encode_intake(e: &Intake) -> Vec<u8> {
        assert!(valid_owed(&e.owed), "invalid owed set {:?}", e.owed);
        let seq = e.owed.iter().map(|o| o.seq).min().expect("not empty");
        let mut mask = 0u32;
        let mut others = Vec::new();
        for o in &e.owed {
            if o.seq == seq {
                mask |= 1 << o.target;
            } else {
                others.push((o.target, o.seq));
            }
        }
        others.sort_unstable();
        let stored = StoredIntake {
            first_seen_ms: e.first_seen_ms,
            last_seen_after_first: e.last_seen_ms.wrapping_sub(e.first_seen_ms) as i64,
            hits: e.hits,
            seq,
            mask,
            others,
        };
        let mut out = vec![INTAKE_VERSION];
        options()
            .serialize_into(&mut out, &stored)
            .expect("bincode encoding of a plain struct");
        out
    }

    fn valid_owed(owed: &[Owed]) -> bool {
        let mut seen = 0u64;
        for o in owed {
            if usize::from(o.target) >= MAX_TARGETS || seen & (1 << o.target) != 0 {
                return false;
            }
            seen |= 1 << o.target;
        }
        seen != 0
    }

    /// Decodes a value written by [`encode_intake`]; the owed set comes
    /// back sorted by target.
    pub fn decode_intake(bytes: &[u8]) -> Result<Intake, MigrationError> {
        let corrupt = |what: String| MigrationError::Corrupt(format!("pending: {what}"));
        let stored: StoredIntake = match bytes.split_first() {
            Some((&INTAKE_VERSION, rest)) => options()
                .deserialize(rest)
                .map_err(|e| corrupt(e.to_string()))?,
            Some((v, _)) => return Err(corrupt(format!("unknown value version {v}"))),
            None => return Err(corrupt("empty value".into())),
        };
        let mut owed: Vec<Owed> = (0..MAX_TARGETS as u8)
            .filter(|t| stored.mask & (1 << t) != 0)
            .map(|target| Owed {
                target,
                seq: stored.seq,
            })
            .collect();
        for &(target, seq) in &stored.others {
            if seq <= stored.seq {
                return Err(corrupt(format!("target {target} waits before the first")));
            }
            owed.push(Owed { target, seq });
        }
        if stored.mask == 0 || !valid_owed(&owed) {
            return Err(corrupt("bad owed set".into()));
        }
        owed.sort_unstable();
        Ok(Intake {
            first_seen_ms: stored.first_seen_ms,
            last_seen_ms: stored
                .first_seen_ms
                .wrapping_add(stored.last_seen_after_first as u64),
            hits: stored.hits,
            owed,
        })
    }

    /// The first byte of every v3 `order` value.
    pub const GROUP_VERSION: u8 = 3;

    /// An `order` value: the wall-clock time its addresses were queued (the
    /// flush interval of each target that waits in it counts from there),
    /// then the addresses queued together under its sequence number, in
    /// queue order. Encoded as [`GROUP_VERSION`], the time as a bincode
    /// varint, then each address key as its length (4 or 16, one byte) and
    /// its bytes, as in v2.
    pub fn encode_group<'a>(
        queued_at_ms: u64,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<u8> {
        let mut out = vec![GROUP_VERSION];
        options()
            .serialize_into(&mut out, &queued_at_ms)
            .expect("bincode encoding of an integer");
        for k in keys {
            debug_assert!(
                k.len() == 4 || k.len() == 16,
                "address key of {} bytes",
                k.len()
            );
            out.push(k.len() as u8);
            out.extend_from_slice(k);
        }
        out
    }

    /// The time and the address keys of a group, in order; an error for
    /// anything [`encode_group`] cannot have written (an empty group
    /// included).
    pub fn decode_group(value: &[u8]) -> Result<(u64, Vec<&[u8]>), MigrationError> {
        let corrupt = |what: &str| MigrationError::Corrupt(format!("order group: {what}"));
        let Some((&GROUP_VERSION, rest)) = value.split_first() else {
            return Err(corrupt("unknown value version"));
        };
        let mut reader = rest;
        let queued_at_ms: u64 = bincode::DefaultOptions::new()
            .with_little_endian()
            .with_varint_encoding()
            .allow_trailing_bytes()
            .deserialize_from(&mut reader)
            .map_err(|_| corrupt("bad time"))?;
        let mut rest = reader;
        let mut out = Vec::with_capacity(rest.len() / 5);
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            if (len != 4 && len != 16) || tail.len() < len {
                return Err(corrupt("bad address length"));
            }
            let (key, tail) = tail.split_at(len);
            out.push(key);
            rest = tail;
        }
        if out.is_empty() {
            return Err(corrupt("empty"));
        }
        Ok((queued_at_ms, out))
    }

    /// A target's last outcomes, for `status` and health.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Health {
        pub last_success_ms: Option<u64>,
        pub last_error_ms: Option<u64>,
        /// The service's code for the last error (its HTTP status; 0 when
        /// no answer came): shown, never judged.
        pub last_error_code: u16,
        /// What the last error was; what health judges.
        pub last_error_kind: Option<FailureKind>,
        pub last_error_message: String,
        /// Since when sends have been failing (None when the last one succeeded).
        pub failing_since_ms: Option<u64>,
    }

    /// Encodes a health record: [`HEALTH_VERSION`], then bincode (fixed
    /// integers, as v1's records).
    pub fn encode_health(h: &Health) -> Vec<u8> {
        let mut out = vec![HEALTH_VERSION];
        bincode::serialize_into(&mut out, h).expect("bincode encoding of a plain struct");
        out
    }

    /// Decodes a value written by [`encode_health`].
    pub fn decode_health(bytes: &[u8]) -> Result<Health, MigrationError> {
        match bytes.split_first() {
            Some((&HEALTH_VERSION, rest)) => bincode::DefaultOptions::new()
                .with_fixint_encoding()
                .reject_trailing_bytes()
                .deserialize(rest)
                .map_err(|e| MigrationError::Corrupt(format!("health: {e}"))),
            Some((v, _)) => Err(MigrationError::Corrupt(format!(
                "health: unknown value version {v}"
            ))),
            None => Err(MigrationError::Corrupt("health: empty value".into())),
        }
    }

    /// Migration 2 → 3: the v2 database's delivery state becomes Threat
    /// Jammer's (id 0), the only target it can have had.
    ///
    /// - each `order` group becomes target 0's (its key gets the id in
    ///   front) with the earliest `queued_at_ms` of the entries waiting in
    ///   it, then each `pending` value becomes an [`Intake`] owed to target
    ///   0 at its group;
    /// - `reported`, `dead` and `expiry` keys get the id in front;
    /// - `meta/request_log` and `meta/health` move to the `targets` tree
    ///   (the health with its [`FailureKind`], from the status rule of
    ///   [`v1::Health::failure_kind`]); target 0's pending count is
    ///   `meta/pending_count`, which goes on counting `pending` entries.
    ///
    /// Resumable like 1 → 2: v2 `pending` values start with 2 and v3 ones
    /// with 3 (groups are converted before the entries whose times they
    /// read); a v2 `order`, `reported`, `dead` or `expiry` key is one byte
    /// shorter than the v3 key that replaces it, and each replacement
    /// (insert the new key, remove the old) is one atomic batch; the records are copied before the `meta`
    /// keys are removed. The schema version is raised after the last step.
    /// A database with no delivery state (a new one) registers no target.
    pub fn from_v2(db: &sled::Db) -> Result<(), MigrationError> {
        let meta = db.open_tree(trees::META)?;
        let pending = db.open_tree(trees::PENDING)?;
        let reported = db.open_tree(trees::REPORTED)?;
        let dead = db.open_tree(trees::DEAD)?;
        let expiry = db.open_tree(trees::EXPIRY)?;
        let targets = db.open_tree(trees::TARGETS)?;
        let has_state = !pending.is_empty()
            || !reported.is_empty()
            || !dead.is_empty()
            || meta.contains_key(meta_keys::REQUEST_LOG)?
            || meta.contains_key(meta_keys::HEALTH)?
            || !targets.is_empty();
        if !has_state {
            return Ok(());
        }
        let t = THREATJAMMER;
        // Groups first: their time is the earliest queued_at_ms of the v2
        // entries that wait in them, read before those are rewritten.
        let order = db.open_tree(trees::ORDER)?;
        replace(&order, |key, v| {
            let seq = u64::from_be_bytes(key.try_into().ok()?);
            let members = super::v2::group_members(v).ok()?;
            let queued_at = members
                .iter()
                .filter_map(|k| super::v2::get_pending(&pending, k).ok().flatten())
                .filter(|p| p.seq == seq)
                .map(|p| p.queued_at_ms)
                .min()
                .unwrap_or(0);
            Some((order_key(t, seq).to_vec(), encode_group(queued_at, members)))
        })?;
        super::v2::rewrite(&pending, |v| {
            let p = super::v2::decode_pending(v).ok()?;
            Some(encode_intake(&Intake {
                first_seen_ms: p.first_seen_ms,
                last_seen_ms: p.last_seen_ms,
                hits: p.hits,
                owed: vec![Owed {
                    target: t,
                    seq: p.seq,
                }],
            }))
        })?;
        let prefixed = |k: &[u8], v: &[u8]| {
            let mut n = Vec::with_capacity(k.len() + 1);
            n.push(t);
            n.extend_from_slice(k);
            (n, v.to_vec())
        };
        replace(&reported, |k, v| {
            (k.len() == 4 || k.len() == 16).then(|| prefixed(k, v))
        })?;
        replace(&dead, |k, v| {
            (k.len() == 4 || k.len() == 16).then(|| prefixed(k, v))
        })?;
        replace(&expiry, |k, v| {
            (k.len() == 12 || k.len() == 24).then(|| prefixed(k, v))
        })?;
        targets.insert(field_key(t, fields::NAME), THREATJAMMER_NAME.as_bytes())?;
        if !targets.contains_key(field_key(t, fields::PENDING_COUNT))? {
            let n = meta
                .get(meta_keys::PENDING_COUNT)?
                .map_or([0u8; 8].to_vec(), |v| v.to_vec());
            targets.insert(field_key(t, fields::PENDING_COUNT), n)?;
        }
        if let Some(log) = meta.get(meta_keys::REQUEST_LOG)? {
            // The same v1 encoding.
            targets.insert(field_key(t, fields::REQUEST_LOG), log)?;
        }
        if let Some(h) = meta.get(meta_keys::HEALTH)? {
            if let Ok(old) = v1::decode::<v1::Health>("health", &h) {
                let kind = old.last_error_ms.map(|_| old.failure_kind());
                let new = Health {
                    last_success_ms: old.last_success_ms,
                    last_error_ms: old.last_error_ms,
                    last_error_code: old.last_error_status,
                    last_error_kind: kind,
                    last_error_message: old.last_error_message,
                    failing_since_ms: old.failing_since_ms,
                };
                targets.insert(field_key(t, fields::HEALTH), encode_health(&new))?;
            }
        }
        targets.flush()?;
        meta.remove(meta_keys::REQUEST_LOG)?;
        meta.remove(meta_keys::HEALTH)?;
        Ok(())
    }

    /// Replaces each entry `convert` has a new key and value for, in
    /// atomic batches of 1,000 replacements (insert the new, remove the
    /// old). New keys may land ahead of the scan: `convert` must refuse
    /// them.
    fn replace(
        tree: &sled::Tree,
        convert: impl Fn(&[u8], &[u8]) -> Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), MigrationError> {
        const BATCH: usize = 1_000;
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            let mut last = None;
            for item in tree.range(from.as_slice()..) {
                let (k, v) = item?;
                last = Some(k.clone());
                if let Some((new_key, new_value)) = convert(&k, &v) {
                    batch.insert(new_key, new_value);
                    batch.remove(k);
                    n += 1;
                    if n == BATCH {
                        break;
                    }
                }
            }
            tree.apply_batch(batch)?;
            match last {
                Some(k) if n == BATCH => {
                    from = k.to_vec();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Schema v4: tjfwd's own denylist (`[feed]`, `tjfwd export`).
///
/// The denylist holds every address tjfwd selected, from the moment it is
/// queued until a TTL (`[feed] ttl`, applied when it is read) after its
/// last sighting. A `pending` entry already holds its address's last
/// sighting; what v4 adds is the last sighting of the addresses that are
/// no longer pending (every target settled them), and of the sightings
/// that did not queue them again (reported too recently, dead-lettered):
///
/// | tree        | key                                    | value |
/// |-------------|----------------------------------------|-------|
/// | `seen`      | address ([`v1::addr_key`](super::v1::addr_key)) | the last sighting, [`encode_seen`] |
/// | `seen_time` | last sighting ms u64 BE ‖ address ([`seen_time_key`]) | empty |
///
/// Invariant: each `seen` entry has exactly one `seen_time` key, with the
/// same time, and each `seen_time` key its `seen` entry (both are written
/// in one transaction). The TTL is not stored: changing `[feed] ttl`
/// takes effect at once, and pruning removes the `seen_time` range older
/// than now minus the TTL, with its entries.
///
/// ## Why only addresses that are not pending
///
/// A pending address's last sighting is in its `pending` entry, updated by
/// the intake anyway; a `seen` entry for it too would cost two more sled
/// entries (~100 bytes each) per pending address. So `seen` is written
/// when an entry leaves `pending` (its last sighting then), and when a
/// sighting of an address that is not pending does not queue it; never
/// for a pending address. A `seen` entry may be older than the pending
/// entry of the same address (queued again later): the later of the two
/// counts.
///
/// Times are event times, written never later than the wall clock of the
/// write (a log line dated in the future cannot keep an address listed).
pub mod v4 {
    use super::v1;
    use super::{trees, MigrationError};
    use sled::Transactional;

    /// The first byte of a `seen` value.
    pub const SEEN_VERSION: u8 = 4;

    /// Encodes a `seen` value: [`SEEN_VERSION`], then the time (ms since the
    /// epoch) as u64 big-endian.
    pub fn encode_seen(last_seen_ms: u64) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[0] = SEEN_VERSION;
        out[1..].copy_from_slice(&last_seen_ms.to_be_bytes());
        out
    }

    /// Decodes a value written by [`encode_seen`].
    pub fn decode_seen(bytes: &[u8]) -> Result<u64, MigrationError> {
        match bytes {
            [SEEN_VERSION, rest @ ..] if rest.len() == 8 => {
                Ok(u64::from_be_bytes(rest.try_into().expect("8 bytes")))
            }
            _ => Err(MigrationError::Corrupt(format!(
                "seen: a value of {} bytes, or of an unknown version",
                bytes.len()
            ))),
        }
    }

    /// `meta/loading` ([`crate::meta_keys::LOADING`]): the sequence range
    /// `first..next` of the groups a bulk load wrote, two u64 big-endian.
    pub fn encode_loading(first_seq: u64, next_seq: u64) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&first_seq.to_be_bytes());
        v[8..].copy_from_slice(&next_seq.to_be_bytes());
        v
    }

    /// Reads [`encode_loading`].
    pub fn decode_loading(bytes: &[u8]) -> Result<(u64, u64), MigrationError> {
        match bytes.len() {
            16 => Ok((
                u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
                u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
            )),
            n => Err(MigrationError::Corrupt(format!(
                "meta/loading of {n} bytes"
            ))),
        }
    }

    /// A `seen_time` key: the time, then the address, so that a range scan
    /// from the start yields the oldest sightings first.
    pub fn seen_time_key(last_seen_ms: u64, addr: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(8 + addr.len());
        k.extend_from_slice(&last_seen_ms.to_be_bytes());
        k.extend_from_slice(addr);
        k
    }

    /// Splits a [`seen_time_key`].
    pub fn split_seen_time_key(key: &[u8]) -> Result<(u64, &[u8]), MigrationError> {
        if key.len() != 12 && key.len() != 24 {
            return Err(MigrationError::Corrupt(format!(
                "seen_time key of {} bytes",
                key.len()
            )));
        }
        let (t, a) = key.split_at(8);
        Ok((u64::from_be_bytes(t.try_into().expect("8 bytes")), a))
    }

    /// Migration 3 → 4: creates `seen` and `seen_time`, and seeds them from
    /// the reported mirrors, so that an upgrade keeps listing what
    /// `tjfwd export` listed before: a v3 database did not keep the last
    /// sighting of a reported address, so its last report (the latest
    /// among the targets) stands in for it, a little later than the
    /// sighting it followed. Idempotent, in transactions of 1,000 entries:
    /// a run cut short is finished by the next.
    pub fn from_v3(db: &sled::Db) -> Result<(), MigrationError> {
        const BATCH: usize = 1_000;
        let seen = db.open_tree(trees::SEEN)?;
        let seen_time = db.open_tree(trees::SEEN_TIME)?;
        let reported = db.open_tree(trees::REPORTED)?;
        let mut batch: Vec<(Vec<u8>, u64)> = Vec::with_capacity(BATCH);
        let write = |batch: &mut Vec<(Vec<u8>, u64)>| -> Result<(), MigrationError> {
            (&seen, &seen_time)
                .transaction(|(seen, seen_time)| {
                    for (addr, at) in batch.iter() {
                        let old = match seen.get(addr)? {
                            Some(v) => Some(decode_seen(&v).or_else(sled::transaction::abort)?),
                            None => None,
                        };
                        if old.is_some_and(|o| o >= *at) {
                            continue;
                        }
                        if let Some(o) = old {
                            seen_time.remove(seen_time_key(o, addr))?;
                        }
                        seen.insert(addr.as_slice(), &encode_seen(*at))?;
                        seen_time.insert(seen_time_key(*at, addr), &[])?;
                    }
                    Ok(())
                })
                .map_err(|e| match e {
                    sled::transaction::TransactionError::Abort(e) => e,
                    sled::transaction::TransactionError::Storage(e) => MigrationError::Sled(e),
                })?;
            batch.clear();
            Ok(())
        };
        for item in reported.iter() {
            let (k, v) = item?;
            // A record that does not read is left for `tjfwd recover --check`.
            let Ok((_, addr)) = super::v3::split_target_addr_key(&k) else {
                continue;
            };
            let Ok(r) = v1::decode::<v1::Reported>("reported", &v) else {
                continue;
            };
            batch.push((addr.to_vec(), r.last_reported_ms));
            if batch.len() == BATCH {
                write(&mut batch)?;
            }
        }
        write(&mut batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn temp_db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    #[test]
    fn fresh_database_gets_current_version() {
        let (_d, db) = temp_db();
        let m = migrate(&db, "test").unwrap();
        assert_eq!(
            m,
            Migrated {
                from: 0,
                to: SCHEMA_VERSION
            }
        );
        assert_eq!(stored_version(&db).unwrap(), SCHEMA_VERSION);
        // Idempotent.
        let m = migrate(&db, "test").unwrap();
        assert_eq!(m.from, SCHEMA_VERSION);
    }

    #[test]
    fn newer_database_is_refused_and_untouched() {
        let (_d, db) = temp_db();
        let meta = db.open_tree(trees::META).unwrap();
        meta.insert(meta_keys::SCHEMA_VERSION, &99u32.to_be_bytes())
            .unwrap();
        let err = migrate(&db, "test").unwrap_err();
        assert!(matches!(err, MigrationError::TooNew { found: 99, .. }));
        assert!(err.to_string().contains("newer tjfwd"));
        assert_eq!(stored_version(&db).unwrap(), 99);
    }

    #[test]
    fn data_without_version_is_refused() {
        let (_d, db) = temp_db();
        db.open_tree(trees::PENDING)
            .unwrap()
            .insert(b"x", b"y")
            .unwrap();
        assert!(matches!(
            migrate(&db, "test").unwrap_err(),
            MigrationError::NotTjfwd
        ));
    }

    #[test]
    fn address_keys_round_trip_and_fold_mapped() {
        for s in ["1.2.3.4", "2001:db8::1", "::1"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(v1::addr_from_key(&v1::addr_key(ip)).unwrap(), ip);
        }
        let mapped: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(v1::addr_key(mapped), vec![1, 2, 3, 4]);
        assert!(v1::addr_from_key(&[1, 2, 3]).is_err());
    }

    /// The value encoding is frozen: these bytes must never change.
    #[test]
    fn value_encoding_is_frozen() {
        let p = v1::Pending {
            first_seen_ms: 1,
            last_seen_ms: 2,
            hits: 3,
            seq: 4,
            queued_at_ms: 5,
        };
        let bytes = v1::encode(&p);
        let mut expected = vec![1u8];
        for n in 1u64..=5 {
            expected.extend_from_slice(&n.to_le_bytes());
        }
        assert_eq!(bytes, expected);
        assert_eq!(v1::decode::<v1::Pending>("p", &bytes).unwrap(), p);
        assert!(v1::decode::<v1::Pending>("p", &[2, 0]).is_err());
        assert!(v1::decode::<v1::Pending>("p", &[]).is_err());
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn expiry_and_checkpoint_keys_round_trip() {
        let k = v1::expiry_key(77, &[9, 9, 9, 9]);
        assert_eq!(v1::split_expiry_key(&k).unwrap(), (77, &[9u8, 9, 9, 9][..]));
        let id = v1::FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        assert_eq!(v1::file_id_from_key(&v1::checkpoint_key(&id)).unwrap(), id);
    }

    #[test]
    fn groups_round_trip_and_refuse_what_encode_cannot_write() {
        let a = v1::addr_key("1.2.3.4".parse().unwrap());
        let b = v1::addr_key("2001:db8::1".parse().unwrap());
        let g = v2::encode_group([a.as_slice(), b.as_slice(), a.as_slice()]);
        assert_eq!(g.len(), 1 + 5 + 17 + 5);
        assert_eq!(
            v2::group_members(&g).unwrap(),
            [a.as_slice(), b.as_slice(), a.as_slice()]
        );
        assert_eq!(v2::encode_group([a.as_slice()]), [2, 4, 1, 2, 3, 4]);
        for bad in [
            &[][..],
            &[2],
            &[1, 4, 1, 2, 3, 4],
            &[2, 4, 1, 2, 3],
            &[2, 5, 1, 2, 3, 4, 5],
            &[2, 4, 1, 2, 3, 4, 16],
        ] {
            assert!(v2::group_members(bad).is_err(), "{bad:?}");
        }
    }

    /// A migration cut short (some entries converted, the version still 1)
    /// converts the rest when it runs again; a damaged value stays as it is.
    #[test]
    fn v1_to_v2_converts_order_entries_and_resumes() {
        let (_d, db) = temp_db();
        let meta = db.open_tree(trees::META).unwrap();
        v1::create(&db).unwrap();
        meta.insert(meta_keys::SCHEMA_VERSION, &1u32.to_be_bytes())
            .unwrap();
        let order = db.open_tree(trees::ORDER).unwrap();
        let keys: Vec<Vec<u8>> = (0..25_000u32)
            .map(|i| {
                if i % 7 == 0 {
                    v1::addr_key(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) + 1)))
                } else {
                    v1::addr_key(IpAddr::V4(std::net::Ipv4Addr::from(i + 1)))
                }
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            order.insert(v1::seq_key(i as u64), k.as_slice()).unwrap();
        }
        // As if a first run had converted entry 3 and then crashed.
        order
            .insert(v1::seq_key(3), v2::encode_group([keys[3].as_slice()]))
            .unwrap();
        order.insert(v1::seq_key(9), &[7u8, 7, 7][..]).unwrap();
        let pending = db.open_tree(trees::PENDING).unwrap();
        let entry = |i: u64| v1::Pending {
            first_seen_ms: 1000 + i,
            last_seen_ms: 2000 + i,
            hits: i,
            seq: i,
            queued_at_ms: 500,
        };
        for (i, k) in keys.iter().enumerate() {
            pending
                .insert(k.as_slice(), v1::encode(&entry(i as u64)))
                .unwrap();
        }
        // Converted by the first run, and one damaged value.
        pending
            .insert(keys[5].as_slice(), v2::encode_pending(&entry(5)))
            .unwrap();
        pending.insert(keys[6].as_slice(), &[1u8, 2][..]).unwrap();
        assert_eq!(
            migrate_to(&db, "test", 2).unwrap(),
            Migrated { from: 1, to: 2 }
        );
        for (i, k) in keys.iter().enumerate() {
            let v = pending.get(k).unwrap().unwrap();
            if i == 6 {
                assert_eq!(v.as_ref(), [1, 2]);
            } else {
                assert_eq!(
                    v2::decode_pending(&v).unwrap(),
                    entry(i as u64),
                    "pending {i}"
                );
            }
        }
        for (i, k) in keys.iter().enumerate() {
            let v = order.get(v1::seq_key(i as u64)).unwrap().unwrap();
            if i == 9 {
                assert_eq!(v.as_ref(), [7, 7, 7]);
                assert!(v2::group_members(&v).is_err());
            } else {
                assert_eq!(v2::group_members(&v).unwrap(), [k.as_slice()], "entry {i}");
            }
        }
        assert_eq!(order.len(), keys.len());
        assert_eq!(stored_version(&db).unwrap(), 2);
    }

    /// The v2 pending encoding is frozen too, and round-trips any values.
    #[test]
    fn v2_pending_encoding_is_frozen_and_round_trips() {
        let p = v1::Pending {
            first_seen_ms: 1_795_348_957_839,
            last_seen_ms: 1_795_348_958_839,
            hits: 3,
            seq: 300,
            queued_at_ms: 1_795_348_957_000,
        };
        let bytes = v2::encode_pending(&p);
        // version, first_seen (u64 tag 253 + 8 bytes), +1000 zigzagged
        // (2000: tag 251 + 2 bytes), 3, 300 (251 + 2 bytes), -839
        // zigzagged (1677: 251 + 2 bytes).
        let mut expected = vec![2u8, 253];
        expected.extend_from_slice(&1_795_348_957_839u64.to_le_bytes());
        expected.extend_from_slice(&[251, 0xd0, 0x07, 3, 251, 0x2c, 0x01, 251, 0x8d, 0x06]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 20);
        assert_eq!(v2::decode_pending(&bytes).unwrap(), p);
        for p in [
            v1::Pending {
                first_seen_ms: u64::MAX,
                last_seen_ms: 0,
                hits: u64::MAX,
                seq: 0,
                queued_at_ms: 1,
            },
            v1::Pending {
                first_seen_ms: 0,
                last_seen_ms: u64::MAX,
                hits: 0,
                seq: u64::MAX,
                queued_at_ms: 0,
            },
        ] {
            assert_eq!(v2::decode_pending(&v2::encode_pending(&p)).unwrap(), p);
        }
        assert!(v2::decode_pending(&v1::encode(&p)).is_err(), "a v1 value");
        assert!(v2::decode_pending(&[2, 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(v2::decode_pending(&trailing).is_err());
        assert!(v2::decode_pending(&[]).is_err());
    }
    /// The v3 `pending` encoding is frozen: these bytes must never change.
    #[test]
    fn v3_intake_encoding_is_frozen_and_round_trips() {
        let one = v3::Intake {
            first_seen_ms: 1_795_348_957_839,
            last_seen_ms: 1_795_348_958_839,
            hits: 3,
            owed: vec![v3::Owed {
                target: 0,
                seq: 300,
            }],
        };
        let bytes = v3::encode_intake(&one);
        // version 3, first_seen (tag 253 + 8 bytes), +1000 zigzagged
        // (2000: 251 + 2 bytes), hits 3, seq 300 (251 + 2 bytes), mask 1,
        // no others (length 0).
        let mut expected = vec![3u8, 253];
        expected.extend_from_slice(&1_795_348_957_839u64.to_le_bytes());
        expected.extend_from_slice(&[251, 0xd0, 0x07, 3, 251, 0x2c, 0x01, 1, 0]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 19);
        assert_eq!(v3::decode_intake(&bytes).unwrap(), one);

        // Three targets queued together cost one byte more than one.
        let three = v3::Intake {
            owed: (0..3)
                .map(|t| v3::Owed {
                    target: t,
                    seq: 300,
                })
                .collect(),
            ..one.clone()
        };
        let b3 = v3::encode_intake(&three);
        assert_eq!(b3.len(), 19);
        assert_eq!(b3[17], 0b111);
        assert_eq!(v3::decode_intake(&b3).unwrap(), three);

        // A target waiting in a later group is listed after the mask.
        let split = v3::Intake {
            owed: vec![
                v3::Owed {
                    target: 1,
                    seq: 300,
                },
                v3::Owed {
                    target: 2,
                    seq: 301,
                },
                v3::Owed {
                    target: 5,
                    seq: 300,
                },
            ],
            ..one.clone()
        };
        let bs = v3::encode_intake(&split);
        assert_eq!(&bs[17..], &[0b10_0010, 1, 2, 251, 0x2d, 0x01]);
        assert_eq!(v3::decode_intake(&bs).unwrap(), split);

        for bad in [
            &[][..],
            &[3],
            &bytes[..bytes.len() - 1],
            &[2, 0, 0, 0, 0, 0, 0, 1, 0],
        ] {
            assert!(v3::decode_intake(bad).is_err(), "{bad:?}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(v3::decode_intake(&trailing).is_err());
        // No target, or a listed target also in the mask, or one listed
        // before the first group: nothing encode_intake writes.
        let mut no_target = bytes.clone();
        no_target[17] = 0;
        assert!(v3::decode_intake(&no_target).is_err());
        let mut twice = bs.clone();
        twice[19] = 1;
        assert!(v3::decode_intake(&twice).is_err());
        let mut earlier = bs.clone();
        earlier[20..].copy_from_slice(&[251, 0x2b, 0x01]);
        assert!(v3::decode_intake(&earlier).is_err());
    }

    #[test]
    fn v3_groups_are_frozen_round_trip_and_refuse_what_encode_cannot_write() {
        let a = v1::addr_key("1.2.3.4".parse().unwrap());
        let b = v1::addr_key("2001:db8::1".parse().unwrap());
        let g = v3::encode_group(1_795_348_957_000, [a.as_slice(), b.as_slice()]);
        let (at, members) = v3::decode_group(&g).unwrap();
        assert_eq!(at, 1_795_348_957_000);
        assert_eq!(members, [a.as_slice(), b.as_slice()]);
        // version 3, the time (tag 253 + 8 bytes), then as in v2.
        let mut expected = vec![3u8, 253];
        expected.extend_from_slice(&1_795_348_957_000u64.to_le_bytes());
        expected.extend_from_slice(&[4, 1, 2, 3, 4]);
        assert_eq!(
            v3::encode_group(1_795_348_957_000, [a.as_slice()]),
            expected
        );
        assert_eq!(v3::encode_group(7, [a.as_slice()]), [3, 7, 4, 1, 2, 3, 4]);
        for bad in [
            &[][..],
            &[3],
            &[3, 7],
            &[2, 4, 1, 2, 3, 4],
            &[3, 7, 4, 1, 2, 3],
            &[3, 7, 5, 1, 2, 3, 4, 5],
            &[3, 253, 1],
        ] {
            assert!(v3::decode_group(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v3_health_encoding_is_frozen() {
        let h = v3::Health {
            last_success_ms: Some(1),
            last_error_ms: None,
            last_error_code: 429,
            last_error_kind: Some(v1::FailureKind::Refused),
            last_error_message: "x".into(),
            failing_since_ms: None,
        };
        let bytes = v3::encode_health(&h);
        let mut expected = vec![3u8, 1];
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.push(0);
        expected.extend_from_slice(&429u16.to_le_bytes());
        expected.extend_from_slice(&[1, 2, 0, 0, 0]);
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(b"x");
        expected.push(0);
        assert_eq!(bytes, expected);
        assert_eq!(v3::decode_health(&bytes).unwrap(), h);
        assert!(v3::decode_health(&v1::encode(&v1::Health::default())).is_err());
    }

    #[test]
    fn v3_request_clock_encoding_is_frozen() {
        let c = v3::RequestClock {
            boot_id: *b"0123456789abcdef",
            boot_ms: 0x0102,
            wall_ms: 0x0a0b_0c0d,
        };
        let bytes = v3::encode_request_clock(&c);
        let mut expected = vec![1u8];
        expected.extend_from_slice(b"0123456789abcdef");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(bytes.to_vec(), expected);
        assert_eq!(v3::decode_request_clock(&bytes).unwrap(), c);
        assert!(v3::decode_request_clock(&bytes[..32]).is_err());
        let mut other = bytes;
        other[0] = 2;
        assert!(v3::decode_request_clock(&other).is_err());
    }

    /// Migration 2 -> 3 cut short converts the rest when it runs again,
    /// keys that start with a zero byte included.
    #[test]
    fn v2_to_v3_moves_everything_to_target_0_and_resumes() {
        let (_d, db) = temp_db();
        migrate_to(&db, "test", 2).unwrap();
        let pending = db.open_tree(trees::PENDING).unwrap();
        let reported = db.open_tree(trees::REPORTED).unwrap();
        let expiry = db.open_tree(trees::EXPIRY).unwrap();
        let dead = db.open_tree(trees::DEAD).unwrap();
        let addr = |i: u32| -> Vec<u8> {
            if i.is_multiple_of(5) {
                v1::addr_key(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i))))
            } else {
                // From 0.0.0.1 up: keys that start with 0 too.
                v1::addr_key(IpAddr::V4(std::net::Ipv4Addr::from(i * 40_000)))
            }
        };
        let entry = |i: u64| v1::Pending {
            first_seen_ms: 1000 + i,
            last_seen_ms: 2000 + i,
            hits: i + 1,
            seq: i / 10,
            queued_at_ms: 500,
        };
        let r = |i: u64| v1::Reported {
            first_reported_ms: i,
            last_reported_ms: i + 1,
            expires_at_ms: 10_000 + i,
            count: 1,
        };
        for i in 0..4_500u32 {
            let k = addr(i);
            pending
                .insert(&k, v2::encode_pending(&entry(u64::from(i))))
                .unwrap();
            reported.insert(&k, v1::encode(&r(u64::from(i)))).unwrap();
            expiry
                .insert(v1::expiry_key(10_000 + u64::from(i), &k), &[])
                .unwrap();
            if i.is_multiple_of(3) {
                dead.insert(
                    &k,
                    v1::encode(&v1::Dead {
                        status: 422,
                        reason: "r".into(),
                        at_ms: 1,
                        first_seen_ms: 1,
                        last_seen_ms: 1,
                        hits: 1,
                    }),
                )
                .unwrap();
            }
        }
        let meta = db.open_tree(trees::META).unwrap();
        meta.insert(meta_keys::PENDING_COUNT, &4_500u64.to_be_bytes())
            .unwrap();
        // Groups of ten, as v2 wrote them; group 3's entries were queued
        // at different times (a replay holds addresses back).
        let order = db.open_tree(trees::ORDER).unwrap();
        for g in 0..450u32 {
            let keys: Vec<Vec<u8>> = (g * 10..g * 10 + 10).map(addr).collect();
            order
                .insert(
                    v1::seq_key(u64::from(g)),
                    v2::encode_group(keys.iter().map(Vec::as_slice)),
                )
                .unwrap();
        }
        pending
            .insert(
                addr(34),
                v2::encode_pending(&v1::Pending {
                    queued_at_ms: 400,
                    ..entry(34)
                }),
            )
            .unwrap();
        // As if a first run had converted the groups and some entries, and
        // then crashed.
        let g0: Vec<Vec<u8>> = (0..10).map(addr).collect();
        order.remove(v1::seq_key(0)).unwrap();
        order
            .insert(
                v3::order_key(0, 0),
                v3::encode_group(500, g0.iter().map(Vec::as_slice)),
            )
            .unwrap();
        pending
            .insert(
                addr(7),
                v3::encode_intake(&v3::Intake {
                    first_seen_ms: 1007,
                    last_seen_ms: 2007,
                    hits: 8,
                    owed: vec![v3::Owed { target: 0, seq: 0 }],
                }),
            )
            .unwrap();
        let k8 = addr(8);
        let v8 = reported.remove(&k8).unwrap().unwrap();
        reported.insert(v3::target_addr_key(0, &k8), v8).unwrap();

        assert_eq!(
            migrate_to(&db, "test", 3).unwrap(),
            Migrated { from: 2, to: 3 }
        );
        for i in 0..4_500u32 {
            let k = addr(i);
            let e = v3::decode_intake(&pending.get(&k).unwrap().unwrap()).unwrap();
            let p = entry(u64::from(i));
            assert_eq!(
                (e.first_seen_ms, e.last_seen_ms, e.hits),
                (p.first_seen_ms, p.last_seen_ms, p.hits),
                "{i}"
            );
            assert_eq!(
                e.owed,
                [v3::Owed {
                    target: 0,
                    seq: p.seq
                }],
                "{i}"
            );
            let rk = v3::target_addr_key(0, &k);
            let got: v1::Reported = v1::get(&reported, "r", &rk).unwrap().unwrap();
            assert_eq!(got, r(u64::from(i)), "{i}");
            assert!(expiry
                .contains_key(v3::expiry_key(0, 10_000 + u64::from(i), &k))
                .unwrap());
            assert_eq!(dead.contains_key(&rk).unwrap(), i.is_multiple_of(3), "{i}");
        }
        for g in 0..450u64 {
            let v = order.get(v3::order_key(0, g)).unwrap().unwrap();
            let (at, members) = v3::decode_group(&v).unwrap();
            assert_eq!(at, if g == 3 { 400 } else { 500 }, "group {g}");
            assert_eq!(members.len(), 10);
        }
        assert_eq!(order.len(), 450, "every v2 key replaced");
        assert_eq!(reported.len(), 4_500);
        assert_eq!(expiry.len(), 4_500);
        assert_eq!(dead.len(), 1_500);
        let targets = db.open_tree(trees::TARGETS).unwrap();
        assert_eq!(
            v1::decode_u64(
                "n",
                targets
                    .get(v3::field_key(0, v3::fields::PENDING_COUNT))
                    .unwrap()
                    .as_deref()
            )
            .unwrap(),
            4_500
        );
        // No health, no request log in this database: none made up.
        assert!(!targets
            .contains_key(v3::field_key(0, v3::fields::HEALTH))
            .unwrap());
    }

    #[test]
    fn v4_seen_encodings_are_frozen() {
        let v = v4::encode_seen(0x0102_0304_0506_0708);
        assert_eq!(v, [4, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(v4::decode_seen(&v).unwrap(), 0x0102_0304_0506_0708);
        for bad in [&[][..], &[4], &v[..8], &[3, 1, 2, 3, 4, 5, 6, 7, 8]] {
            assert!(v4::decode_seen(bad).is_err(), "{bad:?}");
        }
        let a = v1::addr_key("1.2.3.4".parse().unwrap());
        let k = v4::seen_time_key(7, &a);
        assert_eq!(k, [0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(v4::split_seen_time_key(&k).unwrap(), (7, a.as_slice()));
        assert!(v4::split_seen_time_key(&k[..11]).is_err());
    }

    /// Migration 3 -> 4 seeds the last sightings from every target's
    /// mirror (the latest report of an address), and a run that was cut
    /// short (some entries written, one older than its report) is
    /// finished by the next.
    #[test]
    fn v3_to_v4_seeds_the_denylist_from_the_mirrors_and_resumes() {
        let (_d, db) = temp_db();
        migrate_to(&db, "test", 3).unwrap();
        let reported = db.open_tree(trees::REPORTED).unwrap();
        let addr = |i: u32| v1::addr_key(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
        let r = |at: u64| v1::Reported {
            first_reported_ms: 1,
            last_reported_ms: at,
            expires_at_ms: at + 10,
            count: 1,
        };
        for i in 0..2_500u32 {
            let at = 1_000 + u64::from(i);
            reported
                .insert(v3::target_addr_key(0, &addr(i)), v1::encode(&r(at)))
                .unwrap();
            if i % 2 == 0 {
                // Target 1 reported it later.
                reported
                    .insert(v3::target_addr_key(1, &addr(i)), v1::encode(&r(at + 5)))
                    .unwrap();
            }
        }
        reported
            .insert(v3::target_addr_key(0, &addr(9_999)), &[9, 9][..])
            .unwrap();
        // As if a first run had written two entries: one right, one with
        // target 0's time only (target 1's came later in its scan).
        let seen = db.open_tree(trees::SEEN).unwrap();
        let seen_time = db.open_tree(trees::SEEN_TIME).unwrap();
        for (i, at) in [(0u32, 1_005u64), (1, 1_001)] {
            seen.insert(addr(i), &v4::encode_seen(at)).unwrap();
            seen_time
                .insert(v4::seen_time_key(at, &addr(i)), &[])
                .unwrap();
        }
        seen.insert(addr(2), &v4::encode_seen(1_002)).unwrap();
        seen_time
            .insert(v4::seen_time_key(1_002, &addr(2)), &[])
            .unwrap();
        assert_eq!(migrate(&db, "test").unwrap(), Migrated { from: 3, to: 4 });
        for i in 0..2_500u32 {
            let want = 1_000 + u64::from(i) + if i % 2 == 0 { 5 } else { 0 };
            let got = v4::decode_seen(&seen.get(addr(i)).unwrap().unwrap()).unwrap();
            assert_eq!(got, want, "{i}");
            assert!(seen_time
                .contains_key(v4::seen_time_key(want, &addr(i)))
                .unwrap());
        }
        assert_eq!(seen.len(), 2_500, "the unreadable record is left alone");
        assert_eq!(seen_time.len(), 2_500, "one time key each");
        assert_eq!(stored_version(&db).unwrap(), 4);
    }

    #[test]
    fn a_new_database_registers_no_target() {
        let (_d, db) = temp_db();
        migrate(&db, "test").unwrap();
        assert!(db.open_tree(trees::TARGETS).unwrap().is_empty());
    }
}
