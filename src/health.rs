//! Health: one verdict from a target's last outcomes, shared by
//! `tjfwd status` (its exit code) and the admin `/healthz` endpoint, so that
//! both always agree.
//!
//! Degraded when the target refuses our credentials or configuration
//! ([`FailureKind::Refused`]: for Threat Jammer a 401, a 403, a rejected
//! type/tags/ttl...), or when sending has been failing for longer than five
//! flush intervals. The verdict reads the kind of the last failure, never a
//! service's status code: what a code means is the target's business.

use std::time::Duration;

pub use migrations::v1::FailureKind;
pub use migrations::v3::Health;

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reports are getting through (or there was nothing to send).
    Healthy,
    /// Something needs the operator; the reason says what.
    Degraded(String),
}

impl Verdict {
    /// Whether healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Verdict::Healthy)
    }
}

/// Judges the reporter's health at `now_ms`.
pub fn verdict(h: &Health, now_ms: u64, flush_interval: Duration) -> Verdict {
    let Some(since) = h.failing_since_ms else {
        return Verdict::Healthy;
    };
    if h.last_error_kind == Some(FailureKind::Refused) {
        return Verdict::Degraded(format!(
            "the API refuses our requests ({}): {}",
            code(h.last_error_code),
            h.last_error_message
        ));
    }
    let limit = flush_interval.saturating_mul(5).as_millis() as u64;
    let failing_for = now_ms.saturating_sub(since);
    if failing_for > limit {
        let what = code(h.last_error_code);
        return Verdict::Degraded(format!(
            "sending has been failing for {} s ({what}: {})",
            failing_for / 1000,
            h.last_error_message
        ));
    }
    Verdict::Healthy
}

/// The service's code as operators know it: a target's code is its HTTP
/// status, 0 when no answer came.
fn code(status: u16) -> String {
    if status == 0 {
        "no answer".to_string()
    } else {
        format!("HTTP {status}")
    }
}

/// [`verdict`], also degraded while the inputs are paused (the queue is
/// full, or cannot be written): the one verdict of status and `/healthz`.
pub fn overall(h: &Health, now_ms: u64, flush_interval: Duration, paused: Option<&str>) -> Verdict {
    match (verdict(h, now_ms, flush_interval), paused) {
        (Verdict::Healthy, Some(why)) => Verdict::Degraded(format!("input paused: {why}")),
        (v, _) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target failing since `since`, its last error of `kind` with the
    /// service's `code` (the kinds Threat Jammer's classification gives
    /// those statuses).
    fn failing(code: u16, since: u64) -> Health {
        let kind = match code {
            429 => FailureKind::RateLimited,
            401 | 403 | 422 => FailureKind::Refused,
            _ => FailureKind::Transient,
        };
        Health {
            last_success_ms: Some(0),
            last_error_ms: Some(since),
            last_error_code: code,
            last_error_kind: Some(kind),
            last_error_message: "x".into(),
            failing_since_ms: Some(since),
        }
    }

    #[test]
    fn verdicts() {
        let f = Duration::from_secs(60);
        assert!(verdict(&Health::default(), 1_000_000, f).is_healthy());
        assert!(!verdict(&failing(401, 999_000), 1_000_000, f).is_healthy());
        assert!(!verdict(&failing(403, 999_000), 1_000_000, f).is_healthy());
        assert!(!verdict(&failing(422, 999_000), 1_000_000, f).is_healthy());
        // Transient failures: degraded only after 5 flush intervals.
        assert!(verdict(&failing(503, 800_000), 1_000_000, f).is_healthy());
        assert!(!verdict(&failing(503, 600_000), 1_000_000, f).is_healthy());
        assert!(!verdict(&failing(0, 600_000), 1_000_000, f).is_healthy());
        assert!(verdict(&failing(429, 999_000), 1_000_000, f).is_healthy());
        // The kind decides, not the code: a refusal with no HTTP status.
        let refused_without_code = Health {
            last_error_code: 0,
            ..failing(401, 999_000)
        };
        assert!(!verdict(&refused_without_code, 1_000_000, f).is_healthy());
        assert_eq!(
            overall(&Health::default(), 1_000_000, f, Some("the queue is full")),
            Verdict::Degraded("input paused: the queue is full".into())
        );
        assert!(overall(&Health::default(), 1_000_000, f, None).is_healthy());
    }
}
