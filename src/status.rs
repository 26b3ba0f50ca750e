//! Status: a snapshot of where tjfwd stands, for `tjfwd status` (human text
//! and `--json`). Built the same way by a running daemon (answering over the
//! control socket, with its in-memory counters) and by the command itself
//! when no daemon runs (from the database alone).
//!
//! The JSON form is a stable interface (documented in docs/STATUS.md):
//! fields are only ever added, never renamed or removed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::Config;
use crate::errors::chain;
use crate::health::{overall, Conditions, Verdict};
use crate::ratelimit::Limit;
use crate::stats::{SkipReason, Stats};
use crate::store::{Store, StoreError};

/// Where tjfwd stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// tjfwd's version.
    pub version: String,
    /// Whether a daemon holds the state directory.
    pub daemon_running: bool,
    /// The daemon's process id, when it runs.
    pub daemon_pid: Option<u32>,
    /// The state directory.
    pub state_dir: String,
    /// "healthy", "degraded" (see `health_reason`).
    pub health: String,
    /// Why it is degraded.
    pub health_reason: Option<String>,
    /// The file input, when configured.
    pub input: Option<InputStatus>,
    /// Why the inputs are not reading (the queue is at `[queue] max_pending`,
    /// or it cannot be written: disk full...), if they are not. Nothing is
    /// dropped meanwhile: the file input resumes where it stopped.
    #[serde(default)]
    pub input_paused: Option<String>,
    /// `[queue] max_pending`.
    #[serde(default)]
    pub max_pending: u64,
    /// Addresses waiting to be reported.
    pub pending: u64,
    /// Seconds the oldest pending address has waited.
    pub oldest_pending_age_s: Option<u64>,
    /// Entries of the local mirror of the denylist.
    pub reported: u64,
    /// Of those, the ones whose TTL has not run out.
    pub reported_active: u64,
    /// Addresses the API rejected.
    pub dead_letter: u64,
    /// Dead-lettered addresses by HTTP status and reason.
    pub dead_letter_by_reason: BTreeMap<String, u64>,
    /// When the API last accepted a batch (RFC 3339).
    pub last_success: Option<String>,
    /// The last failure.
    pub last_error: Option<LastError>,
    /// Since when sends have been failing (RFC 3339).
    pub failing_since: Option<String>,
    /// The rolling-window rate limit.
    pub rate_limit: RateLimitStatus,
    /// Counters since the daemon started (None when no daemon runs).
    pub counters: Option<Counters>,
}

/// The file input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputStatus {
    /// The configured path.
    pub path: String,
    /// Whether the file exists.
    pub exists: bool,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// The checkpoint of the file now at that path (bytes read).
    pub offset: Option<u64>,
    /// Bytes not yet read.
    pub bytes_behind: Option<u64>,
}

/// The last failure of the reporter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// RFC 3339.
    pub at: String,
    /// HTTP status (0: no answer).
    pub status: u16,
    /// What happened (escaped server text).
    pub message: String,
}

/// The rate limit's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitStatus {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// The window, seconds.
    pub window_s: u64,
    /// Requests in the current window.
    pub requests_in_window: usize,
    /// When the next request may be sent (RFC 3339; now if it may).
    pub next_allowed: String,
}

/// In-memory counters of a running daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub lines_read: u64,
    pub events_selected: u64,
    /// Skipped lines and addresses by reason.
    pub skipped: BTreeMap<String, u64>,
    pub queued_new: u64,
    pub requests: u64,
    pub requests_ok: u64,
    pub addresses_reported: u64,
    pub addresses_dead_lettered: u64,
    pub retries: u64,
    pub rotations: u64,
    pub truncations: u64,
}

impl Counters {
    /// The counters of `stats`.
    pub fn of(stats: &Stats) -> Counters {
        Counters {
            lines_read: Stats::get(&stats.lines_read),
            events_selected: Stats::get(&stats.events_selected),
            skipped: SkipReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), stats.skipped(*r)))
                .collect(),
            queued_new: Stats::get(&stats.queued_new),
            requests: Stats::get(&stats.requests),
            requests_ok: Stats::get(&stats.requests_ok),
            addresses_reported: Stats::get(&stats.addresses_reported),
            addresses_dead_lettered: Stats::get(&stats.addresses_dead_lettered),
            retries: Stats::get(&stats.retries),
            rotations: Stats::get(&stats.rotations),
            truncations: Stats::get(&stats.truncations),
        }
    }
}

/// The file input's position: its size, and the checkpoint of the file now
/// at `path`.
fn input_status(queue: &Store, path: &std::path::Path) -> Result<InputStatus, StoreError> {
    let meta = std::fs::metadata(path).ok();
    let id = crate::source::identify_path(path).ok().flatten();
    let offset = match id {
        Some(id) => queue
            .checkpoints()?
            .into_iter()
            .filter(|(k, _)| k.fingerprint == id.fingerprint)
            .map(|(_, c)| c.offset)
            .max(),
        None => None,
    };
    let size = meta.as_ref().map(|m| m.len());
    Ok(InputStatus {
        path: path.display().to_string(),
        exists: meta.is_some(),
        size,
        offset,
        bytes_behind: match (size, offset) {
            (Some(s), Some(o)) => Some(s.saturating_sub(o)),
            (Some(s), None) => Some(s),
            _ => None,
        },
    })
}

/// RFC 3339 (seconds) of a time in ms since the epoch.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl Snapshot {
    /// Collects a snapshot from the database (and the daemon's counters).
    pub fn collect(
        queue: &Store,
        config: &Config,
        stats: Option<&Stats>,
        daemon_pid: Option<u32>,
    ) -> Result<Snapshot, StoreError> {
        let now = now_ms();
        let t = queue.first_target();
        let health = queue.health(t)?;
        let pending = queue.pending_count()?;
        let input_paused = match stats {
            Some(s) => s.paused(),
            None if pending >= config.queue.max_pending => Some(format!(
                "the queue is full: {pending} pending addresses, [queue] max_pending = {}",
                config.queue.max_pending
            )),
            None => None,
        };
        let input_error =
            match stats {
                Some(s) => s.input_error(),
                // No daemon: look at the file as it would.
                None => config.input.cowrie_json.as_deref().and_then(|p| {
                    match crate::source::open_tailable(p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            Some(format!("{}: {e}", p.display()))
                        }
                        _ => None,
                    }
                }),
            };
        let oldest = queue.oldest_queued_at(t)?;
        let v = overall(
            &health,
            now,
            config.schedule().flush_interval,
            &Conditions {
                paused: input_paused.as_deref(),
                input_error: input_error.as_deref(),
                oldest_pending_ms: oldest,
                rate_window: config.schedule().rate_window,
            },
        );
        let (mut reported, mut active) = (0, 0);
        for e in queue.reported_entries(t) {
            let (_, r) = e?;
            reported += 1;
            if r.expires_at_ms > now {
                active += 1;
            }
        }
        let mut dead_by_reason = BTreeMap::new();
        let mut dead = 0;
        for e in queue.dead_entries(t) {
            let (_, d) = e?;
            dead += 1;
            *dead_by_reason
                .entry(format!("{}: {}", d.status, d.reason))
                .or_insert(0) += 1;
        }
        let limit = Limit {
            max: config.schedule().max_requests_per_minute,
            window_ms: config.schedule().rate_window.as_millis() as u64,
        };
        let clocks = crate::clock::Clock::System.now_all();
        let requests = queue.request_times(t, &clocks)?;
        let input = match &config.input.cowrie_json {
            None => None,
            Some(path) => Some(input_status(queue, path)?),
        };
        Ok(Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            daemon_running: daemon_pid.is_some(),
            daemon_pid,
            state_dir: config.state_dir.display().to_string(),
            health: if v.is_healthy() {
                "healthy"
            } else {
                "degraded"
            }
            .to_string(),
            health_reason: match v {
                Verdict::Healthy => None,
                Verdict::Degraded(r) => Some(r),
            },
            input,
            input_paused,
            max_pending: config.queue.max_pending,
            pending,
            oldest_pending_age_s: oldest.map(|t| now.saturating_sub(t) / 1000),
            reported,
            reported_active: active,
            dead_letter: dead,
            dead_letter_by_reason: dead_by_reason,
            last_success: health.last_success_ms.map(rfc3339),
            last_error: health.last_error_ms.map(|at| LastError {
                at: rfc3339(at),
                status: health.last_error_code,
                message: health.last_error_message.clone(),
            }),
            failing_since: health.failing_since_ms.map(rfc3339),
            rate_limit: RateLimitStatus {
                max_requests: limit.max,
                window_s: limit.window_ms / 1000,
                requests_in_window: limit.in_window(&requests, now),
                next_allowed: rfc3339(limit.next_allowed(&requests, now)),
            },
            counters: stats.map(Counters::of),
        })
    }

    /// What a running daemon can still say when its database cannot be read
    /// (sled fails reads too after some I/O errors: a full disk): degraded,
    /// with the reason, the pause and the in-memory counters. The queue's
    /// figures are what could be read (0 otherwise).
    pub fn unreadable(
        queue: &Store,
        config: &Config,
        stats: Option<&Stats>,
        daemon_pid: Option<u32>,
        error: &StoreError,
    ) -> Snapshot {
        let now = now_ms();
        let paused = stats.and_then(Stats::paused);
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            daemon_running: daemon_pid.is_some(),
            daemon_pid,
            state_dir: config.state_dir.display().to_string(),
            health: "degraded".to_string(),
            health_reason: Some(match &paused {
                Some(p) => format!("input paused: {p}; cannot read the queue: {}", chain(error)),
                None => format!("cannot read the queue: {}", chain(error)),
            }),
            input: config
                .input
                .cowrie_json
                .as_ref()
                .and_then(|p| input_status(queue, p).ok()),
            input_paused: paused,
            max_pending: config.queue.max_pending,
            pending: queue.pending_count().unwrap_or(0),
            oldest_pending_age_s: None,
            reported: 0,
            reported_active: 0,
            dead_letter: 0,
            dead_letter_by_reason: BTreeMap::new(),
            last_success: None,
            last_error: None,
            failing_since: None,
            rate_limit: RateLimitStatus {
                max_requests: config.schedule().max_requests_per_minute,
                window_s: config.schedule().rate_window.as_secs(),
                requests_in_window: 0,
                next_allowed: rfc3339(now),
            },
            counters: stats.map(Counters::of),
        }
    }

    /// The exit code of `tjfwd status`: 0 healthy, 1 degraded, 2 not running.
    pub fn exit_code(&self) -> u8 {
        match (self.daemon_running, self.health.as_str()) {
            (false, _) => 2,
            (true, "healthy") => 0,
            _ => 1,
        }
    }

    /// A short human summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = match self.daemon_pid {
            Some(pid) => writeln!(s, "daemon:      running (pid {pid}), {}", self.health),
            None => writeln!(s, "daemon:      not running"),
        };
        if let Some(r) = &self.health_reason {
            let _ = writeln!(s, "             {r}");
        }
        let _ = writeln!(s, "state dir:   {}", self.state_dir);
        if let Some(i) = &self.input {
            let pos = match (i.exists, i.offset, i.size) {
                (false, _, _) => "does not exist".to_string(),
                (true, Some(o), Some(sz)) => {
                    format!("at {o} of {sz} bytes ({} behind)", sz.saturating_sub(o))
                }
                (true, None, Some(sz)) => format!("not read yet ({sz} bytes)"),
                _ => String::new(),
            };
            let _ = writeln!(s, "input:       {} {pos}", i.path);
        }
        let age = self
            .oldest_pending_age_s
            .map(|a| format!(", oldest waiting {a} s"))
            .unwrap_or_default();
        let _ = writeln!(s, "pending:     {}{age}", self.pending);
        if let Some(p) = &self.input_paused {
            let _ = writeln!(s, "input paused: {p}");
        }
        let _ = writeln!(
            s,
            "reported:    {} ({} active)",
            self.reported, self.reported_active
        );
        let _ = writeln!(s, "dead letter: {}", self.dead_letter);
        for (reason, n) in &self.dead_letter_by_reason {
            let _ = writeln!(s, "             {n} × {reason}");
        }
        let _ = writeln!(
            s,
            "last success: {}",
            self.last_success.as_deref().unwrap_or("never")
        );
        if let Some(e) = &self.last_error {
            let _ = writeln!(s, "last error:  {} HTTP {} {}", e.at, e.status, e.message);
        }
        let _ = writeln!(
            s,
            "rate limit:  {}/{} requests in the last {} s, next send allowed {}",
            self.rate_limit.requests_in_window,
            self.rate_limit.max_requests,
            self.rate_limit.window_s,
            self.rate_limit.next_allowed
        );
        if let Some(c) = &self.counters {
            let skipped: Vec<String> = c
                .skipped
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            let _ = writeln!(
                s,
                "since start: {} lines, {} selected, {} queued, {} requests ({} ok), {} reported",
                c.lines_read,
                c.events_selected,
                c.queued_new,
                c.requests,
                c.requests_ok,
                c.addresses_reported
            );
            let _ = writeln!(
                s,
                "skipped:     {}",
                if skipped.is_empty() {
                    "none".to_string()
                } else {
                    skipped.join(" ")
                }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_cannot_read_its_queue_still_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default_for_tests(dir.path().join("state"));
        // As `daemon::open_queue` opens it (the daemon is above this layer).
        let queue = Store::open(
            &config.state_dir,
            config.storage.cache_capacity,
            &crate::targets::store_specs(config.target_sections()),
        )
        .unwrap();
        let stats = Stats::default();
        stats.set_paused(Some(
            "cannot write the queue: No space left on device".into(),
        ));
        let err = StoreError::Sled(sled::Error::Io(std::io::Error::other("disk full")));
        let s = Snapshot::unreadable(&queue, &config, Some(&stats), Some(42), &err);
        assert_eq!(s.health, "degraded");
        assert_eq!(s.exit_code(), 1);
        let reason = s.health_reason.unwrap();
        assert!(
            reason.contains("No space left") && reason.contains("cannot read the queue"),
            "{reason}"
        );
        assert!(s.input_paused.unwrap().contains("No space left"));
        assert_eq!(s.daemon_pid, Some(42));
        assert!(s.counters.is_some());
    }
}
