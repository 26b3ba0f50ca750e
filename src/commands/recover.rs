//! `tjfwd recover`: what to do when the database is damaged.
//!
//! It never deletes anything. With the state directory locked (no daemon may
//! run), it
//!
//! 1. examines the database on a scratch copy (opening a sled database
//!    writes to it; the original is left exactly as it was found) and reads
//!    every record ([`Store::verify`]);
//! 2. stops there with `--check`, or when the database is sound (unless
//!    `--force`);
//! 3. moves the database aside (`db` → `db.damaged-<time>`), creates a new
//!    one, and salvages every record it can still read from the copy:
//!    reported entries (so addresses are not reported again before their
//!    time), dead letters, pending addresses, the denylist's last
//!    sightings (`[feed]`, `export`), and the request log (when it
//!    cannot be read, the rate window is taken as full, so the first send
//!    waits a whole window: the API limit holds across the recovery too);
//! 4. rebuilds the queue from the Cowrie logs still on disk: the configured
//!    input and every rotated file beside it, from their beginning (the
//!    checkpoints are not trusted). Sightings of addresses salvaged as
//!    reported only queue them again when they are due, as always.
//!
//! Older archives elsewhere can be queued afterwards with `tjfwd replay`.

use std::io::Write;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use migrations::v1::{Dead, RequestLog};

use crate::clock::{now_ms, restate, Clock};
use crate::commands::{CommandError, ConfigArgs};
use crate::config::{Config, StartAt};
use crate::daemon::store_targets;
use crate::errors::chain;
use crate::pipeline::{Commit, Pipeline};
use crate::source::{Chunk, Tailer};
use crate::stats::Stats;
use crate::store::{
    finish_interrupted_recover, lock_state_dir, replace_database, seal_says_older, Finished,
    Intake, Sighting, Store, StoreError, TargetId, Verified, DAMAGED_MARKER, RECOVER_NEW,
    RECOVER_SCRATCH,
};

/// Sightings written per transaction while salvaging.
const SALVAGE_CHUNK: usize = 2_000;

/// The flags of `tjfwd recover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only examine the database and say what is wrong (exit 0 sound,
    /// 1 damaged); change nothing.
    #[arg(long)]
    check: bool,
    /// Rebuild even when the database is sound.
    #[arg(long, conflicts_with = "check")]
    force: bool,
}

/// Runs `tjfwd recover`, its report on standard output; exit 1 when
/// `--check` finds the database damaged.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load(false)?;
    let opts = Options {
        check: args.check,
        force: args.force,
    };
    let sound = recover(&config, opts, &mut crate::output::stdout())?;
    Ok(if args.check && !sound {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `recover` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Examine only; change nothing.
    pub check: bool,
    /// Rebuild even when the database is sound.
    pub force: bool,
}

/// What the examination found.
#[derive(Debug)]
pub enum Diagnosis {
    /// No database at all.
    Missing,
    /// It opens and every record reads back consistently.
    Sound(Verified),
    /// It opens, but records are unreadable or inconsistent.
    Inconsistent(Verified),
    /// It does not open (or reading it panicked).
    Unopenable(String),
}

impl Diagnosis {
    pub fn is_sound(&self) -> bool {
        matches!(self, Diagnosis::Sound(_))
    }
}

/// What was salvaged from the damaged database.
#[derive(Debug, Default)]
struct Salvage {
    reported: u64,
    dead: u64,
    pending: u64,
    /// Last sightings kept for the denylist.
    seen: u64,
    /// The request log of every target was salvaged.
    request_log: bool,
    unreadable: u64,
}

/// Runs `tjfwd recover`, writing its report to `out`. Returns whether the
/// database was sound (the exit status of `--check`).
pub fn recover(config: &Config, opts: Options, out: &mut dyn Write) -> Result<bool, CommandError> {
    let state_dir = &config.state_dir;
    let lock = lock_state_dir(state_dir).map_err(|e| match e {
        StoreError::Locked { dir, .. } => CommandError::Other(format!(
            "{} is in use (a tjfwd daemon or command is running with it); stop it first \
             (systemctl stop tjfwd), then run recover again",
            dir.display()
        )),
        e => e.into(),
    })?;
    let db_dir = state_dir.join("db");
    let scratch = state_dir.join(RECOVER_SCRATCH);
    // An earlier recover that was interrupted: finished or undone first.
    match finish_interrupted_recover(state_dir).map_err(|e| {
        CommandError::Other(format!(
            "cannot finish or undo the interrupted recover in {}: {e}",
            state_dir.display()
        ))
    })? {
        Finished::Nothing => {}
        Finished::Undone => writeln!(
            out,
            "an earlier recover was interrupted before it replaced the database: its unfinished new database was removed"
        )
        .map_err(|e| CommandError::Other(format!("cannot write: {e}")))?,
        Finished::Completed { aside } => writeln!(
            out,
            "an earlier recover was interrupted while it replaced the database: the replacement was completed{}",
            aside.map(|a| format!(" (the old database is {})", state_dir.join(a).display())).unwrap_or_default()
        )
        .map_err(|e| CommandError::Other(format!("cannot write: {e}")))?,
    }
    remove_scratch(&scratch)?;

    let (diagnosis, salvaged_from) = examine(&db_dir, &scratch, config)?;
    let w = |out: &mut dyn Write, s: String| -> Result<(), CommandError> {
        writeln!(out, "{s}").map_err(|e| CommandError::Other(format!("cannot write: {e}")))
    };
    match &diagnosis {
        Diagnosis::Missing => w(out, format!("no database in {}", state_dir.display()))?,
        Diagnosis::Sound(v) => w(
            out,
            format!(
                "the database in {} is sound: {} pending, {} reported, {} dead-lettered, {} checkpoints",
                state_dir.display(),
                v.pending,
                v.reported,
                v.dead,
                v.checkpoints
            ),
        )?,
        Diagnosis::Inconsistent(v) => {
            w(
                out,
                format!(
                    "the database in {} is damaged: {} problems; readable: {} pending, {} reported, {} dead-lettered",
                    state_dir.display(),
                    v.problems,
                    v.pending,
                    v.reported,
                    v.dead
                ),
            )?;
            for d in &v.details {
                w(out, format!("  {d}"))?;
            }
        }
        Diagnosis::Unopenable(why) => w(
            out,
            format!(
                "the database in {} is damaged and cannot be opened: {why}",
                state_dir.display()
            ),
        )?,
    }
    let marker = std::fs::read_to_string(state_dir.join(DAMAGED_MARKER)).ok();
    if let Some(m) = &marker {
        w(
            out,
            format!(
                "the daemon found it damaged while running ({}): {}",
                state_dir.join(DAMAGED_MARKER).display(),
                m.trim()
            ),
        )?;
    }
    let sound = diagnosis.is_sound() && marker.is_none();
    if opts.check {
        drop(salvaged_from);
        remove_scratch(&scratch)?;
        return Ok(sound || matches!(diagnosis, Diagnosis::Missing));
    }
    if sound && !opts.force {
        drop(salvaged_from);
        remove_scratch(&scratch)?;
        w(
            out,
            "nothing to recover (--force rebuilds it from the logs anyway)".into(),
        )?;
        return Ok(true);
    }

    // The new database is built beside the old one, which stays in place,
    // untouched, until the new one is complete and durable; then one
    // journaled replacement (store::replace_database) that an interruption
    // cannot leave half-done: the next recover or start finishes it, or
    // undoes a build that had not finished.
    let new_dir = state_dir.join(RECOVER_NEW);
    let queue = Arc::new(Store::open(
        &new_dir,
        config.storage.cache_capacity,
        &store_targets(config),
    )?);
    let now = now_ms();
    let salvage = match &salvaged_from {
        Some(old) => salvage(old, &queue, now)?,
        None => Salvage::default(),
    };
    let window_known = salvage.request_log && diagnosis.is_sound();
    if !window_known {
        // Unknown recent requests (a damaged or rolled-back database may
        // have lost the last ones): take the window as full.
        let clocks = Clock::System.now_all();
        let full = RequestLog {
            sent_at_ms: vec![clocks.wall_ms; config.schedule().max_requests_per_minute as usize],
        };
        for t in queue.served() {
            queue.record_request(t.id, &full, &clocks)?;
        }
    }
    drop(salvaged_from);
    remove_scratch(&scratch)?;
    w(
        out,
        format!(
            "salvaged {} reported, {} dead-lettered, {} pending addresses, {} last sightings of the denylist{}{}",
            salvage.reported,
            salvage.dead,
            salvage.pending,
            salvage.seen,
            if window_known {
                ", and the request log"
            } else {
                "; the recent requests are not known for sure, so the first send waits a whole rate window"
            },
            if salvage.unreadable > 0 {
                format!(" ({} records were unreadable)", salvage.unreadable)
            } else {
                String::new()
            }
        ),
    )?;

    let stats = Arc::new(Stats::default());
    if let Some(path) = &config.input.cowrie_json {
        rebuild_from_logs(config, &queue, path, &stats)?;
        w(
            out,
            format!(
                "read {} lines of {} and its rotated files: {} login/session events, {} addresses queued again",
                Stats::get(&stats.lines_read),
                path.display(),
                Stats::get(&stats.events_selected),
                Stats::get(&stats.queued_new)
            ),
        )?;
    } else {
        w(
            out,
            "no [input] cowrie_json is configured: nothing to re-read".into(),
        )?;
    }
    queue.flush()?;
    let pending = queue.pending_count()?;
    // Closed before it is moved: no thread of it may write any more.
    drop(Arc::try_unwrap(queue).map_err(|_| {
        CommandError::Other("the new database is still in use (a bug in recover)".into())
    })?);

    // Replace the database: renames, nothing is deleted.
    let aside = db_dir
        .exists()
        .then(|| aside_name(state_dir, if sound { "replaced" } else { "damaged" }));
    replace_database(state_dir, aside.as_deref()).map_err(|e| {
        CommandError::Other(format!(
            "cannot put the new database in place in {}: {e}; run `tjfwd recover` again \
             to finish it",
            state_dir.display()
        ))
    })?;
    drop(lock);
    if let Some(a) = &aside {
        w(
            out,
            format!(
                "moved the old database aside to {}",
                state_dir.join(a).display()
            ),
        )?;
    }
    w(
        out,
        format!(
            "the new database holds {pending} pending addresses; start tjfwd again. \
             Older logs kept elsewhere can be queued with `tjfwd replay`.{}",
            aside
                .map(|a| format!(
                    " Once all is well, {} may be deleted.",
                    state_dir.join(a).display()
                ))
                .unwrap_or_default()
        ),
    )?;
    Ok(sound)
}

/// The name the old database gets in the state directory:
/// `db.<why>-<UTC time>` (`damaged`, or `replaced` when it was sound and
/// rebuilt on request), never reused.
fn aside_name(state_dir: &Path, why: &str) -> String {
    let stamp = compact_utc(now_ms());
    let mut name = format!("db.{why}-{stamp}");
    let mut n = 1;
    while state_dir.join(&name).exists() {
        name = format!("db.{why}-{stamp}.{n}");
        n += 1;
    }
    name
}

/// `YYYYmmddTHHMMSSZ`.
fn compact_utc(ms: u64) -> String {
    let s = humantime::format_rfc3339_seconds(crate::clock::writable_time(ms)).to_string();
    s.replace(['-', ':'], "")
}

fn remove_scratch(scratch: &Path) -> Result<(), CommandError> {
    match std::fs::remove_dir_all(scratch) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CommandError::Other(format!(
            "cannot remove the scratch copy {}: {e}",
            scratch.display()
        ))),
    }
}

/// Copies the database to `scratch/db` and opens and verifies the copy.
/// Returns the diagnosis and the opened copy (to salvage from), if it opened.
fn examine(
    db_dir: &Path,
    scratch: &Path,
    config: &Config,
) -> Result<(Diagnosis, Option<Store>), CommandError> {
    if !db_dir.exists() {
        return Ok((Diagnosis::Missing, None));
    }
    copy_dir(db_dir, &scratch.join("db")).map_err(|e| {
        CommandError::Other(format!(
            "cannot copy {} to {} to examine it: {e} (is the disk full?)",
            db_dir.display(),
            scratch.display()
        ))
    })?;
    let state_dir = db_dir.parent().unwrap_or(Path::new("."));
    let result = quietly(|| {
        let q = Store::open(
            scratch,
            config.storage.cache_capacity,
            &store_targets(config),
        )?;
        let mut v = q.verify();
        // The copy has no seal: compare with the state directory's.
        if let Some(older) = seal_says_older(state_dir, q.next_seq()?) {
            v.problems += 1;
            v.details.insert(0, older);
        }
        Ok::<_, StoreError>((q, v))
    });
    Ok(match result {
        Ok(Ok((q, v))) if v.problems == 0 => (Diagnosis::Sound(v), Some(q)),
        Ok(Ok((q, v))) => (Diagnosis::Inconsistent(v), Some(q)),
        Ok(Err(StoreError::Damaged { detail, .. })) => (Diagnosis::Unopenable(detail), None),
        Ok(Err(e)) => (Diagnosis::Unopenable(chain(&e).to_string()), None),
        Err(panic) => (Diagnosis::Unopenable(panic), None),
    })
}

/// Runs `f`, turning a panic (sled may panic on some damaged files) into an
/// error message instead of a crash report on stderr.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let message = Arc::new(Mutex::new(String::new()));
    let seen = message.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = seen.lock() {
            *m = format!("reading it failed: {info}");
        }
    }));
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    r.map_err(|_| {
        let m = message.lock().map(|m| m.clone()).unwrap_or_default();
        if m.is_empty() {
            "reading it failed".into()
        } else {
            m
        }
    })
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies target `from`'s reported mirror, dead letters and request log in
/// `old` to target `to` in `new`. Returns whether the request log was read.
fn salvage_target(
    old: &Store,
    new: &Store,
    from: TargetId,
    to: TargetId,
    s: &mut Salvage,
) -> Result<bool, StoreError> {
    for item in old.reported_entries(from) {
        match item {
            Ok((addr, r)) => {
                new.restore_reported(to, addr, &r)?;
                s.reported += 1;
            }
            Err(StoreError::Sled(_)) => {
                s.unreadable += 1;
                break;
            }
            Err(_) => s.unreadable += 1,
        }
    }
    for item in old.dead_entries(from) {
        match item {
            Ok((addr, d)) => {
                let d: Dead = d;
                new.restore_dead(to, addr, &d)?;
                s.dead += 1;
            }
            Err(StoreError::Sled(_)) => {
                s.unreadable += 1;
                break;
            }
            Err(_) => s.unreadable += 1,
        }
    }
    // Restated in today's wall clock frame, with today's clocks.
    let log = old
        .request_log(from)
        .and_then(|log| Ok((log, old.request_clock(from)?)));
    Ok(match log {
        Ok((log, written)) => {
            let now = Clock::System.now_all();
            let log = RequestLog {
                sent_at_ms: restate(&log.sent_at_ms, written.as_ref(), &now),
            };
            new.record_request(to, &log, &now)?;
            true
        }
        Err(_) => false,
    })
}

/// Copies every readable record of `old` into the new queue.
fn salvage(old: &Store, new: &Store, now: u64) -> Result<Salvage, CommandError> {
    let mut s = Salvage::default();
    // Each target's records go to the target of the same name in the new
    // store (the configured ones).
    let targets: Vec<(TargetId, TargetId)> = old
        .registered()
        .iter()
        .filter_map(|(from, name)| new.target_id(name).map(|to| (*from, to)))
        .collect();
    let read = quietly(|| -> Result<(), StoreError> {
        let mut logs = 0;
        for &(from, to) in &targets {
            if salvage_target(old, new, from, to, &mut s)? {
                logs += 1;
            }
        }
        s.request_log = logs > 0 && logs == new.served().len();
        let mut chunk: Vec<Sighting> = Vec::with_capacity(SALVAGE_CHUNK);
        for item in old.pending_entries() {
            match item {
                Ok((addr, p)) => {
                    push_pending(&mut chunk, addr, &p);
                    s.pending += 1;
                    if chunk.len() >= SALVAGE_CHUNK {
                        new.enqueue(&chunk, None, now)?;
                        chunk.clear();
                    }
                }
                Err(StoreError::Sled(_)) => {
                    s.unreadable += 1;
                    break;
                }
                Err(_) => s.unreadable += 1,
            }
        }
        new.enqueue(&chunk, None, now)?;
        // The denylist's last sightings of addresses no longer pending.
        for item in old.seen_entries() {
            match item {
                Ok((addr, at)) => {
                    new.restore_seen(addr, at)?;
                    s.seen += 1;
                }
                Err(StoreError::Sled(_)) => {
                    s.unreadable += 1;
                    break;
                }
                Err(_) => s.unreadable += 1,
            }
        }
        Ok(())
    });
    match read {
        Ok(Ok(())) => Ok(s),
        Ok(Err(e)) => Err(e.into()),
        // A panic while reading the old copy: keep what was salvaged.
        Err(_) => {
            s.unreadable += 1;
            Ok(s)
        }
    }
}

fn push_pending(chunk: &mut Vec<Sighting>, addr: IpAddr, p: &Intake) {
    chunk.push(Sighting {
        addr,
        seen_ms: p.first_seen_ms,
    });
    if p.last_seen_ms != p.first_seen_ms {
        chunk.push(Sighting {
            addr,
            seen_ms: p.last_seen_ms,
        });
    }
}

/// Reads the input and its rotated files from their beginning into `queue`,
/// through the pipeline (checkpoints in the transaction, as the daemon's
/// file input); the first storage error ends it.
fn rebuild_from_logs(
    config: &Config,
    queue: &Arc<Store>,
    path: &Path,
    stats: &Arc<Stats>,
) -> Result<(), CommandError> {
    // "Started watching at the epoch": every retained rotated file is read.
    queue.set_input_since(0)?;
    // No daemon, no scheduler to wake.
    let pipeline = Pipeline::new(queue.clone(), config, stats.clone(), Arc::default());
    let mut tailer = Tailer::new(
        path.to_path_buf(),
        StartAt::Beginning,
        config.input.max_line_bytes,
    );
    let mut chunk = Chunk::default();
    let mut sightings = Vec::new();
    loop {
        let now = now_ms();
        let got = tailer
            .next_chunk(queue, stats, &mut chunk, now)
            .map_err(|e| CommandError::Other(format!("cannot read the input: {e}")))?;
        if !got {
            return Ok(());
        }
        let commit = Commit::InTransaction(chunk.checkpoint(now));
        pipeline
            .ingest(chunk.data(), &commit, now, &mut sightings)
            .map_err(|f| f.error)?;
        tailer.commit();
    }
}
