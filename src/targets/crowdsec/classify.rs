//! The pure classification of the CrowdSec Local API's answers into the
//! scheduler's [`Action`]s. Its table test is the contract, checked against
//! the LAPI of Debian 12's crowdsec 1.4.6 (its alerts controller answers a
//! body that fails the swagger's validation, a bad duration or a bad
//! address with **500**, a body it cannot decode with 400):
//!
//! | request | answer                                   | action                       |
//! |---------|------------------------------------------|------------------------------|
//! | alert   | 201                                      | `Delivered`                  |
//! | any     | no answer (refused, reset, timeout)      | `Transient`                  |
//! | any     | 408, 502, 503, 504, other 5xx            | `Transient`                  |
//! | any     | 429                                      | `RateLimited` (Retry-After)  |
//! | alert   | 413                                      | `TooLarge`                   |
//! | alert   | 500 "invalid addr/range"                 | `Rejected` (find the address)|
//! | alert   | 500 "validation failure", "duration"     | `Config` (duration, scenario)|
//! | alert   | 400, 422                                 | `Rejected` (bisect)          |
//! | login   | 401, 403                                 | `Config` (machine, password) |
//! | alert   | 401 with a token just issued             | `Config` (proxy, clocks)     |
//! | alert   | 401 otherwise (not renewed: cannot be)   | `Transient`                  |
//! | alert   | 403                                      | `Config`                     |
//! | any     | 404, 405, 3xx, other 4xx, other 2xx      | `Config` (lapi_url)          |
//!
//! A 401 to an alert sent with an old token never reaches here: the client
//! logs in again and sends once more (see `client.rs`).

use std::time::SystemTime;

use super::client::{Phase, Reply};
use crate::targets::threatjammer::classify::{parse_retry_after, summarize};
use crate::targets::{Action, Answer};

/// Classifies a reply. Pure.
pub fn classify(reply: &Reply, now: SystemTime) -> Answer {
    Answer {
        code: reply.status.unwrap_or(0),
        action: action(reply, now),
    }
}

fn action(reply: &Reply, now: SystemTime) -> Action {
    let reason = || summarize(&reply.body);
    let what = match reply.phase {
        Phase::Login => "login",
        Phase::Alert => "alert",
    };
    let Some(status) = reply.status else {
        return Action::Transient {
            reason: format!("{what}: {}", reason()),
        };
    };
    let lapi_url = || Action::Config {
        reason: format!(
            "unexpected HTTP {status} to the {what} ({}); check [targets.crowdsec] lapi_url \
             (the Local API's address, e.g. http://127.0.0.1:8080)",
            reason()
        ),
    };
    match (reply.phase, status) {
        (Phase::Alert, 201) => Action::Delivered,
        (_, 429) => Action::RateLimited {
            wait: reply
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now)),
        },
        (Phase::Alert, 500) if reply.body.contains("invalid addr/range") => Action::Rejected {
            indices: vec![],
            reason: reason(),
        },
        (Phase::Alert, 500)
            if reply.body.contains("validation failure")
                || reply.body.contains("decision duration") =>
        {
            Action::Config {
                reason: format!(
                    "the LAPI refused the alert's form ({}); check [targets.crowdsec] duration \
                     and scenario",
                    reason()
                ),
            }
        }
        (_, 408 | 500..=599) => Action::Transient {
            reason: format!("{what}: HTTP {status}: {}", reason()),
        },
        (Phase::Alert, 413) => Action::TooLarge,
        (Phase::Alert, 400 | 422) => Action::Rejected {
            indices: vec![],
            reason: reason(),
        },
        (Phase::Login, 401 | 403) => Action::Config {
            reason: format!(
                "the LAPI refused the login ({}); check [targets.crowdsec] machine_id and the \
                 password, and that the machine is registered and validated (`cscli machines \
                 list`; add it with `cscli machines add NAME --password PASSWORD`)",
                reason()
            ),
        },
        (Phase::Alert, 401) if reply.fresh_token => Action::Config {
            reason: format!(
                "the LAPI refused a token it had just issued ({}); check that no proxy in front \
                 of [targets.crowdsec] lapi_url drops the Authorization header",
                reason()
            ),
        },
        (Phase::Alert, 401) => Action::Transient {
            reason: format!("alert: HTTP 401: {}", reason()),
        },
        (Phase::Alert, 403) => Action::Config {
            reason: format!(
                "the LAPI forbade this machine's alert ({}); check the machine with `cscli \
                 machines list`",
                reason()
            ),
        },
        _ => lapi_url(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn reply(phase: Phase, status: Option<u16>, body: &str) -> Reply {
        Reply {
            phase,
            status,
            body: body.to_owned(),
            fresh_token: false,
            retry_after: None,
        }
    }
    use Phase::{Alert, Login};

    fn kind(a: &Action) -> &'static str {
        match a {
            Action::Delivered => "delivered",
            Action::RateLimited { .. } => "rate-limited",
            Action::Transient { .. } => "transient",
            Action::TooLarge => "too-large",
            Action::Rejected { .. } => "rejected",
            Action::AcceptedExcept { .. } => "accepted-except",
            Action::Config { .. } => "config",
        }
    }

    #[test]
    fn classification_table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fresh = |status, body: &str| Reply {
            fresh_token: true,
            ..reply(Alert, Some(status), body)
        };
        // Bodies as the real LAPI (crowdsec 1.4.6) writes them.
        let cases = [
            (reply(Alert, Some(201), "[\"1\"]"), "delivered"),
            (
                reply(Alert, None, "connection failed: Connection refused"),
                "transient",
            ),
            (reply(Login, None, "timed out"), "transient"),
            (reply(Alert, Some(502), ""), "transient"),
            (reply(Alert, Some(503), ""), "transient"),
            (reply(Login, Some(503), ""), "transient"),
            (reply(Alert, Some(408), ""), "transient"),
            (
                reply(
                    Alert,
                    Some(500),
                    r#"{"message":"unable to create alerts: database is locked"}"#,
                ),
                "transient",
            ),
            (
                reply(
                    Alert,
                    Some(500),
                    r#"{"message":"unable to create alerts: invalid addr/range 192.0.2.999 : invalid address: unable to parse duration"}"#,
                ),
                "rejected",
            ),
            (
                reply(
                    Alert,
                    Some(500),
                    r#"{"message":"validation failure list:\n0.events in body is required"}"#,
                ),
                "config",
            ),
            (
                reply(
                    Alert,
                    Some(500),
                    r#"{"message":"unable to create alerts: decision duration '1d' : time: unknown unit \"d\""}"#,
                ),
                "config",
            ),
            (reply(Alert, Some(429), ""), "rate-limited"),
            (reply(Alert, Some(413), ""), "too-large"),
            (
                reply(
                    Alert,
                    Some(400),
                    r#"{"message":"json: cannot unmarshal string"}"#,
                ),
                "rejected",
            ),
            (reply(Alert, Some(422), ""), "rejected"),
            (
                reply(
                    Login,
                    Some(401),
                    r#"{"code":401,"message":"incorrect Username or Password"}"#,
                ),
                "config",
            ),
            (
                reply(
                    Login,
                    Some(401),
                    r#"{"code":401,"message":"ent: machine not found"}"#,
                ),
                "config",
            ),
            (reply(Login, Some(403), ""), "config"),
            (
                fresh(401, r#"{"code":401,"message":"Token is expired"}"#),
                "config",
            ),
            (
                reply(
                    Alert,
                    Some(401),
                    r#"{"code":401,"message":"Token is expired"}"#,
                ),
                "transient",
            ),
            (reply(Alert, Some(403), ""), "config"),
            (reply(Alert, Some(404), ""), "config"),
            (reply(Login, Some(404), ""), "config"),
            (reply(Login, Some(405), ""), "config"),
            (reply(Alert, Some(301), ""), "config"),
            (reply(Alert, Some(200), "[]"), "config"),
            (reply(Login, Some(200), "no token"), "config"),
        ];
        for (r, want) in cases {
            let a = classify(&r, now);
            assert_eq!(kind(&a.action), want, "{r:?}: {a:?}");
            assert_eq!(a.code, r.status.unwrap_or(0));
        }
        let r = Reply {
            retry_after: Some("7".into()),
            ..reply(Alert, Some(429), "")
        };
        assert_eq!(
            classify(&r, now).action,
            Action::RateLimited {
                wait: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn reasons_name_the_keys_and_escape_server_text() {
        let now = SystemTime::UNIX_EPOCH;
        let r = reply(Login, Some(401), "\u{1b}[2Jincorrect");
        let Action::Config { reason } = classify(&r, now).action else {
            panic!()
        };
        assert!(reason.contains("machine_id"), "{reason}");
        assert!(reason.contains("cscli machines add"), "{reason}");
        assert!(!reason.contains('\u{1b}'), "{reason}");
        let Action::Config { reason } = classify(&reply(Alert, Some(404), ""), now).action else {
            panic!()
        };
        assert!(reason.contains("lapi_url"), "{reason}");
    }
}
