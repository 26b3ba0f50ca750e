//! Permissions of the state directory, checked every time the database is
//! opened (by `tjfwd run` and by the commands that open it themselves).
//!
//! The state directory holds the queue, the checkpoints and the control
//! socket. Whoever can write there can change what tjfwd reports (or stop it
//! from reporting), and a directory of another user can hold symlinks that
//! make tjfwd write where that user cannot. So the directory, the database
//! directory `db` inside it and `db`'s entries must:
//!
//! - belong to the user running tjfwd, or to root;
//! - not be writable by group or others (symlinks are judged by owner only:
//!   their own mode means nothing).
//!
//! Otherwise tjfwd refuses to start, saying which path is at fault and the
//! command that fixes it. It never changes the modes itself: a directory it
//! creates is made 0700 and passes; one that fails was made by someone else,
//! and its loose permissions may be the sign of a problem (or be wanted by
//! other software sharing it) that a silent `chmod` would hide.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The name of the database directory inside the state directory.
const DB_DIR: &str = "db";

/// Checks the state directory `dir` (which exists), the database directory
/// in it and that directory's entries; the error says what is wrong with
/// which path and what to do.
pub fn check_state_dir(dir: &Path) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    let meta = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    check(dir, &meta, me, dir)?;
    let db = dir.join(DB_DIR);
    let Ok(meta) = fs::symlink_metadata(&db) else {
        return Ok(()); // not created yet: sled makes it inside our 0700 directory
    };
    check(&db, &meta, me, dir)?;
    if meta.is_dir() {
        for entry in fs::read_dir(&db).map_err(|e| format!("{}: {e}", db.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", db.display()))?;
            let path = entry.path();
            if let Ok(meta) = fs::symlink_metadata(&path) {
                check(&path, &meta, me, dir)?;
            }
        }
    }
    Ok(())
}

/// One path: owner and write bits.
fn check(path: &Path, meta: &fs::Metadata, me: u32, state_dir: &Path) -> Result<(), String> {
    let shown = path.display();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        // Root running a command on the service's directory (the daemon is
        // stopped, or it would have answered through its socket): run it as
        // the service's user; a chown would lock the service out.
        let fix = if me == 0 {
            format!("run the command as that user: `runuser -u \"$(id -nu {owner})\" -- tjfwd ...`")
        } else {
            format!(
                "run tjfwd as user {owner}, or make the state directory this user's: \
                 `chown -R {me} {}`",
                state_dir.display()
            )
        };
        return Err(format!(
            "{shown} belongs to user {owner}, but tjfwd runs as user {me}: another user's \
             directory could make tjfwd read or write what it should not; {fix}"
        ));
    }
    let mode = meta.mode() & 0o7777;
    if !meta.file_type().is_symlink() && mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "every user"
        } else {
            "its group"
        };
        return Err(format!(
            "{shown} can be written by {who} (mode {mode:04o}), who could then change what \
             tjfwd reports: run `chmod go-w {shown}` (tjfwd creates its state directory with \
             mode 0700)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mode(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn private_and_read_only_for_others_are_fine() {
        let d = tempfile::tempdir().unwrap();
        check_state_dir(d.path()).unwrap();
        fs::create_dir(d.path().join("db")).unwrap();
        fs::write(d.path().join("db/conf"), "x").unwrap();
        set_mode(d.path(), 0o755);
        set_mode(&d.path().join("db/conf"), 0o644);
        check_state_dir(d.path()).unwrap();
    }

    #[test]
    fn group_or_world_writable_is_refused_naming_the_path_and_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("db");
        fs::create_dir(&db).unwrap();
        fs::write(db.join("conf"), "x").unwrap();
        for (path, mode, who) in [
            (d.path().to_path_buf(), 0o770, "its group"),
            (d.path().to_path_buf(), 0o1777, "every user"),
            (db.clone(), 0o757, "every user"),
            (db.join("conf"), 0o620, "its group"),
        ] {
            set_mode(&path, mode);
            let err = check_state_dir(d.path()).unwrap_err();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(who), "{err}");
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
            assert!(err.contains("chmod go-w"), "{err}");
            set_mode(&path, if path.is_dir() { 0o700 } else { 0o600 });
            check_state_dir(d.path()).unwrap();
        }
        // A symlink's own mode (0777) is not held against it.
        std::os::unix::fs::symlink("/nonexistent", db.join("link")).unwrap();
        check_state_dir(d.path()).unwrap();
    }

    #[test]
    fn another_non_root_owner_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to give a file to another user");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("db");
        fs::create_dir(&db).unwrap();
        std::os::unix::fs::chown(&db, Some(65534), None).unwrap();
        let err = check_state_dir(d.path()).unwrap_err();
        assert!(err.contains("belongs to user 65534"), "{err}");
        assert!(
            err.contains("runuser -u \"$(id -nu 65534)\" -- tjfwd"),
            "{err}"
        );
        // Root's is fine for anyone (root could do anything anyway).
        std::os::unix::fs::chown(&db, Some(0), None).unwrap();
        check_state_dir(d.path()).unwrap();
    }
}
