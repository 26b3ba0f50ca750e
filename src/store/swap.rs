//! Replacing the database as one step that a crash or a power cut cannot
//! leave half-done (`tjfwd recover`).
//!
//! `recover` builds the new database beside the old one, in
//! [`RECOVER_NEW`]`/db`, and makes it durable. Then it writes the journal
//! ([`RECOVER_JOURNAL`], fsynced with its directory): from that moment the
//! replacement counts as decided, and [`roll_forward`] carries it out, one
//! rename at a time, each done only if still to do, the directory fsynced
//! after them:
//!
//! 1. the old `db` → its aside name (`db.damaged-<time>`, or
//!    `db.replaced-<time>` when it was sound), with the old seal and the
//!    `DAMAGED` marker moved into it;
//! 2. `recover.new/db` → `db`, and its seal → `tjfwd.seal`;
//! 3. `recover.new` and the journal removed.
//!
//! A recover interrupted before the journal left the old database where it
//! was, untouched, and a half-built `recover.new`: [`finish_interrupted`]
//! removes that (undo). Interrupted after, [`finish_interrupted`] rolls
//! forward (finish). It runs at every open of the store, and at the start of
//! every `recover`, with the directory lock held; so a partial database is
//! never taken for the database.

use std::io;
use std::path::Path;

use super::open::{DAMAGED_MARKER, SEAL};
use super::sync::{sync_dir, write_durably};

/// Where `recover` builds the new database (a state directory of its own).
pub const RECOVER_NEW: &str = "recover.new";
/// The record that the replacement is decided (see the module docs).
pub const RECOVER_JOURNAL: &str = "recover.journal";
/// Where `recover` examines a copy of the database.
pub const RECOVER_SCRATCH: &str = "recover.scratch";

const JOURNAL_HEADER: &str = "tjfwd recover journal 1";

/// What [`finish_interrupted`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Nothing was interrupted.
    Nothing,
    /// A recover interrupted before its decision: its unfinished new
    /// database was removed; the old one is in place, untouched.
    Undone,
    /// A recover interrupted after its decision: the replacement was
    /// completed; the old database is at the path given (if there was one).
    Completed { aside: Option<String> },
}

/// Decides the replacement of `state_dir/db` by `state_dir/recover.new/db`
/// (built, closed and durable) and carries it out. `aside` is the name the
/// old database gets (None: there is none).
pub fn commit(state_dir: &Path, aside: Option<&str>) -> io::Result<()> {
    let journal = format!("{JOURNAL_HEADER}\naside {}\n", aside.unwrap_or("-"));
    write_durably(state_dir, RECOVER_JOURNAL, journal.as_bytes())?;
    roll_forward(state_dir, aside)
}

/// Finishes or undoes a recover that was interrupted (see the module docs).
pub fn finish_interrupted(state_dir: &Path) -> io::Result<Finished> {
    let scratch = state_dir.join(RECOVER_SCRATCH);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    match std::fs::read_to_string(state_dir.join(RECOVER_JOURNAL)) {
        Ok(text) => {
            let aside = parse_journal(&text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a recover journal; move it away and run `tjfwd recover` again",
                        state_dir.join(RECOVER_JOURNAL).display()
                    ),
                )
            })?;
            roll_forward(state_dir, aside.as_deref())?;
            Ok(Finished::Completed { aside })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let new = state_dir.join(RECOVER_NEW);
            if new.exists() {
                std::fs::remove_dir_all(&new)?;
                sync_dir(state_dir)?;
                Ok(Finished::Undone)
            } else {
                Ok(Finished::Nothing)
            }
        }
        Err(e) => Err(e),
    }
}

/// The aside name a journal records (None for "-"); None overall when the
/// text is not a journal.
fn parse_journal(text: &str) -> Option<Option<String>> {
    let mut lines = text.lines();
    (lines.next()? == JOURNAL_HEADER).then_some(())?;
    let aside = lines.next()?.strip_prefix("aside ")?;
    if aside == "-" {
        return Some(None);
    }
    // Only a name of ours, in the state directory.
    let ours = aside.starts_with("db.") && !aside.contains('/') && !aside.contains("..");
    ours.then(|| Some(aside.to_string()))
}

/// Renames `from` to `to` if `from` is still there.
fn rename_if_there(from: &Path, to: &Path) -> io::Result<bool> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The steps of the replacement, each done only if still to do.
fn roll_forward(state_dir: &Path, aside: Option<&str>) -> io::Result<()> {
    let db = state_dir.join("db");
    let new = state_dir.join(RECOVER_NEW);
    let new_db = new.join("db");
    // 1. The old database aside, with its seal and marker, while the new
    //    one is not in place yet.
    if new_db.exists() {
        match aside {
            Some(aside) => {
                let aside = state_dir.join(aside);
                if !aside.exists() {
                    rename_if_there(&db, &aside)?;
                }
                // aside was created by the rename above, or by an earlier
                // run of these steps; without an old database, make it.
                if !aside.exists() {
                    std::fs::create_dir(&aside)?;
                }
                rename_if_there(&state_dir.join(SEAL), &aside.join(SEAL))?;
                rename_if_there(&state_dir.join(DAMAGED_MARKER), &aside.join(DAMAGED_MARKER))?;
            }
            None => {
                rename_if_there(
                    &state_dir.join(SEAL),
                    &state_dir.join(format!("{SEAL}.old")),
                )?;
                rename_if_there(
                    &state_dir.join(DAMAGED_MARKER),
                    &state_dir.join(format!("{DAMAGED_MARKER}.recovered")),
                )?;
            }
        }
        sync_dir(state_dir)?;
        // 2. The new one in place.
        if db.exists() {
            return Err(io::Error::other(format!(
                "{} is still there, so {} cannot take its place",
                db.display(),
                new_db.display()
            )));
        }
        std::fs::rename(&new_db, &db)?;
    }
    rename_if_there(&new.join(SEAL), &state_dir.join(SEAL))?;
    sync_dir(state_dir)?;
    // 3. Done: the rest of the build directory and the journal.
    if new.exists() {
        std::fs::remove_dir_all(&new)?;
    }
    match std::fs::remove_file(state_dir.join(RECOVER_JOURNAL)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    sync_dir(state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    /// A state directory in the middle of a recover: old db with its seal
    /// and marker, the new one built.
    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        put(&s.join("db/db"), "old");
        put(&s.join(SEAL), "old seal");
        put(&s.join(DAMAGED_MARKER), "bad");
        put(&s.join("recover.new/db/db"), "new");
        put(&s.join("recover.new").join(SEAL), "new seal");
        d
    }

    fn assert_replaced(s: &Path) {
        assert_eq!(read(&s.join("db/db")), "new");
        assert_eq!(read(&s.join(SEAL)), "new seal");
        assert!(!s.join(DAMAGED_MARKER).exists());
        assert_eq!(read(&s.join("db.damaged-1/db")), "old");
        assert_eq!(read(&s.join("db.damaged-1").join(SEAL)), "old seal");
        assert_eq!(read(&s.join("db.damaged-1").join(DAMAGED_MARKER)), "bad");
        assert!(!s.join(RECOVER_NEW).exists());
        assert!(!s.join(RECOVER_JOURNAL).exists());
    }

    #[test]
    fn before_the_journal_an_interrupted_recover_is_undone() {
        let d = setup();
        let s = d.path();
        put(&s.join(RECOVER_SCRATCH).join("db/db"), "copy");
        assert_eq!(finish_interrupted(s).unwrap(), Finished::Undone);
        assert_eq!(read(&s.join("db/db")), "old");
        assert_eq!(read(&s.join(SEAL)), "old seal");
        assert!(s.join(DAMAGED_MARKER).exists());
        assert!(!s.join(RECOVER_NEW).exists());
        assert!(!s.join(RECOVER_SCRATCH).exists());
        assert_eq!(finish_interrupted(s).unwrap(), Finished::Nothing);
    }

    #[test]
    fn after_the_journal_every_step_it_stopped_at_is_finished() {
        // Stopped after each of the renames in turn: the same end.
        for stop_after in 0..5 {
            let d = setup();
            let s = d.path();
            write_durably(
                s,
                RECOVER_JOURNAL,
                format!("{JOURNAL_HEADER}\naside db.damaged-1\n").as_bytes(),
            )
            .unwrap();
            let steps: [(&str, &str); 5] = [
                ("db", "db.damaged-1"),
                (SEAL, "db.damaged-1/tjfwd.seal"),
                (DAMAGED_MARKER, "db.damaged-1/DAMAGED"),
                ("recover.new/db", "db"),
                ("recover.new/tjfwd.seal", SEAL),
            ];
            for (from, to) in &steps[..stop_after] {
                std::fs::rename(s.join(from), s.join(to)).unwrap();
            }
            assert_eq!(
                finish_interrupted(s).unwrap(),
                Finished::Completed {
                    aside: Some("db.damaged-1".into())
                },
                "stopped after {stop_after} steps"
            );
            assert_replaced(s);
        }
    }

    #[test]
    fn commit_replaces_and_a_first_database_needs_no_aside() {
        let d = setup();
        commit(d.path(), Some("db.damaged-1")).unwrap();
        assert_replaced(d.path());

        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        put(&s.join("recover.new/db/db"), "new");
        put(&s.join("recover.new").join(SEAL), "new seal");
        commit(s, None).unwrap();
        assert_eq!(read(&s.join("db/db")), "new");
        assert_eq!(read(&s.join(SEAL)), "new seal");
        assert!(!s.join(RECOVER_NEW).exists());
    }

    #[test]
    fn a_journal_naming_anything_else_is_refused() {
        for bad in ["aside ../x", "aside /etc", "aside x", "nonsense"] {
            let d = setup();
            let s = d.path();
            put(
                &s.join(RECOVER_JOURNAL),
                &format!("{JOURNAL_HEADER}\n{bad}\n"),
            );
            assert!(finish_interrupted(s).is_err(), "{bad}");
            assert_eq!(read(&s.join("db/db")), "old", "{bad}");
        }
    }
}
