//! A power-cut filesystem for the tests, in the spirit of LazyFS (the FUSE
//! filesystem Jepsen uses): what a disk holds after a power cut, not what
//! the processes saw.
//!
//! A kill -9 loses a process's own buffers; a power cut also loses every
//! write the kernel had not made durable. [`LazyFs::mount`] mounts (FUSE,
//! through the `fuser` crate) an in-memory filesystem that starts as a copy
//! of a real directory, the image, which is durable. From then on:
//!
//! - Each regular file has its live content (what reads see) and its durable
//!   content. Writes and size changes (truncate, ftruncate, a write past the
//!   end) since the file's last `fsync`/`fdatasync` are kept, in order, as
//!   pending operations; `fsync` or `fdatasync` of the file makes its live
//!   content durable, and nothing else: not its directory entry (strict
//!   POSIX; ext4's habit of committing the entry too is not modelled).
//!   `sync_file_range` never reaches a FUSE filesystem, which is right: it
//!   makes no data durable (sled 0.34 relies on it).
//! - Each directory has live and durable entries. Its entry changes (create,
//!   mkdir, unlink, rmdir, rename in, out or within it, over an existing
//!   name or not) since its last `fsync` (`fsyncdir`) are kept in an ordered
//!   log; `fsyncdir` makes its live entries durable. A rename within one
//!   directory is one log record (atomic, as on a journaling filesystem); a
//!   rename across directories is a removal in the source's log and an
//!   insertion in the target's, each reaching the disk with its own
//!   directory (POSIX asks to fsync both).
//! - Inode attributes (mode, owner, times) are taken as durable at once.
//!
//! [`LazyFs::cut`] is the power cut. From its first instant every operation
//! on the mount fails with EIO (nothing blocks); then it writes into a new
//! real directory what a disk would hold, and unmounts:
//!
//! - each directory: its durable entries plus a prefix of its log, of a
//!   length the rng draws (journaling filesystems commit metadata in order;
//!   a random prefix covers "none", "all" and in between);
//! - each file reachable from the resulting tree: its durable content plus,
//!   for each pending operation in order, what the rng draws: applied whole,
//!   torn (writes: only some of its 512-byte sectors, each with probability
//!   1/2; sectors are aligned on file offsets), or dropped. The kernel writes
//!   dirty pages back on its own, in any order, so unsynced data reaches the
//!   disk in any subset. A torn or dropped write never leaves a byte that
//!   was not written: only whole sectors of the old or the new data (a
//!   sector past the old end that was not written reads as zeros);
//! - inodes no longer reachable are gone. A file whose entry survived but
//!   whose data was never synced is empty, or holds the data that made it.
//!
//! The odds are a [`CutOptions`]; [`CutOptions::drop_unsynced`] loses
//! everything unsynced (deterministic), [`CutOptions::keep_unsynced`] keeps
//! it all (what a kill -9 leaves). [`CutReport`] counts what was dropped.
//!
//! [`LazyFs::power_off`] only makes the mount fail from now on: call it,
//! kill the processes using the mount, then `cut` (which writes the state of
//! the `power_off` instant). Without it, kill them right after `cut`: if any
//! still holds a file open on the mount, `cut` never waits for it: it
//! aborts the FUSE connection (what is still open then fails with ENOTCONN)
//! and detaches the mount, and from then on a process that opens a path
//! under the mount point reaches the directory underneath, not the mount.
//! (The abort matters: this process serves the mount, and a process that
//! exits with files open on a mount it serves itself would wait for ever.
//! It goes through fusectl, which `cut` mounts on /sys/fs/fuse/connections
//! if it is not there.)
//!
//! Unix sockets can be bound on the mount (a cut that keeps the entry
//! leaves a stale socket file). Not modelled: symbolic and hard links
//! (EPERM), devices and FIFOs (EPERM), extended attributes (ENOSYS: the
//! kernel then says EOPNOTSUPP), `fallocate`. Locks (`flock`, `fcntl`) are
//! left to the kernel, which keeps them locally for a FUSE filesystem that
//! does not implement them: they work between processes on the mount.
//! Inodes are never freed while mounted (a mount lives for one test run).
//!
//! The kernel caches nothing: entry and attribute TTLs are 0 and files are
//! opened with direct I/O (no page cache: every read and write reaches this
//! code, so none succeeds after the cut; `mmap` is refused). Permissions
//! are checked by the kernel (`default_permissions`), from the modes and
//! owners kept here.
//!
//! It needs root and /dev/fuse (fuser mounts with mount(2), or through
//! Debian's `fusermount3` when that fails); without them [`LazyFs::mount`]
//! fails with [`io::ErrorKind::Unsupported`], which [`mount_or_skip`] turns
//! into a skip, or a failure when `CI` is set. A dropped [`LazyFs`] unmounts (drop
//! it before the temporary directory that holds its mount point).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, FileTimes};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session, SessionUnmounter,
    TimeOrNow, WriteFlags,
};
use rand::Rng;

/// The unit of a torn write: a disk writes whole sectors.
pub const SECTOR: u64 = 512;

/// The kernel may cache nothing: every lookup and attribute read comes here.
const TTL: Duration = Duration::ZERO;

/// The longest name a directory entry may have (as on ext4).
const NAME_MAX: usize = 255;

/// How long `cut` and `Drop` wait for the FUSE thread after aborting its
/// connection (it ends as soon as the kernel closes the connection).
const JOIN_LIMIT: Duration = Duration::from_secs(5);

type Ino = u64;
const ROOT: Ino = 1;

/// What reaches the disk of what was not synced, at a cut.
#[derive(Clone, Debug)]
pub struct CutOptions {
    /// Chance that a pending write reached the disk whole.
    pub write_applied: f64,
    /// Chance that it was torn: only some of its sectors reached the disk
    /// (each with probability 1/2). The rest of the time it is dropped.
    pub write_torn: f64,
    /// Chance that a pending size change (truncate, ftruncate) reached it.
    pub set_len_applied: f64,
    /// How much of each directory's unsynced log reached the disk.
    pub metadata: MetadataCut,
}

/// How much of a directory's log of unsynced entry changes survives a cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataCut {
    /// A prefix of a length drawn uniformly (0 to all of it).
    RandomPrefix,
    /// None of it: only what `fsyncdir` made durable.
    Nothing,
    /// All of it.
    Everything,
}

impl Default for CutOptions {
    /// Each unsynced write: 40 % whole, 20 % torn, 40 % lost; each size
    /// change: even odds; each directory: a random prefix of its log.
    fn default() -> Self {
        CutOptions {
            write_applied: 0.4,
            write_torn: 0.2,
            set_len_applied: 0.5,
            metadata: MetadataCut::RandomPrefix,
        }
    }
}

impl CutOptions {
    /// Everything not synced is lost: the disk holds exactly what `fsync`
    /// and `fsyncdir` made durable. Deterministic (draws nothing).
    pub fn drop_unsynced() -> Self {
        CutOptions {
            write_applied: 0.0,
            write_torn: 0.0,
            set_len_applied: 0.0,
            metadata: MetadataCut::Nothing,
        }
    }

    /// Everything reached the disk: what a kill -9 leaves. Deterministic.
    pub fn keep_unsynced() -> Self {
        CutOptions {
            write_applied: 1.0,
            write_torn: 0.0,
            set_len_applied: 1.0,
            metadata: MetadataCut::Everything,
        }
    }

    /// Every write torn (for the tests of tearing); entries all kept.
    pub fn tear_writes() -> Self {
        CutOptions {
            write_applied: 0.0,
            write_torn: 1.0,
            set_len_applied: 1.0,
            metadata: MetadataCut::Everything,
        }
    }
}

/// What a cut did: counts over the files and directories written out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Pending (unsynced) writes that reached the disk whole.
    pub writes_applied: u64,
    /// Pending writes of which only some sectors reached the disk.
    pub writes_torn: u64,
    /// Pending writes lost whole.
    pub writes_dropped: u64,
    /// Bytes of pending writes that did not reach the disk (dropped writes
    /// and the lost sectors of torn ones).
    pub bytes_lost: u64,
    /// Pending size changes applied.
    pub set_lens_applied: u64,
    /// Pending size changes lost.
    pub set_lens_dropped: u64,
    /// Unsynced directory entry changes that reached the disk.
    pub dir_ops_kept: u64,
    /// Unsynced directory entry changes lost.
    pub dir_ops_dropped: u64,
    /// Regular files written out.
    pub files: u64,
    /// Directories written out (the root included).
    pub dirs: u64,
    /// Files whose content after the cut is not what readers saw before it.
    pub files_changed: u64,
    /// Paths of the live tree that the cut left without an entry,
    /// relative to the mount point.
    pub missing: Vec<PathBuf>,
    /// `fsync`/`fdatasync` calls on files while mounted.
    pub fsyncs: u64,
    /// `fsync` calls on directories while mounted.
    pub dir_fsyncs: u64,
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files, {} dirs; unsynced writes: {} kept, {} torn, {} lost ({} bytes lost); \
             size changes: {} kept, {} lost; entry changes: {} kept, {} lost; \
             {} files changed, {} paths missing; {} fsyncs, {} dir fsyncs",
            self.files,
            self.dirs,
            self.writes_applied,
            self.writes_torn,
            self.writes_dropped,
            self.bytes_lost,
            self.set_lens_applied,
            self.set_lens_dropped,
            self.dir_ops_kept,
            self.dir_ops_dropped,
            self.files_changed,
            self.missing.len(),
            self.fsyncs,
            self.dir_fsyncs,
        )
    }
}

/// Why the power-cut filesystem cannot be used here, if it cannot: not
/// root, or no /dev/fuse. (Root is required even though fuser can mount
/// through `fusermount3`: only root can abort a FUSE connection, which an
/// unmount needs when files are still open; and the tests chown.)
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("the power-cut filesystem (FUSE) needs root".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse (the fuse kernel module is not loaded)".into());
    }
    None
}

/// [`LazyFs::mount`], or `None` after saying why FUSE is unusable here (a
/// skip; under `CI` a failure). Panics on any other error.
pub fn mount_or_skip(test: &str, mountpoint: &Path, image: &Path) -> Option<LazyFs> {
    match LazyFs::mount(mountpoint, image) {
        Ok(fs) => Some(fs),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            super::skip_or_fail(test, &e.to_string());
            None
        }
        Err(e) => panic!("mounting the power-cut filesystem on {mountpoint:?}: {e}"),
    }
}

/// A mounted power-cut filesystem; see the module documentation.
pub struct LazyFs {
    /// The mount point, canonical (as mounted).
    mountpoint: PathBuf,
    /// The state, shared with the FUSE thread.
    shared: Arc<Shared>,
    /// Unmounts (once); `None` after.
    unmounter: Option<SessionUnmounter>,
    /// The FUSE thread (it ends when the kernel closes the connection).
    thread: Option<JoinHandle<io::Result<()>>>,
    /// The FUSE connection's number (its directory in fusectl).
    connection: Option<u64>,
}

impl fmt::Debug for LazyFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyFs")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

/// What the FUSE thread and the [`LazyFs`] handle share.
struct Shared {
    /// Set at the power cut: from then on every operation fails with EIO.
    /// Read and written under `model`'s lock, so an operation is wholly
    /// before the cut or wholly after it.
    off: AtomicBool,
    model: Mutex<Model>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LazyFs {
    /// Mounts, at `mountpoint` (an existing directory), a power-cut
    /// filesystem whose durable initial content is a copy of the real
    /// directory `image` (regular files and directories, with their modes,
    /// owners and times). Fails with [`io::ErrorKind::Unsupported`] when
    /// FUSE cannot be used here.
    pub fn mount(mountpoint: &Path, image: &Path) -> io::Result<LazyFs> {
        if let Some(why) = unavailable() {
            return Err(io::Error::new(ErrorKind::Unsupported, why));
        }
        let model = Model::load(image)?;
        let mountpoint = mountpoint.canonicalize()?;
        let shared = Arc::new(Shared {
            off: AtomicBool::new(false),
            model: Mutex::new(model),
        });
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        let fs = Fuse {
            shared: Arc::clone(&shared),
        };
        let mut session = Session::new(fs, &mountpoint, &config).map_err(|e| {
            io::Error::new(
                ErrorKind::Unsupported,
                format!("cannot mount a FUSE filesystem on {mountpoint:?}: {e}"),
            )
        })?;
        let unmounter = session.unmount_callable();
        let thread = std::thread::Builder::new()
            .name("lazyfs".into())
            .spawn(move || session.run())?;
        let mut lazy = LazyFs {
            mountpoint,
            shared,
            unmounter: Some(unmounter),
            thread: Some(thread),
            connection: None,
        };
        // Answered by the thread just started (dropped, `lazy` unmounts).
        lazy.connection = Some(kernel_dev(fs::metadata(&lazy.mountpoint)?.dev()));
        Ok(lazy)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The instant of the power cut: from now on every operation on the
    /// mount fails with EIO, and what the disk holds is fixed (a later
    /// [`cut`](Self::cut) writes it out). Idempotent.
    pub fn power_off(&self) {
        let _model = self.shared.lock();
        self.shared.off.store(true, Ordering::SeqCst);
    }

    /// Counts from now on the `fsync`s and `fdatasync`s of regular files
    /// named `name` (in any directory), and with `Some(n)`, powers off (as
    /// [`power_off`](Self::power_off)) at the start of the `n`-th of them,
    /// which fails with EIO and makes nothing durable: a cut then draws
    /// what reached the disk of what was written since the one before.
    pub fn watch_fsyncs(&self, name: &str, power_off_at: Option<u64>) {
        self.shared.lock().watch = Some((name.into(), 0, power_off_at));
    }

    /// How many watched fsyncs came so far ([`watch_fsyncs`](Self::watch_fsyncs)),
    /// the one that powered off included.
    pub fn watched_fsyncs(&self) -> u64 {
        self.shared.lock().watch.as_ref().map_or(0, |w| w.1)
    }

    /// Whether the power is off.
    pub fn is_off(&self) -> bool {
        self.shared.off.load(Ordering::SeqCst)
    }

    /// The power cut with the default odds ([`CutOptions::default`]).
    pub fn cut<R: Rng + ?Sized>(self, rng: &mut R, out: &Path) -> io::Result<CutReport> {
        self.cut_with(rng, out, &CutOptions::default())
    }

    /// The power cut (unless [`power_off`](Self::power_off) came first, its
    /// instant is now): every operation on the mount fails with EIO from
    /// now on; writes what a disk would hold into the new directory `out`
    /// (it may exist if empty), with the odds of `options`; unmounts. Never
    /// waits for the processes using the mount: if some still have files
    /// open on it, aborts the connection and detaches it (see the module
    /// docs).
    pub fn cut_with<R: Rng + ?Sized>(
        mut self,
        rng: &mut R,
        out: &Path,
        options: &CutOptions,
    ) -> io::Result<CutReport> {
        self.power_off();
        let result = {
            let model = self.shared.lock();
            model.cut(rng, options, out)
        };
        let unmounted = self.unmount();
        let report = result?;
        unmounted?;
        Ok(report)
    }

    /// Unmounts without a cut (nothing is written anywhere). A [`LazyFs`]
    /// dropped unmounts too.
    pub fn unmount(&mut self) -> io::Result<()> {
        self.power_off();
        let Some(mut unmounter) = self.unmounter.take() else {
            return Ok(());
        };
        let unmounted = match unmounter.unmount() {
            // Done; as non-root, fuser unmounted lazily with fusermount3.
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // Files are still open on the mount. Abort the connection:
                // whatever is still open fails (ENOTCONN) instead of
                // waiting for this process — which, exiting with files
                // open on a mount it serves itself, would wait for ever.
                // Then detach the mount.
                if let Err(e) = self.abort_connection() {
                    eprintln!("lazyfs: {e}");
                }
                lazy_unmount(&self.mountpoint)
            }
            Err(e) => {
                let _ = lazy_unmount(&self.mountpoint);
                Err(e)
            }
        };
        // The thread ends when the kernel closes the connection: at once
        // after an unmount or an abort, else when the last file open on
        // the lazily detached mount is closed.
        let Some(thread) = self.thread.take() else {
            return unmounted;
        };
        let thread = match join_within(thread, Duration::from_millis(500)) {
            Ok(result) => return unmounted.and(result),
            Err(thread) => thread,
        };
        if let Err(e) = self.abort_connection() {
            eprintln!("lazyfs: {e}");
        }
        match join_within(thread, JOIN_LIMIT) {
            Ok(result) => unmounted.and(result),
            Err(_) => {
                eprintln!(
                    "lazyfs: files are still open on the detached mount {:?} and its \
                     connection could not be aborted: this process may hang at exit",
                    self.mountpoint
                );
                unmounted
            }
        }
    }

    /// Aborts the FUSE connection through fusectl (mounting it on
    /// /sys/fs/fuse/connections if it is not there, as root may).
    fn abort_connection(&self) -> io::Result<()> {
        let Some(dev) = self.connection else {
            return Err(io::Error::other("the connection's number is unknown"));
        };
        let connections = Path::new("/sys/fs/fuse/connections");
        let abort = connections.join(dev.to_string()).join("abort");
        if !abort.exists() && connections.is_dir() {
            let _ = rustix::mount::mount(
                "fusectl",
                connections,
                "fusectl",
                rustix::mount::MountFlags::empty(),
                None,
            );
        }
        fs::write(&abort, "1").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("aborting the FUSE connection ({abort:?}): {e}"),
            )
        })
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("lazyfs: unmounting {:?}: {e}", self.mountpoint);
        }
    }
}

/// A lazy unmount: by the syscall as root, else `fusermount3 -u -z`.
fn lazy_unmount(mountpoint: &Path) -> io::Result<()> {
    let Err(e) = rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH) else {
        return Ok(());
    };
    let status = std::process::Command::new("fusermount3")
        .args(["-u", "-q", "-z", "--"])
        .arg(mountpoint)
        .stdin(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot unmount {mountpoint:?}, not even lazily"),
        )),
    }
}

/// The kernel's number for a device (`MKDEV`), from a userspace `st_dev`:
/// fusectl names a connection by it.
fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 32) & 0xffff_f000) | ((st_dev >> 8) & 0xfff);
    let minor = ((st_dev >> 12) & 0xffff_ff00) | (st_dev & 0xff);
    (major << 20) | minor
}

/// The thread's result if it ends within `limit`, else the thread.
fn join_within(
    thread: JoinHandle<io::Result<()>>,
    limit: Duration,
) -> Result<io::Result<()>, JoinHandle<io::Result<()>>> {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        if Instant::now() > deadline {
            return Err(thread);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the FUSE thread panicked"))))
}

// ---------------------------------------------------------------------------
// The model: inodes, live and durable, with what is pending.

#[derive(Clone, Copy, Debug)]
struct Meta {
    /// Permission bits (and set-id, sticky): `mode & 0o7777`.
    perm: u32,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Meta {
    fn new(perm: u32, uid: u32, gid: u32) -> Meta {
        let now = SystemTime::now();
        Meta {
            perm: perm & 0o7777,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    fn of(md: &fs::Metadata) -> Meta {
        Meta {
            perm: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            atime: md.accessed().unwrap_or(SystemTime::UNIX_EPOCH),
            mtime: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ctime: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

struct Inode {
    meta: Meta,
    body: Body,
}

enum Body {
    File(FileData),
    Dir(DirData),
    /// A Unix socket's name (tjfwd binds its control socket in its state
    /// directory), with its link count (0 or 1). It has no content; after a
    /// cut that keeps its entry it is a stale socket file, as on a disk.
    Socket(u32),
}

/// What `Model::create` makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NewKind {
    File,
    Dir,
    Socket,
}

/// A regular file: `live` is `durable` with `pending` applied in order.
#[derive(Default)]
struct FileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    /// Live directory entries naming it (0 or 1: no hard links).
    nlink: u32,
}

/// A change to a file's content since its last fsync.
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Pending {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => write_at(content, *offset, data),
            Pending::SetLen(len) => content.resize(to_usize(*len), 0),
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("a file offset beyond this machine's address space")
}

fn write_at(content: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(data);
}

/// A directory: `live` is `durable` with `log` applied in order.
struct DirData {
    /// The live parent (for `..`); the root's is itself.
    parent: Ino,
    live: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
    log: Vec<DirOp>,
}

/// A change to a directory's entries since its last fsync.
enum DirOp {
    /// `name` now names `ino` (created, or renamed in from another
    /// directory; replaces what `name` named).
    Link { name: OsString, ino: Ino },
    /// `name` is gone (unlinked, or renamed out to another directory).
    Unlink { name: OsString },
    /// A rename within the directory: atomic.
    Rename {
        from: OsString,
        to: OsString,
        ino: Ino,
    },
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<OsString, Ino>) {
        match self {
            DirOp::Link { name, ino } => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Unlink { name } => {
                entries.remove(name);
            }
            DirOp::Rename { from, to, ino } => {
                entries.remove(from);
                entries.insert(to.clone(), *ino);
            }
        }
    }
}

/// The filesystem's whole state.
struct Model {
    /// In inode order, so a cut draws in a fixed order: a seed names a cut.
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    /// Open directory handles: the entries as at `opendir`.
    dir_handles: HashMap<u64, Vec<(Ino, FileType, OsString)>>,
    next_fh: u64,
    fsyncs: u64,
    dir_fsyncs: u64,
    /// [`LazyFs::watch_fsyncs`]: the file name watched, its fsyncs so far,
    /// and at which one the power goes off.
    watch: Option<(OsString, u64, Option<u64>)>,
}

type Res<T> = Result<T, Errno>;

impl Model {
    /// The durable image of the real directory `image`.
    fn load(image: &Path) -> io::Result<Model> {
        let md = fs::metadata(image)?;
        if !md.is_dir() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("the image {image:?} is not a directory"),
            ));
        }
        let mut model = Model {
            inodes: BTreeMap::new(),
            next_ino: ROOT + 1,
            dir_handles: HashMap::new(),
            next_fh: 1,
            fsyncs: 0,
            dir_fsyncs: 0,
            watch: None,
        };
        model.inodes.insert(
            ROOT,
            Inode {
                meta: Meta::of(&md),
                body: Body::Dir(DirData {
                    parent: ROOT,
                    live: BTreeMap::new(),
                    durable: BTreeMap::new(),
                    log: Vec::new(),
                }),
            },
        );
        model.load_dir(image, ROOT)?;
        Ok(model)
    }

    fn load_dir(&mut self, dir: &Path, ino: Ino) -> io::Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let md = fs::symlink_metadata(&path)?;
            let child = self.next_ino;
            self.next_ino += 1;
            let body = if md.is_dir() {
                Body::Dir(DirData {
                    parent: ino,
                    live: BTreeMap::new(),
                    durable: BTreeMap::new(),
                    log: Vec::new(),
                })
            } else if md.is_file() {
                let content = fs::read(&path)?;
                Body::File(FileData {
                    live: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                    nlink: 1,
                })
            } else if md.file_type().is_socket() {
                Body::Socket(1)
            } else {
                return Err(io::Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{path:?}: the power-cut filesystem holds only files, directories \
                         and sockets"
                    ),
                ));
            };
            self.inodes.insert(
                child,
                Inode {
                    meta: Meta::of(&md),
                    body,
                },
            );
            let parent = self.dir_mut(ino).expect("a directory");
            parent.live.insert(name.clone(), child);
            parent.durable.insert(name, child);
            if md.is_dir() {
                self.load_dir(&path, child)?;
            }
        }
        Ok(())
    }

    fn inode(&self, ino: Ino) -> Res<&Inode> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> Res<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Res<&DirData> {
        match &self.inode(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Res<&mut DirData> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Res<&mut FileData> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
            Body::Socket(_) => Err(Errno::EINVAL),
        }
    }

    fn attr(&self, ino: Ino) -> Res<FileAttr> {
        let inode = self.inode(ino)?;
        let (kind, size, nlink) = match &inode.body {
            Body::File(f) => (FileType::RegularFile, f.live.len() as u64, f.nlink),
            Body::Socket(nlink) => (FileType::Socket, 0, *nlink),
            Body::Dir(d) => {
                let subdirs = d
                    .live
                    .values()
                    .filter(|c| matches!(self.inodes.get(c).map(|i| &i.body), Some(Body::Dir(_))))
                    .count();
                (FileType::Directory, 4096, 2 + subdirs as u32)
            }
        };
        let m = &inode.meta;
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.ctime,
            kind,
            perm: m.perm as u16,
            nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn lookup(&self, parent: Ino, name: &OsStr) -> Res<Ino> {
        self.dir(parent)?
            .live
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// Makes a new inode named `name` in `parent` (which must not have it).
    fn create(&mut self, parent: Ino, name: &OsStr, meta: Meta, kind: NewKind) -> Res<Ino> {
        check_name(name)?;
        if self.dir(parent)?.live.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = match kind {
            NewKind::Dir => Body::Dir(DirData {
                parent,
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
                log: Vec::new(),
            }),
            NewKind::File => Body::File(FileData {
                nlink: 1,
                ..FileData::default()
            }),
            NewKind::Socket => Body::Socket(1),
        };
        self.inodes.insert(ino, Inode { meta, body });
        let p = self.dir_mut(parent)?;
        p.live.insert(name.to_owned(), ino);
        p.log.push(DirOp::Link {
            name: name.to_owned(),
            ino,
        });
        self.inode_mut(parent)?.meta.touch();
        Ok(ino)
    }

    fn is_dir(&self, ino: Ino) -> bool {
        self.kind(ino) == FileType::Directory
    }

    fn kind(&self, ino: Ino) -> FileType {
        match self.inodes.get(&ino).map(|i| &i.body) {
            Some(Body::Dir(_)) => FileType::Directory,
            Some(Body::Socket(_)) => FileType::Socket,
            _ => FileType::RegularFile,
        }
    }

    /// The live entry `name` of `parent` no longer names `ino` (whose link
    /// count drops): the caller logs the change.
    fn drop_link(&mut self, ino: Ino) {
        match self.inodes.get_mut(&ino).map(|i| &mut i.body) {
            Some(Body::File(f)) => f.nlink = f.nlink.saturating_sub(1),
            Some(Body::Socket(nlink)) => *nlink = nlink.saturating_sub(1),
            _ => {}
        }
        if let Ok(i) = self.inode_mut(ino) {
            i.meta.ctime = SystemTime::now();
        }
    }

    fn unlink(&mut self, parent: Ino, name: &OsStr, want_dir: bool) -> Res<()> {
        let ino = self.lookup(parent, name)?;
        match (want_dir, self.is_dir(ino)) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if !self.dir(ino)?.live.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let p = self.dir_mut(parent)?;
        p.live.remove(name);
        p.log.push(DirOp::Unlink {
            name: name.to_owned(),
        });
        self.inode_mut(parent)?.meta.touch();
        self.drop_link(ino);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        check_name(newname)?;
        let ino = self.lookup(parent, name)?;
        self.dir(newparent)?;
        let replaced = self.dir(newparent)?.live.get(newname).copied();
        if let Some(old) = replaced {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            match (self.is_dir(ino), self.is_dir(old)) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !self.dir(old)?.live.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        if parent == newparent {
            let p = self.dir_mut(parent)?;
            p.live.remove(name);
            p.live.insert(newname.to_owned(), ino);
            p.log.push(DirOp::Rename {
                from: name.to_owned(),
                to: newname.to_owned(),
                ino,
            });
        } else {
            let p = self.dir_mut(parent)?;
            p.live.remove(name);
            p.log.push(DirOp::Unlink {
                name: name.to_owned(),
            });
            let np = self.dir_mut(newparent)?;
            np.live.insert(newname.to_owned(), ino);
            np.log.push(DirOp::Link {
                name: newname.to_owned(),
                ino,
            });
            self.inode_mut(newparent)?.meta.touch();
            if let Ok(d) = self.dir_mut(ino) {
                d.parent = newparent;
            }
        }
        self.inode_mut(parent)?.meta.touch();
        self.inode_mut(ino)?.meta.ctime = SystemTime::now();
        if let Some(old) = replaced {
            self.drop_link(old);
        }
        Ok(())
    }

    fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Res<()> {
        let inode = self.inode_mut(ino)?;
        let Body::File(f) = &mut inode.body else {
            return Err(Errno::EISDIR);
        };
        write_at(&mut f.live, offset, data);
        f.pending.push(Pending::Write {
            offset,
            data: data.to_vec(),
        });
        inode.meta.touch();
        Ok(())
    }

    fn set_len(&mut self, ino: Ino, len: u64) -> Res<()> {
        let inode = self.inode_mut(ino)?;
        let Body::File(f) = &mut inode.body else {
            return Err(Errno::EISDIR);
        };
        f.live.resize(to_usize(len), 0);
        f.pending.push(Pending::SetLen(len));
        inode.meta.touch();
        Ok(())
    }

    /// `fsync`/`fdatasync`: the file's live content becomes durable.
    fn fsync(&mut self, ino: Ino) -> Res<()> {
        let f = self.file_mut(ino)?;
        // Replaying what is pending costs what was written since the last
        // fsync, not the size of the file.
        let pending = std::mem::take(&mut f.pending);
        for op in &pending {
            op.apply(&mut f.durable);
        }
        debug_assert!(f.durable == f.live);
        self.fsyncs += 1;
        Ok(())
    }

    /// Counts an `fsync` of `ino` if its name is the watched one; true
    /// when it is the one the power goes off at (it does not happen).
    fn watched_fsync_trips(&mut self, ino: Ino) -> bool {
        let Some((name, _, _)) = &self.watch else {
            return false;
        };
        let named = self.inodes.values().any(|i| match &i.body {
            Body::Dir(d) => d.live.get(name) == Some(&ino),
            _ => false,
        });
        let Some((_, seen, off_at)) = self.watch.as_mut().filter(|_| named) else {
            return false;
        };
        *seen += 1;
        *off_at == Some(*seen)
    }

    /// `fsync` of a directory: its live entries become durable.
    fn fsyncdir(&mut self, ino: Ino) -> Res<()> {
        let d = self.dir_mut(ino)?;
        d.durable = d.live.clone();
        d.log.clear();
        self.dir_fsyncs += 1;
        Ok(())
    }

    // -- the cut ------------------------------------------------------------

    /// Writes into `out` what the disk holds after a cut now.
    fn cut<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        options: &CutOptions,
        out: &Path,
    ) -> io::Result<CutReport> {
        let mut report = CutReport {
            fsyncs: self.fsyncs,
            dir_fsyncs: self.dir_fsyncs,
            ..CutReport::default()
        };
        // Each directory's entries on the disk: durable, plus a prefix of
        // its log.
        let mut entries: BTreeMap<Ino, BTreeMap<OsString, Ino>> = BTreeMap::new();
        for (&ino, inode) in &self.inodes {
            let Body::Dir(d) = &inode.body else { continue };
            let kept = match options.metadata {
                MetadataCut::Nothing => 0,
                MetadataCut::Everything => d.log.len(),
                MetadataCut::RandomPrefix => rng.gen_range(0..=d.log.len()),
            };
            let mut on_disk = d.durable.clone();
            for op in &d.log[..kept] {
                op.apply(&mut on_disk);
            }
            report.dir_ops_kept += kept as u64;
            report.dir_ops_dropped += (d.log.len() - kept) as u64;
            entries.insert(ino, on_disk);
        }
        // What is reachable from the root (a directory reached twice, as
        // renames across directories can leave, is written once).
        let mut dirs = BTreeSet::new();
        let mut files = BTreeSet::new();
        let mut todo = vec![ROOT];
        dirs.insert(ROOT);
        while let Some(dir) = todo.pop() {
            for &child in entries[&dir].values() {
                let kind = self.kind(child);
                if kind == FileType::RegularFile {
                    files.insert(child);
                } else if kind == FileType::Directory && dirs.insert(child) {
                    todo.push(child);
                }
            }
        }
        // Each reachable file's content on the disk.
        let mut contents: BTreeMap<Ino, Vec<u8>> = BTreeMap::new();
        for &ino in &files {
            let Body::File(f) = &self.inodes[&ino].body else {
                unreachable!("files holds files")
            };
            let content = cut_file(f, rng, options, &mut report);
            if content != f.live {
                report.files_changed += 1;
            }
            contents.insert(ino, content);
        }
        report.missing = self.missing(&entries);
        // Write it all out.
        fs::create_dir_all(out)?;
        if fs::read_dir(out)?.next().is_some() {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{out:?} is not empty"),
            ));
        }
        let mut written = BTreeSet::new();
        self.write_dir(ROOT, out, &entries, &contents, &mut written, &mut report)?;
        Ok(report)
    }

    /// The live paths that have no entry on the disk after the cut.
    fn missing(&self, entries: &BTreeMap<Ino, BTreeMap<OsString, Ino>>) -> Vec<PathBuf> {
        let mut missing = Vec::new();
        // (live dir, its counterpart on the disk if any, path)
        let mut todo = vec![(ROOT, Some(ROOT), PathBuf::new())];
        let mut seen = BTreeSet::new();
        while let Some((dir, on_disk, path)) = todo.pop() {
            if !seen.insert(dir) {
                continue;
            }
            let Ok(d) = self.dir(dir) else { continue };
            for (name, &child) in &d.live {
                let child_path = path.join(name);
                let disk_child = on_disk.and_then(|o| entries[&o].get(name).copied());
                if disk_child.is_none() {
                    missing.push(child_path.clone());
                }
                if self.is_dir(child) {
                    let disk_dir = disk_child.filter(|&c| self.is_dir(c));
                    todo.push((child, disk_dir, child_path));
                }
            }
        }
        missing.sort();
        missing
    }

    fn write_dir(
        &self,
        ino: Ino,
        path: &Path,
        entries: &BTreeMap<Ino, BTreeMap<OsString, Ino>>,
        contents: &BTreeMap<Ino, Vec<u8>>,
        written: &mut BTreeSet<Ino>,
        report: &mut CutReport,
    ) -> io::Result<()> {
        written.insert(ino);
        report.dirs += 1;
        for (name, &child) in &entries[&ino] {
            let child_path = path.join(name);
            let meta = &self.inodes[&child].meta;
            match self.kind(child) {
                FileType::Directory => {
                    if written.contains(&child) {
                        continue;
                    }
                    fs::create_dir(&child_path)?;
                    self.write_dir(child, &child_path, entries, contents, written, report)?;
                }
                FileType::Socket => {
                    // Bound and closed: a stale socket file, as a reboot
                    // leaves one.
                    drop(std::os::unix::net::UnixListener::bind(&child_path)?);
                    set_owner_and_mode(&child_path, meta)?;
                }
                _ => {
                    fs::write(&child_path, &contents[&child])?;
                    report.files += 1;
                    set_meta(&child_path, meta)?;
                }
            }
        }
        set_meta(path, &self.inodes[&ino].meta)
    }
}

/// The content of `f` on the disk after a cut: durable, plus the fate the
/// rng draws for each pending operation.
fn cut_file<R: Rng + ?Sized>(
    f: &FileData,
    rng: &mut R,
    options: &CutOptions,
    report: &mut CutReport,
) -> Vec<u8> {
    let mut content = f.durable.clone();
    for op in &f.pending {
        match op {
            Pending::SetLen(_) => {
                if draw(rng, options.set_len_applied) {
                    op.apply(&mut content);
                    report.set_lens_applied += 1;
                } else {
                    report.set_lens_dropped += 1;
                }
            }
            Pending::Write { offset, data } => {
                // Certain outcomes draw nothing: those options are
                // deterministic.
                let roll: f64 = if options.write_applied >= 1.0 {
                    0.0
                } else if options.write_applied + options.write_torn <= 0.0 {
                    1.0
                } else {
                    rng.gen_range(0.0..1.0)
                };
                if roll < options.write_applied {
                    op.apply(&mut content);
                    report.writes_applied += 1;
                } else if roll < options.write_applied + options.write_torn {
                    report.writes_torn += 1;
                    report.bytes_lost += tear(&mut content, *offset, data, rng);
                } else {
                    report.writes_dropped += 1;
                    report.bytes_lost += data.len() as u64;
                }
            }
        }
    }
    content
}

/// A draw with probability `p`; certain outcomes draw nothing.
fn draw<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.gen_bool(p)
    }
}

/// Applies the sectors of a write that the rng keeps (each with
/// probability 1/2; sectors aligned on file offsets). Returns the bytes lost.
fn tear<R: Rng + ?Sized>(content: &mut Vec<u8>, offset: u64, data: &[u8], rng: &mut R) -> u64 {
    let end = offset + data.len() as u64;
    let mut lost = 0;
    let mut at = offset;
    while at < end {
        let sector_end = ((at / SECTOR) + 1) * SECTOR;
        let piece_end = sector_end.min(end);
        let piece = &data[to_usize(at - offset)..to_usize(piece_end - offset)];
        if rng.gen_bool(0.5) {
            write_at(content, at, piece);
        } else {
            lost += piece.len() as u64;
        }
        at = piece_end;
    }
    lost
}

fn set_owner_and_mode(path: &Path, meta: &Meta) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if (md.uid(), md.gid()) != (meta.uid, meta.gid) {
        std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(meta.perm))
}

fn set_meta(path: &Path, meta: &Meta) -> io::Result<()> {
    set_owner_and_mode(path, meta)?;
    let times = FileTimes::new()
        .set_accessed(meta.atime)
        .set_modified(meta.mtime);
    // A directory opens read-only, which is enough to set its times.
    File::open(path)?.set_times(times)
}

fn check_name(name: &OsStr) -> Res<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// FUSE: each request, under the lock, fails with EIO once the power is off.

struct Fuse {
    shared: Arc<Shared>,
}

impl Fuse {
    /// Runs `f` on the model, unless the power is off (EIO).
    fn with<T>(&self, f: impl FnOnce(&mut Model) -> Res<T>) -> Res<T> {
        let mut model = self.shared.lock();
        if self.shared.off.load(Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        f(&mut model)
    }
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for Fuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.with(|m| m.attr(m.lookup(parent.0, name)?)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(|m| m.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.with(|m| {
            if let Some(size) = size {
                m.set_len(ino.0, size)?;
            }
            let meta = &mut m.inode_mut(ino.0)?.meta;
            if let Some(mode) = mode {
                meta.perm = mode & 0o7777;
            }
            if let Some(uid) = uid {
                meta.uid = uid;
            }
            if let Some(gid) = gid {
                meta.gid = gid;
            }
            if let Some(t) = atime {
                meta.atime = time_of(t);
            }
            if let Some(t) = mtime {
                meta.mtime = time_of(t);
            }
            meta.ctime = SystemTime::now();
            m.attr(ino.0)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let result = self.with(|m| {
            let kind = match mode & libc::S_IFMT {
                libc::S_IFREG => NewKind::File,
                libc::S_IFSOCK => NewKind::Socket,
                // Not modelled: devices and FIFOs.
                _ => return Err(Errno::EPERM),
            };
            let meta = Meta::new(mode & !umask, req.uid(), req.gid());
            let ino = m.create(parent.0, name, meta, kind)?;
            m.attr(ino)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.with(|m| {
            let meta = Meta::new(mode & !umask, req.uid(), req.gid());
            let ino = m.create(parent.0, name, meta, NewKind::Dir)?;
            m.attr(ino)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|m| m.unlink(parent.0, name, false)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|m| m.unlink(parent.0, name, true)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        // Not modelled: nothing under test makes symbolic links.
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.with(|m| m.rename(parent.0, name, newparent.0, newname, flags)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // Not modelled: nothing under test makes hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = self.with(|m| match m.inode(ino.0)?.body {
            Body::File(_) => {
                m.next_fh += 1;
                Ok(m.next_fh)
            }
            Body::Dir(_) => Err(Errno::EISDIR),
            Body::Socket(_) => Err(Errno::ENXIO),
        });
        match result {
            // Direct I/O: no page cache, every read and write comes here.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.with(|m| {
            if mode & libc::S_IFMT != libc::S_IFREG {
                return Err(Errno::EPERM);
            }
            let meta = Meta::new(mode & !umask, req.uid(), req.gid());
            let ino = m.create(parent.0, name, meta, NewKind::File)?;
            m.next_fh += 1;
            Ok((m.attr(ino)?, m.next_fh))
        });
        match result {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.with(|m| {
            let f = m.file_mut(ino.0)?;
            let start = to_usize(offset).min(f.live.len());
            let end = start.saturating_add(size as usize).min(f.live.len());
            Ok(f.live[start..end].to_vec())
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|m| m.write(ino.0, offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is buffered here: close(2) has nothing to do but fail
        // after the cut.
        match self.with(|_| Ok(())) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.with(|m| {
            if m.watched_fsync_trips(ino.0) {
                self.shared.off.store(true, Ordering::SeqCst);
                return Err(Errno::EIO);
            }
            m.fsync(ino.0)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = self.with(|m| {
            let d = m.dir(ino.0)?;
            let mut list = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (d.parent, FileType::Directory, OsString::from("..")),
            ];
            for (name, &child) in &d.live {
                list.push((child, m.kind(child), name.clone()));
            }
            m.next_fh += 1;
            let fh = m.next_fh;
            m.dir_handles.insert(fh, list);
            Ok(fh)
        });
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.with(|m| {
            let list = m.dir_handles.get(&fh.0).ok_or(Errno::EBADF)?;
            Ok(list
                .iter()
                .skip(to_usize(offset))
                .cloned()
                .collect::<Vec<_>>())
        });
        match result {
            Ok(rest) => {
                for (i, (ino, kind, name)) in rest.into_iter().enumerate() {
                    if reply.add(INodeNo(ino), offset + i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().dir_handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.with(|m| m.fsyncdir(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A roomy disk (16 GiB, a million inodes): nothing under test
        // should see it fill up.
        match self.with(|m| Ok(m.inodes.len() as u64)) {
            Ok(used) => {
                let blocks = 1 << 22;
                let files = 1 << 20;
                reply.statfs(
                    blocks,
                    blocks,
                    blocks,
                    files,
                    files.saturating_sub(used),
                    4096,
                    NAME_MAX as u32,
                    4096,
                )
            }
            Err(e) => reply.error(e),
        }
    }
}
