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

/// What the verdict looks at besides the target's record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    /// Why the inputs are paused (the queue is full, or cannot be written).
    pub paused: Option<&'a str>,
    /// Why the file input cannot read its file.
    pub input_error: Option<&'a str>,
    /// When the oldest address the target owes was queued (None: it owes
    /// none).
    pub oldest_pending_ms: Option<u64>,
    /// The target's rate window: a full window is a wait that ends by
    /// itself, so patience is five of the longer of it and the flush
    /// interval.
    pub rate_window: Duration,
}

/// [`verdict`], also degraded while the input cannot read its file, while
/// the inputs are paused, and while addresses wait unsent for longer than
/// five flush intervals, whatever the reason (a rate limit that never
/// lifts, a stuck scheduler, a clock problem...): the one verdict of
/// status and `/healthz`.
pub fn overall(h: &Health, now_ms: u64, flush_interval: Duration, c: &Conditions) -> Verdict {
    let v = verdict(h, now_ms, flush_interval);
    if !v.is_healthy() {
        return v;
    }
    if let Some(why) = c.input_error {
        return Verdict::Degraded(format!("the input cannot be read: {why}"));
    }
    if let Some(why) = c.paused {
        return Verdict::Degraded(format!("input paused: {why}"));
    }
    if let Some(oldest) = c.oldest_pending_ms {
        // Waiting since it was queued, or since the last report that got
        // through if later: a long backlog sent at the limit's pace is
        // progress, not a stall.
        let since = oldest.max(h.last_success_ms.unwrap_or(0));
        let waiting = now_ms.saturating_sub(since);
        let patience = flush_interval.max(c.rate_window).saturating_mul(5);
        if waiting > patience.as_millis() as u64 {
            let last = match (h.failing_since_ms, h.last_error_ms) {
                (Some(_), Some(_)) => format!(
                    "the last attempt failed ({}: {})",
                    code(h.last_error_code),
                    h.last_error_message
                ),
                _ => "no attempt has failed, so sending is held back (a rate limit or a wait that does not end)".into(),
            };
            return Verdict::Degraded(format!(
                "pending addresses have not been sent for {} s, more than five flush intervals (or rate windows); {last}",
                waiting / 1000
            ));
        }
    }
    Verdict::Healthy
}

/// The verdicts of a daemon with several targets: each enabled target's
/// own ([`overall`] without the input's conditions), and the one of
/// `status` and `/healthz`: degraded when a target refuses us or has been
/// failing (named first), else when the input cannot read or is paused,
/// else when a target's addresses stall. Reasons name their target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The verdict of the whole.
    pub overall: Verdict,
    /// Each enabled target's, in the order given.
    pub targets: Vec<(&'static str, Verdict)>,
}

/// Judges the enabled `targets` of `queue` at `now_ms` (see [`Judged`]).
pub fn judge(
    queue: &crate::store::Store,
    targets: &[crate::targets::Enabled],
    paused: Option<&str>,
    input_error: Option<&str>,
    now_ms: u64,
) -> Result<Judged, crate::store::StoreError> {
    let mut failing: Vec<String> = Vec::new();
    let mut stalled: Vec<String> = Vec::new();
    let mut each = Vec::new();
    for e in targets {
        let Some(t) = queue.target_id(e.name) else {
            continue;
        };
        let h = queue.health(t)?;
        let fi = e.policy.flush_interval;
        let own = overall(
            &h,
            now_ms,
            fi,
            &Conditions {
                paused: None,
                input_error: None,
                oldest_pending_ms: queue.oldest_queued_at(t)?,
                rate_window: Duration::from_millis(e.policy.limit.window_ms),
            },
        );
        if let Verdict::Degraded(r) = verdict(&h, now_ms, fi) {
            failing.push(format!("{}: {r}", e.name));
        } else if let Verdict::Degraded(r) = &own {
            stalled.push(format!("{}: {r}", e.name));
        }
        each.push((e.name, own));
    }
    let overall = if !failing.is_empty() {
        Verdict::Degraded(failing.join("; "))
    } else if let Some(why) = input_error {
        Verdict::Degraded(format!("the input cannot be read: {why}"))
    } else if let Some(why) = paused {
        Verdict::Degraded(format!("input paused: {why}"))
    } else if !stalled.is_empty() {
        Verdict::Degraded(stalled.join("; "))
    } else {
        Verdict::Healthy
    };
    Ok(Judged {
        overall,
        targets: each,
    })
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
        let paused = Conditions {
            paused: Some("the queue is full"),
            ..Conditions::default()
        };
        assert_eq!(
            overall(&Health::default(), 1_000_000, f, &paused),
            Verdict::Degraded("input paused: the queue is full".into())
        );
        let none = Conditions::default();
        assert!(overall(&Health::default(), 1_000_000, f, &none).is_healthy());
    }

    #[test]
    fn an_unreadable_input_is_degraded_with_its_reason() {
        let f = Duration::from_secs(60);
        let c = Conditions {
            input_error: Some("Permission denied (os error 13)"),
            ..Conditions::default()
        };
        let v = overall(&Health::default(), 1_000_000, f, &c);
        assert_eq!(
            v,
            Verdict::Degraded("the input cannot be read: Permission denied (os error 13)".into())
        );
    }

    #[test]
    fn addresses_waiting_longer_than_five_flush_intervals_are_degraded_whatever_the_reason() {
        let f = Duration::from_secs(60);
        let waiting = |oldest| Conditions {
            oldest_pending_ms: Some(oldest),
            rate_window: Duration::from_secs(10),
            ..Conditions::default()
        };
        let now = 10_000_000;
        // Queued 4 minutes ago: fine. 6 minutes: degraded, even with no
        // failure recorded (a wait that never ends).
        assert!(overall(&Health::default(), now, f, &waiting(now - 240_000)).is_healthy());
        let v = overall(&Health::default(), now, f, &waiting(now - 360_000));
        assert!(
            matches!(&v, Verdict::Degraded(r) if r.contains("not been sent for 360 s") && r.contains("held back")),
            "{v:?}"
        );
        // Rate limited (429s, healthy by the record alone) for that long.
        let limited = failing(429, now - 360_000);
        let v = overall(&limited, now, f, &waiting(now - 400_000));
        assert!(
            matches!(&v, Verdict::Degraded(r) if r.contains("HTTP 429")),
            "{v:?}"
        );
        // A backlog that is being sent: the last success is recent.
        let sending = Health {
            last_success_ms: Some(now - 10_000),
            ..Health::default()
        };
        assert!(overall(&sending, now, f, &waiting(now - 3_600_000)).is_healthy());
        // Nothing pending: healthy, however long ago the last send.
        assert!(overall(&Health::default(), now, f, &Conditions::default()).is_healthy());
        // A rate window longer than the flush interval is waited out: five
        // of those before a wait counts as a stall.
        let long_window = Conditions {
            rate_window: Duration::from_secs(120),
            ..waiting(now - 360_000)
        };
        assert!(overall(&Health::default(), now, f, &long_window).is_healthy());
    }
}
