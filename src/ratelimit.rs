//! Rate limit and backoff: pure functions of recorded times, so they are
//! tested without clocks and behave the same across restarts.
//!
//! The API allows `max_requests_per_minute` requests per token in any rolling
//! minute. Every attempt counts, retries included. Each attempt is recorded
//! (durably, by the caller) *before* it is sent, and its record is moved to
//! the time its answer arrived once it has, so the window is measured from
//! the latest moment the server can have seen the request: the server can
//! then never count more than the limit in any window, whatever the latency.

use std::time::Duration;

use rand::Rng;

/// The rolling-window limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed per window.
    pub max: u32,
    /// The window (60 s for the API; shorter in tests).
    pub window_ms: u64,
}

impl Limit {
    /// Times that still count at `now_ms`: those within the window. A time
    /// in the future (the wall clock went back) counts as `now_ms`: still
    /// conservative, but a clock stepped back by hours cannot block sending
    /// for hours.
    fn counting(self, log: &[u64], now_ms: u64) -> impl Iterator<Item = u64> + '_ {
        log.iter()
            .map(move |&t| t.min(now_ms))
            .filter(move |t| t.saturating_add(self.window_ms) > now_ms)
    }

    /// The earliest time (≥ `now_ms`) at which one more request keeps every
    /// rolling window at or below `max`.
    pub fn next_allowed(self, log: &[u64], now_ms: u64) -> u64 {
        let mut recent: Vec<u64> = self.counting(log, now_ms).collect();
        let max = self.max.max(1) as usize;
        if recent.len() < max {
            return now_ms;
        }
        recent.sort_unstable();
        // Once the (len - max + 1) oldest have left the window, max - 1 remain.
        let t = recent[recent.len() - max];
        t.saturating_add(self.window_ms).max(now_ms)
    }

    /// Drops times that no longer count, keeping the log small.
    pub fn prune(self, log: &mut Vec<u64>, now_ms: u64) {
        let keep: Vec<u64> = self.counting(log, now_ms).collect();
        *log = keep;
    }

    /// Requests counted in the window at `now_ms`.
    pub fn in_window(self, log: &[u64], now_ms: u64) -> usize {
        self.counting(log, now_ms).count()
    }
}

/// Delay before retry number `attempt` (1-based) after a transient failure:
/// exponential from 1 s, capped at `max`, with "equal jitter" (between half
/// and all of the step), so retries from many sensors spread out but never
/// come back immediately.
pub fn backoff(attempt: u32, max: Duration, rng: &mut impl Rng) -> Duration {
    let step = Duration::from_secs(1)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = step / 2;
    half + rng.gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limit = Limit {
        max: 6,
        window_ms: 60_000,
    };

    #[test]
    fn allows_up_to_max_in_a_window() {
        let mut log = Vec::new();
        let mut now = 1_000_000;
        for _ in 0..6 {
            assert_eq!(L.next_allowed(&log, now), now);
            log.push(now);
            now += 1000;
        }
        // The 7th must wait until the first leaves the window.
        assert_eq!(L.next_allowed(&log, now), 1_000_000 + 60_000);
        assert_eq!(L.in_window(&log, now), 6);
    }

    #[test]
    fn never_more_than_max_in_any_window_when_followed() {
        // Simulate a sender that always sends as soon as allowed.
        let mut log: Vec<u64> = Vec::new();
        let mut sent = Vec::new();
        let mut now = 0;
        while sent.len() < 100 {
            now = L.next_allowed(&log, now);
            log.push(now);
            sent.push(now);
            L.prune(&mut log, now);
            now += 7; // latency
        }
        for (i, &t) in sent.iter().enumerate() {
            let n = sent[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(n <= 6, "{n} requests in the window starting at {t}");
        }
    }

    #[test]
    fn future_times_count_as_now() {
        let log = vec![10_000_000; 6];
        assert_eq!(L.next_allowed(&log, 5_000), 65_000);
        let mut pruned = log.clone();
        L.prune(&mut pruned, 5_000);
        assert_eq!(pruned, vec![5_000; 6]);
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        // Seeded, as every randomised test is: the same draws every run.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(15);
        let max = Duration::from_secs(600);
        for attempt in 1..40 {
            let step = Duration::from_secs(1 << (attempt - 1).min(20)).min(max);
            for _ in 0..20 {
                let d = backoff(attempt, max, &mut rng);
                assert!(d >= step / 2 && d <= step, "{attempt}: {d:?}");
                assert!(d <= max);
            }
        }
    }
}
