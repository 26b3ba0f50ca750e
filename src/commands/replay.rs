//! `tjfwd replay FILE...`: reads historical Cowrie logs (plain, gzip, or `-`
//! for standard input), applies the same select and filter rules as the
//! daemon, and queues the addresses with their original timestamps.
//!
//! Memory stays bounded whatever the size of the logs: files are streamed
//! in chunks of 256 KiB, and sightings are queued in batches of 5,000
//! (through the daemon when one runs). Three threads share the work: one
//! reads the files and cuts them into lines, one decodes, selects and
//! filters (the ingest path of the daemon, single-threaded as there), and
//! one writes to the queue. Replaying the same file twice queues nothing
//! new unless the addresses are due again (seen after their last report).
//! `--dry-run` prints the distinct addresses with their counts instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;

use crate::clock::now_ms;
use crate::commands::{note, print, send_pending, Backend, CommandError, ConfigArgs};
use crate::config::Config;
use crate::filter::Rules;
use crate::pipeline::select_lines;
use crate::source::{lines_of, LineSplitter};
use crate::stats::{SkipReason, Stats};
use crate::store::{fold, Class, EnqueueOutcome, Folded, Owes, Sighting, Store, StoreError};

/// Sightings queued per request. Not more: a sled transaction keeps every
/// node version it replaces until it ends, so memory grows with its size
/// (40,000 sightings a transaction: 99 MiB peak RSS instead of 40 MiB).
const CHUNK_SIGHTINGS: usize = 5_000;
/// Pending addresses' sightings written per transaction by [`Deferred`]
/// (new ones go in one [`Store::load_new`]): a sled transaction
/// keeps every node version it replaces until it ends, and the addresses
/// of a replay land all over the tree. Writing the 50,000 addresses of the
/// benchmark log at its end peaked at 125 MiB RSS in transactions of
/// 20,000, 54 MiB of 5,000, 37-39 MiB of 1,000 (as fast: the time goes
/// into sled's inserts, not into committing). One group a transaction.
const WRITE_ADDRESSES: usize = migrations::v2::GROUP_MAX;
/// Bytes read at a time.
const READ_BYTES: usize = 256 * 1024;
/// Chunks of lines the reading thread may be ahead of the decoding one,
/// and batches of sightings the decoding one ahead of the writer: enough
/// to ride out a few milliseconds when the other is not scheduled (two
/// cores for three threads). From 2 and 1: 6% faster on the benchmark
/// replay (7 rounds alternated, 5 of them faster), the same peak RSS.
const LINE_CHUNKS: usize = 8;
const SIGHTING_BATCHES: usize = 4;

/// The flags of `tjfwd replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Log files: plain or gzip; - for standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Only events at or after this time: RFC 3339, or a duration ago (7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<u64>,
    /// Only events before this time: RFC 3339, or a duration ago (1d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<u64>,
    /// Print the distinct addresses with their counts; queue nothing.
    #[arg(long, conflicts_with = "send")]
    dry_run: bool,
    /// When no daemon runs: send what is pending afterwards (under the
    /// rate limit), then exit.
    #[arg(long)]
    send: bool,
    /// Plain progress lines instead of a progress bar.
    #[arg(long)]
    no_progress_bar: bool,
}

/// Runs `tjfwd replay`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load(false)?;
    let opts = Options {
        files: args.files,
        since_ms: args.since,
        until_ms: args.until,
        dry_run: args.dry_run,
        send: args.send,
        progress_bar: args.no_progress_bar.then_some(false),
    };
    replay(&config, &opts)?;
    Ok(ExitCode::SUCCESS)
}

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
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file (or stdin), decompressing gzip (detected by its magic bytes).
fn open(path: &Path, count: Arc<AtomicU64>) -> io::Result<(Box<dyn Read>, Option<u64>)> {
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
                note(format_args!(
                    "tjfwd: replay: {}: {} MiB read, {lines} lines ({rate:.0} lines/s), {found} addresses found",
                    file.display(),
                    bytes >> 20
                ));
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
/// when one runs, else directly, deferring re-sightings), or, with
/// `--dry-run`, a count per address.
enum Sink {
    Queue(Backend),
    Local(Backend, Arc<Store>, Deferred),
    DryRun(HashMap<IpAddr, u64>),
}

impl Sink {
    fn new(backend: Backend) -> Sink {
        match backend {
            Backend::Local(ops) => {
                let queue = ops.queue.clone();
                Sink::Local(Backend::Local(ops), queue, Deferred::default())
            }
            b => Sink::Queue(b),
        }
    }

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
            Sink::Local(_, q, d) => add(queued, &d.put(q, sightings, now_ms())?),
        }
        Ok(())
    }

    /// After the last batch: write what was deferred and make it durable.
    fn finish(&mut self) -> Result<(), CommandError> {
        if let Sink::Local(_, q, d) = self {
            d.write_all(q)?;
            q.flush()?;
        }
        Ok(())
    }
}

/// Addresses a replay that holds the queue alone keeps in memory (new ones
/// held back, and pending ones with unwritten sightings), at most this many
/// (~80 bytes each).
const KNOWN_MAX: usize = 100_000;

/// What [`Deferred`] knows of an address.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// New to the queue, held back: its place in `Deferred::held`.
    Held(usize),
    /// Pending in the queue, with the sightings not written yet
    /// (`hits == 0`: none).
    Pending(Folded),
}

/// A [`Known`] address, and the last chunk that had it (each chunk counts
/// an address once in its outcome, as `enqueue` does).
#[derive(Debug, Clone, Copy)]
struct Entry {
    known: Known,
    chunk: u64,
}

/// The sightings of a replay that holds the queue alone (no daemon runs),
/// folded in memory and each address written once, later.
///
/// A replay sees the same addresses again and again (the 2M-line benchmark
/// log: 1.27 M sightings of 50,000 addresses). Writing each chunk as it
/// comes would insert each new address, then update it ~3 times more, and
/// sled 0.34 spends as long on an update as on an insert (and leaves a
/// superseded page version on disk each time). Instead:
///
/// - an address the queue does not hold and would queue ([`Class::New`])
///   is held back in memory, in order of first appearance, with the time
///   its chunk came (its `queued_at`), and its later sightings are folded
///   into it; held addresses are written, in that order and with those
///   times, when the memory bound is reached and at the end
///   ([`Store::load_new`]: sled's plain inserts, in key order, under an
///   intent record the next open finishes if a crash interrupts them);
/// - an address already pending only gets min/max/sum folded into its
///   entry, which commute: its sightings are folded and written once;
/// - reported and dead-lettered addresses are looked up again at each
///   chunk that has them (a later sighting may make a reported one due),
///   and their sightings written at once (the denylist's last sightings).
///
/// So the queue ends in the state sequential enqueues would leave (the
/// same entries, the same addresses owed to each target; only the group
/// sequence numbers differ), and the outcome counts are the same (see the
/// test `deferring_leaves_the_queue_as_sequential_enqueues_do`). The FIFO
/// order is the same too, with one exception: a held address that one
/// target had reported too recently, and that a later sighting makes that
/// target take as well, joins its FIFO at the address's first appearance
/// (older-first, as the others), not at that later sighting's.
/// This holds because nothing else writes to the queue meanwhile: the
/// replay holds its lock. Memory: at most `KNOWN_MAX` addresses are
/// remembered; past that, everything is written and the memory starts
/// again. Durability is the replay's as before: everything is flushed to
/// disk before the summary is printed; a replay that stops half-way (it has
/// no checkpoint) must be run again, which queues nothing twice.
#[derive(Debug, Default)]
struct Deferred {
    /// Hashed with foldhash (seeded at random: the addresses are the
    /// attackers').
    known: foldhash::HashMap<IpAddr, Entry>,
    /// The number of the current chunk.
    chunk: u64,
    /// Held new addresses, in order of first appearance, with their
    /// `queued_at` and the targets that take them.
    held: Vec<Folded>,
    held_at: Vec<u64>,
    held_owes: Vec<Owes>,
    /// The `Known::Pending` addresses with unwritten sightings.
    unwritten: Vec<IpAddr>,
    /// Scratch: the sightings of a chunk whose address `known` does not have.
    unknown: Vec<Sighting>,
    /// `KNOWN_MAX` unless a test sets a smaller bound.
    known_max: Option<usize>,
}

impl Deferred {
    fn known_max(&self) -> usize {
        self.known_max.unwrap_or(KNOWN_MAX)
    }

    /// Takes a chunk in. Returns what `enqueue` would have done with it.
    fn put(
        &mut self,
        queue: &Store,
        sightings: &[Sighting],
        now: u64,
    ) -> Result<EnqueueOutcome, StoreError> {
        let mut out = EnqueueOutcome::default();
        self.chunk += 1;
        self.unknown.clear();
        // Sighting by sighting: most addresses are known, and are folded
        // into what is held for them without folding the chunk first.
        for s in sightings {
            let Some(e) = self.known.get_mut(&s.addr) else {
                self.unknown.push(*s);
                continue;
            };
            if e.chunk != self.chunk {
                e.chunk = self.chunk;
                out.updated += 1;
            }
            let one = Folded::of(s);
            match &mut e.known {
                Known::Held(i) => self.held[*i].merge(&one),
                Known::Pending(d) if d.hits == 0 => {
                    self.unwritten.push(s.addr);
                    *d = one;
                }
                Known::Pending(d) => d.merge(&one),
            }
        }
        let unknown = fold(&self.unknown);
        let classes = queue.classify_owed(&unknown, now)?;
        let chunk = self.chunk;
        // Not queued, but on the denylist until the TTL after this
        // sighting: written at once, as `enqueue` would.
        let mut not_queued = Vec::new();
        for (f, (class, owes)) in unknown.iter().zip(classes) {
            let known = match class {
                Class::Pending => {
                    self.unwritten.push(f.addr);
                    out.updated += 1;
                    Known::Pending(*f)
                }
                Class::Dead => {
                    out.dead += 1;
                    not_queued.push(*f);
                    continue;
                }
                Class::NotDue => {
                    out.already_reported += 1;
                    not_queued.push(*f);
                    continue;
                }
                Class::New => {
                    self.held.push(*f);
                    self.held_at.push(now);
                    self.held_owes.push(owes);
                    out.queued_new += 1;
                    Known::Held(self.held.len() - 1)
                }
            };
            self.known.insert(f.addr, Entry { known, chunk });
        }
        if !not_queued.is_empty() {
            queue.note_sightings(&not_queued, now)?;
        }
        if self.known.len() >= self.known_max() {
            // Bounded memory: write everything, start again.
            self.write_all(queue)?;
            self.known.clear();
        }
        Ok(out)
    }

    /// Writes every held address (one [`Store::load_new`]) and every
    /// deferred sighting (transactions of at most `WRITE_ADDRESSES`
    /// addresses).
    fn write_all(&mut self, queue: &Store) -> Result<(), StoreError> {
        let now = now_ms();
        queue.load_new(&self.held, &self.held_at, &self.held_owes, now)?;
        for f in self.held.drain(..) {
            if let Some(e) = self.known.get_mut(&f.addr) {
                e.known = Known::Pending(Folded { hits: 0, ..f });
            }
        }
        self.held_at.clear();
        self.held_owes.clear();
        while !self.unwritten.is_empty() {
            let from = self.unwritten.len().saturating_sub(WRITE_ADDRESSES);
            let entries: Vec<Folded> = self
                .unwritten
                .drain(from..)
                .filter_map(|addr| match &mut self.known.get_mut(&addr)?.known {
                    Known::Pending(d) => Some(std::mem::replace(d, Folded { hits: 0, ..*d })),
                    Known::Held(_) => None,
                })
                .collect();
            // They are pending: this only updates them (`now` is unused).
            queue.enqueue_folded(&entries, None, now)?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.unwritten.is_empty()
    }
}

/// The writer thread: queues each batch it is sent, in order, and hands
/// the emptied vector back for reuse; at the end, it writes the deferred
/// sightings ([`Deferred`]). It stops at the first error (the reader then
/// finds the channel closed) and returns the sink and what was queued.
fn write_batches(
    mut sink: Sink,
    batches: mpsc::Receiver<Vec<Sighting>>,
    recycle: mpsc::Sender<Vec<Sighting>>,
) -> (Sink, EnqueueOutcome, Result<(), CommandError>) {
    let mut queued = EnqueueOutcome::default();
    let result = (|| {
        for mut batch in batches {
            sink.put(&batch, &mut queued)?;
            batch.clear();
            let _ = recycle.send(batch);
        }
        sink.finish()
    })();
    (sink, queued, result)
}

/// Replays the files; prints a summary (or, with `--dry-run`, the addresses).
///
/// Three threads: a reading one (`read_lines`: the files, cut into
/// chunks of whole lines), this one (decodes, selects and filters), and a
/// writer that queues the sightings (sled transactions, and the fsync that
/// makes each batch durable). They are joined by bounded channels, of
/// `SIGHTING_BATCHES` batches of sightings and `LINE_CHUNKS` chunks of
/// lines, so memory stays bounded (about 2.5 MiB of lines and 0.7 MiB of
/// sightings in flight).
pub fn replay(config: &Config, opts: &Options) -> Result<(), CommandError> {
    if opts.files.is_empty() {
        return Err(CommandError::Other(
            "no files to replay (use - for standard input)".into(),
        ));
    }
    let sink = if opts.dry_run {
        Sink::DryRun(HashMap::new())
    } else {
        Sink::new(Backend::open_or_create(config)?)
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<Sighting>>(SIGHTING_BATCHES);
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
        Sink::Local(b, queue, _) => {
            // The backend must hold the last reference: `summarize` closes
            // the database before it sends (`--send`).
            drop(queue);
            (Some(b), HashMap::new())
        }
        Sink::DryRun(u) => (None, u),
    };
    summarize(config, opts, &stats, &totals, backend, unique)
}

/// What the reading thread hands to the decoding one.
enum Piece {
    /// A new file starts: its size when known, and its bytes-read counter.
    File(Option<u64>, Arc<AtomicU64>),
    /// Whole lines of the current file, each with its newline (the
    /// vector goes back through the recycle channel).
    Lines(Vec<u8>),
    /// The current file ended.
    End,
}

/// The reading thread of a replay: opens each file, reads it (the kernel's
/// copy out of the page cache, and gunzip), and cuts it into chunks of
/// whole lines, while the decoding thread works on the previous chunk.
/// Stops at the first error, and when the decoding side hangs up.
fn read_lines(
    files: &[PathBuf],
    max_line: usize,
    stats: &Stats,
    tx: mpsc::SyncSender<Piece>,
    recycle: mpsc::Receiver<Vec<u8>>,
) -> Result<(), CommandError> {
    for file in files {
        let count = Arc::new(AtomicU64::new(0));
        let (mut reader, size) = open(file, count.clone())
            .map_err(|e| CommandError::Other(format!("cannot read {}: {e}", file.display())))?;
        if tx.send(Piece::File(size, count)).is_err() {
            return Ok(());
        }
        let mut splitter = LineSplitter::default();
        loop {
            // A recycled chunk keeps its bytes: they are overwritten.
            let mut chunk = recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(READ_BYTES + 1024));
            let n = match splitter.read_into(&mut reader, &mut chunk, READ_BYTES, max_line, stats) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CommandError::Other(format!(
                        "reading {}: {e}",
                        file.display()
                    )))
                }
            };
            if n == 0 {
                splitter.finish(&mut chunk);
            }
            if !chunk.is_empty() && tx.send(Piece::Lines(chunk)).is_err() {
                return Ok(());
            }
            if n == 0 {
                break;
            }
        }
        if tx.send(Piece::End).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The decoding side of [`replay`]: every file, in order, into batches of
/// sightings sent to the writer. Stops early (Ok) if the writer is gone.
///
/// The files are read and cut into lines by a third thread
/// ([`read_lines`]), so that this one only decodes, selects and filters:
/// reading the 2M-line benchmark log out of the page cache alone takes a
/// third of what this thread does with it.
fn read_files(
    config: &Config,
    opts: &Options,
    stats: &Stats,
    totals: &mut Totals,
    tx: mpsc::SyncSender<Vec<Sighting>>,
    recycle: &mpsc::Receiver<Vec<Sighting>>,
) -> Result<(), CommandError> {
    std::thread::scope(|scope| {
        let (lines_tx, lines) = mpsc::sync_channel::<Piece>(LINE_CHUNKS);
        let (recycle_lines, recycled_lines) = mpsc::channel::<Vec<u8>>();
        let reader = std::thread::Builder::new()
            .name("tjfwd-replay-reader".into())
            .spawn_scoped(scope, || {
                read_lines(
                    &opts.files,
                    config.input.max_line_bytes,
                    stats,
                    lines_tx,
                    recycled_lines,
                )
            })
            .map_err(|e| CommandError::Other(format!("cannot start the reading thread: {e}")))?;
        let decoded = decode_files(
            config,
            opts,
            stats,
            totals,
            lines,
            recycle_lines,
            tx,
            recycle,
        );
        // A reading error explains a decoder that stopped early.
        let read = reader
            .join()
            .map_err(|_| CommandError::Other("the reading thread panicked".into()))?;
        read.and(decoded)
    })
}

#[allow(clippy::too_many_arguments)]
fn decode_files(
    config: &Config,
    opts: &Options,
    stats: &Stats,
    totals: &mut Totals,
    lines: mpsc::Receiver<Piece>,
    recycle_lines: mpsc::Sender<Vec<u8>>,
    tx: mpsc::SyncSender<Vec<Sighting>>,
    recycle: &mpsc::Receiver<Vec<Sighting>>,
) -> Result<(), CommandError> {
    let rules = Rules::from_config(config);
    let show_bar = opts
        .progress_bar
        .unwrap_or_else(|| io::stderr().is_terminal());
    let mut pending: Vec<Sighting> = Vec::with_capacity(CHUNK_SIGHTINGS * 2);
    let now = now_ms();
    let mut files = opts.files.iter();
    let mut file = Path::new("");
    let mut progress = Progress::new(false, None);
    let mut count = Arc::new(AtomicU64::new(0));
    let mut base_bytes = totals.bytes;
    // Ends when the reading thread does (at the end, or on an error).
    for msg in lines {
        let chunk = match msg {
            Piece::File(size, c) => {
                file = files.next().map_or(Path::new("-"), PathBuf::as_path);
                progress = Progress::new(show_bar, size);
                count = c;
                base_bytes = totals.bytes;
                continue;
            }
            Piece::Lines(chunk) => Some(chunk),
            Piece::End => None,
        };
        let end_of_file = chunk.is_none();
        if let Some(chunk) = chunk {
            let before = pending.len();
            select_lines(lines_of(&chunk), &rules, stats, now, &mut pending);
            let _ = recycle_lines.send(chunk);
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
        }
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
        let bytes = count.load(Ordering::Relaxed);
        totals.bytes = base_bytes + bytes;
        progress.update(bytes, Stats::get(&stats.lines_read), totals.sightings, file);
        if end_of_file {
            progress.finish();
        }
    }
    progress.finish();
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
            let mut out = BufWriter::new(crate::output::stdout());
            for (addr, n) in &list {
                writeln!(out, "{addr} {n}").map_err(CommandError::Output)?;
            }
            out.flush().map_err(CommandError::Output)?;
            note(format_args!("tjfwd: {summary}"));
            note(format_args!(
                "tjfwd: dry run: {} distinct addresses in {} sightings; nothing was queued",
                list.len(),
                totals.sightings
            ));
        }
        Some(b) => {
            let q = totals.queued;
            print(format_args!("{summary}\n"))?;
            print(format_args!(
                "{} sightings: {} addresses newly queued, {} already pending, {} reported since (not due again), {} in the dead-letter set\n",
                totals.sightings, q.queued_new, q.updated, q.already_reported, q.dead
            ))?;
            match b {
                Backend::Daemon(_) => {
                    if opts.send {
                        print("the running daemon sends them\n")?;
                    }
                }
                Backend::Local(ops) => {
                    drop(ops);
                    if opts.send {
                        let sent = send_pending(config, None)?;
                        print(format_args!("sent {sent} addresses\n"))?;
                    } else if q.queued_new > 0 {
                        print("no daemon runs: they are sent when `tjfwd run` starts (or now with --send or `tjfwd flush`)\n")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Policy, TargetId};
    use proptest::prelude::*;

    /// The two targets of these tests, in the order a new store registers
    /// them.
    const T: TargetId = 0;
    const U: TargetId = 1;

    const POOL: [&str; 8] = [
        "1.1.1.1",
        "2.2.2.2",
        "3.3.3.3",
        "4.4.4.4",
        "5.5.5.5",
        "6.6.6.6",
        "7.7.7.7",
        "2001:db8::7",
    ];

    fn addr(i: usize) -> IpAddr {
        POOL[i].parse().unwrap()
    }

    /// A queue with history, for two targets T and U: addresses 0-2
    /// reported to both at 1000 (0 and 1 then seen again and pending), 3
    /// dead-lettered for T and reported to U, 4 pending, 5 reported to T at
    /// 1000 and to U at 2500 (a sighting between is owed to T only, until a
    /// later one makes U owe it too); 6 and 7 unknown.
    fn queue_with_history(dir: &std::path::Path, rereport_after_ms: u64) -> Store {
        let policy = Policy {
            ttl_ms: 86_400_000,
            rereport_after_ms,
        };
        let spec = |name: &str| crate::store::TargetSpec {
            name: name.into(),
            policy,
        };
        let q = Store::open(dir, 4 << 20, &[spec("threatjammer"), spec("abuseipdb")]).unwrap();
        assert_eq!(
            q.registered(),
            [
                (T, "threatjammer".to_string()),
                (U, "abuseipdb".to_string())
            ]
        );
        let s = |i: usize, t: u64| Sighting {
            addr: addr(i),
            seen_ms: t,
        };
        q.enqueue(&[s(0, 10), s(1, 20), s(2, 30), s(3, 40)], None, 100)
            .unwrap();
        let batch = q.peek_batch(T, 10).unwrap();
        let (dead, sent): (Vec<_>, Vec<_>) = batch.into_iter().partition(|b| b.addr == addr(3));
        q.dead_letter(T, &dead, 422, "rejected", 500).unwrap();
        q.ack(T, &sent, 1000, 1000).unwrap();
        q.ack(U, &q.peek_batch(U, 10).unwrap(), 1000, 1000).unwrap();
        q.enqueue(&[s(5, 60)], None, 900).unwrap();
        q.ack(T, &q.peek_batch(T, 10).unwrap(), 1000, 1000).unwrap();
        q.ack(U, &q.peek_batch(U, 10).unwrap(), 2500, 2500).unwrap();
        q.enqueue(&[s(0, 1500), s(1, 2000), s(4, 50)], None, 2000)
            .unwrap();
        q
    }

    /// What [`state`] returns.
    type State = (u64, [Vec<(IpAddr, u64)>; 2], Vec<PerAddress>);
    type PerAddress = (
        Option<(u64, u64, u64, Vec<TargetId>)>,
        [Option<migrations::v1::Reported>; 2],
        [Option<(u64, u64)>; 2],
        Option<u64>,
    );

    /// Everything a replay can change, per address of the pool.
    fn state(q: &Store) -> State {
        let per_address: Vec<_> = (0..POOL.len())
            .map(|i| {
                let a = addr(i);
                (
                    // (without its group's sequence number)
                    q.pending(a).unwrap().map(|p| {
                        let owed: Vec<_> = p.owed.iter().map(|o| o.target).collect();
                        (p.first_seen_ms, p.last_seen_ms, p.hits, owed)
                    }),
                    [T, U].map(|t| q.reported(t, a).unwrap()),
                    [T, U].map(|t| q.dead(t, a).unwrap().map(|d| (d.first_seen_ms, d.hits))),
                    q.seen(a).unwrap(),
                )
            })
            .collect();
        // Each target's FIFO order and hits; not the group sequence
        // numbers, which depend on how many writes queued the addresses.
        let order = [T, U].map(|t| -> Vec<(IpAddr, u64)> {
            q.peek_batch(t, 100)
                .unwrap()
                .into_iter()
                .map(|i| (i.addr, i.hits))
                .collect()
        });
        (q.pending_count().unwrap(), order, per_address)
    }

    fn batches() -> impl Strategy<Value = Vec<Vec<(usize, u64)>>> {
        proptest::collection::vec(
            proptest::collection::vec((0..POOL.len(), 0u64..3000), 0..12),
            0..10,
        )
    }

    /// Replays `batches` into two copies of [`queue_with_history`]: one
    /// `enqueue` per batch, and through [`Deferred`]; compares.
    fn deferring_matches(
        batches: &[Vec<(usize, u64)>],
        rereport_after_ms: u64,
        known_max: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            queue_with_history(da.path(), rereport_after_ms),
            queue_with_history(db.path(), rereport_after_ms),
        );
        let mut deferred = Deferred {
            known_max,
            ..Deferred::default()
        };
        let (mut out_a, mut out_b) = (EnqueueOutcome::default(), EnqueueOutcome::default());
        for (i, batch) in batches.iter().enumerate() {
            let sightings: Vec<Sighting> = batch
                .iter()
                .map(|&(j, t)| Sighting {
                    addr: addr(j),
                    seen_ms: t,
                })
                .collect();
            let now = 5000 + i as u64;
            add(&mut out_a, &a.enqueue(&sightings, None, now).unwrap());
            add(&mut out_b, &deferred.put(&b, &sightings, now).unwrap());
        }
        deferred.write_all(&b).unwrap();
        prop_assert!(deferred.is_empty());
        prop_assert_eq!(out_a, out_b);
        let (mut sa, mut sb) = (state(&a), state(&b));
        // The one difference (see `Deferred`): address 5, held for T and
        // made due for U by a later sighting, is in U's FIFO at its first
        // appearance. Compared apart; U's FIFO otherwise in order.
        let late = |s: &mut State| {
            let at = s.1[1].iter().position(|(a, _)| *a == addr(5));
            at.map(|i| s.1[1].remove(i))
        };
        prop_assert_eq!(late(&mut sa), late(&mut sb));
        prop_assert_eq!(sa, sb);
        Ok(())
    }

    /// Address 5 held for T alone (U reported it after this sighting), then
    /// a sighting after U's report: U owes it too, as with sequential
    /// enqueues, though the held entry's first lookup said T only.
    #[test]
    fn a_later_sighting_makes_another_target_owe_a_held_address() {
        for known_max in [None, Some(1), Some(3)] {
            let batches = [vec![(5, 1001), (2, 1001)], vec![(5, 2501)]];
            deferring_matches(&batches, 0, known_max).unwrap();
        }
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config(64))]
        /// Replaying through [`Deferred`] leaves the queue as one `enqueue`
        /// per batch does, with the same outcome counts: new, pending,
        /// reported to one target or both (due or not, with and without
        /// rereport_after), dead-lettered addresses, repeated within and
        /// across batches, and the memory bound reached or not.
        #[test]
        fn deferring_leaves_the_queue_as_sequential_enqueues_do(
            batches in batches(),
            rereport_after_ms in prop_oneof![Just(0u64), Just(700u64)],
            known_max in prop_oneof![Just(None), Just(Some(1usize)), Just(Some(3usize))],
        ) {
            deferring_matches(&batches, rereport_after_ms, known_max)?;
        }
    }
}
