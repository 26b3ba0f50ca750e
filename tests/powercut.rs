//! Power cuts. First the harness itself, the power-cut filesystem of
//! tests/support/lazyfs.rs, tested through a real mount with plain std::fs
//! calls: what fsync and fsyncdir make durable, and only that, survives a
//! cut; torn writes; the mount fails with EIO from the cut on and nothing
//! hangs; flock works across processes; what sled 0.34's `flush` leaves.
//!
//! Every cut uses a fixed seed (ChaCha8: the same seed draws the same cut on
//! every machine). FUSE needs root (or `fusermount3`) and /dev/fuse: without
//! them each test says it is skipped, and fails when `CI` is set.
#![cfg(target_os = "linux")]

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use support::lazyfs::{self, CutOptions, CutReport, LazyFs, MetadataCut, SECTOR};

/// A scratch directory with an image, a mount point and cut outputs.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("image")).unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        Rig { dir }
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("image")
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A fresh output directory for a cut.
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Mounts the image on `mnt`, or `None` when FUSE is unusable here.
    fn mount(&self, test: &str) -> Option<LazyFs> {
        lazyfs::mount_or_skip(test, &self.mnt(), &self.image())
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Cuts with `options` (seed 0) into a new directory of `rig`.
fn cut(fs: LazyFs, rig: &Rig, name: &str, options: &CutOptions) -> (PathBuf, CutReport) {
    let out = rig.out(name);
    let report = fs.cut_with(&mut rng(0), &out, options).unwrap();
    (out, report)
}

fn fsync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn is_eio(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

#[test]
fn fsynced_data_survives_a_cut_and_unsynced_data_does_not() {
    let rig = Rig::new();
    fs::write(rig.image().join("log"), b"from the image\n").unwrap();
    let Some(fs) = rig.mount("fsynced_data_survives") else {
        return;
    };
    let mnt = fs.path().to_owned();
    assert_eq!(fs::read(mnt.join("log")).unwrap(), b"from the image\n");

    let mut log = OpenOptions::new()
        .append(true)
        .open(mnt.join("log"))
        .unwrap();
    log.write_all(b"synced\n").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"not synced\n").unwrap();
    // A new file, its data and its directory entry made durable, then
    // written to again, and truncated.
    let mut new = File::create(mnt.join("new")).unwrap();
    new.write_all(b"0123456789").unwrap();
    new.sync_all().unwrap();
    fsync_dir(&mnt);
    new.write_all(b"abcdef").unwrap();
    new.set_len(4).unwrap();
    // What readers see before the cut: everything.
    assert_eq!(
        fs::read(mnt.join("log")).unwrap(),
        b"from the image\nsynced\nnot synced\n"
    );
    assert_eq!(fs::read(mnt.join("new")).unwrap(), b"0123");
    drop((log, new));

    let (out, report) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert_eq!(
        fs::read(out.join("log")).unwrap(),
        b"from the image\nsynced\n",
        "{report}"
    );
    assert_eq!(
        fs::read(out.join("new")).unwrap(),
        b"0123456789",
        "{report}"
    );
    assert_eq!(report.writes_dropped, 2, "{report}");
    assert_eq!(report.set_lens_dropped, 1, "{report}");
    assert_eq!(report.bytes_lost, 17, "{report}");
    assert_eq!(report.files_changed, 2, "{report}");
    assert!(report.missing.is_empty(), "{report}");
    assert_eq!((report.fsyncs, report.dir_fsyncs), (2, 1), "{report}");
}

#[test]
fn a_cut_that_keeps_everything_is_what_readers_saw() {
    let rig = Rig::new();
    fs::create_dir(rig.image().join("d")).unwrap();
    let Some(fs) = rig.mount("keep_everything") else {
        return;
    };
    let mnt = fs.path().to_owned();
    fs::write(mnt.join("d/a"), b"a").unwrap();
    fs::create_dir(mnt.join("e")).unwrap();
    fs::write(mnt.join("e/b"), vec![7u8; 100_000]).unwrap();
    fs::rename(mnt.join("d/a"), mnt.join("e/a")).unwrap();
    let names = |dir: &str| {
        let mut names: Vec<String> = fs::read_dir(mnt.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("e"), ["a", "b"]);
    assert!(names("d").is_empty());
    fs::remove_dir(mnt.join("e")).unwrap_err();
    let (out, report) = cut(fs, &rig, "out", &CutOptions::keep_unsynced());
    assert_eq!(fs::read(out.join("e/a")).unwrap(), b"a");
    assert_eq!(fs::read(out.join("e/b")).unwrap(), vec![7u8; 100_000]);
    assert!(!out.join("d/a").exists());
    assert_eq!((report.files_changed, report.writes_dropped), (0, 0));
    assert!(report.missing.is_empty(), "{report}");
}

#[test]
fn a_torn_write_leaves_whole_sectors_of_the_old_or_the_new_data() {
    let old = vec![b'o'; 8 * SECTOR as usize];
    let mut saw_a_tear = false;
    for seed in 0..16 {
        let rig = Rig::new();
        fs::write(rig.image().join("f"), &old).unwrap();
        let Some(fs) = rig.mount("torn_write") else {
            return;
        };
        let f = OpenOptions::new()
            .write(true)
            .open(fs.path().join("f"))
            .unwrap();
        // Over the old data, sector-aligned; then past the end, unaligned:
        // 100 bytes into the 9th sector, to 588 bytes into the 10th.
        f.write_all_at(&vec![b'n'; old.len()], 0).unwrap();
        f.write_all_at(&[b'x'; 1000], 8 * SECTOR + 100).unwrap();
        drop(f);
        let out = rig.out("out");
        let report = fs
            .cut_with(&mut rng(seed), &out, &CutOptions::tear_writes())
            .unwrap();
        assert_eq!(report.writes_torn, 2, "{report}");
        let got = fs::read(out.join("f")).unwrap();

        // The first 8 sectors: each all old or all new.
        let kinds: Vec<u8> = got[..old.len()]
            .chunks(SECTOR as usize)
            .map(|s| {
                assert!(
                    s.iter().all(|&b| b == s[0]) && (s[0] == b'o' || s[0] == b'n'),
                    "seed {seed}: a sector mixes old, new or garbage: {s:?}"
                );
                s[0]
            })
            .collect();
        saw_a_tear |= kinds.contains(&b'o') && kinds.contains(&b'n');
        // Past the old end: nothing, or zeros up to the second write, then
        // its pieces (split at sector boundaries: 412, 512 and 76 bytes),
        // each all new or all zeros, the last one present new.
        let start = old.len() + 100;
        let ends = [old.len() + 512, old.len() + 1024, old.len() + 1100];
        if got.len() > old.len() {
            assert!(
                ends.contains(&got.len()),
                "seed {seed}: {} bytes",
                got.len()
            );
            assert!(got[old.len()..start].iter().all(|&b| b == 0), "seed {seed}");
            let mut from = start;
            for end in ends.into_iter().filter(|&e| e <= got.len()) {
                let piece = &got[from..end];
                assert!(
                    piece.iter().all(|&b| b == b'x') || piece.iter().all(|&b| b == 0),
                    "seed {seed}: {piece:?}"
                );
                from = end;
            }
            assert_eq!(got.last(), Some(&b'x'), "seed {seed}");
        }
    }
    assert!(saw_a_tear, "16 seeds and never a write half old, half new");
}

#[test]
fn a_new_file_needs_its_directory_fsynced() {
    let rig = Rig::new();
    fs::create_dir(rig.image().join("dir")).unwrap();
    let Some(fs) = rig.mount("new_file_needs_its_directory") else {
        return;
    };
    let mnt = fs.path().to_owned();
    let mut f = File::create(mnt.join("dir/new")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    fs::create_dir(mnt.join("dir/sub")).unwrap();
    drop(f);
    let (out, report) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert!(out.join("dir").is_dir());
    assert!(
        !out.join("dir/new").exists(),
        "the file was fsynced, its directory was not: {report}"
    );
    assert!(!out.join("dir/sub").exists(), "{report}");
    assert_eq!(
        report.missing,
        [PathBuf::from("dir/new"), PathBuf::from("dir/sub")]
    );

    // The same, and then an fsync of the directory.
    let rig = Rig::new();
    fs::create_dir(rig.image().join("dir")).unwrap();
    let fs = rig.mount("new_file_needs_its_directory").unwrap();
    let mnt = fs.path().to_owned();
    let mut f = File::create(mnt.join("dir/new")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    fsync_dir(&mnt.join("dir"));
    drop(f);
    let (out, report) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert_eq!(fs::read(out.join("dir/new")).unwrap(), b"data", "{report}");
}

#[test]
fn an_unlink_needs_its_directory_fsynced() {
    let rig = Rig::new();
    fs::write(rig.image().join("gone"), b"still here").unwrap();
    fs::write(rig.image().join("really-gone"), b"x").unwrap();
    let Some(fs) = rig.mount("unlink_needs_its_directory") else {
        return;
    };
    let mnt = fs.path().to_owned();
    fs::remove_file(mnt.join("gone")).unwrap();
    fs::remove_file(mnt.join("really-gone")).unwrap();
    assert!(!mnt.join("gone").exists());
    fsync_dir(&mnt);
    fs::remove_file(mnt.join("gone")).unwrap_err();
    let (out, _) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert!(!out.join("gone").exists());
    assert!(!out.join("really-gone").exists());

    let rig = Rig::new();
    fs::write(rig.image().join("gone"), b"still here").unwrap();
    let fs = rig.mount("unlink_needs_its_directory").unwrap();
    fs::remove_file(fs.path().join("gone")).unwrap();
    let (out, _) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert_eq!(fs::read(out.join("gone")).unwrap(), b"still here");
}

/// The atomic replace: write `tmp`, fsync it, rename it over `final`.
fn replace(mnt: &Path, content: &[u8], sync_data: bool) {
    let mut tmp = File::create(mnt.join("tmp")).unwrap();
    tmp.write_all(content).unwrap();
    if sync_data {
        tmp.sync_all().unwrap();
    }
    drop(tmp);
    fs::rename(mnt.join("tmp"), mnt.join("final")).unwrap();
}

#[test]
fn a_rename_over_a_file_needs_its_directory_fsynced() {
    // Without an fsync of the directory: the old file.
    let rig = Rig::new();
    fs::write(rig.image().join("final"), b"old").unwrap();
    let Some(fs) = rig.mount("rename_needs_its_directory") else {
        return;
    };
    replace(fs.path(), b"new", true);
    assert_eq!(fs::read(fs.path().join("final")).unwrap(), b"new");
    let (out, _) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert_eq!(fs::read(out.join("final")).unwrap(), b"old");
    assert!(!out.join("tmp").exists());

    // With it: the new one.
    let rig = Rig::new();
    fs::write(rig.image().join("final"), b"old").unwrap();
    let fs = rig.mount("rename_needs_its_directory").unwrap();
    replace(fs.path(), b"new", true);
    fsync_dir(fs.path());
    let (out, _) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    assert_eq!(fs::read(out.join("final")).unwrap(), b"new");
    assert!(!out.join("tmp").exists());

    // Random prefixes of the directory's log: `final` is always the old or
    // the new file, whole (a rename within a directory is atomic), and
    // both outcomes occur.
    let mut seen = Vec::new();
    for seed in 0..12 {
        let rig = Rig::new();
        fs::write(rig.image().join("final"), b"old").unwrap();
        let fs = rig.mount("rename_needs_its_directory").unwrap();
        replace(fs.path(), b"new", true);
        let out = rig.out("out");
        let options = CutOptions {
            metadata: MetadataCut::RandomPrefix,
            ..CutOptions::drop_unsynced()
        };
        fs.cut_with(&mut rng(seed), &out, &options).unwrap();
        let got = fs::read(out.join("final")).unwrap();
        assert!(got == b"old" || got == b"new", "seed {seed}: {got:?}");
        seen.push(got);
    }
    assert!(seen.contains(&b"old".to_vec()) && seen.contains(&b"new".to_vec()));
}

#[test]
fn a_rename_across_directories_needs_both_fsynced() {
    // Strict POSIX: each directory's half of the rename reaches the disk
    // with that directory (ext4 and XFS commit both halves together).
    let outcomes = [
        // (fsync the source, the target) -> (in the source, in the target)
        ((false, false), (true, false)),
        ((false, true), (true, true)),
        ((true, false), (false, false)),
        ((true, true), (false, true)),
    ];
    for ((sync_from, sync_to), (in_from, in_to)) in outcomes {
        let rig = Rig::new();
        fs::create_dir(rig.image().join("from")).unwrap();
        fs::create_dir(rig.image().join("to")).unwrap();
        fs::write(rig.image().join("from/f"), b"f").unwrap();
        let Some(fs) = rig.mount("rename_across_directories") else {
            return;
        };
        fs::rename(fs.path().join("from/f"), fs.path().join("to/f")).unwrap();
        if sync_from {
            fsync_dir(&fs.path().join("from"));
        }
        if sync_to {
            fsync_dir(&fs.path().join("to"));
        }
        let (out, report) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
        let case = format!("fsynced source {sync_from}, target {sync_to}: {report}");
        assert_eq!(out.join("from/f").exists(), in_from, "{case}");
        assert_eq!(out.join("to/f").exists(), in_to, "{case}");
        if in_to {
            assert_eq!(fs::read(out.join("to/f")).unwrap(), b"f", "{case}");
        }
    }
}

#[test]
fn a_rename_of_unsynced_data_can_leave_an_empty_file() {
    // The classic mistake: the rename reaches the disk, the data does not.
    let rig = Rig::new();
    fs::write(rig.image().join("final"), b"old").unwrap();
    let Some(fs) = rig.mount("rename_of_unsynced_data") else {
        return;
    };
    replace(fs.path(), b"new", false);
    let options = CutOptions {
        metadata: MetadataCut::Everything,
        ..CutOptions::drop_unsynced()
    };
    let (out, report) = cut(fs, &rig, "out", &options);
    assert_eq!(fs::read(out.join("final")).unwrap(), b"", "{report}");
}

#[test]
fn modes_and_owners_are_kept() {
    let rig = Rig::new();
    let state = rig.image().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(state.join("secret"), b"s").unwrap();
    fs::set_permissions(state.join("secret"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(state.join("secret"), Some(1234), Some(5678)).unwrap();
    let Some(fs) = rig.mount("modes_and_owners") else {
        return;
    };
    let mnt = fs.path().to_owned();
    let md = fs::metadata(mnt.join("state")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o700);
    assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
    let md = fs::metadata(mnt.join("state/secret")).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o640, 1234, 5678)
    );
    // Made here, as tjfwd makes its state directory.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(mnt.join("made"))
        .unwrap();
    fs::set_permissions(mnt.join("state/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fs::metadata(mnt.join("made")).unwrap().mode() & 0o7777,
        0o700
    );
    fsync_dir(&mnt);
    let (out, _) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
    let md = fs::metadata(out.join("state/secret")).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o600, 1234, 5678)
    );
    assert_eq!(
        fs::metadata(out.join("state")).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(
        fs::metadata(out.join("made")).unwrap().mode() & 0o7777,
        0o700
    );
}

/// Kills and reaps a child when dropped, so a failing test leaves none.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Reaped {
    Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Reaped, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn flock_is_exclusive_across_processes() {
    let rig = Rig::new();
    let Some(fs) = rig.mount("flock") else {
        return;
    };
    let lock = fs.path().join("tjfwd.lock");
    let held = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    held.try_lock().unwrap();
    // Another open file description, in this process: refused.
    let other = OpenOptions::new().write(true).open(&lock).unwrap();
    assert!(matches!(
        other.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    // Another process: refused (flock(1) exits with 1 when -n fails).
    let status = Command::new("flock")
        .args(["-n", "-x"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "a second process took the lock");
    held.unlock().unwrap();
    let status = Command::new("flock")
        .args(["-n", "-x"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    assert!(status.success(), "the lock, released, could not be taken");
}

#[test]
fn after_the_cut_everything_fails_with_eio_and_nothing_hangs() {
    let rig = Rig::new();
    fs::write(rig.image().join("f"), b"durable").unwrap();
    let Some(fs) = rig.mount("eio_after_the_cut") else {
        return;
    };
    let mnt = fs.path().to_owned();
    let mut open = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("f"))
        .unwrap();
    // A process holding a lock, one blocked waiting for it, one writing.
    let lock = mnt.join("lock");
    // (Each one process, so that killing it leaves no child holding a file
    // on the mount: the shell opens fd 9, flock(1) locks it, the shell
    // becomes the sleep or the blocked flock.)
    let mut holder = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$1" && flock -x 9 && exec sleep 600"#)
            .arg("sh")
            .arg(&lock),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock")
        .args(["-n", "-x"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "flock(1) never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut waiter = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$1" && exec flock -x 9"#)
            .arg("sh")
            .arg(&lock),
    );
    let mut writer = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(r#"while echo x >> "$1"; do :; done; exit 7"#)
            .arg("sh")
            .arg(mnt.join("w")),
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        writer.0.try_wait().unwrap(),
        None,
        "the writer stopped early"
    );
    assert_eq!(
        waiter.0.try_wait().unwrap(),
        None,
        "the waiter did not wait"
    );

    fs.power_off();
    // Every operation now fails with EIO: on an open file, and by path.
    let mut buf = [0u8; 8];
    assert!(is_eio(&open.read(&mut buf).unwrap_err()));
    assert!(is_eio(&open.write(b"x").unwrap_err()));
    assert!(is_eio(&open.sync_all().unwrap_err()));
    assert!(is_eio(&fs::metadata(mnt.join("f")).unwrap_err()));
    assert!(is_eio(&File::create(mnt.join("g")).unwrap_err()));
    assert!(is_eio(&fs::read_dir(&mnt).unwrap_err()));
    assert!(is_eio(&fs::create_dir(mnt.join("d")).unwrap_err()));
    // The writer fails, it does not block.
    let status = wait_exit(&mut writer, Duration::from_secs(10)).expect("the writer hangs");
    assert_eq!(status.code(), Some(7));

    // The cut, with processes still using the mount: it does not wait for
    // them (a watchdog fails the test if it does).
    let (done, finished) = mpsc::channel();
    let out = rig.out("out");
    let out2 = out.clone();
    std::thread::spawn(move || {
        let report = fs.cut_with(&mut rng(0), &out2, &CutOptions::default());
        let _ = done.send(report.map(|r| r.to_string()));
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the cut hangs")
        .unwrap();
    assert_eq!(fs::read(out.join("f")).unwrap(), b"durable");
    // Still open: the connection was aborted (ENOTCONN), the mount detached.
    assert_eq!(
        open.write(b"x").unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN)
    );
    drop(open);
    drop((holder.0.kill(), waiter.0.kill()));
    assert!(wait_exit(&mut holder, Duration::from_secs(10)).is_some());
    assert!(wait_exit(&mut waiter, Duration::from_secs(10)).is_some());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(mnt.to_str().unwrap()),
        "still mounted after the cut"
    );
}

/// What the issue says of sled 0.34: `Db::flush()` writes (pwrite) and
/// calls `sync_file_range`, which makes nothing durable; only an fsync of
/// its file does (its background thread's, about every 500 ms, turned off
/// here). Also pinned: a new sled database fsyncs nothing, not even its
/// `conf` (which sled writes once, without an fsync); and after the cut
/// sled opens the emptied database without a word: the loss is silent.
#[test]
fn sled_flush_alone_is_not_durable() {
    let key = b"attacker";
    let value = b"203.0.113.7";
    for explicit_fsync in [false, true] {
        let rig = Rig::new();
        let Some(fs) = rig.mount("sled_flush") else {
            return;
        };
        let mnt = fs.path().to_owned();
        let db = sled::Config::new()
            .path(mnt.join("db"))
            .flush_every_ms(None)
            .open()
            .unwrap();
        // The directory entries made durable, so that what follows is
        // about the data alone.
        fsync_dir(&mnt);
        fsync_dir(&mnt.join("db"));
        fsync_dir(&mnt.join("db/blobs"));
        db.insert(key, value).unwrap();
        db.flush().unwrap();
        if explicit_fsync {
            File::open(mnt.join("db/db")).unwrap().sync_all().unwrap();
        }
        fs.power_off();
        // A power cut runs no destructor. sled's would fsync (its log's
        // Drop calls sync_all), and it panics on the EIO it now gets.
        std::mem::forget(db);
        let (out, report) = cut(fs, &rig, "out", &CutOptions::drop_unsynced());
        let files: Vec<String> = walk(&out)
            .iter()
            .map(|f| {
                let name = f.strip_prefix(&out).unwrap().display();
                format!("{name}: {} bytes", fs::metadata(f).unwrap().len())
            })
            .collect();
        let case = format!("explicit fsync {explicit_fsync}: {report}; {files:?}");
        assert_eq!(report.fsyncs, u64::from(explicit_fsync), "{case}");
        assert_eq!(
            fs::metadata(out.join("db/conf")).unwrap().len(),
            0,
            "sled fsynced its conf: {case}"
        );
        // Before sled opens it again (it writes to its log as it opens).
        let log_len = fs::metadata(out.join("db/db")).unwrap().len();
        let reopened = sled::Config::new().path(out.join("db")).open().unwrap();
        let got = reopened.get(key).unwrap();
        if explicit_fsync {
            assert_eq!(
                got.as_deref(),
                Some(&value[..]),
                "fsynced, then lost: {case}"
            );
        } else {
            assert_eq!(log_len, 0, "{case}");
            assert_eq!(got, None, "sled's flush made the data durable: {case}");
        }
    }
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all.sort();
    all
}

// ---------------------------------------------------------------------------
// tjfwd itself.

/// How the addresses reach tjfwd in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// Appended to `cowrie.json` (on the ordinary disk, not cut) while
    /// tjfwd runs, with `start_at`.
    File { start_at_end: bool },
    /// Sent over `[input] listen_tcp` by Cowrie's socketlog, one connection
    /// a life; the power goes 0 to 300 ms after tjfwd has logged the
    /// connection closed (so it has read everything).
    Socket,
}

/// What one scenario did: figures for RELIABILITY.md.
#[derive(Debug, Default)]
struct Figures {
    cuts: u64,
    written: usize,
    delivered: usize,
    requests: usize,
    report: CutReport,
}

impl Figures {
    fn add(&mut self, r: &CutReport) {
        self.cuts += 1;
        let t = &mut self.report;
        t.files += r.files;
        t.dirs += r.dirs;
        t.writes_applied += r.writes_applied;
        t.writes_torn += r.writes_torn;
        t.writes_dropped += r.writes_dropped;
        t.bytes_lost += r.bytes_lost;
        t.set_lens_applied += r.set_lens_applied;
        t.set_lens_dropped += r.set_lens_dropped;
        t.dir_ops_kept += r.dir_ops_kept;
        t.dir_ops_dropped += r.dir_ops_dropped;
        t.files_changed += r.files_changed;
        t.fsyncs += r.fsyncs;
        t.dir_fsyncs += r.dir_fsyncs;
    }
}

/// Issue 16's promise at a power cut, end to end: tjfwd runs with its state
/// directory on the power-cut filesystem, addresses coming in and the API
/// failing now and then; the power goes at a moment drawn from the seed
/// (each unsynced write of the moment kept, torn or lost, each directory's
/// unsynced entries cut at a random point); the machine comes back with
/// what the disk kept, tjfwd must start by itself, and the power goes again,
/// several times; at last, with the API up, `run --drain` must deliver every
/// address: from the file (`start_at = "beginning"`, and `"end"` with the
/// first cut soon after the very first start) and every address the socket
/// input had read.
///
/// Ten cuts in all by default (fixed seeds); `TJFWD_POWERCUTS=<n>` makes it
/// about n, spread over the three scenarios, and prints the figures.
#[test]
fn tjfwd_starts_by_itself_after_power_cuts_and_loses_nothing() {
    let total: u64 = std::env::var("TJFWD_POWERCUTS")
        .map(|n| n.parse().expect("TJFWD_POWERCUTS: a number of cuts"))
        .unwrap_or(10);
    let scenarios = [
        (
            "file, start_at = beginning",
            Feed::File {
                start_at_end: false,
            },
            0.4,
        ),
        (
            "file, start_at = end",
            Feed::File { start_at_end: true },
            0.3,
        ),
        ("socket input", Feed::Socket, 0.3),
    ];
    let mut failed = Vec::new();
    for (i, (name, feed, share)) in scenarios.iter().enumerate() {
        let lives = ((total as f64 * share).round() as u64).max(1);
        // A chain of at most 10 cuts on one state directory, as many
        // chains as it takes.
        let mut figures = Figures::default();
        let mut chain = 0;
        while figures.cuts < lives {
            let n = (lives - figures.cuts).min(10);
            let seed = 1000 * (i as u64 + 1) + chain;
            match power_cut_chain(*feed, seed, n, &mut figures) {
                None => return, // FUSE unusable here: skipped
                Some(Ok(())) => {}
                Some(Err(e)) => failed.push(format!("{name}, seed {seed}: {e}")),
            }
            chain += 1;
        }
        eprintln!(
            "power cuts, {name}: {} cuts; {} addresses written, {} delivered, {} requests; \
             over the cuts: {}",
            figures.cuts, figures.written, figures.delivered, figures.requests, figures.report
        );
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Writes `lines` to `path`, 10 every 30 ms, until done or `stop`.
fn cowrie_writer(
    path: PathBuf,
    lines: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for chunk in lines.chunks(10) {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            support::cowrie::append(&path, chunk);
            std::thread::sleep(Duration::from_millis(30));
        }
    })
}

/// `lives` runs of tjfwd on one state directory, each ended by a power cut
/// at a moment drawn from `seed`, then a drain. `Err` says what went wrong.
fn power_cut_chain(
    feed: Feed,
    seed: u64,
    lives: u64,
    figures: &mut Figures,
) -> Option<Result<(), String>> {
    use rand::Rng;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use support::bin::{bin, bound_address, output_of, spawn, wait_with_limit, Env};
    use support::cowrie;
    use support::fake_api::{Failure, FakeApi, FakeConfig};

    let mut draw = rng(seed);
    let env = Env::new();
    let rig = Rig::new();
    // The API's limit, scaled: 6 requests a second (tjfwd is told the same
    // window through TJFWD_TEST_RATE_WINDOW_MS).
    let api = FakeApi::start(FakeConfig {
        window: Duration::from_secs(1),
        ..FakeConfig::default()
    });
    let mnt = rig.mnt();
    let cfg = env.config(&api, "");
    let text = fs::read_to_string(&cfg).unwrap();
    let mut text = text.replace(
        r#"state_dir = "state""#,
        &format!("state_dir = {:?}", mnt.join("state").to_str().unwrap()),
    );
    match feed {
        Feed::File { start_at_end: true } => {
            text = text.replace(r#"start_at = "beginning""#, r#"start_at = "end""#)
        }
        Feed::File { .. } => {}
        Feed::Socket => text = text.replace("[input]\n", "[input]\nlisten_tcp = \"127.0.0.1:9\"\n"),
    }
    fs::write(&cfg, text).unwrap();
    let tjfwd = |args: &[&str]| {
        let mut c = bin();
        c.args(args)
            .arg("--config")
            .arg(&cfg)
            .env("TJFWD_TEST_RATE_WINDOW_MS", "1000")
            .env(support::bin::EPHEMERAL_PORTS_ENV, "1");
        c
    };

    let all = cowrie::public_addresses(400 * lives as usize);
    let mut owed: Vec<String> = Vec::new();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let mut writer = None;
    let mut image = rig.image();
    let mut log = String::new();
    for life in 0..lives {
        let fs = LazyFs::mount(&mnt, &image).unwrap();
        api.push_failures([Failure::Status(500), Failure::Drop, Failure::Status(503)]);
        let mut run = spawn(&mut tjfwd(&["run"]));
        let moment = match feed {
            Feed::File { start_at_end } => {
                if life == 0 {
                    // The first start: what is in the log before it is
                    // skipped with start_at = end; what comes after is owed.
                    if start_at_end {
                        cowrie::append(&env.log(), &[cowrie::login_failed("192.0.2.1", 0)]);
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while !output_of(&mut run).contains("reading input file") {
                            assert!(Instant::now() < deadline, "{}", output_of(&mut run));
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    let lines: Vec<String> = all
                        .iter()
                        .enumerate()
                        .map(|(i, a)| cowrie::login_failed(a, i as u64))
                        .collect();
                    owed.clone_from(&all);
                    writer = Some(cowrie_writer(env.log(), lines, stop_writer.clone()));
                }
                // The very first cut of start_at = end comes soon after the
                // first start, when a cut used to make the next start skip.
                if life == 0 && start_at_end {
                    draw.gen_range(0..300)
                } else {
                    draw.gen_range(0..2500)
                }
            }
            Feed::Socket => {
                let addr = bound_address(&mut run, "[input] listen_tcp", Duration::from_secs(20));
                let mine = &all[life as usize * 400..(life as usize + 1) * 400];
                let sent = std::net::TcpStream::connect(addr).and_then(|mut conn| {
                    for (i, a) in mine.iter().enumerate() {
                        writeln!(conn, "{}", cowrie::login_failed(a, i as u64))?;
                    }
                    Ok(())
                });
                if let Err(e) = sent {
                    // It went away: refused to start on what the disk kept.
                    let _ = run.child.kill();
                    return Some(Err(format!(
                        "life {life}: cannot send to tjfwd ({e}):\n{log}--- life {life}\n{}",
                        output_of(&mut run)
                    )));
                }
                owed.extend(mine.iter().cloned());
                let deadline = Instant::now() + Duration::from_secs(20);
                let closed = "socketlog connection closed";
                loop {
                    let out = output_of(&mut run);
                    if out.contains(closed) {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Some(Err(format!("the connection never closed:\n{out}")));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                draw.gen_range(0..300)
            }
        };
        std::thread::sleep(Duration::from_millis(moment));
        // It started by itself and still runs (not refused, not crashed).
        let exited = run.child.try_wait().unwrap();
        fs.power_off();
        let _ = run.child.kill();
        let _ = run.child.wait();
        let out = output_of(&mut run);
        log.push_str(&format!("--- life {life}, cut after {moment} ms\n{out}"));
        if let Some(status) = exited {
            stop_writer.store(true, Ordering::Relaxed);
            return Some(Err(format!(
                "life {life}: tjfwd did not start by itself after the cut ({status})\n{log}"
            )));
        }
        let cut = rig.out(&format!("disk{life}"));
        let report = fs.cut(&mut draw, &cut).unwrap();
        figures.add(&report);
        image = cut;
    }
    if let Some(w) = writer {
        w.join().unwrap();
    }
    // The machine is back for good, the API up: everything owed arrives.
    let fs = LazyFs::mount(&mnt, &image).unwrap();
    api.clear_failures();
    let mut drain = spawn(&mut tjfwd(&["run", "--drain"]));
    let status = wait_with_limit(&mut drain, Duration::from_secs(120));
    log.push_str(&format!("--- drain\n{}", output_of(&mut drain)));
    drop(fs);
    if status.map(|s| s.code()) != Some(Some(0)) {
        return Some(Err(format!(
            "the drain after the last cut failed ({status:?})\n{log}"
        )));
    }
    let delivered = api.accepted_unique();
    let lost: Vec<&String> = owed.iter().filter(|a| !delivered.contains(*a)).collect();
    figures.written += owed.len();
    figures.delivered += owed.len() - lost.len();
    figures.requests += api.request_count();
    if !lost.is_empty() {
        return Some(Err(format!(
            "{} of {} addresses lost: {:?}...\n{log}",
            lost.len(),
            owed.len(),
            &lost[..lost.len().min(5)]
        )));
    }
    let most = api.max_requests_in_window(Duration::from_secs(1));
    if most > 6 {
        return Some(Err(format!("{most} requests in one rate window\n{log}")));
    }
    Some(Ok(()))
}

/// The test configuration of `env` (Threat Jammer at `api`) with its state
/// directory on the power-cut mount `mnt`, and an empty live log.
fn config_on_mount(
    env: &support::bin::Env,
    api: &support::fake_api::FakeApi,
    mnt: &Path,
) -> PathBuf {
    let cfg = env.config(api, "");
    let text = fs::read_to_string(&cfg).unwrap().replace(
        r#"state_dir = "state""#,
        &format!("state_dir = {:?}", mnt.join("state").to_str().unwrap()),
    );
    fs::write(&cfg, text).unwrap();
    fs::write(env.log(), "").unwrap();
    cfg
}

/// An archived Cowrie log of `n` distinct addresses (9.x.y.z), each failing
/// a login `times` times, one line a millisecond.
fn archive(env: &support::bin::Env, n: usize, times: usize) -> PathBuf {
    let path = env.path("archive.json");
    let lines: Vec<String> = (0..n * times)
        .map(|i| {
            let a = i % n;
            let addr = format!("9.{}.{}.{}", a >> 16, (a >> 8) & 255, a & 255);
            support::cowrie::login_failed(&addr, i as u64)
        })
        .collect();
    support::cowrie::append(&path, &lines);
    path
}

/// Runs tjfwd with `args` and the configuration `cfg` to its end (at most
/// 120 s): its exit code and its output.
fn run_to_end(cfg: &Path, args: &[&str]) -> (Option<i32>, String) {
    use support::bin::{bin, output_of, spawn, wait_with_limit};
    let mut r = spawn(bin().args(args).arg("--config").arg(cfg));
    let status = wait_with_limit(&mut r, Duration::from_secs(120));
    (status.and_then(|s| s.code()), output_of(&mut r))
}

/// A power cut while `tjfwd recover --force` rebuilds the database: the next
/// `recover --check` finishes or undoes it from what the disk kept, finds
/// the database sound, and every pending address is there (they come from
/// a replayed archive: re-reading the live log cannot bring them back).
/// Cuts at fractions of an uninterrupted recover's duration, and as soon as
/// its journal appears; the number of fractions follows `TJFWD_POWERCUTS`
/// (a tenth of it, at least 4).
#[test]
fn a_power_cut_during_recover_loses_nothing() {
    use support::bin::{bin, output_of, spawn, Env};
    use support::fake_api::{FakeApi, FakeConfig};

    const N: usize = 5_000;
    let cuts: u32 = std::env::var("TJFWD_POWERCUTS")
        .map(|n| n.parse::<u32>().expect("TJFWD_POWERCUTS: a number") / 10)
        .unwrap_or(0)
        .max(4);
    let env = Env::new();
    let rig = Rig::new();
    let api = FakeApi::start(FakeConfig::default());
    let mnt = rig.mnt();
    let cfg = config_on_mount(&env, &api, &mnt);
    let archive = archive(&env, N, 1);
    let run_to_end = |args: &[&str]| run_to_end(&cfg, args);
    let pending_and_sound = || -> Result<(), String> {
        let (code, out) = run_to_end(&["recover", "--check"]);
        if code != Some(0) || !out.contains(&format!("{N} pending")) {
            return Err(format!("recover --check: exit {code:?}\n{out}"));
        }
        Ok(())
    };

    // The database with N pending, on the power-cut filesystem, made
    // durable by a clean stop (a cut that keeps only what was synced).
    let Some(fs) = rig.mount("a_power_cut_during_recover_loses_nothing") else {
        return;
    };
    let (code, out) = run_to_end(&["replay", "--no-progress-bar", archive.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let base = rig.out("base");
    fs.cut_with(&mut rng(0), &base, &CutOptions::drop_unsynced())
        .unwrap();
    let fs = LazyFs::mount(&mnt, &base).unwrap();
    pending_and_sound().unwrap();
    // How long an uninterrupted recover takes here.
    let started = Instant::now();
    let (code, out) = run_to_end(&["recover", "--force"]);
    let full = started.elapsed();
    assert_eq!(code, Some(0), "{out}");
    drop(fs);

    let mut outcomes = Vec::new();
    // The fractions, then once as soon as the journal is there (the swap
    // decided, its renames under way).
    for k in 0..=cuts {
        let fs = LazyFs::mount(&mnt, &base).unwrap();
        let mut r = spawn(bin().args(["recover", "--force", "--config"]).arg(&cfg));
        let moment = if k < cuts {
            let moment = full * (k + 1) / (cuts + 1);
            std::thread::sleep(moment);
            moment
        } else {
            let journal = mnt.join("state").join("recover.journal");
            let t0 = Instant::now();
            while !journal.exists() && r.child.try_wait().unwrap().is_none() {
                assert!(t0.elapsed() < Duration::from_secs(60));
                std::hint::spin_loop();
            }
            t0.elapsed()
        };
        fs.power_off();
        let _ = r.child.kill();
        let _ = r.child.wait();
        let disk = rig.out(&format!("cut{k}"));
        let report = fs.cut(&mut rng(100 + u64::from(k)), &disk).unwrap();
        let left: Vec<&str> = ["recover.new", "recover.journal", "recover.scratch"]
            .into_iter()
            .filter(|p| disk.join("state").join(p).exists())
            .collect();
        outcomes.push(format!("cut at {moment:.1?}: left {left:?}; {report}"));
        let fs = LazyFs::mount(&mnt, &disk).unwrap();
        if let Err(e) = pending_and_sound() {
            panic!(
                "{e}\n{outcomes:#?}\n--- the cut recover\n{}",
                output_of(&mut r)
            );
        }
        drop(fs);
    }
    eprintln!("recover --force ({full:.1?} uninterrupted), power cuts: {outcomes:#?}");
}

/// A power cut while `tjfwd replay` writes what it read, at the start of
/// each fsync of sled's log in turn (the moments that decide what is
/// durable), with what was written since the fsync before reaching the
/// disk in part (the default odds, fixed seeds). Whatever the cut left, the
/// database is sound at the next start, and the replay run again queues
/// every address, each once, for both targets. One of the cuts falls
/// between the two fsyncs of the bulk load (`src/store/load.rs`): the
/// addresses whose entries reached the disk stay queued, and the next
/// start finishes the load and says so. `TJFWD_POWERCUTS=n` cuts at each
/// fsync with n / 50 seeds.
#[test]
fn a_power_cut_during_a_replay_loses_nothing_and_queues_nothing_twice() {
    use support::bin::{bin, output_of, spawn, Env};
    use support::fake_api::{FakeApi, FakeConfig};

    const N: usize = 5_000;
    const FINISHED: &str = "was interrupted while it wrote the addresses it had read";
    let env = Env::new();
    let rig = Rig::new();
    let api = FakeApi::start(FakeConfig::default());
    let mnt = rig.mnt();
    let cfg = config_on_mount(&env, &api, &mnt);
    let key = env.path("abuseipdb.key");
    fs::write(&key, "placeholder\n").unwrap();
    let abuseipdb = format!(
        "\n[targets.abuseipdb]\napi_url = \"{}\"\napi_key_file = {:?}\n",
        api.url(),
        key.to_str().unwrap()
    );
    fs::write(&cfg, fs::read_to_string(&cfg).unwrap() + &abuseipdb).unwrap();
    // Each address twice: the replay folds the second sighting in.
    let archive = archive(&env, N, 2);
    let replay = || {
        let mut c = bin();
        c.args([
            "replay",
            "--no-progress-bar",
            archive.to_str().unwrap(),
            "--config",
        ])
        .arg(&cfg);
        spawn(&mut c)
    };
    let run_to_end = |args: &[&str]| run_to_end(&cfg, args);
    let pending = |out: &str| -> Option<usize> {
        out.split_whitespace()
            .zip(out.split_whitespace().skip(1))
            .find(|(_, w)| w.trim_end_matches(',') == "pending")
            .and_then(|(n, _)| n.parse().ok())
    };

    // How many fsyncs of the log an uninterrupted replay makes.
    let Some(fs) = rig.mount("a_power_cut_during_a_replay_loses_nothing_and_queues_nothing_twice")
    else {
        return;
    };
    fs.watch_fsyncs("db", None);
    let (code, out) = run_to_end(&["replay", "--no-progress-bar", archive.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let total = fs.watched_fsyncs();
    drop(fs);
    assert!(total >= 3, "{total} fsyncs of the log");

    let mut outcomes = Vec::new();
    let mut finished = 0;
    // Each fsync once (seed 0) by default; with TJFWD_POWERCUTS=n, each
    // with n / 50 seeds (at least 1): other draws of what reached the disk.
    let seeds: u64 = std::env::var("TJFWD_POWERCUTS")
        .map(|n| n.parse::<u64>().expect("TJFWD_POWERCUTS: a number") / 50)
        .unwrap_or(0)
        .max(1);
    let cuts = (0..seeds).flat_map(|seed| (1..=total).map(move |m| (seed, m)));
    for (seed, m) in cuts {
        let fs = LazyFs::mount(&mnt, &rig.image()).unwrap();
        fs.watch_fsyncs("db", Some(m));
        let mut r = replay();
        let t0 = Instant::now();
        while !fs.is_off() && r.child.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(120), "the replay hangs");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = r.child.kill();
        let _ = r.child.wait();
        let cut_replay = output_of(&mut r);
        let disk = rig.out(&format!("cut{seed}-{m}"));
        let report = fs.cut(&mut rng(200 + 1000 * seed + m), &disk).unwrap();
        let fs = LazyFs::mount(&mnt, &disk).unwrap();
        let (code, first) = run_to_end(&["recover", "--check"]);
        let kept = pending(&first);
        outcomes.push(format!(
            "seed {seed}, cut at fsync {m} of {total}: {kept:?} pending after it; {report}"
        ));
        let fail = |what: &str, out: &str| -> ! {
            panic!("{what}\n{out}\n{outcomes:#?}\n--- the cut replay\n{cut_replay}")
        };
        if code != Some(0) {
            fail("recover --check after the cut", &first);
        }
        if first.contains(FINISHED) {
            finished += 1;
        }
        let (code, out) = run_to_end(&["replay", "--no-progress-bar", archive.to_str().unwrap()]);
        if code != Some(0) {
            fail("the replay again", &out);
        }
        let (code, out) = run_to_end(&["recover", "--check"]);
        if code != Some(0) || pending(&out) != Some(N) {
            fail(
                &format!("recover --check after the replay again: {N} pending?"),
                &out,
            );
        }
        drop(fs);
    }
    eprintln!("replay, power cuts: {outcomes:#?}");
    assert!(
        finished >= 1,
        "no cut fell inside the bulk load: {outcomes:#?}"
    );
}
