//! The pure classification of AbuseIPDB's answers into the scheduler's
//! [`Action`]s. Its table test is the contract:
//!
//! | answer                                   | action                                  |
//! |------------------------------------------|-----------------------------------------|
//! | 200 `/report`                            | `Delivered`                             |
//! | 200 `/bulk-report`, no `invalidReports`  | `Delivered`                             |
//! | 200 `/bulk-report` with `invalidReports` | `AcceptedExcept` (each row's reason; "Duplicate IP" counts as reported) |
//! | 429 "… once in 15 minutes" (`/report`)   | `Delivered`: it is reported already      |
//! | other 429 (the daily quota)              | `RateLimited`: `Retry-After`, else `X-RateLimit-Reset`, else the next UTC midnight |
//! | 5xx, 408, timeout, transport             | `Transient`                             |
//! | 413                                      | `TooLarge`                              |
//! | 422/400 about `ip` or `timestamp` (`/report`) | `Rejected` (that address)          |
//! | 422/400 about anything else (`categories`, `csv`…) | `Config`                      |
//! | 401, 403, 404, 3xx, other                | `Config` (pause, retry slowly)          |
//!
//! A bulk row is matched to the batch by its `input` (the address as
//! sent), else by its `rowNumber` (the header being row 1). Server text is
//! escaped and truncated before it becomes a reason, which is logged and
//! stored in the dead letters.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::client::Reply;
use super::config::{Mode, DAY};
use crate::targets::threatjammer::classify::summarize;
use crate::targets::{Action, Answer};

/// The longest wait a 429 is taken at its word for: the quota resets at
/// the next UTC midnight, at most a `day` away; a 24th of it more (25 h
/// for a day of 24 h).
fn max_wait(day: Duration) -> Duration {
    let day_s = day.as_secs().max(1);
    Duration::from_secs(day_s + day_s / 24)
}

/// Classifies a reply. Pure: `now` is only for the quota's reset time.
pub fn classify(reply: &Reply, now: SystemTime) -> Answer {
    classify_in_day(reply, now, DAY)
}

/// [`classify`] for a quota whose day lasts `day`: [`DAY`], except under
/// the test-only [`TEST_DAY_ENV`](super::config::TEST_DAY_ENV). A 429
/// without a hint then waits until the next multiple of `day` since the
/// epoch (UTC midnight for 24 h), and no wait is longer than `day` and a
/// 24th of it (25 h for 24 h).
pub fn classify_in_day(reply: &Reply, now: SystemTime, day: Duration) -> Answer {
    Answer {
        code: reply.status.unwrap_or(0),
        action: action(reply, now, day),
    }
}

/// Whether a body is the "You can only report the same IP address (…)
/// once in 15 minutes" answer.
pub fn is_fifteen_minutes(body: &str) -> bool {
    details(body)
        .iter()
        .any(|(d, _)| d.contains("once in 15 minutes"))
}

fn action(reply: &Reply, now: SystemTime, day: Duration) -> Action {
    let reason = || reason_of(&reply.body);
    let Some(status) = reply.status else {
        return Action::Transient {
            reason: summarize(&reply.body),
        };
    };
    match status {
        200 => match reply.mode {
            Mode::Single => Action::Delivered,
            Mode::Bulk => bulk_answer(reply),
        },
        429 if reply.mode == Mode::Single && is_fifteen_minutes(&reply.body) => Action::Delivered,
        429 => Action::RateLimited {
            wait: Some(quota_wait(reply, now, day)),
        },
        408 | 500..=599 => Action::Transient {
            reason: format!("HTTP {status}: {}", reason()),
        },
        413 => Action::TooLarge,
        400 | 422 => {
            let params: Vec<String> = details(&reply.body)
                .into_iter()
                .filter_map(|(_, p)| p)
                .collect();
            let about_address =
                !params.is_empty() && params.iter().all(|p| p == "ip" || p == "timestamp");
            if reply.mode == Mode::Single && about_address {
                Action::Rejected {
                    indices: vec![0],
                    reason: reason(),
                }
            } else {
                Action::Config {
                    reason: format!(
                        "the API refused the request ({}); check [targets.abuseipdb] categories \
                         and api_url",
                        reason()
                    ),
                }
            }
        }
        401 => Action::Config {
            reason: format!(
                "the API refused the key ({}); check [targets.abuseipdb] api_key_file",
                reason()
            ),
        },
        403 => Action::Config {
            reason: format!(
                "the API refused this account ({}); check the key's account and plan",
                reason()
            ),
        },
        _ => Action::Config {
            reason: format!(
                "unexpected HTTP {status} ({}); check [targets.abuseipdb] api_url",
                reason()
            ),
        },
    }
}

/// A bulk answer: the rows refused, each matched to the batch.
fn bulk_answer(reply: &Reply) -> Action {
    let Ok(v) = serde_json::from_str::<Value>(&reply.body) else {
        // The file was taken (200) but the answer is not readable: its
        // rows count as saved; sending them again would report them twice.
        return Action::Delivered;
    };
    let Some(invalid) = v.pointer("/data/invalidReports").and_then(Value::as_array) else {
        return Action::Delivered;
    };
    let mut taken = vec![false; reply.sent.len()];
    // The rows sent, by their text, in order: a row of the answer takes
    // the first one not taken yet (a lookup, not a scan of the file for
    // each of up to 9,999 rows).
    let mut by_input: std::collections::HashMap<&str, std::collections::VecDeque<usize>> =
        std::collections::HashMap::with_capacity(reply.sent.len());
    for (i, s) in reply.sent.iter().enumerate() {
        by_input.entry(s.as_str()).or_default().push_back(i);
    }
    let mut rejected = Vec::new();
    for row in invalid {
        let error = row.get("error").and_then(Value::as_str).unwrap_or("");
        let input = row.get("input").and_then(Value::as_str).unwrap_or("");
        let by_text = match input.trim() {
            "" => None,
            text => by_input.get_mut(text).and_then(|q| {
                while let Some(i) = q.pop_front() {
                    if !taken[i] {
                        return Some(i);
                    }
                }
                None
            }),
        };
        let index = by_text.or_else(|| {
            let n = row.get("rowNumber").and_then(Value::as_u64)?;
            let i = usize::try_from(n.checked_sub(2)?).ok()?;
            (i < reply.sent.len() && !taken[i]).then_some(i)
        });
        let Some(i) = index else {
            continue;
        };
        taken[i] = true;
        if error.eq_ignore_ascii_case("Duplicate IP") {
            // Reported within the last 15 minutes (tjfwd never writes an
            // address twice in a file): it is reported.
            continue;
        }
        let why = if error.is_empty() {
            "no reason given"
        } else {
            error
        };
        rejected.push((
            i,
            format!("AbuseIPDB refused the report: {}", summarize(why)),
        ));
    }
    if rejected.is_empty() {
        Action::Delivered
    } else {
        Action::AcceptedExcept { rejected }
    }
}

/// How long a 429 says to wait: `Retry-After`, else `X-RateLimit-Reset`
/// (epoch seconds), else until the next UTC midnight (the quota's `day`);
/// at least a second, at most [`max_wait`].
fn quota_wait(reply: &Reply, now: SystemTime, day: Duration) -> Duration {
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let from_retry = reply.retry_after.as_deref().and_then(|v| {
        let v = v.trim();
        match v.parse::<u64>() {
            Ok(s) => Some(Duration::from_secs(s)),
            // An HTTP date.
            Err(_) => httpdate::parse_http_date(v)
                .ok()
                .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
        }
    });
    let from_reset = || {
        let reset = reply.reset.as_deref()?.trim().parse::<u64>().ok()?;
        Some(Duration::from_secs(reset.saturating_sub(now_s)))
    };
    let day_s = day.as_secs().max(1);
    let midnight = || Duration::from_secs(day_s - now_s % day_s);
    from_retry
        .or_else(from_reset)
        .unwrap_or_else(midnight)
        .clamp(Duration::from_secs(1), max_wait(day))
}

/// The `errors` of a body: each `detail` and `source.parameter`.
fn details(body: &str) -> Vec<(String, Option<String>)> {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let Some(errors) = v.get("errors").and_then(Value::as_array) else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|e| {
            (
                e.get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                e.pointer("/source/parameter")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        })
        .collect()
}

/// The errors' details, else the body: escaped, at most 200 bytes.
fn reason_of(body: &str) -> String {
    let d: Vec<String> = details(body)
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| !d.is_empty())
        .collect();
    if d.is_empty() {
        summarize(body)
    } else {
        summarize(&d.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(mode: Mode, status: Option<u16>, body: &str) -> Reply {
        Reply {
            status,
            body: body.into(),
            ..Reply::none(mode, String::new())
        }
    }

    const FIFTEEN: &str = r#"{"errors":[{"detail":"You can only report the same IP address (`1.2.3.4`) once in 15 minutes.","status":429,"source":{"parameter":"ip"}}]}"#;
    const DAILY: &str = r#"{"errors":[{"detail":"Daily rate limit of 1000 requests exceeded for this endpoint.","status":429}]}"#;

    #[test]
    fn classification_table() {
        // 2023-11-14T22:13:20Z.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let to_midnight = Duration::from_secs(86_400 - 1_700_000_000 % 86_400);
        let single = |status, body: &str| reply(Mode::Single, Some(status), body);
        let mut reset = single(429, DAILY);
        reset.reset = Some("1700000100".into());
        let mut retry = single(429, DAILY);
        retry.retry_after = Some("30".into());
        retry.reset = Some("1700000100".into());
        let mut far = single(429, DAILY);
        far.retry_after = Some("999999".into());
        let cases: Vec<(Reply, Action)> = vec![
            (
                single(200, r#"{"data":{"ipAddress":"1.2.3.4"}}"#),
                Action::Delivered,
            ),
            (single(429, FIFTEEN), Action::Delivered),
            (
                reply(Mode::Bulk, Some(429), FIFTEEN),
                Action::RateLimited {
                    wait: Some(to_midnight),
                },
            ),
            (
                single(429, DAILY),
                Action::RateLimited {
                    wait: Some(to_midnight),
                },
            ),
            (
                reset,
                Action::RateLimited {
                    wait: Some(Duration::from_secs(100)),
                },
            ),
            (
                retry,
                Action::RateLimited {
                    wait: Some(Duration::from_secs(30)),
                },
            ),
            (
                far,
                Action::RateLimited {
                    wait: Some(Duration::from_secs(25 * 3600)),
                },
            ),
            (single(413, ""), Action::TooLarge),
            (
                single(
                    422,
                    r#"{"errors":[{"detail":"The ip must be a public IP address.","status":422,"source":{"parameter":"ip"}}]}"#,
                ),
                Action::Rejected {
                    indices: vec![0],
                    reason: "The ip must be a public IP address.".into(),
                },
            ),
            (
                single(
                    422,
                    r#"{"errors":[{"detail":"The timestamp must be within the last 60 days.","status":422,"source":{"parameter":"timestamp"}}]}"#,
                ),
                Action::Rejected {
                    indices: vec![0],
                    reason: "The timestamp must be within the last 60 days.".into(),
                },
            ),
        ];
        for (r, want) in cases {
            let answer = classify(&r, now);
            assert_eq!(answer.action, want, "{r:?}");
            assert_eq!(answer.code, r.status.unwrap_or(0));
        }
        for r in [
            single(
                422,
                r#"{"errors":[{"detail":"bad","status":422,"source":{"parameter":"categories"}}]}"#,
            ),
            reply(
                Mode::Bulk,
                Some(422),
                r#"{"errors":[{"detail":"The csv file must start with the header.","status":422,"source":{"parameter":"csv"}}]}"#,
            ),
            single(422, "not json"),
            single(
                401,
                r#"{"errors":[{"detail":"Authentication failed.","status":401}]}"#,
            ),
            single(403, ""),
            single(404, ""),
            single(302, ""),
        ] {
            assert!(
                matches!(classify(&r, now).action, Action::Config { .. }),
                "{r:?}"
            );
        }
        for r in [
            reply(Mode::Bulk, None, "connection refused"),
            single(500, ""),
            single(503, ""),
            single(408, ""),
        ] {
            assert!(
                matches!(classify(&r, now).action, Action::Transient { .. }),
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_shortened_day_waits_for_its_own_midnight_and_caps_waits_by_it() {
        // 2023-11-14T22:13:20Z; a 10 s day: the next "midnight" is 10 s on.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Duration::from_secs(10);
        let mut r = reply(Mode::Bulk, Some(429), DAILY);
        let waits = |r: &Reply, at: SystemTime| classify_in_day(r, at, day).action;
        assert_eq!(
            waits(&r, now),
            Action::RateLimited {
                wait: Some(Duration::from_secs(10))
            }
        );
        assert_eq!(
            waits(&r, now + Duration::from_secs(7)),
            Action::RateLimited {
                wait: Some(Duration::from_secs(3))
            }
        );
        // A hint is taken at its word, up to the day and a 24th.
        r.retry_after = Some("4".into());
        assert_eq!(
            waits(&r, now),
            Action::RateLimited {
                wait: Some(Duration::from_secs(4))
            }
        );
        r.retry_after = Some("999999".into());
        assert_eq!(
            waits(&r, now),
            Action::RateLimited {
                wait: Some(Duration::from_secs(10))
            }
        );
        // The real day: as classify.
        assert_eq!(
            classify_in_day(&r, now, DAY).action,
            Action::RateLimited {
                wait: Some(Duration::from_secs(25 * 3600))
            }
        );
    }

    #[test]
    fn bulk_rows_are_matched_by_input_then_row_number() {
        let now = SystemTime::UNIX_EPOCH;
        let mut r = reply(
            Mode::Bulk,
            Some(200),
            r#"{"data":{"savedReports":2,"invalidReports":[
                {"error":"Invalid IP","input":"10.0.0.1","rowNumber":3},
                {"error":"ReportDate too old","input":"","rowNumber":5},
                {"error":"Duplicate IP","input":"5.5.5.5","rowNumber":2},
                {"error":"\u001b[2Jevil","input":"nowhere","rowNumber":99}
            ]}}"#,
        );
        r.sent = ["5.5.5.5", "10.0.0.1", "6.6.6.6", "7.7.7.7", "8.8.8.8"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            classify(&r, now).action,
            Action::AcceptedExcept {
                rejected: vec![
                    (1, "AbuseIPDB refused the report: Invalid IP".into()),
                    (3, "AbuseIPDB refused the report: ReportDate too old".into()),
                ]
            }
        );
        r.body = r#"{"data":{"savedReports":5,"invalidReports":[]}}"#.into();
        assert_eq!(classify(&r, now).action, Action::Delivered);
        // Server text in a reason is escaped.
        r.body = r#"{"data":{"savedReports":4,"invalidReports":[{"error":"\u001b[2J","input":"6.6.6.6","rowNumber":4}]}}"#.into();
        assert_eq!(
            classify(&r, now).action,
            Action::AcceptedExcept {
                rejected: vec![(2, "AbuseIPDB refused the report: \\x1b[2J".into())]
            }
        );
    }
}
