//! Reads inside the store's sled transactions, and what a failed
//! transaction becomes.
//!
//! A record or counter that does not decode aborts the whole transaction
//! (the decoding error becomes [`StoreError::Format`]): nothing is ever
//! written on top of a damaged record.

use std::collections::BTreeMap;

use migrations::v1;
use migrations::v3::{self, Intake, TargetId};
use migrations::MigrationError;
use sled::transaction::{abort, ConflictableTransactionError, TransactionError, TransactionalTree};

use super::StoreError;

/// What a step inside a transaction returns.
pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<MigrationError>>;

/// A failed transaction as a [`StoreError`].
pub(super) fn tx_err(e: TransactionError<MigrationError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => StoreError::Format(e),
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// The record at `key` (one version byte, then bincode); `what` names it
/// in the error.
pub(super) fn tx_get<T: serde::de::DeserializeOwned>(
    tree: &TransactionalTree,
    what: &str,
    key: &[u8],
) -> TxResult<Option<T>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => v1::decode(what, &v).map(Some).or_else(abort),
    }
}

/// The `pending` entry at `key` (its own encoding, schema v3).
pub(super) fn tx_get_intake(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<Intake>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => v3::decode_intake(&v).map(Some).or_else(abort),
    }
}

/// A counter (u64 big-endian) of `meta` or `targets`.
pub(super) fn tx_counter(tree: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    let v = tree.get(key)?;
    v1::decode_u64("counter", v.as_deref()).or_else(abort)
}

/// Changes to the targets' pending counts within one transaction.
#[derive(Default)]
pub(super) struct TargetCounts(BTreeMap<TargetId, i64>);

impl TargetCounts {
    pub(super) fn add(&mut self, t: TargetId, n: i64) {
        *self.0.entry(t).or_insert(0) += n;
    }

    /// Applies the changes to the `targets` tree.
    pub(super) fn write(&self, targets: &TransactionalTree) -> TxResult<()> {
        for (&t, &delta) in &self.0 {
            if delta == 0 {
                continue;
            }
            let key = v3::field_key(t, v3::fields::PENDING_COUNT);
            let n = tx_counter(targets, &key)?;
            let n = if delta < 0 {
                n.saturating_sub(delta.unsigned_abs())
            } else {
                n + delta as u64
            };
            targets.insert(key, &n.to_be_bytes())?;
        }
        Ok(())
    }
}
