//! Source: tails Cowrie's `cowrie.json` from stored checkpoints, across
//! rotations, truncations and restarts, so that every line is read exactly
//! once into the queue.
//!
//! # Invariants
//!
//! - Only whole lines are handed out; a partial last line waits for its
//!   newline. A line longer than the cap is skipped (and counted) without
//!   being buffered whole; reading resumes after its newline.
//! - Every call does a bounded amount of work: one that has read
//!   [`STEP_BYTES`] without finding a line to hand out (it is skipping a
//!   line longer than the cap: a file of gigabytes without a newline)
//!   returns [`Step::Busy`], so that the caller looks at its stop request
//!   before it goes on. A line that never ends is skipped at the speed the
//!   file can be read, in such steps, up to the end of the file; there the
//!   tailer waits for its newline like for any incomplete line (polling,
//!   ~0 CPU), and reading resumes after it. Nothing is committed inside a
//!   skipped line: after a restart it is read (and skipped) again from the
//!   last checkpoint before it.
//! - A file is known by its identity ([`FileId`]): device, inode and a
//!   fingerprint of its first line (at most 256 bytes), never by its path. A
//!   new file under the same name, or a reused inode with other content, is
//!   never taken for the old one. Checkpoints are kept per identity.
//! - The tailer reads ahead of what is committed: the caller stores a chunk's
//!   addresses together with its checkpoint (one transaction) and then calls
//!   [`Tailer::commit`]; when storing failed it calls [`Tailer::rewind`]. The
//!   checkpoint never passes a line that was not queued.
//! - New data is found by polling (`fstat`, `stat`, one 256-byte read of
//!   the first line) every `poll_interval` when idle: ~0 CPU.
//!
//! # Rotation
//!
//! - **Rename** (Cowrie's `logtype = rotating`, logrotate `create`): when the
//!   path names another file, the old one keeps being read (a late line is
//!   not lost) until it has been idle for the grace period, and the new one
//!   is read from its start.
//! - **Copy and truncate** (logrotate `copytruncate`, with or without
//!   `compress`/`delaycompress`): a file that got shorter than what was read,
//!   or whose first line changed, was truncated. Its unread tail is read from
//!   the copy (a rotated file with the same fingerprint) if there is one,
//!   then the file again from its start. Lines written between logrotate's
//!   copy and its truncate are in neither file: that window is logrotate's.
//! - **While stopped**: at start, rotated files beside the log
//!   (`cowrie.json.*`, plain or `.gz`) whose fingerprint matches a checkpoint
//!   are read from that checkpoint to their end, and rotated files newer than
//!   them that were never seen are read whole, oldest first; then the live
//!   file.
//! - Checkpoints of files that no longer exist are pruned at start and after
//!   each rotation.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use migrations::v1::{Checkpoint, FileId};

use crate::config::StartAt;
use crate::errors::chain;
use crate::stats::{SkipReason, Stats};
use crate::store::{Store, StoreError};

/// Bytes read per chunk (and per transaction).
const CHUNK_BYTES: usize = 256 * 1024;
/// Bytes of the first line that make a file's fingerprint.
const FINGERPRINT_BYTES: usize = 256;
/// Most bytes one call of [`Tailer::next_step`] reads without finding a
/// line to hand out (skipping a line longer than the cap) before it returns
/// [`Step::Busy`]: a few milliseconds of reading from the page cache, a
/// fraction of a second from a slow disk.
pub const STEP_BYTES: u64 = 16 * CHUNK_BYTES as u64;

/// What one call of [`Tailer::next_step`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The chunk holds whole lines: store them, then [`Tailer::commit`].
    Chunk,
    /// Nothing new: look again after a poll interval.
    Idle,
    /// [`STEP_BYTES`] were read (into a line longer than the cap, which is
    /// being skipped) without a line to hand out: call again at once,
    /// unless asked to stop.
    Busy,
}

/// What reading from one file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// Whole lines, in the chunk.
    Lines,
    /// Its end.
    End,
    /// The step's budget ran out first.
    Busy,
}

/// Complete lines read from one file, and where they end.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Whole lines, each ending in `\n`.
    data: Vec<u8>,
    /// The file they come from.
    pub id: Option<FileId>,
    /// The path it was read under.
    pub path: String,
    /// Offset just after the last line (or skipped long line) of the chunk.
    pub end_offset: u64,
}

impl Chunk {
    /// The lines, without their newlines.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        lines_of(&self.data)
    }

    /// The lines, each with its newline.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The checkpoint to store with this chunk.
    pub fn checkpoint(&self, now_ms: u64) -> Option<(FileId, Checkpoint)> {
        self.id.map(|id| {
            (
                id,
                Checkpoint {
                    path: self.path.clone(),
                    offset: self.end_offset,
                    updated_at_ms: now_ms,
                },
            )
        })
    }
}

/// The lines of `data` (whole lines, each ending in `\n`), without their
/// newlines.
pub fn lines_of(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Only what ends in a newline counts (and only up to the last one).
    let body = match memchr::memrchr(b'\n', data) {
        Some(last) => &data[..=last],
        None => &[],
    };
    let mut start = 0;
    // memchr finds each newline with SIMD, instead of a byte at a time.
    memchr::memchr_iter(b'\n', body).map(move |end| {
        let line = &body[start..end];
        start = end + 1;
        line
    })
}

/// Errors of the source: they never stop the daemon, which logs and retries.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Queue(#[from] StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Bytes of an open input: a plain file, or a gzip-compressed rotated one.
#[derive(Debug)]
enum Src {
    Plain(File),
    Gz(Box<MultiGzDecoder<File>>),
}

/// One open input file and how far it has been read.
#[derive(Debug)]
struct Reader {
    path: PathBuf,
    src: Src,
    dev: u64,
    ino: u64,
    /// None while the first line is incomplete (nothing can be committed yet).
    id: Option<FileId>,
    /// After the last committed line.
    committed: u64,
    /// After the last byte read.
    read_pos: u64,
    /// Where the last handed-out chunk ends (committed on `commit`).
    handed_out: u64,
    /// The incomplete last line.
    lines: LineSplitter,
    /// Rotated readers: since when there has been nothing new.
    idle_since: Option<Instant>,
    /// Live reader: size and mtime at the last look at its end, reset when
    /// data is read.
    idle_look: Option<(u64, i64, i64)>,
}

impl Reader {
    /// Opens a plain file at `offset`.
    fn plain(path: &Path, mut file: File, id: Option<FileId>, offset: u64) -> io::Result<Reader> {
        let meta = file.metadata()?;
        file.seek(SeekFrom::Start(offset))?;
        let mut r = Reader::new(path, Src::Plain(file), meta.dev(), meta.ino(), id, offset);
        r.idle_look = Some((meta.len(), meta.mtime(), meta.mtime_nsec()));
        Ok(r)
    }

    /// Opens a gzip file and skips `offset` decompressed bytes.
    fn gz(path: &Path, id: FileId, offset: u64) -> io::Result<Reader> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let mut dec = MultiGzDecoder::new(file);
        let skipped = io::copy(&mut (&mut dec).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the compressed file is shorter than its checkpoint",
            ));
        }
        Ok(Reader::new(
            path,
            Src::Gz(Box::new(dec)),
            meta.dev(),
            meta.ino(),
            Some(id),
            offset,
        ))
    }

    fn new(path: &Path, src: Src, dev: u64, ino: u64, id: Option<FileId>, offset: u64) -> Reader {
        Reader {
            path: path.to_path_buf(),
            src,
            dev,
            ino,
            id,
            committed: offset,
            read_pos: offset,
            handed_out: offset,
            lines: LineSplitter::default(),
            idle_since: None,
            idle_look: None,
        }
    }

    fn is_gz(&self) -> bool {
        matches!(self.src, Src::Gz(_))
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.src {
            Src::Plain(f) => f.read(buf),
            Src::Gz(d) => d.read(buf),
        }
    }

    /// Splits `data` (just read) into whole lines appended to `chunk`.
    /// Returns true when the chunk got something to commit.
    fn take_lines(
        &mut self,
        data: &[u8],
        max_line: usize,
        stats: &Stats,
        chunk: &mut Chunk,
    ) -> bool {
        let start = self.read_pos;
        self.read_pos += data.len() as u64;
        match self.lines.push(data, max_line, stats, &mut chunk.data) {
            Some(consumed) => {
                self.handed_out = start + consumed as u64;
                true
            }
            None => false,
        }
    }

    /// Goes back to the committed offset.
    fn rewind(&mut self) -> io::Result<()> {
        match &mut self.src {
            Src::Plain(f) => {
                f.seek(SeekFrom::Start(self.committed))?;
            }
            Src::Gz(_) => {
                let id = self.id.expect("gz readers have an identity");
                let path = self.path.clone();
                *self = Reader::gz(&path, id, self.committed)?;
            }
        }
        self.read_pos = self.committed;
        self.handed_out = self.committed;
        self.lines = LineSplitter::default();
        Ok(())
    }
}

/// Cuts a byte stream into whole lines, holding back an incomplete last line
/// and skipping (without buffering) lines longer than the cap. Shared by the
/// file and socket inputs.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// Bytes of an incomplete last line.
    partial: Vec<u8>,
    /// Inside a line longer than the cap: drop bytes until its newline.
    discarding: bool,
}

impl LineSplitter {
    /// Appends the whole lines completed by `data` to `out`, each with its
    /// newline. Returns how many bytes of `data` that consumed (up to and
    /// including its last newline), or None when it held no newline.
    pub fn push(
        &mut self,
        data: &[u8],
        max_line: usize,
        stats: &Stats,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let consumed = memchr::memrchr(b'\n', data).map(|last| last + 1);
        let start = out.len();
        out.extend_from_slice(&self.partial);
        self.partial.clear();
        out.extend_from_slice(data);
        self.cut(out, start, max_line, stats);
        consumed
    }

    /// Reads up to `read_bytes` from `reader` straight into `chunk`, after
    /// the incomplete line held back, and leaves in `chunk` the whole lines
    /// [`LineSplitter::push`] would have appended to an empty one, without
    /// copying the data once more (`tjfwd replay`: that copy was a third of
    /// its reading thread's time). `chunk`'s content is replaced; the bytes
    /// it already has are reused, not zeroed again. Returns what `read`
    /// returned (0: the end of the stream).
    pub fn read_into(
        &mut self,
        reader: &mut dyn Read,
        chunk: &mut Vec<u8>,
        read_bytes: usize,
        max_line: usize,
        stats: &Stats,
    ) -> io::Result<usize> {
        let held = self.partial.len();
        if chunk.len() < held + read_bytes {
            chunk.resize(held + read_bytes, 0);
        }
        chunk[..held].copy_from_slice(&self.partial);
        let n = reader.read(&mut chunk[held..held + read_bytes]);
        chunk.truncate(held + *n.as_ref().unwrap_or(&0));
        self.partial.clear();
        self.cut(chunk, 0, max_line, stats);
        n
    }

    /// The splitting itself: `buf[start..]` is the incomplete line held
    /// back (already taken out of `partial`) followed by new data. Leaves
    /// there only the whole lines not longer than `max_line` (each with its
    /// newline), moves what follows the last newline back into `partial`,
    /// and counts each line skipped as too long once.
    fn cut(&mut self, buf: &mut Vec<u8>, start: usize, max_line: usize, stats: &Stats) {
        debug_assert!(self.partial.is_empty());
        let Some(last) = memchr::memrchr(b'\n', &buf[start..]).map(|i| start + i) else {
            // No newline: all of it is (still) an incomplete line.
            if !self.discarding {
                if buf.len() - start > max_line {
                    self.discarding = true;
                    skip_too_long(stats, max_line);
                } else {
                    self.partial.extend_from_slice(&buf[start..]);
                }
            }
            buf.truncate(start);
            return;
        };
        let mut keep = last + 1;
        // No line up to `last` can be too long when they are all shorter
        // together (the usual case: a read is smaller than the cap), nor
        // be skipped unless one is being discarded: then nothing moves.
        if self.discarding || last - start > max_line {
            // Drop those lines, moving the rest down over them.
            let (mut w, mut line) = (start, start);
            while let Some(i) = memchr::memchr(b'\n', &buf[line..=last]) {
                let end = line + i;
                if std::mem::take(&mut self.discarding) {
                    // The end of a line already counted as too long.
                } else if end - line > max_line {
                    skip_too_long(stats, max_line);
                } else {
                    if w != line {
                        buf.copy_within(line..=end, w);
                    }
                    w += end + 1 - line;
                }
                line = end + 1;
                if line > last {
                    break;
                }
            }
            keep = w;
        }
        // The rest (after the last newline) starts an incomplete line.
        if buf.len() - (last + 1) > max_line {
            self.discarding = true;
            skip_too_long(stats, max_line);
        } else {
            self.partial.extend_from_slice(&buf[last + 1..]);
        }
        buf.truncate(keep);
    }

    /// Bytes held back (an incomplete line).
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// At the end of a finished stream: hands out a last line that has no
    /// newline (a complete file may end without one).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        let had = !self.partial.is_empty() && !self.discarding;
        if had {
            out.extend_from_slice(&self.partial);
            out.push(b'\n');
        }
        self.partial.clear();
        self.discarding = false;
        had
    }
}

fn skip_too_long(stats: &Stats, max_line: usize) {
    stats.skip(SkipReason::TooLong, || {
        format!("a line longer than {max_line} bytes")
    });
}

/// Which reader the last chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    None,
    Rotated(usize),
    Live,
}

/// Follows one log path and the files rotated away from it.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    start_at: StartAt,
    max_line: usize,
    /// How long a rotated file must stay idle before it is closed.
    grace: Duration,
    /// Rotated files still to finish, oldest first.
    rotated: VecDeque<Reader>,
    /// The file the path names.
    live: Option<Reader>,
    current: Current,
    /// Whether the start-up scan of rotated files has run.
    scanned: bool,
    /// The live file got its identity (new content): scan again.
    rescan_pending: bool,
    /// Whether this is tjfwd's very first start on this input (start_at
    /// applies only then).
    first_run: bool,
    /// When tjfwd first started on this input (rotated files older than
    /// that, which no checkpoint names, predate it).
    since_ms: Option<u64>,
    /// Whether the next open of the path is the first of this run.
    first_open: bool,
    missing_logged: bool,
    buf: Vec<u8>,
}

impl Tailer {
    /// A tailer for `path`; nothing is opened yet.
    pub fn new(path: PathBuf, start_at: StartAt, max_line: usize) -> Tailer {
        Tailer {
            path,
            start_at,
            max_line,
            grace: Duration::from_secs(10),
            rotated: VecDeque::new(),
            live: None,
            current: Current::None,
            scanned: false,
            rescan_pending: false,
            first_run: false,
            since_ms: None,
            first_open: true,
            missing_logged: false,
            buf: vec![0; CHUNK_BYTES],
        }
    }

    /// Sets how long a rotated file must stay idle before it is closed
    /// (default 10 s).
    pub fn with_grace(mut self, grace: Duration) -> Tailer {
        self.grace = grace;
        self
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The committed position in the live file.
    pub fn position(&self) -> Option<u64> {
        self.live.as_ref().map(|r| r.committed)
    }

    /// Files open (rotated ones being finished, plus the live one).
    pub fn open_files(&self) -> usize {
        self.rotated.len() + usize::from(self.live.is_some())
    }

    /// Fills `chunk` with the next complete lines. Returns false when there is
    /// nothing new (the caller then waits a poll interval). Reads through a
    /// line longer than the cap without returning: a caller that must stop
    /// on request uses [`Tailer::next_step`].
    pub fn next_chunk(
        &mut self,
        queue: &Store,
        stats: &Stats,
        chunk: &mut Chunk,
        now_ms: u64,
    ) -> Result<bool, SourceError> {
        loop {
            match self.next_step(queue, stats, chunk, now_ms)? {
                Step::Chunk => return Ok(true),
                Step::Idle => return Ok(false),
                Step::Busy => {}
            }
        }
    }

    /// One bounded step (see the module doc): fills `chunk` with the next
    /// complete lines ([`Step::Chunk`]), or finds nothing new
    /// ([`Step::Idle`]), or reads [`STEP_BYTES`] of a line that is being
    /// skipped ([`Step::Busy`]).
    pub fn next_step(
        &mut self,
        queue: &Store,
        stats: &Stats,
        chunk: &mut Chunk,
        now_ms: u64,
    ) -> Result<Step, SourceError> {
        let mut budget = STEP_BYTES;
        chunk.data.clear();
        self.current = Current::None;
        if !self.scanned || self.rescan_pending {
            self.scan_rotated(queue, now_ms)?;
            self.scanned = true;
            self.rescan_pending = false;
        }
        // Hold the live file open from the start, even while older files are
        // read first: a rotation or truncation meanwhile is then noticed.
        let live_open = self.live.is_some() || {
            let first = self.first_open;
            let opened = self.open_live(queue, stats, now_ms)?;
            if opened && !first {
                // The path had no file: files may have come and been
                // rotated away meanwhile.
                self.scan_rotated(queue, now_ms)?;
            }
            opened
        };
        // Rotated files first: they hold the older lines.
        let mut i = 0;
        while i < self.rotated.len() {
            match self.read_from(Current::Rotated(i), stats, chunk, &mut budget)? {
                Got::Lines => return Ok(Step::Chunk),
                Got::Busy => return Ok(Step::Busy),
                Got::End => {}
            }
            let r = &mut self.rotated[i];
            let idle = *r.idle_since.get_or_insert_with(Instant::now);
            if r.is_gz() || idle.elapsed() >= self.grace {
                if r.lines.pending() > 0 {
                    tracing::warn!(path = %r.path.display(), bytes = r.lines.pending(), "a rotated file ended in an incomplete line; it was dropped");
                }
                tracing::debug!(path = %r.path.display(), "finished a rotated file");
                self.rotated.remove(i);
                continue;
            }
            i += 1;
        }
        if !live_open {
            return Ok(Step::Idle);
        }
        loop {
            // Truncated (and maybe written again past our offset) since the
            // last look? Checked before and after reading, so that lines read
            // at an old offset of new content are never handed out.
            if let Some(len) = self.live_truncated()? {
                self.truncated(queue, stats, len, now_ms)?;
                continue;
            }
            match self.read_from(Current::Live, stats, chunk, &mut budget)? {
                Got::Lines => {
                    if let Some(len) = self.live_truncated()? {
                        chunk.data.clear();
                        self.current = Current::None;
                        self.truncated(queue, stats, len, now_ms)?;
                        continue;
                    }
                    return Ok(Step::Chunk);
                }
                Got::Busy => return Ok(Step::Busy),
                Got::End => {}
            }
            // At the end of the live file: rotated, or just idle?
            if !self.check_live(queue, stats, now_ms)? {
                return Ok(Step::Idle);
            }
        }
    }

    /// Some(size) when the live file got shorter than what was read, or its
    /// first line is not the one it had (truncated and written again).
    fn live_truncated(&self) -> Result<Option<u64>, SourceError> {
        let live = self.live.as_ref().expect("live is open");
        let Src::Plain(file) = &live.src else {
            unreachable!("the live file is plain")
        };
        let len = file.metadata().map_err(io_err(&self.path))?.len();
        let replaced = match live.id {
            Some(id) => identify(file, live.dev, live.ino)
                .map_err(io_err(&self.path))?
                .is_none_or(|now| now.fingerprint != id.fingerprint),
            // No complete line yet: everything read is the incomplete first
            // line held back, which must still be how the file starts.
            None if live.read_pos > 0 && !live.lines.discarding => {
                let held = &live.lines.partial[..live.lines.partial.len().min(FINGERPRINT_BYTES)];
                let mut now = vec![0u8; held.len()];
                let n = file.read_at(&mut now, 0).map_err(io_err(&self.path))?;
                n < held.len() || now != held
            }
            None => false,
        };
        Ok((len < live.read_pos || replaced).then_some(len))
    }

    fn reader(&mut self, which: Current) -> Option<&mut Reader> {
        match which {
            Current::None => None,
            Current::Rotated(i) => self.rotated.get_mut(i),
            Current::Live => self.live.as_mut(),
        }
    }

    /// Reads from one reader until it yields a line, has nothing more, or
    /// `budget` (bytes) is spent.
    fn read_from(
        &mut self,
        which: Current,
        stats: &Stats,
        chunk: &mut Chunk,
        budget: &mut u64,
    ) -> Result<Got, SourceError> {
        let max_line = self.max_line;
        let mut buf = std::mem::take(&mut self.buf);
        let mut rescan = false;
        let result = (|| {
            let Some(r) = self.reader(which) else {
                return Ok(Got::End);
            };
            loop {
                if *budget == 0 {
                    return Ok(Got::Busy);
                }
                let n = r.read(&mut buf).map_err(io_err(&r.path))?;
                if n == 0 {
                    return Ok(Got::End);
                }
                *budget = budget.saturating_sub(n as u64);
                r.idle_since = None;
                r.idle_look = None;
                if r.take_lines(&buf[..n], max_line, stats, chunk) {
                    if r.id.is_none() {
                        r.id = match &r.src {
                            Src::Plain(f) => identify(f, r.dev, r.ino).map_err(io_err(&r.path))?,
                            Src::Gz(_) => None,
                        };
                        // New content began: whatever came before it (and
                        // was rotated away unseen) is looked for next time.
                        rescan = which == Current::Live;
                    }
                    chunk.id = r.id;
                    chunk.path = r.path.to_string_lossy().into_owned();
                    chunk.end_offset = r.handed_out;
                    return Ok(Got::Lines);
                }
            }
        })();
        self.buf = buf;
        if matches!(result, Ok(Got::Lines)) {
            self.current = which;
        }
        self.rescan_pending |= rescan;
        result
    }

    /// Marks the last chunk as stored.
    pub fn commit(&mut self) {
        let which = self.current;
        if let Some(r) = self.reader(which) {
            r.committed = r.handed_out;
        }
    }

    /// Goes back to the last committed offset (the chunk was not stored).
    pub fn rewind(&mut self) -> Result<(), SourceError> {
        let which = self.current;
        if let Some(r) = self.reader(which) {
            r.rewind().map_err(io_err(&r.path.clone()))?;
        }
        Ok(())
    }

    /// At EOF of the live file: handles rotation. True when there may be
    /// more to read right away.
    fn check_live(
        &mut self,
        queue: &Store,
        stats: &Stats,
        now_ms: u64,
    ) -> Result<bool, SourceError> {
        let (dev, ino) = {
            let live = self.live.as_mut().expect("live is open");
            // Modified without growing since the last look (truncated and
            // written again, and maybe copied away, between two polls)?
            if let Src::Plain(f) = &live.src {
                let m = f.metadata().map_err(io_err(&self.path))?;
                let look = (m.len(), m.mtime(), m.mtime_nsec());
                if live.idle_look.is_some_and(|prev| prev != look) && look.0 == live.read_pos {
                    self.rescan_pending = true;
                }
                live.idle_look = Some(look);
            }
            (live.dev, live.ino)
        };
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == dev && m.ino() == ino => Ok(false),
            Ok(_) => {
                tracing::info!(path = %self.path.display(), "input file was rotated: finishing the old file, then reading the new one from its start");
                Stats::add(&stats.rotations, 1);
                let mut old = self.live.take().expect("live is open");
                old.idle_since = None;
                self.rotated.push_back(old);
                self.first_open = false;
                let opened = self.open_live(queue, stats, now_ms)?;
                self.scan_rotated(queue, now_ms)?;
                Ok(opened)
            }
            // Renamed away and not yet re-created, or deleted: keep the old one.
            Err(_) => Ok(false),
        }
    }

    /// The live file was truncated in place (copytruncate): finish its old
    /// content from the copy, if one is found, then read it from the start.
    fn truncated(
        &mut self,
        queue: &Store,
        stats: &Stats,
        len: u64,
        now_ms: u64,
    ) -> Result<(), SourceError> {
        let old = self.live.take().expect("live is open");
        tracing::warn!(path = %self.path.display(), size = len, offset = old.read_pos, "input file was truncated (copytruncate?): reading it again from the start");
        Stats::add(&stats.truncations, 1);
        let Src::Plain(mut file) = old.src else {
            unreachable!("the live file is plain")
        };
        file.seek(SeekFrom::Start(0)).map_err(io_err(&self.path))?;
        // Its new identity now, so that a rotated copy of the new content is
        // recognised as this file and not read twice.
        let id = identify(&file, old.dev, old.ino).map_err(io_err(&self.path))?;
        self.live = Some(Reader::new(
            &self.path,
            Src::Plain(file),
            old.dev,
            old.ino,
            id,
            0,
        ));
        if let Some(old_id) = old.id {
            // The copy has the old first line: read what we had not read.
            if let Some(copy) = self.find_copy(old_id, old.committed)? {
                tracing::info!(path = %copy.path.display(), offset = old.committed, "reading the rest of the truncated file from its copy");
                self.rotated.push_back(copy);
            }
        }
        self.scan_rotated(queue, now_ms)
    }

    /// A rotated file whose first line is `old`'s, to read from `offset`.
    fn find_copy(&self, old: FileId, offset: u64) -> Result<Option<Reader>, SourceError> {
        for c in self.candidates()? {
            if c.id.fingerprint == old.fingerprint && (c.gz || c.len >= offset) {
                return Ok(Some(c.open(offset).map_err(io_err(&c.path))?));
            }
        }
        Ok(None)
    }

    /// Rotated files beside the live one (`<name>.*`), oldest first, with
    /// their identities. Unreadable or not-yet-identifiable ones are skipped.
    fn candidates(&self) -> Result<Vec<Candidate>, SourceError> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(Vec::new());
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let fname = entry.file_name().to_string_lossy().into_owned();
            if !fname.starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let gz = fname.ends_with(".gz");
            let id = if gz {
                identify_gz(&path, meta.dev(), meta.ino())
            } else {
                File::open(&path).and_then(|f| identify(&f, meta.dev(), meta.ino()))
            };
            match id {
                Ok(Some(id)) => out.push(Candidate {
                    path,
                    id,
                    gz,
                    len: meta.len(),
                    mtime_ms: (meta.mtime().max(0) as u64) * 1000
                        + meta.mtime_nsec() as u64 / 1_000_000,
                }),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %chain(&e), "cannot read a rotated file; it is skipped");
                }
            }
        }
        out.sort_by(|a, b| {
            a.mtime_ms
                .cmp(&b.mtime_ms)
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(out)
    }

    /// Queues the unread parts of rotated files (see the module docs): at
    /// start, and again after each rotation or truncation, which also catches
    /// files rotated away before tjfwd ever looked at them.
    fn scan_rotated(&mut self, queue: &Store, now_ms: u64) -> Result<(), SourceError> {
        let since_ms = match self.since_ms {
            Some(t) => t,
            None => {
                let stored = queue.input_since(now_ms)?;
                // The very first start: start_at decides, rotated files predate us.
                self.first_run = stored.is_none();
                let t = stored.unwrap_or(now_ms);
                self.since_ms = Some(t);
                if self.first_run {
                    return Ok(());
                }
                t
            }
        };
        let checkpoints = queue.checkpoints()?;
        // Files already being read, under any name (a hard link, a copy or a
        // compressed version of an open file is not read twice).
        let mut open: Vec<(u64, u64)> = self.open_readers().map(|r| (r.dev, r.ino)).collect();
        let open_fps: Vec<u64> = self
            .open_readers()
            .filter_map(|r| r.id.map(|i| i.fingerprint))
            .collect();
        if let Ok(m) = std::fs::metadata(&self.path) {
            open.push((m.dev(), m.ino()));
        }
        for c in self.candidates()? {
            if open.contains(&(c.id.dev, c.id.ino)) || open_fps.contains(&c.id.fingerprint) {
                continue;
            }
            let offset = match resume_offset(&checkpoints, &c.id) {
                Some(offset) => offset,
                // Never seen, but written since tjfwd started watching.
                None if c.mtime_ms >= since_ms => 0,
                None => continue,
            };
            if !c.gz && offset >= c.len {
                continue; // read to its end before
            }
            if c.gz && offset > 0 && gz_isize(&c.path).ok().flatten() == Some(offset as u32) {
                continue; // read to its end before (ISIZE is the length mod 2^32)
            }
            match c.open(offset) {
                Ok(r) => {
                    tracing::info!(path = %c.path.display(), offset, "reading the unread part of a rotated file");
                    self.rotated.push_back(r);
                }
                Err(e) => {
                    tracing::warn!(path = %c.path.display(), error = %chain(&e), "cannot read a rotated file; it is skipped")
                }
            }
        }
        self.prune_checkpoints(queue)
    }

    fn open_readers(&self) -> impl Iterator<Item = &Reader> {
        self.rotated.iter().chain(self.live.iter())
    }

    /// Deletes the checkpoints of files that no longer exist (by fingerprint:
    /// a rotated copy keeps its original's checkpoint).
    fn prune_checkpoints(&self, queue: &Store) -> Result<(), SourceError> {
        let mut alive: Vec<u64> = self
            .candidates()?
            .iter()
            .map(|c| c.id.fingerprint)
            .collect();
        alive.extend(
            self.open_readers()
                .filter_map(|r| r.id.map(|i| i.fingerprint)),
        );
        if let Ok(f) = open_tailable(&self.path) {
            if let Ok(m) = f.metadata() {
                if let Ok(Some(id)) = identify(&f, m.dev(), m.ino()) {
                    alive.push(id.fingerprint);
                }
            }
        }
        for (id, c) in queue.checkpoints()? {
            if !alive.contains(&id.fingerprint) {
                tracing::debug!(path = %c.path, offset = c.offset, "pruning the checkpoint of a file that is gone");
                queue.remove_checkpoint(&id)?;
            }
        }
        Ok(())
    }

    /// Opens the path if it exists, positioned at its checkpoint.
    fn open_live(
        &mut self,
        queue: &Store,
        stats: &Stats,
        now_ms: u64,
    ) -> Result<bool, SourceError> {
        let file = match open_tailable(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A file that appears after we started is new: start_at
                // ("end") only applies to a file that was already there.
                self.first_open = false;
                if !self.missing_logged {
                    tracing::warn!(path = %self.path.display(), "input file does not exist (yet): waiting for it");
                    self.missing_logged = true;
                }
                return Ok(false);
            }
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        self.missing_logged = false;
        let meta = file.metadata().map_err(io_err(&self.path))?;
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let id = identify(&file, dev, ino).map_err(io_err(&self.path))?;
        let stored = match &id {
            Some(id) => resume_offset(&queue.checkpoints()?, id),
            None => None,
        };
        let first_ever = self.first_open && self.first_run;
        let mut offset = match (stored, first_ever, self.start_at) {
            (Some(offset), _, _) => offset,
            (None, true, StartAt::End) => {
                last_line_end(&file, len, self.max_line).map_err(io_err(&self.path))?
            }
            _ => 0,
        };
        if offset > len {
            tracing::warn!(path = %self.path.display(), size = len, checkpoint = offset, "input file is shorter than its checkpoint (truncated): reading it from the start");
            Stats::add(&stats.truncations, 1);
            offset = 0;
        }
        if let (Some(id), None) = (&id, stored) {
            // Remember where we start, so a restart does not skip or repeat.
            queue.set_checkpoint(
                id,
                &Checkpoint {
                    path: self.path.to_string_lossy().into_owned(),
                    offset,
                    updated_at_ms: now_ms,
                },
            )?;
            if first_ever {
                // Where the very first start begins (start_at, and when it
                // started) is durable before anything is read: a power cut
                // now must not make the next start choose "end" again, later.
                queue.flush()?;
            }
        }
        tracing::info!(path = %self.path.display(), offset, size = len, "reading input file");
        self.first_open = false;
        self.live = Some(Reader::plain(&self.path, file, id, offset).map_err(io_err(&self.path))?);
        Ok(true)
    }
}

/// A rotated file found beside the live one.
#[derive(Debug)]
struct Candidate {
    path: PathBuf,
    id: FileId,
    gz: bool,
    /// Size on disk (compressed for gz).
    len: u64,
    /// Modification time, ms since the epoch.
    mtime_ms: u64,
}

impl Candidate {
    fn open(&self, offset: u64) -> io::Result<Reader> {
        if self.gz {
            Reader::gz(&self.path, self.id, offset)
        } else {
            Reader::plain(
                &self.path,
                open_tailable(&self.path)?,
                Some(self.id),
                offset,
            )
        }
    }
}

/// Where to resume a file: the furthest checkpoint with its fingerprint.
/// Files that share a first line are one stream of content (a file, its
/// renamed, copied or compressed versions), while device and inode are not
/// to be trusted alone: a deleted file's inode is soon reused.
fn resume_offset(checkpoints: &[(FileId, Checkpoint)], id: &FileId) -> Option<u64> {
    checkpoints
        .iter()
        .filter(|(k, _)| k.fingerprint == id.fingerprint)
        .map(|(_, c)| c.offset)
        .max()
}

/// The fingerprint of a first line (or of the first 256 bytes of a longer
/// one); None while the first line is incomplete and shorter than that.
fn fingerprint_of(head: &[u8]) -> Option<u64> {
    match head.iter().position(|&b| b == b'\n') {
        Some(i) => Some(migrations::fnv1a64(&head[..i])),
        None if head.len() >= FINGERPRINT_BYTES => {
            Some(migrations::fnv1a64(&head[..FINGERPRINT_BYTES]))
        }
        None => None,
    }
}

/// Opens the input file at `path` for tailing, refusing what cannot be
/// tailed: a FIFO, a device, a socket or a directory (opened without
/// blocking: a FIFO's open would wait for a writer forever, and with it the
/// thread that opened it).
pub fn open_tailable(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let kind = f.metadata()?.file_type();
    if kind.is_file() {
        return Ok(f);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "it is {what}: tjfwd tails a regular file (Cowrie's cowrie.json); to stream \
             events, use [input] listen_tcp with Cowrie's socketlog output"
        ),
    ))
}

/// The identity of the file at `path` (None while its first line is
/// incomplete).
pub fn identify_path(path: &Path) -> io::Result<Option<FileId>> {
    let f = open_tailable(path)?;
    let m = f.metadata()?;
    identify(&f, m.dev(), m.ino())
}

/// The identity of a plain file, or None while its first line is incomplete
/// and shorter than the fingerprint length.
fn identify(file: &File, dev: u64, ino: u64) -> io::Result<Option<FileId>> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut got = 0;
    while got < FINGERPRINT_BYTES {
        let n = file.read_at(&mut head[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
        if head[..got].contains(&b'\n') {
            break;
        }
    }
    Ok(fingerprint_of(&head[..got]).map(|fingerprint| FileId {
        dev,
        ino,
        fingerprint,
    }))
}

/// The identity of a gzip file: its device and inode, and the fingerprint
/// of its decompressed first line.
fn identify_gz(path: &Path, dev: u64, ino: u64) -> io::Result<Option<FileId>> {
    let mut dec = MultiGzDecoder::new(File::open(path)?);
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    (&mut dec)
        .take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(fingerprint_of(&head).map(|fingerprint| FileId {
        dev,
        ino,
        fingerprint,
    }))
}

/// The ISIZE field of a gzip file's last member (length mod 2^32).
fn gz_isize(path: &Path) -> io::Result<Option<u32>> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    if len < 18 {
        return Ok(None);
    }
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, len - 4)?;
    Ok(Some(u32::from_le_bytes(b)))
}

/// Where `start_at = "end"` starts in the first `len` bytes of a file:
/// just after the last newline (0 if none). Looks back at most `max_line +
/// 1` bytes, so that a file of gigabytes without a newline is not read
/// back to its start: when the last line began further back, it is longer
/// than the cap, and starting `max_line + 1` bytes before the end skips it
/// all the same (those bytes hold no newline: the tailer drops them as a
/// line too long, counted once, and resumes after the next newline).
fn last_line_end(file: &File, len: u64, max_line: usize) -> io::Result<u64> {
    let floor = len.saturating_sub(max_line as u64 + 1);
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > floor {
        let start = end.saturating_sub(buf.len() as u64).max(floor);
        let part = &mut buf[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(i) = memchr::memrchr(b'\n', part) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Policy;
    use std::io::Write;

    struct T {
        dir: tempfile::TempDir,
        queue: Store,
        stats: Stats,
    }

    fn setup() -> T {
        let dir = tempfile::tempdir().unwrap();
        let queue = Store::open(
            &dir.path().join("state"),
            1 << 20,
            &[crate::store::TargetSpec {
                name: "threatjammer".into(),
                policy: Policy {
                    ttl_ms: 1000,
                    rereport_after_ms: 0,
                },
            }],
        )
        .unwrap();
        T {
            dir,
            queue,
            stats: Stats::default(),
        }
    }

    impl T {
        fn log(&self) -> PathBuf {
            self.dir.path().join("cowrie.json")
        }
        fn append(&self, p: &Path, s: &str) {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
                .write_all(s.as_bytes())
                .unwrap();
        }
        /// Reads and commits everything available; returns the lines.
        fn drain(&self, t: &mut Tailer) -> Vec<String> {
            let mut out = Vec::new();
            let mut chunk = Chunk::default();
            while t
                .next_chunk(&self.queue, &self.stats, &mut chunk, 1)
                .unwrap()
            {
                out.extend(
                    chunk
                        .lines()
                        .map(|l| String::from_utf8_lossy(l).into_owned()),
                );
                let (id, c) = chunk.checkpoint(1).unwrap();
                self.queue.enqueue(&[], Some((&id, &c)), 1).unwrap();
                t.commit();
            }
            out
        }
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let t = setup();
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000);
        t.append(&t.log(), "first line\nsecond ha");
        assert_eq!(t.drain(&mut tl), ["first line"]);
        assert_eq!(t.drain(&mut tl), Vec::<String>::new());
        t.append(&t.log(), "lf\n");
        assert_eq!(t.drain(&mut tl), ["second half"]);
        assert_eq!(tl.position(), Some(23));
    }

    #[test]
    fn long_lines_are_skipped_and_reading_resumes_after_them() {
        let t = setup();
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 10);
        t.append(&t.log(), "short\n");
        t.append(&t.log(), &"x".repeat(25));
        assert_eq!(t.drain(&mut tl), ["short"]);
        t.append(&t.log(), &"y".repeat(5));
        t.append(&t.log(), "\nafter\n0123456789abc\nlast\n");
        assert_eq!(t.drain(&mut tl), ["after", "last"]);
        assert_eq!(t.stats.skipped(SkipReason::TooLong), 2);
    }

    /// A line that does not end (here 256 MiB of a sparse file without a
    /// newline, as a 20 GB one would be) is read in bounded steps: each
    /// call returns after at most STEP_BYTES (plus one read), so a caller
    /// that must stop can; the line is skipped, counted once, and the
    /// lines after it are handed out.
    #[test]
    fn a_line_that_does_not_end_is_skipped_in_bounded_steps() {
        let t = setup();
        let size: u64 = 256 << 20;
        t.append(&t.log(), "before\n");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(t.log())
            .unwrap();
        f.set_len(size).unwrap();
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1024);
        let mut chunk = Chunk::default();
        let mut step = |tl: &mut Tailer| tl.next_step(&t.queue, &t.stats, &mut chunk, 1).unwrap();
        assert_eq!(step(&mut tl), Step::Chunk);
        tl.commit();
        let mut busy = 0u64;
        let got = loop {
            match step(&mut tl) {
                Step::Busy => busy += 1,
                other => break other,
            }
        };
        assert_eq!(got, Step::Idle, "the end of the file: wait for the newline");
        // Each step read at most its budget and one more read, and the
        // budget is small: a step is short even from a slow disk.
        const { assert!(STEP_BYTES <= 16 << 20) };
        let most = STEP_BYTES + CHUNK_BYTES as u64;
        assert!(busy >= size / most, "{busy} steps for {size} bytes");
        assert_eq!(t.stats.skipped(SkipReason::TooLong), 1);
        assert_eq!(tl.position(), Some(7), "nothing committed inside the line");
        // The line ends: what follows is read.
        t.append(&t.log(), "\nafter\n");
        assert_eq!(t.drain(&mut tl), ["after"]);
        assert_eq!(tl.position(), Some(size + 7));
        assert_eq!(t.stats.skipped(SkipReason::TooLong), 1);
    }

    /// `start_at = "end"` on a file that ends in a line longer than the cap
    /// looks back at most the cap (not through the whole file) and skips
    /// that line, as it would have from its start.
    #[test]
    fn start_at_end_does_not_read_back_through_a_line_too_long() {
        let t = setup();
        t.append(&t.log(), &format!("old\n{}", "x".repeat(5000)));
        let f = File::open(t.log()).unwrap();
        assert_eq!(last_line_end(&f, 4, 1024).unwrap(), 4);
        assert_eq!(last_line_end(&f, 5004, 1024).unwrap(), 5004 - 1025);
        assert_eq!(last_line_end(&f, 1000, 1024).unwrap(), 4);
        let mut tl = Tailer::new(t.log(), StartAt::End, 1024);
        assert_eq!(t.drain(&mut tl), Vec::<String>::new());
        t.append(&t.log(), "yz\nnew\n");
        assert_eq!(t.drain(&mut tl), ["new"]);
        assert_eq!(t.stats.skipped(SkipReason::TooLong), 1);
    }

    #[test]
    fn restart_resumes_at_the_checkpoint_and_start_at_end_skips_old_lines_once() {
        let t = setup();
        t.append(&t.log(), "old 1\nold 2\npartial");
        let mut tl = Tailer::new(t.log(), StartAt::End, 1000);
        assert_eq!(t.drain(&mut tl), Vec::<String>::new());
        t.append(&t.log(), " done\nnew 1\n");
        assert_eq!(t.drain(&mut tl), ["partial done", "new 1"]);
        t.append(&t.log(), "new 2\n");
        // A new process (same database): the checkpoint wins over start_at.
        let mut tl = Tailer::new(t.log(), StartAt::End, 1000);
        assert_eq!(t.drain(&mut tl), ["new 2"]);
    }

    #[test]
    fn an_uncommitted_chunk_is_read_again_after_rewind() {
        let t = setup();
        t.append(&t.log(), "a\nb\n");
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000);
        let mut chunk = Chunk::default();
        assert!(tl.next_chunk(&t.queue, &t.stats, &mut chunk, 1).unwrap());
        tl.rewind().unwrap();
        assert_eq!(t.drain(&mut tl), ["a", "b"]);
    }

    #[test]
    fn rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
        let t = setup();
        let rotated = t.dir.path().join("cowrie.json.2026-11-24");
        t.append(&t.log(), "day 1 a\n");
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000);
        assert_eq!(t.drain(&mut tl), ["day 1 a"]);
        t.append(&t.log(), "day 1 b\n");
        std::fs::rename(t.log(), &rotated).unwrap();
        // Renamed away, not yet re-created: no stall, no error.
        assert_eq!(t.drain(&mut tl), ["day 1 b"]);
        t.append(&rotated, "day 1 late\n");
        t.append(&t.log(), "day 2 a\n");
        assert_eq!(t.drain(&mut tl), ["day 1 late", "day 2 a"]);
        assert_eq!(Stats::get(&t.stats.rotations), 1);
        // Both files have checkpoints under their own identities.
        assert_eq!(t.queue.checkpoints().unwrap().len(), 2);
    }

    #[test]
    fn truncation_restarts_at_the_beginning() {
        let t = setup();
        t.append(&t.log(), "one\ntwo\n");
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000);
        assert_eq!(t.drain(&mut tl), ["one", "two"]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.log())
            .unwrap()
            .set_len(0)
            .unwrap();
        t.append(&t.log(), "3\n");
        assert_eq!(t.drain(&mut tl), ["3"]);
        assert_eq!(Stats::get(&t.stats.truncations), 1);
    }

    #[test]
    fn a_missing_file_is_waited_for() {
        let t = setup();
        let mut tl = Tailer::new(t.log(), StartAt::End, 1000);
        assert_eq!(t.drain(&mut tl), Vec::<String>::new());
        // Created after start: it is new, so it is read from its start.
        t.append(&t.log(), "hello\n");
        assert_eq!(t.drain(&mut tl), ["hello"]);
    }

    #[test]
    fn a_file_deleted_while_open_is_finished_then_the_new_one_read() {
        let t = setup();
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000).with_grace(Duration::ZERO);
        t.append(&t.log(), "a\n");
        assert_eq!(t.drain(&mut tl), ["a"]);
        t.append(&t.log(), "b\n");
        std::fs::remove_file(t.log()).unwrap();
        assert_eq!(t.drain(&mut tl), ["b"]);
        t.append(&t.log(), "c\n");
        assert_eq!(t.drain(&mut tl), ["c"]);
        assert_eq!(tl.open_files(), 1);
    }

    #[test]
    fn a_log_directory_that_appears_later_and_a_symlinked_path_work() {
        let t = setup();
        let real_dir = t.dir.path().join("cowrie/var/log/cowrie");
        let link = t.dir.path().join("cowrie.json");
        std::os::unix::fs::symlink(real_dir.join("cowrie.json"), &link).unwrap();
        let mut tl = Tailer::new(link.clone(), StartAt::End, 1000);
        assert_eq!(t.drain(&mut tl), Vec::<String>::new());
        std::fs::create_dir_all(&real_dir).unwrap();
        t.append(&real_dir.join("cowrie.json"), "x\n");
        assert_eq!(t.drain(&mut tl), ["x"]);
        // The link is pointed at another file: that is a rotation.
        t.append(&real_dir.join("other.json"), "y\n");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(real_dir.join("other.json"), &link).unwrap();
        assert_eq!(t.drain(&mut tl), ["y"]);
    }

    #[test]
    fn files_rotated_while_stopped_are_read_from_their_checkpoint_plain_or_gz() {
        let t = setup();
        t.append(&t.log(), "1\n2\n");
        {
            let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000);
            assert_eq!(t.drain(&mut tl), ["1", "2"]);
        }
        // While stopped: more lines, rotated and compressed, then a new file.
        t.append(&t.log(), "3\n");
        let rotated = t.dir.path().join("cowrie.json.1");
        std::fs::rename(t.log(), &rotated).unwrap();
        let data = std::fs::read(&rotated).unwrap();
        let mut enc = flate2::write::GzEncoder::new(
            File::create(t.dir.path().join("cowrie.json.1.gz")).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        std::fs::remove_file(&rotated).unwrap();
        t.append(&t.log(), "4\n");
        let mut tl = Tailer::new(t.log(), StartAt::End, 1000).with_grace(Duration::ZERO);
        assert_eq!(t.drain(&mut tl), ["3", "4"]);
        // Reading it again after a restart finds nothing new.
        let mut tl = Tailer::new(t.log(), StartAt::End, 1000).with_grace(Duration::ZERO);
        assert_eq!(t.drain(&mut tl), Vec::<String>::new());
    }

    #[test]
    fn copytruncate_reads_the_unread_tail_from_the_copy() {
        let t = setup();
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000).with_grace(Duration::ZERO);
        t.append(&t.log(), "1\n");
        assert_eq!(t.drain(&mut tl), ["1"]);
        t.append(&t.log(), "2\n");
        std::fs::copy(t.log(), t.dir.path().join("cowrie.json.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.log())
            .unwrap()
            .set_len(0)
            .unwrap();
        t.append(
            &t.log(),
            "3 written after the truncation, longer than before\n",
        );
        let mut got = t.drain(&mut tl);
        got.sort();
        assert_eq!(
            got,
            ["2", "3 written after the truncation, longer than before"]
        );
        assert_eq!(Stats::get(&t.stats.truncations), 1);
    }

    #[test]
    fn checkpoints_of_files_that_are_gone_are_pruned() {
        let t = setup();
        let mut tl = Tailer::new(t.log(), StartAt::Beginning, 1000).with_grace(Duration::ZERO);
        t.append(&t.log(), "first file\n");
        assert_eq!(t.drain(&mut tl), ["first file"]);
        let rotated = t.dir.path().join("cowrie.json.2026-11-24");
        std::fs::rename(t.log(), &rotated).unwrap();
        t.append(&t.log(), "second file\n");
        assert_eq!(t.drain(&mut tl), ["second file"]);
        assert_eq!(t.queue.checkpoints().unwrap().len(), 2);
        std::fs::remove_file(&rotated).unwrap();
        std::fs::rename(t.log(), t.dir.path().join("cowrie.json.2026-11-25")).unwrap();
        t.append(&t.log(), "third file\n");
        assert_eq!(t.drain(&mut tl), ["third file"]);
        let paths: Vec<String> = t
            .queue
            .checkpoints()
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.path)
            .collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
    }
}

/// `LineSplitter` and `lines_of` against the byte-at-a-time reference they
/// replaced (memchr finds the newlines now, and runs of lines are copied at
/// once): the same lines out, the same bytes consumed, the same lines
/// skipped as too long, however the stream is cut.
#[cfg(test)]
mod splitter_props {
    use super::*;
    use proptest::prelude::*;

    /// The previous implementation, kept as the model.
    #[derive(Default)]
    struct Reference {
        partial: Vec<u8>,
        discarding: bool,
        skipped: u64,
    }

    impl Reference {
        fn push(&mut self, data: &[u8], max_line: usize, out: &mut Vec<u8>) -> Option<usize> {
            let mut rest = data;
            let mut consumed = None;
            while !rest.is_empty() {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        if self.discarding {
                            self.discarding = false;
                        } else if self.partial.len() + i > max_line {
                            self.partial.clear();
                            self.skipped += 1;
                        } else {
                            out.extend_from_slice(&self.partial);
                            out.extend_from_slice(&rest[..=i]);
                            self.partial.clear();
                        }
                        rest = &rest[i + 1..];
                        consumed = Some(data.len() - rest.len());
                    }
                    None => {
                        if !self.discarding {
                            if self.partial.len() + rest.len() > max_line {
                                self.partial.clear();
                                self.discarding = true;
                                self.skipped += 1;
                            } else {
                                self.partial.extend_from_slice(rest);
                            }
                        }
                        rest = &[];
                    }
                }
            }
            consumed
        }

        fn finish(&mut self, out: &mut Vec<u8>) -> bool {
            let had = !self.partial.is_empty() && !self.discarding;
            if had {
                out.extend_from_slice(&self.partial);
                out.push(b'\n');
            }
            self.partial.clear();
            self.discarding = false;
            had
        }

        fn lines_of(data: &[u8]) -> Vec<&[u8]> {
            let body = data.strip_suffix(b"\n").unwrap_or(&[]);
            let empty = data.is_empty();
            body.split(|&b| b == b'\n').filter(|_| !empty).collect()
        }
    }

    /// Streams of short lines (newline-heavy), cut at arbitrary points.
    fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, usize)> {
        (
            proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'x'), Just(b'y')], 0..300),
            proptest::collection::vec(0usize..40, 0..20),
            0usize..12,
        )
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config(2000))]
        #[test]
        fn splitter_matches_the_bytewise_reference((data, cuts, max_line) in stream()) {
            let stats = Stats::default();
            let (mut new, mut old) = (LineSplitter::default(), Reference::default());
            let mut rest = &data[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(usize::MAX).min(rest.len());
                let (piece, tail) = rest.split_at(n);
                rest = tail;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let got = new.push(piece, max_line, &stats, &mut a);
                let want = old.push(piece, max_line, &mut b);
                prop_assert_eq!(got, want);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(new.pending(), old.partial.len());
                prop_assert_eq!(new.discarding, old.discarding);
                prop_assert_eq!(stats.skipped(SkipReason::TooLong), old.skipped);
            }
        }

        #[test]
        fn read_into_matches_the_bytewise_reference((data, cuts, max_line) in stream()) {
            // Reads cut where the cuts say; each into a recycled chunk that
            // still holds the previous chunk's bytes.
            struct Cuts<'a> { data: &'a [u8], cuts: std::vec::IntoIter<usize> }
            impl Read for Cuts<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = self.cuts.next().unwrap_or(usize::MAX).min(self.data.len()).min(buf.len());
                    buf[..n].copy_from_slice(&self.data[..n]);
                    self.data = &self.data[n..];
                    Ok(n)
                }
            }
            let stats = Stats::default();
            let (mut new, mut old) = (LineSplitter::default(), Reference::default());
            let mut reader = Cuts { data: &data, cuts: cuts.clone().into_iter() };
            let mut pieces = Cuts { data: &data, cuts: cuts.into_iter() };
            let mut chunk = b"stale bytes of an earlier chunk".to_vec();
            loop {
                let mut piece = vec![0; 16];
                let m = pieces.read(&mut piece).unwrap();
                let n = new.read_into(&mut reader, &mut chunk, 16, max_line, &stats).unwrap();
                prop_assert_eq!(n, m);
                let mut want = Vec::new();
                if n == 0 {
                    prop_assert_eq!(new.finish(&mut chunk), old.finish(&mut want));
                } else {
                    old.push(&piece[..m], max_line, &mut want);
                }
                prop_assert_eq!(&chunk, &want);
                prop_assert_eq!(new.pending(), old.partial.len());
                prop_assert_eq!(new.discarding, old.discarding);
                prop_assert_eq!(stats.skipped(SkipReason::TooLong), old.skipped);
                if n == 0 {
                    break;
                }
            }
        }

        #[test]
        fn lines_of_matches_the_bytewise_reference(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'x')], 0..60)
        ) {
            let got: Vec<&[u8]> = lines_of(&data).collect();
            // The reference expects whole lines only, as chunks hold.
            let whole = match memchr::memrchr(b'\n', &data) {
                Some(i) => &data[..=i],
                None => &data[..0],
            };
            prop_assert_eq!(got, Reference::lines_of(whole));
        }
    }
}
