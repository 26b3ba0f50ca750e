//! Reporter: one HTTP request to the Threat Jammer Report API, and the pure
//! classification of its answer into what the scheduler must do.
//!
//! [`classify`] is the single place where an HTTP status (or a transport
//! error) becomes an [`Action`]; its table test documents the contract:
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
//! The token is sent in a header marked sensitive and never appears in any
//! message produced here; server text is escaped and truncated before it is
//! logged or stored.
//!
//! TLS: the server's certificate is always verified (there is no switch to
//! turn that off). By default against the public roots built into tjfwd;
//! with `[threatjammer] ca_file`, against exactly the CAs of that PEM bundle
//! and nothing else (see [`read_ca_file`]).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use crate::config::Config;
use crate::stats::escape_for_log;
use crate::tls::{read_ca_file, tls_client_builder};

/// The User-Agent tjfwd sends.
pub const USER_AGENT: &str = concat!("tjfwd/", env!("CARGO_PKG_VERSION"));

/// Largest response body read (the API answers with small JSON bodies).
const MAX_BODY: usize = 16 * 1024;

/// What came back from one attempt, before interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status, or None when no response arrived.
    pub status: Option<u16>,
    /// The `Retry-After` header, verbatim.
    pub retry_after: Option<String>,
    /// The body (at most 16 KiB), or the transport error's description.
    pub body: String,
}

/// What the scheduler does with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// 202: acknowledge the batch.
    Delivered,
    /// 429: wait (the server's Retry-After, or a whole window when None).
    RateLimited { wait: Option<Duration> },
    /// Try again later with backoff.
    /// `status` is 0 when no answer came.
    Transient { status: u16, reason: String },
    /// 413: split the batch.
    TooLarge,
    /// The server refused some addresses. `indices` are the positions it
    /// named (empty when it did not say: bisect).
    Rejected {
        status: u16,
        indices: Vec<usize>,
        reason: String,
    },
    /// Our credentials or configuration are wrong: drop nothing, pause,
    /// retry slowly, tell the operator what to check.
    Config { status: u16, reason: String },
}

/// Classifies a reply. Pure: `now` is only used for an HTTP-date Retry-After.
pub fn classify(reply: &Reply, now: SystemTime) -> Action {
    let reason = || summarize(&reply.body);
    let Some(status) = reply.status else {
        return Action::Transient {
            status: 0,
            reason: reason(),
        };
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
            status,
            reason: format!("HTTP {status}: {}", reason()),
        },
        413 => Action::TooLarge,
        400 | 422 => {
            let (indices, about_config) = rejected_fields(&reply.body);
            if about_config {
                Action::Config {
                    status,
                    reason: format!(
                        "the API rejected the request's type, tags or ttl ({}); check [threatjammer] category, tags and ttl",
                        reason()
                    ),
                }
            } else {
                Action::Rejected {
                    status,
                    indices,
                    reason: reason(),
                }
            }
        }
        401 => Action::Config {
            status,
            reason: format!(
                "the API refused the token ({}); check [threatjammer] bearer_token and that api_url is your token's region",
                reason()
            ),
        },
        403 => Action::Config {
            status,
            reason: format!(
                "the API refused this subscription ({}); the Report API needs a subscription that includes it",
                reason()
            ),
        },
        _ => Action::Config {
            status,
            reason: format!(
                "unexpected HTTP {status} ({}); check [threatjammer] api_url",
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

/// Sends batches to the API.
#[derive(Clone)]
pub struct Reporter {
    client: reqwest::Client,
    url: url::Url,
    auth: HeaderValue,
    ttl: u64,
    dataset: String,
    tags: Vec<String>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// Reporter setup errors.
#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
    #[error("no API token is configured: set [threatjammer] bearer_token_file, bearer_token or TJFWD_BEARER_TOKEN, or use --dry-run")]
    NoToken,
    #[error("the API token contains characters that cannot be sent in an HTTP header; check the token file")]
    BadToken,
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl Reporter {
    /// Builds the HTTP client from `[threatjammer]` and `[schedule]`.
    pub fn new(config: &Config) -> Result<Reporter, ReporterError> {
        let token = config
            .threatjammer
            .token
            .as_ref()
            .ok_or(ReporterError::NoToken)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ReporterError::BadToken)?;
        auth.set_sensitive(true);
        let roots = match &config.threatjammer.ca_file {
            Some(p) => read_ca_file(p).map_err(|e| {
                ReporterError::Client(format!("[threatjammer] ca_file = \"{}\": {e}", p.display()))
            })?,
            None => Vec::new(),
        };
        let client = tls_client_builder(&roots)
            .user_agent(USER_AGENT)
            .timeout(config.schedule.request_timeout)
            .connect_timeout(config.schedule.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ReporterError::Client(e.to_string()))?;
        Ok(Reporter {
            client,
            url: config.threatjammer.api_url.clone(),
            auth,
            ttl: config.threatjammer.ttl,
            dataset: config.threatjammer.category.clone(),
            tags: config.threatjammer.tags.clone(),
        })
    }

    /// The JSON body for a batch.
    pub fn body(&self, addrs: &[IpAddr]) -> Vec<u8> {
        let addresses: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        serde_json::to_vec(&serde_json::json!({
            "addresses": addresses,
            "ttl": self.ttl,
            "type": self.dataset,
            "tags": self.tags,
        }))
        .expect("serializing strings and numbers")
    }

    /// Sends one batch; never fails, a transport error is a [`Reply`] too.
    pub async fn send(&self, addrs: &[IpAddr]) -> Reply {
        let result = self
            .client
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(self.body(addrs))
            .send()
            .await;
        match result {
            Err(e) => Reply {
                status: None,
                retry_after: None,
                body: transport_error(&e),
            },
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let mut body = Vec::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    body.extend_from_slice(&chunk);
                    if body.len() >= MAX_BODY {
                        body.truncate(MAX_BODY);
                        break;
                    }
                }
                Reply {
                    status: Some(status),
                    retry_after,
                    body: String::from_utf8_lossy(&body).into_owned(),
                }
            }
        }
    }
}

/// Describes a transport error with its cause chain (no URL query, no headers).
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    // rustls says "invalid peer certificate: UnknownIssuer" (or NotValidForName,
    // Expired...): say that first and what to do, in few words (the reason is
    // cut at 200 bytes), as retrying alone will not fix it.
    if let Some(at) = msg.find("invalid peer certificate") {
        return format!(
            "TLS certificate not accepted (check the host in [threatjammer] api_url, or set \
             [threatjammer] ca_file for a private CA): {}",
            &msg[at..]
        );
    }
    msg
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
                    status: 422,
                    indices: vec![1, 3],
                    reason: summarize(addr_detail),
                },
            ),
            (
                reply(Some(422), None, "{\"detail\":\"Invalid address list\"}"),
                Action::Rejected {
                    status: 422,
                    indices: vec![],
                    reason: summarize("{\"detail\":\"Invalid address list\"}"),
                },
            ),
            (
                reply(Some(400), None, ""),
                Action::Rejected {
                    status: 400,
                    indices: vec![],
                    reason: "no details".into(),
                },
            ),
        ];
        for (r, want) in cases {
            assert_eq!(classify(&r, now), want, "{r:?}");
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
            assert!(matches!(classify(&r, now), Action::Config { .. }), "{r:?}");
        }
        for r in [
            reply(None, None, "connection refused"),
            reply(Some(500), None, ""),
            reply(Some(503), Some("5"), ""),
            reply(Some(408), None, ""),
        ] {
            assert!(
                matches!(classify(&r, now), Action::Transient { .. }),
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
