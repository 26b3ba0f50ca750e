//! The pure classification of the Threat Jammer Report API's answers into
//! the scheduler's [`Action`]s: the single place where an HTTP status (or a
//! transport error) becomes an action. Its table test is the contract:
//!
//! | answer                       | action                                    |
//! |------------------------------|-------------------------------------------|
//! | 202                          | `Delivered` (the only success)            |
//! | 429                          | `RateLimited` (Retry-After, else a minute) |
//! | 5xx, 408, timeout, transport | `Transient` (backoff with jitter)         |
//! | 413                          | `TooLarge` (split the batch)              |
//! | 400, 422 about addresses     | `Rejected` (isolate the bad addresses)    |
//! | 400, 422 about type/tags/ttl | `Config`                                  |
//! | 401, 403, 404, 405, 3xx, other 4xx, other 2xx | `Config` (pause, retry slowly) |
//!
//! Server text is escaped and truncated ([`summarize`]) before it is put in
//! a reason, which is logged and stored.

use std::time::{Duration, SystemTime};

use super::client::Reply;
use crate::stats::escape_for_log;
use crate::targets::{Action, Answer};

/// Classifies a reply. Pure: `now` is only used for an HTTP-date Retry-After.
pub fn classify(reply: &Reply, now: SystemTime) -> Answer {
    Answer {
        code: reply.status.unwrap_or(0),
        action: action(reply, now),
    }
}

fn action(reply: &Reply, now: SystemTime) -> Action {
    let reason = || summarize(&reply.body);
    let Some(status) = reply.status else {
        return Action::Transient { reason: reason() };
    };
    match status {
        202 => Action::Delivered,
        429 => Action::RateLimited {
            wait: reply
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now)),
        },
        408 | 500..=599 => Action::Transient {
            reason: format!("HTTP {status}: {}", reason()),
        },
        413 => Action::TooLarge,
        400 | 422 => {
            let (indices, about_config) = rejected_fields(&reply.body);
            if about_config {
                Action::Config {
                    reason: format!(
                        "the API rejected the request's type, tags or ttl ({}); check [targets.threatjammer] category, tags and ttl",
                        reason()
                    ),
                }
            } else {
                Action::Rejected {
                    indices,
                    reason: reason(),
                }
            }
        }
        401 => Action::Config {
            reason: format!(
                "the API refused the token ({}); check [targets.threatjammer] bearer_token and that api_url is your token's region",
                reason()
            ),
        },
        403 => Action::Config {
            reason: format!(
                "the API refused this subscription ({}); the Report API needs a subscription that includes it",
                reason()
            ),
        },
        _ => Action::Config {
            reason: format!(
                "unexpected HTTP {status} ({}); check [targets.threatjammer] api_url",
                reason()
            ),
        },
    }
}

/// `Retry-After`: delay-seconds or an HTTP date. Clamped to [1 s, 1 h].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.clamp(Duration::from_secs(1), Duration::from_secs(3600)))
}

/// From a 400/422 body: the indices of `addresses` it names, and whether it
/// names `type`, `tags` or `ttl` (a configuration problem). FastAPI-style
/// bodies are understood: `{"detail": [{"loc": ["body", "addresses", 3]}]}`.
fn rejected_fields(body: &str) -> (Vec<usize>, bool) {
    let mut indices = Vec::new();
    let mut config = false;
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return (indices, false);
    };
    let Some(details) = v.get("detail").and_then(|d| d.as_array()) else {
        return (indices, false);
    };
    for d in details {
        let Some(loc) = d.get("loc").and_then(|l| l.as_array()) else {
            continue;
        };
        let names: Vec<&str> = loc.iter().filter_map(|x| x.as_str()).collect();
        if names.iter().any(|n| matches!(*n, "type" | "tags" | "ttl")) {
            config = true;
        } else if names.contains(&"addresses") {
            if let Some(i) = loc.iter().rev().find_map(|x| x.as_u64()) {
                indices.push(i as usize);
            }
        }
    }
    indices.sort_unstable();
    indices.dedup();
    (indices, config)
}

/// Server or transport text made safe to log and store: escaped, ≤ 200 bytes.
pub fn summarize(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        "no details".into()
    } else {
        escape_for_log(t.as_bytes(), 200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: Option<u16>, retry_after: Option<&str>, body: &str) -> Reply {
        Reply {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: body.to_owned(),
        }
    }

    #[test]
    fn classification_table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let addr_detail = r#"{"detail":[{"loc":["body","addresses",3],"msg":"bad"},{"loc":["body","addresses",1],"msg":"bad"}]}"#;
        let ttl_detail = r#"{"detail":[{"loc":["body","ttl"],"msg":"must be > 0"}]}"#;
        let cases: Vec<(Reply, Action)> = vec![
            (reply(Some(202), None, ""), Action::Delivered),
            (
                reply(Some(429), None, ""),
                Action::RateLimited { wait: None },
            ),
            (
                reply(Some(429), Some("7"), ""),
                Action::RateLimited {
                    wait: Some(Duration::from_secs(7)),
                },
            ),
            (
                reply(Some(429), Some("Tue, 14 Nov 2023 22:14:00 GMT"), ""),
                Action::RateLimited {
                    wait: Some(Duration::from_secs(40)),
                },
            ),
            (
                reply(Some(429), Some("0"), ""),
                Action::RateLimited {
                    wait: Some(Duration::from_secs(1)),
                },
            ),
            (
                reply(Some(429), Some("soon"), ""),
                Action::RateLimited { wait: None },
            ),
            (reply(Some(413), None, ""), Action::TooLarge),
            (
                reply(Some(422), None, addr_detail),
                Action::Rejected {
                    indices: vec![1, 3],
                    reason: summarize(addr_detail),
                },
            ),
            (
                reply(Some(422), None, "{\"detail\":\"Invalid address list\"}"),
                Action::Rejected {
                    indices: vec![],
                    reason: summarize("{\"detail\":\"Invalid address list\"}"),
                },
            ),
            (
                reply(Some(400), None, ""),
                Action::Rejected {
                    indices: vec![],
                    reason: "no details".into(),
                },
            ),
        ];
        for (r, want) in cases {
            let answer = classify(&r, now);
            assert_eq!(answer.action, want, "{r:?}");
            assert_eq!(answer.code, r.status.unwrap_or(0), "{r:?}");
        }
        let config_like = [
            reply(Some(422), None, ttl_detail),
            reply(Some(401), None, "{\"detail\":\"bad token\"}"),
            reply(Some(403), None, ""),
            reply(Some(404), None, "not found"),
            reply(Some(301), None, ""),
            reply(Some(200), None, ""),
        ];
        for r in config_like {
            assert!(
                matches!(classify(&r, now).action, Action::Config { .. }),
                "{r:?}"
            );
        }
        for r in [
            reply(None, None, "connection refused"),
            reply(Some(500), None, ""),
            reply(Some(503), Some("5"), ""),
            reply(Some(408), None, ""),
        ] {
            assert!(
                matches!(classify(&r, now).action, Action::Transient { .. }),
                "{r:?}"
            );
        }
    }

    #[test]
    fn server_text_is_escaped_and_truncated() {
        let evil = format!("\x1b[2J{}", "A".repeat(1000));
        let s = summarize(&evil);
        assert!(s.starts_with("\\x1b[2J"));
        assert!(s.len() < 260);
    }
}
