//! Model-based test of the tailer: random sequences of writes, partial
//! writes, rename rotations, copytruncate, gzip of rotated files, restarts
//! and crashes, against a model of what was written. The oracle: the multiset
//! of lines committed (as the daemon does, together with their checkpoint)
//! equals the multiset of lines written — no line lost, none read twice.
//!
//! Copytruncate is done here as an atomic copy-then-truncate; with the real
//! logrotate, lines written between its copy and its truncate are in neither
//! file (the documented bound), which a model without that window cannot
//! show and does not claim to.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tjfwd::config::StartAt;
use tjfwd::source::{Chunk, Tailer};
use tjfwd::stats::Stats;
use tjfwd::store::{Policy, Store, TargetSpec};

struct World {
    dir: tempfile::TempDir,
    queue: Store,
    stats: Stats,
    tailer: Option<Tailer>,
    /// Lines written, by content, with their counts.
    written: BTreeMap<String, u32>,
    /// Lines committed by the tailer.
    read: BTreeMap<String, u32>,
    next_line: u64,
    next_rotated: u32,
    /// The second half of a line whose first half was written.
    pending_half: Option<String>,
    /// Rotated plain files that may be compressed.
    plain_rotated: Vec<PathBuf>,
    log: String,
    /// The live file's inode at the last poll.
    seen_inode: Option<u64>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let queue = Store::open(
            &dir.path().join("state"),
            1 << 20,
            &[TargetSpec {
                name: "threatjammer".into(),
                policy: Policy {
                    ttl_ms: 1000,
                    rereport_after_ms: 0,
                },
            }],
        )
        .unwrap();
        World {
            dir,
            queue,
            stats: Stats::default(),
            tailer: None,
            written: BTreeMap::new(),
            read: BTreeMap::new(),
            next_line: 0,
            next_rotated: 0,
            pending_half: None,
            plain_rotated: Vec::new(),
            log: String::new(),
            seen_inode: None,
        }
    }

    fn live(&self) -> PathBuf {
        self.dir.path().join("cowrie.json")
    }

    fn start(&mut self) {
        self.tailer =
            Some(Tailer::new(self.live(), StartAt::Beginning, 4096).with_grace(Duration::ZERO));
    }

    fn append(&mut self, bytes: &str) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap()
            .write_all(bytes.as_bytes())
            .unwrap();
    }

    fn new_line(&mut self) -> String {
        self.next_line += 1;
        // Unique first lines matter for file identity: make them realistic.
        let line = format!(
            r#"{{"session":"{:012x}","src_ip":"11.0.{}.{}","eventid":"cowrie.login.failed","n":{}}}"#,
            self.next_line * 7919,
            self.next_line / 256 % 256,
            self.next_line % 256,
            self.next_line
        );
        *self.written.entry(line.clone()).or_default() += 1;
        line
    }

    fn write(&mut self, n: usize) {
        let mut s = String::new();
        if let Some(h) = self.pending_half.take() {
            s.push_str(&h);
            s.push('\n');
        }
        for _ in 0..n {
            let l = self.new_line();
            s.push_str(&l);
            s.push('\n');
        }
        self.append(&s);
    }

    fn partial_write(&mut self) {
        self.write(0);
        let l = self.new_line();
        let (a, b) = l.split_at(l.len() / 2);
        self.append(a);
        self.pending_half = Some(b.to_string());
    }

    fn rotated_name(&mut self) -> PathBuf {
        self.next_rotated += 1;
        self.dir
            .path()
            .join(format!("cowrie.json.2026-11-{:04}", self.next_rotated))
    }

    /// Cowrie's own rotation: rename, and the next write creates a new file.
    fn rename_rotate(&mut self) {
        if self.pending_half.is_some() || !self.live().exists() {
            return;
        }
        let to = self.rotated_name();
        fs::rename(self.live(), &to).unwrap();
        self.plain_rotated.push(to.clone());
        self.log.push_str(" rename");
        if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
            eprintln!(
                "rename -> {} (next line {})",
                to.display(),
                self.next_line + 1
            );
        }
    }

    fn copytruncate(&mut self) {
        if self.pending_half.is_some() || !self.live().exists() {
            return;
        }
        let to = self.rotated_name();
        fs::copy(self.live(), &to).unwrap();
        OpenOptions::new()
            .write(true)
            .open(self.live())
            .unwrap()
            .set_len(0)
            .unwrap();
        self.plain_rotated.push(to.clone());
        self.log.push_str(" copytruncate");
        if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
            eprintln!(
                "copytruncate -> {} (next line {})",
                to.display(),
                self.next_line + 1
            );
        }
    }

    /// gzip a rotated file like gzip does: same mtime, the plain one removed.
    fn gzip_one(&mut self, rng: &mut StdRng) {
        if self.plain_rotated.is_empty() {
            return;
        }
        let i = rng.gen_range(0..self.plain_rotated.len());
        let p = self.plain_rotated.remove(i);
        let data = fs::read(&p).unwrap();
        let mtime = fs::metadata(&p).unwrap().modified().unwrap();
        let gz = PathBuf::from(format!("{}.gz", p.display()));
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        enc.finish().unwrap().set_modified(mtime).unwrap();
        fs::remove_file(&p).unwrap();
        self.log.push_str(" gzip");
        if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
            eprintln!("gzip {}", gz.display());
        }
    }

    /// Reads and commits up to `chunks` chunks (None: all there is).
    /// The live file's inode, if it exists and has a complete first line
    /// (before that, the file has no identity a checkpoint can name).
    fn live_inode(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let data = fs::read(self.live()).ok()?;
        data.contains(&b'\n')
            .then(|| fs::metadata(self.live()).ok().map(|m| m.ino()))
            .flatten()
    }

    fn tail(&mut self, chunks: Option<usize>) {
        self.seen_inode = self.live_inode();
        let Some(t) = self.tailer.as_mut() else {
            return;
        };
        let mut chunk = Chunk::default();
        let mut n = 0;
        while chunks.is_none_or(|c| n < c) {
            if !t
                .next_chunk(&self.queue, &self.stats, &mut chunk, 1)
                .unwrap()
            {
                if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
                    eprintln!(
                        "nothing; checkpoints {:?}; live size {:?} pos {:?} open {}",
                        self.queue
                            .checkpoints()
                            .unwrap()
                            .iter()
                            .map(|(i, c)| (i.ino, c.offset))
                            .collect::<Vec<_>>(),
                        fs::metadata(self.dir.path().join("cowrie.json"))
                            .map(|m| m.len())
                            .ok(),
                        t.position(),
                        t.open_files()
                    );
                }
                break;
            }
            let ckpt = chunk.checkpoint(1).expect("a chunk has an identity");
            self.queue
                .enqueue(&[], Some((&ckpt.0, &ckpt.1)), 1)
                .unwrap();
            t.commit();
            if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
                let nums: Vec<String> = chunk
                    .lines()
                    .map(|l| {
                        let l = String::from_utf8_lossy(l);
                        l.rsplit(':')
                            .next()
                            .unwrap_or("")
                            .trim_end_matches('}')
                            .to_string()
                    })
                    .collect();
                eprintln!(
                    "chunk {} end {} lines {}..{}",
                    chunk.path,
                    chunk.end_offset,
                    nums.first().unwrap_or(&String::new()),
                    nums.last().unwrap_or(&String::new())
                );
            }
            for l in chunk.lines() {
                *self
                    .read
                    .entry(String::from_utf8(l.to_vec()).unwrap())
                    .or_default() += 1;
            }
            n += 1;
        }
    }

    /// A crash: a chunk read but not stored, then the process is gone.
    fn crash(&mut self) {
        if let Some(t) = self.tailer.as_mut() {
            let mut chunk = Chunk::default();
            let _ = t
                .next_chunk(&self.queue, &self.stats, &mut chunk, 1)
                .unwrap();
        }
        self.tailer = None;
        self.log.push_str(" crash");
        if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
            eprintln!("crash");
        }
    }
}

/// `strict`: while running, rotations wait until tjfwd has looked at the
/// rotated file at least once (as happens when rotations are hours apart).
/// Not strict: rotations may come back to back, faster than tjfwd polls.
fn run(seed: u64, steps: usize, strict: bool) {
    if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("tjfwd=debug")
            .with_test_writer()
            .try_init();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::new();
    w.start();
    w.tail(Some(1));
    let mut rotated_since_tail = false;
    for _ in 0..steps {
        let running = w.tailer.is_some();
        match rng.gen_range(0..100) {
            0..=29 => w.write(rng.gen_range(1..40)),
            30..=37 => w.partial_write(),
            // While running, tjfwd polls between rotations (every 500 ms,
            // rotations come daily): it has seen the file being rotated.
            // While stopped, anything goes.
            38..=50
                if !running
                    || !strict
                    || (!rotated_since_tail
                        && w.seen_inode.is_some()
                        && w.seen_inode == w.live_inode()) =>
            {
                if rng.gen_bool(0.5) {
                    w.rename_rotate();
                } else {
                    w.copytruncate();
                }
                rotated_since_tail = running;
            }
            51..=55 => w.gzip_one(&mut rng),
            56..=80 if running => {
                let c = rng.gen_range(1..4);
                w.tail(Some(c));
                rotated_since_tail = false;
            }
            81..=86 if running => {
                w.tail(None);
                w.tailer = None; // clean stop
                w.log.push_str(" stop");
                if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
                    eprintln!("stop");
                }
            }
            87..=91 if running => w.crash(),
            _ if !running => {
                // The daemon reads as soon as it starts.
                w.start();
                w.tail(Some(1));
                w.log.push_str(" start");
                if std::env::var_os("TJFWD_MODEL_DEBUG").is_some() {
                    eprintln!("start");
                }
                rotated_since_tail = false;
            }
            _ => {}
        }
    }
    // Finish: complete any half line, start if stopped, read everything.
    w.write(0);
    if w.tailer.is_none() {
        w.start();
    }
    w.tail(None);
    w.tail(None);
    let lost: Vec<_> = w
        .written
        .iter()
        .filter(|(l, n)| w.read.get(*l) != Some(n))
        .map(|(l, n)| (l.clone(), *n, w.read.get(l).copied().unwrap_or(0)))
        .take(5)
        .collect();
    let extra: Vec<_> = w
        .read
        .keys()
        .filter(|l| !w.written.contains_key(*l))
        .take(5)
        .collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "seed {seed}: lines written/read differ (line, written, read): {lost:?} extra {extra:?}\nops:{}",
        w.log
    );
}

/// The seeds to run: `TJFWD_MODEL_FIRST_SEED` (0) and `TJFWD_MODEL_SEEDS`
/// (60 in CI; thousands for a longer run).
fn seeds() -> std::ops::Range<u64> {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let first = var("TJFWD_MODEL_FIRST_SEED", 0);
    first..first + var("TJFWD_MODEL_SEEDS", 60)
}

#[test]
fn every_line_is_read_exactly_once_across_rotations_restarts_and_crashes() {
    for seed in seeds() {
        run(seed, 120, true);
    }
}

#[test]
fn back_to_back_rotations_while_running_lose_nothing_either() {
    for seed in seeds() {
        run(seed, 120, false);
    }
}

#[test]
fn files_rotated_twice_while_stopped_are_all_read() {
    let mut w = World::new();
    w.start();
    w.write(5);
    w.tail(None);
    w.tailer = None;
    w.write(3); // unread tail of the first file
    w.rename_rotate();
    w.write(4); // a file never seen
    w.rename_rotate();
    w.write(2); // the live file
    let mut rng = StdRng::seed_from_u64(1);
    w.gzip_one(&mut rng);
    w.start();
    w.tail(None);
    assert_eq!(w.read, w.written, "{}", w.log);
}
