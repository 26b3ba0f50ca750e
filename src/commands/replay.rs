//! `tjfwd replay FILE...`: reads historical Cowrie logs (plain, gzip, or `-`
//! for standard input), applies the same select and filter rules as the
//! daemon, and queues the addresses with their original timestamps.
//!
//! Memory stays bounded whatever the size of the logs: files are streamed,
//! and sightings are queued in batches of 5,000 (through the daemon when one
//! runs) by a second thread, while this one reads on. Replaying the same file twice queues nothing new unless
//! the addresses are due again (seen after their last report).
//! `--dry-run` prints the distinct addresses with their counts instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;

use crate::clock::now_ms;
use crate::commands::{send_pending, Backend, CommandError};
use crate::config::Config;
use crate::daemon::select_lines;
use crate::filter::Rules;
use crate::queue::{EnqueueOutcome, Sighting};
use crate::source::{lines_of, LineSplitter};
use crate::stats::{SkipReason, Stats};

/// Sightings queued per request. Not more: a sled transaction keeps every
/// node version it replaces until it ends, so memory grows with its size
/// (40,000 sightings a transaction: 99 MiB peak RSS instead of 40 MiB).
const CHUNK_SIGHTINGS: usize = 5_000;
/// Bytes read at a time.
const READ_BYTES: usize = 256 * 1024;

/// What to replay and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files; `-` is standard input.
    pub files: Vec<PathBuf>,
    /// Only events at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Only events before this time (ms).
    pub until_ms: Option<u64>,
    /// Print the addresses instead of queueing them.
    pub dry_run: bool,
    /// When no daemon runs: send what is pending afterwards, then exit.
    pub send: bool,
    /// Progress: None = a bar on a terminal, plain lines otherwise.
    pub progress_bar: Option<bool>,
}

/// Parses `--since`/`--until`: RFC 3339, or a duration ago (`7d`, `12h`).
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Some(ms) = crate::decode::parse_timestamp_ms(s) {
        return Ok(ms);
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now_ms().saturating_sub(d.as_millis() as u64)),
        Err(_) => Err(format!(
            "{s:?} is neither an RFC 3339 time (2026-11-20T00:00:00Z) nor a duration (7d, 12h)"
        )),
    }
}

/// Totals of a replay.
#[derive(Debug, Default)]
struct Totals {
    bytes: u64,
    sightings: u64,
    out_of_range: u64,
    queued: EnqueueOutcome,
}

/// A reader that counts the bytes read from the file itself.
struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file (or stdin), decompressing gzip (detected by its magic bytes).
fn open(
    path: &Path,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> io::Result<(Box<dyn Read>, Option<u64>)> {
    let (raw, size): (Box<dyn Read>, Option<u64>) = if path == Path::new("-") {
        (Box::new(io::stdin().lock()), None)
    } else {
        let f = File::open(path)?;
        let size = f.metadata()?.len();
        (Box::new(f), Some(size))
    };
    let mut buffered = BufReader::with_capacity(64 * 1024, Counting { inner: raw, count });
    let gz = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok((reader, size))
}

/// Progress reporting: a bar on a terminal, a line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(bar: bool, total: Option<u64>) -> Progress {
        let bar = bar.then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .expect("a valid template"),
            );
            b
        });
        Progress {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, bytes: u64, lines: u64, found: u64, file: &Path) {
        let rate = lines as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        match &self.bar {
            Some(b) => {
                b.set_position(bytes);
                b.set_message(format!("{lines} lines ({rate:.0}/s), {found} addresses"));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                eprintln!(
                    "tjfwd: replay: {}: {} MiB read, {lines} lines ({rate:.0} lines/s), {found} addresses found",
                    file.display(),
                    bytes >> 20
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Where the writer thread puts sightings: the queue (through the daemon
/// when one runs), or, with `--dry-run`, a count per address.
enum Sink {
    Queue(Backend),
    DryRun(HashMap<IpAddr, u64>),
}

impl Sink {
    fn put(
        &mut self,
        sightings: &[Sighting],
        queued: &mut EnqueueOutcome,
    ) -> Result<(), CommandError> {
        match self {
            Sink::DryRun(unique) => {
                for s in sightings {
                    *unique.entry(s.addr).or_insert(0) += 1;
                }
            }
            Sink::Queue(b) => add(queued, &b.enqueue(sightings)?),
        }
        Ok(())
    }
}

/// The writer thread: queues each batch it is sent, in order, and hands
/// the emptied vector back for reuse. It stops at the first error (the
/// reader then finds the channel closed) and returns the sink and what was
/// queued.
fn write_batches(
    mut sink: Sink,
    batches: mpsc::Receiver<Vec<Sighting>>,
    recycle: mpsc::Sender<Vec<Sighting>>,
) -> (Sink, EnqueueOutcome, Result<(), CommandError>) {
    let mut queued = EnqueueOutcome::default();
    for mut batch in batches {
        if let Err(e) = sink.put(&batch, &mut queued) {
            return (sink, queued, Err(e));
        }
        batch.clear();
        let _ = recycle.send(batch);
    }
    (sink, queued, Ok(()))
}

/// Replays the files; prints a summary (or, with `--dry-run`, the addresses).
///
/// Two threads: this one reads, splits, decodes, selects and filters; a
/// writer thread queues the sightings (sled transactions, and the fsync that
/// makes each batch durable) meanwhile, on the other core. They are joined
/// by a channel of one batch, so at most three batches exist at a time
/// (being filled, waiting, being written) and memory stays bounded.
pub fn run(config: &Config, opts: &Options) -> Result<(), CommandError> {
    if opts.files.is_empty() {
        return Err(CommandError::Other(
            "no files to replay (use - for standard input)".into(),
        ));
    }
    let sink = if opts.dry_run {
        Sink::DryRun(HashMap::new())
    } else {
        Sink::Queue(Backend::open(config)?)
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<Sighting>>(1);
    let (recycle_tx, recycle) = mpsc::channel::<Vec<Sighting>>();
    let writer = std::thread::Builder::new()
        .name("tjfwd-replay-writer".into())
        .spawn(move || write_batches(sink, rx, recycle_tx))
        .map_err(|e| CommandError::Other(format!("cannot start the writer thread: {e}")))?;
    let stats = Stats::default();
    let mut totals = Totals::default();
    let read = read_files(config, opts, &stats, &mut totals, tx, &recycle);
    let (sink, queued, written) = writer
        .join()
        .map_err(|_| CommandError::Other("the writer thread panicked".into()))?;
    totals.queued = queued;
    // A writer error explains a reader that stopped early: it comes first.
    written?;
    read?;
    let (backend, unique) = match sink {
        Sink::Queue(b) => (Some(b), HashMap::new()),
        Sink::DryRun(u) => (None, u),
    };
    summarize(config, opts, &stats, &totals, backend, unique)
}

/// The reading side of [`run`]: every file, in order, into batches of
/// sightings sent to the writer. Stops early (Ok) if the writer is gone.
fn read_files(
    config: &Config,
    opts: &Options,
    stats: &Stats,
    totals: &mut Totals,
    tx: mpsc::SyncSender<Vec<Sighting>>,
    recycle: &mpsc::Receiver<Vec<Sighting>>,
) -> Result<(), CommandError> {
    let rules = Rules::from_config(config);
    let show_bar = opts
        .progress_bar
        .unwrap_or_else(|| io::stderr().is_terminal());
    let mut buf = vec![0u8; READ_BYTES];
    let mut chunk = Vec::with_capacity(READ_BYTES + 1024);
    let mut pending: Vec<Sighting> = Vec::with_capacity(CHUNK_SIGHTINGS * 2);
    let now = now_ms();

    for file in &opts.files {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (mut reader, size) = open(file, count.clone())
            .map_err(|e| CommandError::Other(format!("cannot read {}: {e}", file.display())))?;
        let mut progress = Progress::new(show_bar, size);
        let mut splitter = LineSplitter::default();
        let base_bytes = totals.bytes;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    progress.finish();
                    return Err(CommandError::Other(format!(
                        "reading {}: {e}",
                        file.display()
                    )));
                }
            };
            chunk.clear();
            if n == 0 {
                splitter.finish(&mut chunk);
            } else {
                splitter.push(&buf[..n], config.input.max_line_bytes, stats, &mut chunk);
            }
            let before = pending.len();
            select_lines(lines_of(&chunk), &rules, stats, now, &mut pending);
            // The time window, on the events' own timestamps.
            let mut kept = before;
            for i in before..pending.len() {
                let t = pending[i].seen_ms;
                let inside =
                    opts.since_ms.is_none_or(|s| t >= s) && opts.until_ms.is_none_or(|u| t < u);
                if inside {
                    pending.swap(kept, i);
                    kept += 1;
                } else {
                    totals.out_of_range += 1;
                }
            }
            pending.truncate(kept);
            let end_of_file = n == 0;
            if pending.len() >= CHUNK_SIGHTINGS || (end_of_file && !pending.is_empty()) {
                let fresh = recycle
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK_SIGHTINGS * 2));
                let batch = std::mem::replace(&mut pending, fresh);
                totals.sightings += batch.len() as u64;
                if tx.send(batch).is_err() {
                    // The writer stopped on an error, which `run` reports.
                    progress.finish();
                    return Ok(());
                }
            }
            let bytes = count.load(std::sync::atomic::Ordering::Relaxed);
            totals.bytes = base_bytes + bytes;
            progress.update(bytes, Stats::get(&stats.lines_read), totals.sightings, file);
            if end_of_file {
                break;
            }
        }
        progress.finish();
    }
    Ok(())
}

/// Prints what the replay did.
fn summarize(
    config: &Config,
    opts: &Options,
    stats: &Stats,
    totals: &Totals,
    backend: Option<Backend>,
    unique: HashMap<IpAddr, u64>,
) -> Result<(), CommandError> {
    let skipped: Vec<String> = SkipReason::ALL
        .iter()
        .filter(|r| stats.skipped(**r) > 0)
        .map(|r| format!("{r}={}", stats.skipped(*r)))
        .collect();
    let summary = format!(
        "replayed {} file(s): {} MiB, {} lines, {} selected events, {} outside --since/--until, skipped: {}",
        opts.files.len(),
        totals.bytes >> 20,
        Stats::get(&stats.lines_read),
        Stats::get(&stats.events_selected),
        totals.out_of_range,
        if skipped.is_empty() { "none".to_string() } else { skipped.join(" ") },
    );
    match backend {
        None => {
            let mut list: Vec<(IpAddr, u64)> = unique.into_iter().collect();
            list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (addr, n) in &list {
                println!("{addr} {n}");
            }
            eprintln!("tjfwd: {summary}");
            eprintln!(
                "tjfwd: dry run: {} distinct addresses in {} sightings; nothing was queued",
                list.len(),
                totals.sightings
            );
        }
        Some(b) => {
            let q = totals.queued;
            println!("{summary}");
            println!(
                "{} sightings: {} addresses newly queued, {} already pending, {} reported since (not due again), {} in the dead-letter set",
                totals.sightings, q.queued_new, q.updated, q.already_reported, q.dead
            );
            match b {
                Backend::Daemon(_) => {
                    if opts.send {
                        println!("the running daemon sends them");
                    }
                }
                Backend::Local(ops) => {
                    drop(ops);
                    if opts.send {
                        let sent = send_pending(config)?;
                        println!("sent {sent} addresses");
                    } else if q.queued_new > 0 {
                        println!("no daemon runs: they are sent when `tjfwd run` starts (or now with --send or `tjfwd flush`)");
                    }
                }
            }
        }
    }
    Ok(())
}

fn add(total: &mut EnqueueOutcome, out: &EnqueueOutcome) {
    total.queued_new += out.queued_new;
    total.updated += out.updated;
    total.already_reported += out.already_reported;
    total.dead += out.dead;
}
