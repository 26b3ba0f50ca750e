//! Reads inside the store's sled transactions, and what a failed
//! transaction becomes.
//!
//! A record or counter that does not decode aborts the whole transaction
//! (the decoding error becomes [`StoreError::Format`]): nothing is ever
//! written on top of a damaged record.

use migrations::v1::{self, Pending};
use migrations::v2;
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

/// The `pending` entry at `key` (its own encoding, schema v2).
pub(super) fn tx_get_pending(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<Pending>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => v2::decode_pending(&v).map(Some).or_else(abort),
    }
}

/// A `meta` counter (u64 big-endian).
pub(super) fn tx_counter(meta: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    let v = meta.get(key)?;
    v1::decode_u64("meta counter", v.as_deref()).or_else(abort)
}
