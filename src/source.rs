//! Source: tails Cowrie's `cowrie.json` from a stored checkpoint.
//!
//! Invariants:
//! - Only whole lines are handed out; a partial last line waits for its
//!   newline. A line longer than the cap is skipped (and counted) without
//!   being buffered whole; reading resumes after its newline.
//! - A file is known by its identity — device, inode and a fingerprint of its
//!   first line (at most 256 bytes) — never by its path, so a new file under
//!   the same name (rotation) or a reused inode is never taken for the old one.
//! - The tailer reads ahead of what is committed: [`Tailer::commit`] is called
//!   by the caller once the chunk's addresses and the checkpoint are in the
//!   database (one transaction); [`Tailer::rewind`] goes back to the last
//!   committed offset when that failed. So the checkpoint never passes a line
//!   that was not queued.
//! - New data is found by polling `fstat`/`stat` every `poll_interval` when
//!   idle (a few syscalls: ~0 CPU).
//!
//! Rotation here: when the path names another file, the old one is read to
//! its end first, then the new one from its start. A missing file is waited
//! for (logged once).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use migrations::v1::{Checkpoint, FileId};

use crate::config::StartAt;
use crate::queue::{Queue, QueueError};
use crate::stats::{SkipReason, Stats};

/// Bytes read per chunk (and per transaction).
const CHUNK_BYTES: usize = 256 * 1024;
/// Bytes of the first line that make a file's fingerprint.
const FINGERPRINT_BYTES: usize = 256;

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
        self.data
            .split(|&b| b == b'\n')
            .take(self.data.iter().filter(|&&b| b == b'\n').count())
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

/// An open input file.
#[derive(Debug)]
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    id: Option<FileId>,
    /// After the last committed line.
    committed: u64,
    /// After the last byte read into `partial`/handed out.
    read_pos: u64,
    /// Bytes of an incomplete last line.
    partial: Vec<u8>,
    /// Inside a line longer than the cap: drop bytes until its newline.
    discarding: bool,
    /// Where the last handed-out chunk ends (committed on `commit`).
    handed_out: u64,
}

/// Errors of the source: they never stop the daemon, which logs and retries.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Follows one log path.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    start_at: StartAt,
    max_line: usize,
    open: Option<Open>,
    /// Whether the next open is the first of this run (start_at applies).
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
            open: None,
            first_open: true,
            missing_logged: false,
            buf: vec![0; CHUNK_BYTES],
        }
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The committed position, for the start-up line and status.
    pub fn position(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.committed)
    }

    fn io(&self, source: io::Error) -> SourceError {
        SourceError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Fills `chunk` with the next complete lines. Returns false when there is
    /// nothing new (the caller then waits a poll interval).
    pub fn next_chunk(
        &mut self,
        queue: &Queue,
        stats: &Stats,
        chunk: &mut Chunk,
        now_ms: u64,
    ) -> Result<bool, SourceError> {
        chunk.data.clear();
        if self.open.is_none() && !self.try_open(queue, stats, now_ms)? {
            return Ok(false);
        }
        loop {
            let n = {
                let open = self.open.as_mut().expect("opened above");
                open.file.read(&mut self.buf)
            };
            let n = n.map_err(|e| self.io(e))?;
            if n > 0 {
                let handed = self.take_lines(n, stats, chunk)?;
                if handed {
                    return Ok(true);
                }
                continue;
            }
            // At the end of the open file: truncated, rotated, or just idle?
            if !self.check_rotation(queue, stats, now_ms)? {
                return Ok(false);
            }
        }
    }

    /// Splits the `n` bytes just read; true when `chunk` got something to commit.
    fn take_lines(
        &mut self,
        n: usize,
        stats: &Stats,
        chunk: &mut Chunk,
    ) -> Result<bool, SourceError> {
        let max_line = self.max_line;
        let open = self.open.as_mut().expect("open");
        let start_pos = open.read_pos;
        open.read_pos += n as u64;
        let mut data = &self.buf[..n];
        let mut progressed = false;
        let mut end = open.handed_out;
        let mut pos = start_pos;
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    pos += i as u64 + 1;
                    if open.discarding {
                        open.discarding = false;
                    } else if open.partial.len() + i > max_line {
                        open.partial.clear();
                        stats.skip(SkipReason::TooLong, || {
                            format!("a line longer than {max_line} bytes")
                        });
                    } else {
                        chunk.data.extend_from_slice(&open.partial);
                        chunk.data.extend_from_slice(&data[..=i]);
                        open.partial.clear();
                    }
                    end = pos;
                    progressed = true;
                    data = &data[i + 1..];
                }
                None => {
                    pos += data.len() as u64;
                    if !open.discarding {
                        if open.partial.len() + data.len() > max_line {
                            open.partial.clear();
                            open.discarding = true;
                            stats.skip(SkipReason::TooLong, || {
                                format!("a line longer than {max_line} bytes")
                            });
                        } else {
                            open.partial.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
        if progressed {
            if open.id.is_none() {
                open.id =
                    identify(&mut open.file, open.dev, open.ino, open.read_pos).map_err(|e| {
                        SourceError::Io {
                            path: self.path.clone(),
                            source: e,
                        }
                    })?;
            }
            open.handed_out = end;
            chunk.id = open.id;
            chunk.path = self.path.to_string_lossy().into_owned();
            chunk.end_offset = end;
        }
        Ok(progressed)
    }

    /// Marks the last chunk as stored.
    pub fn commit(&mut self) {
        if let Some(o) = self.open.as_mut() {
            o.committed = o.handed_out;
        }
    }

    /// Goes back to the last committed offset (the chunk was not stored).
    pub fn rewind(&mut self) -> Result<(), SourceError> {
        if let Some(o) = self.open.as_mut() {
            o.file
                .seek(SeekFrom::Start(o.committed))
                .map_err(|e| SourceError::Io {
                    path: self.path.clone(),
                    source: e,
                })?;
            o.read_pos = o.committed;
            o.handed_out = o.committed;
            o.partial.clear();
            o.discarding = false;
        }
        Ok(())
    }

    /// At EOF: handles truncation and rotation. True when there may be more
    /// to read right away.
    fn check_rotation(
        &mut self,
        queue: &Queue,
        stats: &Stats,
        now_ms: u64,
    ) -> Result<bool, SourceError> {
        let open = self.open.as_mut().expect("open");
        let meta = open.file.metadata().map_err(|e| SourceError::Io {
            path: self.path.clone(),
            source: e,
        })?;
        if meta.len() < open.read_pos {
            tracing::warn!(path = %self.path.display(), size = meta.len(), offset = open.read_pos, "input file got shorter than what was read (truncated): reading it again from the start");
            Stats::add(&stats.truncations, 1);
            open.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| SourceError::Io {
                    path: self.path.clone(),
                    source: e,
                })?;
            open.read_pos = 0;
            open.committed = 0;
            open.handed_out = 0;
            open.partial.clear();
            open.discarding = false;
            open.id = None;
            return Ok(true);
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == open.dev && m.ino() == open.ino => Ok(false),
            Ok(_) => {
                if !open.partial.is_empty() {
                    tracing::warn!(path = %self.path.display(), bytes = open.partial.len(), "the rotated file ended in an incomplete line; it was dropped");
                }
                tracing::info!(path = %self.path.display(), "input file was rotated: following the new file from its start");
                Stats::add(&stats.rotations, 1);
                self.open = None;
                self.first_open = false;
                self.try_open(queue, stats, now_ms)
            }
            // Renamed away and not yet re-created: keep the old one.
            Err(_) => Ok(false),
        }
    }

    /// Opens the path if it exists, positioned at its checkpoint.
    fn try_open(&mut self, queue: &Queue, stats: &Stats, now_ms: u64) -> Result<bool, SourceError> {
        let _ = stats;
        let mut file = match File::open(&self.path) {
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
            Err(e) => return Err(self.io(e)),
        };
        self.missing_logged = false;
        let meta = file.metadata().map_err(|e| self.io(e))?;
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let id = identify(&mut file, dev, ino, len).map_err(|e| self.io(e))?;
        let stored = match &id {
            Some(id) => queue.checkpoint(id)?,
            None => None,
        };
        let first_ever = self.first_open && queue.checkpoints()?.is_empty();
        let mut offset = match (&stored, first_ever, self.start_at) {
            (Some(c), _, _) => c.offset,
            (None, true, StartAt::End) => last_line_end(&mut file, len).map_err(|e| self.io(e))?,
            _ => 0,
        };
        if offset > len {
            tracing::warn!(path = %self.path.display(), size = len, checkpoint = offset, "input file is shorter than its checkpoint (truncated): reading it from the start");
            Stats::add(&stats.truncations, 1);
            offset = 0;
        }
        if let (Some(id), None) = (&id, &stored) {
            // Remember where we start, so a restart does not skip or repeat.
            queue.set_checkpoint(
                id,
                &Checkpoint {
                    path: self.path.to_string_lossy().into_owned(),
                    offset,
                    updated_at_ms: now_ms,
                },
            )?;
        }
        file.seek(SeekFrom::Start(offset)).map_err(|e| self.io(e))?;
        tracing::info!(path = %self.path.display(), offset, size = len, "reading input file");
        self.first_open = false;
        self.open = Some(Open {
            file,
            dev,
            ino,
            id,
            committed: offset,
            read_pos: offset,
            partial: Vec::new(),
            discarding: false,
            handed_out: offset,
        });
        Ok(true)
    }
}

/// The identity of an open file, or None while its first line is incomplete
/// and shorter than the fingerprint length.
fn identify(file: &mut File, dev: u64, ino: u64, len: u64) -> io::Result<Option<FileId>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; FINGERPRINT_BYTES];
    let want = (len as usize).min(FINGERPRINT_BYTES);
    let mut got = 0;
    while got < want {
        let n = file.read_at(&mut head[got..want], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = &head[..got];
    let first_line = match head.iter().position(|&b| b == b'\n') {
        Some(i) => &head[..i],
        None if got == FINGERPRINT_BYTES => head,
        None => return Ok(None),
    };
    Ok(Some(FileId {
        dev,
        ino,
        fingerprint: migrations::fnv1a64(first_line),
    }))
}

/// Offset just after the last newline in the first `len` bytes (0 if none).
fn last_line_end(file: &mut File, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let part = &mut buf[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Policy;
    use std::io::Write;

    struct T {
        dir: tempfile::TempDir,
        queue: Queue,
        stats: Stats,
    }

    fn setup() -> T {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(
            &dir.path().join("state"),
            1 << 20,
            Policy {
                ttl_ms: 1000,
                rereport_after_ms: 0,
            },
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
}
