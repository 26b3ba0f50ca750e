//! Counters shared by the stages: lines read, lines skipped by reason,
//! addresses queued, requests by outcome. Plain atomics, cheap to bump on the
//! hot path; read by the status and metrics code and in tests.
//!
//! Also the rate limiter for warnings about bad lines: one warning per reason
//! at first, then at most one summary line per reason a minute, so a flood of
//! garbage cannot flood the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why an input line (or its address) was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line is not JSON (or is truncated JSON).
    NotJson,
    /// JSON, but a field we read has the wrong type (or is duplicated).
    InvalidField,
    /// No `eventid`.
    MissingEventid,
    /// No `src_ip`.
    MissingSrcIp,
    /// `src_ip` is not a plain IPv4/IPv6 address (zone, port, spaces...).
    InvalidAddress,
    /// A private, loopback, link-local, documentation... address.
    NonPublic,
    /// In `[filter] allowlist`.
    Allowlisted,
    /// Longer than the line-length cap.
    TooLong,
}

impl SkipReason {
    /// Every reason, in a stable order (for status output).
    pub const ALL: [SkipReason; 9] = [
        SkipReason::NotUtf8,
        SkipReason::NotJson,
        SkipReason::InvalidField,
        SkipReason::MissingEventid,
        SkipReason::MissingSrcIp,
        SkipReason::InvalidAddress,
        SkipReason::NonPublic,
        SkipReason::Allowlisted,
        SkipReason::TooLong,
    ];

    /// Stable snake_case name, used in logs, status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotUtf8 => "not_utf8",
            SkipReason::NotJson => "not_json",
            SkipReason::InvalidField => "invalid_field",
            SkipReason::MissingEventid => "missing_eventid",
            SkipReason::MissingSrcIp => "missing_src_ip",
            SkipReason::InvalidAddress => "invalid_address",
            SkipReason::NonPublic => "non_public",
            SkipReason::Allowlisted => "allowlisted",
            SkipReason::TooLong => "too_long",
        }
    }

    /// Whether the reason means broken input (warned about) rather than a
    /// policy decision (only counted).
    pub fn is_bad_input(self) -> bool {
        !matches!(self, SkipReason::NonPublic | SkipReason::Allowlisted)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Complete lines read from inputs.
    pub lines_read: AtomicU64,
    /// Lines whose event was selected (login/session events).
    pub events_selected: AtomicU64,
    /// Skips by [`SkipReason`] index.
    skipped: [AtomicU64; SkipReason::ALL.len()],
    /// Sightings that created a new pending entry.
    pub queued_new: AtomicU64,
    /// Sightings that updated an entry already pending.
    pub queued_updates: AtomicU64,
    /// Sightings dropped because the address was reported after them.
    pub already_reported: AtomicU64,
    /// Sightings of dead-lettered addresses (not re-queued automatically).
    pub dead_lettered_seen: AtomicU64,
    /// Times an input file got shorter than the checkpoint (truncation).
    pub truncations: AtomicU64,
    /// Times an input file was replaced (rotation).
    pub rotations: AtomicU64,
    /// Requests sent to the API (attempts, whatever the outcome).
    pub requests: AtomicU64,
    /// Requests answered 202.
    pub requests_ok: AtomicU64,
    /// Addresses acknowledged by a 202.
    pub addresses_reported: AtomicU64,
    /// Addresses moved to the dead-letter set.
    pub addresses_dead_lettered: AtomicU64,
    /// Addresses not sent because their last sighting is older than the
    /// target takes (AbuseIPDB: 60 days); also counted as dead-lettered.
    pub addresses_too_old: AtomicU64,
    /// Addresses a target let go unsent because they did not reach its
    /// threshold in time (AbuseIPDB's `min_attempts` in `attempts_window`).
    pub addresses_below_min_attempts: AtomicU64,
    /// Waits imposed by the rate limiter or a 429.
    pub rate_limit_waits: AtomicU64,
    /// Failed attempts that will be retried.
    pub retries: AtomicU64,
    /// Answered requests by HTTP status (0: no answer: timeout, connection
    /// error), for the `tjfwd_requests_total{status}` metric. A map behind a
    /// lock, bumped once a request: statuses are few and requests are rare.
    replies: Mutex<BTreeMap<u16, u64>>,
    warn_state: Mutex<WarnState>,
    /// Why the inputs are paused (queue full, storage failing), if they are.
    paused: Mutex<Option<String>>,
    /// Times the inputs paused.
    pub input_pauses: AtomicU64,
    /// Why the file input cannot read its file (permissions, a symlink
    /// loop...), while it cannot.
    input_error: Mutex<Option<String>>,
    /// Each report target's own counters, in the order the targets started.
    targets: Mutex<Vec<(&'static str, Arc<TargetStats>)>>,
}

/// The counters of one report target. Its scheduler bumps them together
/// with the process-wide ones of [`Stats`], which are their sums, and
/// what only the target knows: its service's quota
/// ([`crate::targets::Target::quota`]) and its own skips.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// Requests sent (attempts, whatever the outcome).
    pub requests: AtomicU64,
    /// Requests the service accepted.
    pub requests_ok: AtomicU64,
    /// Addresses the service accepted.
    pub addresses_reported: AtomicU64,
    /// Addresses moved to the target's dead-letter set.
    pub addresses_dead_lettered: AtomicU64,
    /// Waits imposed by the rate limiter or the service.
    pub rate_limit_waits: AtomicU64,
    /// Failed attempts that will be retried.
    pub retries: AtomicU64,
    /// Answered requests by the service's code (0: no answer).
    replies: Mutex<BTreeMap<u16, u64>>,
    /// Counters only this target has (name → count; names are
    /// `snake_case` constants, never service text).
    extra: Mutex<BTreeMap<&'static str, u64>>,
    /// The service's own account of its quota, from its last answer that
    /// gave one.
    quota: Mutex<Option<Quota>>,
}

/// A service's own account of its quota (e.g. AbuseIPDB's
/// `X-RateLimit-*` headers): shown by `status`, never acted on in place of
/// tjfwd's own request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    /// Requests allowed in the service's period.
    pub limit: Option<u64>,
    /// Requests left in it.
    pub remaining: Option<u64>,
    /// When the period ends (ms since the epoch).
    pub reset_ms: Option<u64>,
    /// When the service said so (ms since the epoch).
    pub at_ms: u64,
}

impl TargetStats {
    /// Counts the outcome of a request (see [`Stats::count_reply`]).
    pub fn count_reply(&self, status: u16) {
        let mut m = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_insert(0) += 1;
    }

    /// Requests by answer code, in code order.
    pub fn replies(&self) -> Vec<(u16, u64)> {
        let m = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(s, n)| (*s, *n)).collect()
    }

    /// Adds `n` to the target's own counter `name`.
    pub fn add_extra(&self, name: &'static str, n: u64) {
        let mut m = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(name).or_insert(0) += n;
    }

    /// The target's own counters, by name.
    pub fn extra(&self) -> BTreeMap<&'static str, u64> {
        self.extra.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the service's latest account of its quota.
    pub fn set_quota(&self, q: Quota) {
        *self.quota.lock().unwrap_or_else(|e| e.into_inner()) = Some(q);
    }

    /// The service's latest account of its quota, if it gave one.
    pub fn quota(&self) -> Option<Quota> {
        *self.quota.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
struct WarnState {
    /// When each reason was last warned about, and how many skips since.
    last: [Option<(Instant, u64)>; SkipReason::ALL.len()],
}

/// How often a summary warning per reason may be logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Stats {
    /// Counts a skip; logs a warning for bad input, rate-limited per reason.
    /// `detail` must already be safe to print (escaped, truncated).
    pub fn skip(&self, reason: SkipReason, detail: impl FnOnce() -> String) {
        self.skipped[reason.index()].fetch_add(1, Ordering::Relaxed);
        if !reason.is_bad_input() {
            return;
        }
        let now = Instant::now();
        let mut st = self.warn_state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut st.last[reason.index()] {
            slot @ None => {
                *slot = Some((now, 0));
                tracing::warn!(reason = %reason, line = %detail(), "skipped an input line (further ones are summarised once a minute)");
            }
            Some((at, since)) => {
                *since += 1;
                if now.duration_since(*at) >= WARN_EVERY {
                    tracing::warn!(reason = %reason, skipped = *since, "skipped more input lines in the last minute");
                    *at = now;
                    *since = 0;
                }
            }
        }
    }

    /// Records that the inputs are paused, and why; logs the change once
    /// (a warning when it starts, info when it ends).
    pub fn set_paused(&self, why: Option<String>) {
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        if *p == why {
            return;
        }
        match (&*p, &why) {
            (None, Some(w)) => {
                self.input_pauses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(reason = %w, "input paused: nothing more is read until this clears (nothing is dropped)");
            }
            (Some(_), None) => tracing::info!("input resumed"),
            (Some(_), Some(w)) => tracing::warn!(reason = %w, "input still paused"),
            (None, None) => {}
        }
        *p = why;
    }

    /// Records that the file input cannot read its file, and why (None:
    /// it reads again); logs the change once (a warning when it starts or
    /// changes, info when it ends), not at every retry.
    pub fn set_input_error(&self, why: Option<String>) {
        let mut e = self.input_error.lock().unwrap_or_else(|e| e.into_inner());
        if *e == why {
            return;
        }
        match &why {
            Some(w) => {
                tracing::warn!(error = %w, "cannot read the input; retrying (health is degraded until it reads again)")
            }
            None => tracing::info!("the input reads again"),
        }
        *e = why;
    }

    /// Why the file input cannot read its file, if it cannot.
    pub fn input_error(&self) -> Option<String> {
        self.input_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the inputs are paused, if they are.
    pub fn paused(&self) -> Option<String> {
        self.paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Number of skips for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()].load(Ordering::Relaxed)
    }

    /// Counts the outcome of a request: its HTTP status, or None when no
    /// answer came (counted as status 0).
    pub fn count_reply(&self, status: u16) {
        let mut m = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_insert(0) += 1;
    }

    /// Requests by the target's answer code (HTTP status; 0: no answer), in code order.
    pub fn replies(&self) -> Vec<(u16, u64)> {
        let m = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(s, n)| (*s, *n)).collect()
    }

    /// The counters of target `name` (made on first use).
    pub fn target(&self, name: &'static str) -> Arc<TargetStats> {
        let mut t = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = t.iter().find(|(n, _)| *n == name) {
            return s.clone();
        }
        let s = Arc::new(TargetStats::default());
        t.push((name, s.clone()));
        s
    }

    /// Every target's counters, in the order they were made.
    pub fn targets(&self) -> Vec<(&'static str, Arc<TargetStats>)> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bumps a counter by `n`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Makes attacker-controlled bytes safe to log: printable ASCII kept,
/// everything else escaped, at most `max` input bytes shown.
pub fn escape_for_log(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 8);
    for &b in bytes.iter().take(max) {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > max {
        out.push_str(&format!("…(+{} bytes)", bytes.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_non_ascii() {
        assert_eq!(
            escape_for_log(b"ab\x1b[31m\n\xd0\xbf", 100),
            "ab\\x1b[31m\\x0a\\xd0\\xbf"
        );
        assert_eq!(escape_for_log(b"abcdef", 3), "abc…(+3 bytes)");
        assert_eq!(escape_for_log(b"a\\b", 10), "a\\\\b");
    }

    #[test]
    fn skips_are_counted_by_reason() {
        let s = Stats::default();
        for _ in 0..3 {
            s.skip(SkipReason::NotJson, || "x".into());
        }
        s.skip(SkipReason::NonPublic, || {
            unreachable!("policy skips are not logged")
        });
        assert_eq!(s.skipped(SkipReason::NotJson), 3);
        assert_eq!(s.skipped(SkipReason::NonPublic), 1);
        assert_eq!(s.skipped(SkipReason::TooLong), 0);
    }

    #[test]
    fn replies_are_counted_by_status() {
        let s = Stats::default();
        assert!(s.replies().is_empty());
        for st in [202, 0, 429, 202] {
            s.count_reply(st);
        }
        assert_eq!(s.replies(), vec![(0, 1), (202, 2), (429, 1)]);
    }
}
