//! Input positions: where each input file was read up to (its checkpoint,
//! keyed by the file's identity — device, inode, fingerprint — not by its
//! path), and when the file input first started (`meta/input_since`).
//!
//! Invariants:
//!
//! - The checkpoint that follows a chunk of sightings is written in the
//!   same transaction as they are ([`Store::enqueue`] with a checkpoint):
//!   after a crash the input is read again from a position that matches
//!   what was queued, so a line is either queued and passed, or neither.
//!   The writers here store a position on its own, where nothing is queued
//!   (`start_at = "end"`, a file that is gone).
//! - `input_since` is set once, the first time the file input asks for it;
//!   only `tjfwd recover` sets it back (to 0, so that every retained
//!   rotated file is read).

use migrations::meta_keys;
use migrations::v1::{self, Checkpoint, FileId};

use super::{Store, StoreError};

impl Store {
    /// The checkpoint of a file identity.
    pub fn checkpoint(&self, id: &FileId) -> Result<Option<Checkpoint>, StoreError> {
        Ok(v1::get(
            &self.checkpoints,
            "checkpoint",
            &v1::checkpoint_key(id),
        )?)
    }

    /// Stores a checkpoint on its own (e.g. `start_at = "end"`).
    pub fn set_checkpoint(&self, id: &FileId, c: &Checkpoint) -> Result<(), StoreError> {
        self.checkpoints
            .insert(v1::checkpoint_key(id), v1::encode(c))?;
        Ok(())
    }

    /// Forgets the checkpoint of a file that is gone.
    pub fn remove_checkpoint(&self, id: &FileId) -> Result<(), StoreError> {
        self.checkpoints.remove(v1::checkpoint_key(id))?;
        Ok(())
    }

    /// Every stored checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<(FileId, Checkpoint)>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            out.push((v1::file_id_from_key(&k)?, v1::decode("checkpoint", &v)?));
        }
        Ok(out)
    }

    /// When the file input first started; set to `now_ms` (and returned as
    /// None) the first time it is asked.
    pub fn input_since(&self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        let old = self.meta.fetch_and_update(meta_keys::INPUT_SINCE, |v| {
            Some(v.map_or_else(|| now_ms.to_be_bytes().to_vec(), |v| v.to_vec()))
        })?;
        match old {
            None => Ok(None),
            Some(v) => Ok(Some(v1::decode_u64("meta/input_since", Some(&v))?)),
        }
    }

    /// Sets when the file input first started (`tjfwd recover`: 0, so that
    /// every retained rotated file is read).
    pub fn set_input_since(&self, ms: u64) -> Result<(), StoreError> {
        self.meta
            .insert(meta_keys::INPUT_SINCE, &ms.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{open, s, T};
    use migrations::v1::RequestLog;

    #[test]
    fn checkpoint_commits_with_the_chunk_and_state_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let id = FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        {
            let q = open(d.path());
            let c = Checkpoint {
                path: "/x".into(),
                offset: 77,
                updated_at_ms: 1,
            };
            q.enqueue(&[s("1.0.0.1", 1)], Some((&id, &c)), 1).unwrap();
            q.record_request(
                T,
                &RequestLog {
                    sent_at_ms: vec![5, 6],
                },
                &crate::clock::Clock::System.now_all(),
            )
            .unwrap();
            q.flush().unwrap();
        }
        let q = open(d.path());
        assert_eq!(q.checkpoint(&id).unwrap().unwrap().offset, 77);
        assert_eq!(q.checkpoints().unwrap().len(), 1);
        assert_eq!(q.pending_count().unwrap(), 1);
        assert_eq!(q.request_log(T).unwrap().sent_at_ms, vec![5, 6]);
    }
}
