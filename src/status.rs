//! Status: a snapshot of where tjfwd stands, for `tjfwd status` (human text
//! and `--json`). Built the same way by a running daemon (answering over the
//! control socket, with its in-memory counters) and by the command itself
//! when no daemon runs (from the database alone).
//!
//! The JSON form is a stable interface (documented in docs/STATUS.md):
//! fields are only ever added, never renamed or removed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::Config;
use crate::errors::chain;
use crate::health::{judge, Verdict};
use crate::stats::{SkipReason, Stats, TargetStats};
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
    /// Each enabled target, by name. The fields above that describe
    /// delivery sum these up (`reported`, `dead_letter`...), take the
    /// latest (`last_success`, `last_error`) or the earliest
    /// (`failing_since`, `oldest_pending_age_s`), or describe the first
    /// enabled target (`rate_limit`): see docs/STATUS.md.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetStatus>,
}

/// Where one target stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// "healthy" or "degraded" (see `health_reason`).
    pub health: String,
    /// Why it is degraded.
    pub health_reason: Option<String>,
    /// Addresses it still owes a report of.
    pub pending: u64,
    /// Seconds the oldest of them has waited.
    pub oldest_pending_age_s: Option<u64>,
    /// Entries of its reported mirror.
    pub reported: u64,
    /// Of those, the ones whose lifetime at the service has not run out.
    pub reported_active: u64,
    /// Addresses it rejected for good.
    pub dead_letter: u64,
    /// Its dead letters by code and reason.
    pub dead_letter_by_reason: BTreeMap<String, u64>,
    /// When it last accepted a batch.
    pub last_success: Option<String>,
    /// Its last failure.
    pub last_error: Option<LastError>,
    /// Since when sending to it has been failing.
    pub failing_since: Option<String>,
    /// tjfwd's own rate limit for it (its request log).
    pub rate_limit: RateLimitStatus,
    /// The service's own account of its quota, from its last answer that
    /// gave one (a running daemon only; AbuseIPDB's `X-RateLimit-*`).
    pub quota: Option<QuotaStatus>,
    /// Its counters since the daemon started (None when no daemon runs).
    pub counters: Option<TargetCounters>,
}

/// A service's own account of its quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// Requests allowed in its period.
    pub limit: Option<u64>,
    /// Requests left in it.
    pub remaining: Option<u64>,
    /// When the period ends (RFC 3339).
    pub reset: Option<String>,
    /// When the service said so (RFC 3339).
    pub at: String,
}

/// One target's counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounters {
    pub requests: u64,
    pub requests_ok: u64,
    pub addresses_reported: u64,
    pub addresses_dead_lettered: u64,
    pub retries: u64,
    pub rate_limit_waits: u64,
    /// Requests by the service's answer code (0: no answer).
    pub replies: BTreeMap<String, u64>,
    /// Counters only this target has (e.g. AbuseIPDB's addresses too old
    /// to report).
    pub other: BTreeMap<String, u64>,
}

impl TargetCounters {
    /// The counters of `t`.
    pub fn of(t: &TargetStats) -> TargetCounters {
        TargetCounters {
            requests: Stats::get(&t.requests),
            requests_ok: Stats::get(&t.requests_ok),
            addresses_reported: Stats::get(&t.addresses_reported),
            addresses_dead_lettered: Stats::get(&t.addresses_dead_lettered),
            retries: Stats::get(&t.retries),
            rate_limit_waits: Stats::get(&t.rate_limit_waits),
            replies: t
                .replies()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
            other: t
                .extra()
                .into_iter()
                .map(|(k, n)| (k.to_string(), n))
                .collect(),
        }
    }
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
    humantime::format_rfc3339_seconds(crate::clock::writable_time(ms)).to_string()
}

/// Where target `t` (with `policy`) stands at `now`, with its counters
/// when a daemon runs.
fn target_status(
    queue: &Store,
    t: crate::store::TargetId,
    target: &crate::targets::Enabled,
    v: &Verdict,
    stats: Option<std::sync::Arc<TargetStats>>,
    now: u64,
) -> Result<TargetStatus, StoreError> {
    let health = queue.health(t)?;
    let oldest = queue.oldest_queued_at(t)?;
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
    let limit = target.policy.limit;
    let clocks = crate::clock::Clock::System.now_all();
    let requests = queue.request_times(t, &clocks)?;
    Ok(TargetStatus {
        health: if v.is_healthy() {
            "healthy"
        } else {
            "degraded"
        }
        .to_string(),
        health_reason: match v {
            Verdict::Healthy => None,
            Verdict::Degraded(r) => Some(r.clone()),
        },
        pending: queue.pending_count_for(t)?,
        oldest_pending_age_s: oldest.map(|o| now.saturating_sub(o) / 1000),
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
        quota: stats.as_ref().and_then(|s| s.quota()).map(|q| QuotaStatus {
            limit: q.limit,
            remaining: q.remaining,
            reset: q.reset_ms.map(rfc3339),
            at: rfc3339(q.at_ms),
        }),
        counters: stats.as_deref().map(TargetCounters::of),
    })
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
        let enabled = crate::targets::enabled(config.target_sections()).unwrap_or_default();
        let judged = judge(
            queue,
            &enabled,
            input_paused.as_deref(),
            input_error.as_deref(),
            now,
        )?;
        let mut targets = BTreeMap::new();
        let mut first_limit = None;
        for (e, (_, v)) in enabled.iter().zip(&judged.targets) {
            let Some(t) = queue.target_id(e.name) else {
                continue;
            };
            let ts = target_status(queue, t, e, v, stats.map(|s| s.target(e.name)), now)?;
            first_limit.get_or_insert_with(|| ts.rate_limit.clone());
            targets.insert(e.name.to_string(), ts);
        }
        let reason = match judged.overall {
            Verdict::Healthy => None,
            Verdict::Degraded(r) => Some(r),
        };
        let all = targets.values();
        let latest =
            |f: fn(&TargetStatus) -> Option<&String>| all.clone().filter_map(f).max().cloned();
        let last_error = all
            .clone()
            .filter_map(|t| t.last_error.as_ref())
            .max_by(|a, b| a.at.cmp(&b.at))
            .cloned();
        let input = match &config.input.cowrie_json {
            None => None,
            Some(path) => Some(input_status(queue, path)?),
        };
        Ok(Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            daemon_running: daemon_pid.is_some(),
            daemon_pid,
            state_dir: config.state_dir.display().to_string(),
            health: if reason.is_none() {
                "healthy"
            } else {
                "degraded"
            }
            .to_string(),
            health_reason: reason,
            input,
            input_paused,
            max_pending: config.queue.max_pending,
            pending,
            oldest_pending_age_s: all.clone().filter_map(|t| t.oldest_pending_age_s).max(),
            reported: all.clone().map(|t| t.reported).sum(),
            reported_active: all.clone().map(|t| t.reported_active).sum(),
            dead_letter: all.clone().map(|t| t.dead_letter).sum(),
            dead_letter_by_reason: all.clone().fold(BTreeMap::new(), |mut m, t| {
                for (r, n) in &t.dead_letter_by_reason {
                    *m.entry(r.clone()).or_insert(0) += n;
                }
                m
            }),
            last_success: latest(|t| t.last_success.as_ref()),
            last_error,
            failing_since: all
                .clone()
                .filter_map(|t| t.failing_since.as_ref())
                .min()
                .cloned(),
            rate_limit: first_limit.unwrap_or(RateLimitStatus {
                max_requests: 0,
                window_s: 0,
                requests_in_window: 0,
                next_allowed: rfc3339(now),
            }),
            counters: stats.map(Counters::of),
            targets,
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
            targets: BTreeMap::new(),
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
        if self.targets.len() > 1 {
            let _ = writeln!(s, "targets:");
        }
        for (name, t) in &self.targets {
            if self.targets.len() > 1 {
                let reason = t
                    .health_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(s, "  {name}: {}{reason}", t.health);
                let _ = writeln!(
                    s,
                    "    {} pending, {} reported ({} active), {} dead letters, last success {}",
                    t.pending,
                    t.reported,
                    t.reported_active,
                    t.dead_letter,
                    t.last_success.as_deref().unwrap_or("never")
                );
                if let Some(e) = &t.last_error {
                    let _ = writeln!(s, "    last error {} code {} {}", e.at, e.status, e.message);
                }
                let _ = writeln!(
                    s,
                    "    rate limit {}/{} requests in the last {} s, next send allowed {}",
                    t.rate_limit.requests_in_window,
                    t.rate_limit.max_requests,
                    t.rate_limit.window_s,
                    t.rate_limit.next_allowed
                );
            }
            if let Some(q) = &t.quota {
                let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
                let _ = writeln!(
                    s,
                    "{}service quota: {} of {} requests left (said at {}{})",
                    if self.targets.len() > 1 { "    " } else { "" },
                    n(q.remaining),
                    n(q.limit),
                    q.at,
                    q.reset
                        .as_deref()
                        .map(|r| format!(", resets {r}"))
                        .unwrap_or_default()
                );
            }
        }
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
    fn any_time_is_written_even_past_the_year_9999() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(crate::clock::MAX_WRITABLE_MS + 1),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn each_target_has_its_own_status_and_the_top_level_sums_them_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default_for_tests(dir.path().join("state"));
        let queue = crate::pipeline::fake::open_store(&config);
        let stats = Stats::default();
        let t = stats.target("threatjammer");
        Stats::add(&t.requests, 3);
        t.count_reply(202);
        t.add_extra("too_old", 2);
        t.set_quota(crate::stats::Quota {
            limit: Some(5),
            remaining: Some(4),
            reset_ms: None,
            at_ms: 0,
        });
        let s = Snapshot::collect(&queue, &config, Some(&stats), Some(1)).unwrap();
        let tj = &s.targets["threatjammer"];
        assert_eq!(tj.health, "healthy");
        assert_eq!(tj.rate_limit, s.rate_limit);
        assert_eq!((tj.pending, tj.reported, tj.dead_letter), (0, 0, 0));
        let c = tj.counters.as_ref().unwrap();
        assert_eq!(c.requests, 3);
        assert_eq!(c.replies["202"], 1);
        assert_eq!(c.other["too_old"], 2);
        assert_eq!(tj.quota.as_ref().unwrap().remaining, Some(4));
        // A script of before the targets reads the same fields.
        let json = serde_json::to_value(&s).unwrap();
        for key in ["pending", "reported", "dead_letter", "rate_limit", "health"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert!(s.human().contains("service quota: 4 of 5 requests left"));
    }

    #[test]
    fn a_daemon_that_cannot_read_its_queue_still_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default_for_tests(dir.path().join("state"));
        let queue = crate::pipeline::fake::open_store(&config);
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
