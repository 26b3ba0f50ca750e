//! The AbuseIPDB API v2 client: one request per batch, its answer returned
//! unread as a [`Reply`] (`classify.rs` says what it means).
//!
//! - bulk: `POST {api_url}/bulk-report`, a `multipart/form-data` body whose
//!   file part `csv` holds `IP,Categories,ReportDate,Comment` and one row a
//!   report ([`bulk_csv`]): at most 9,999 rows, under 2 MB;
//! - single: `POST {api_url}/report`, a form with `ip`, `categories`,
//!   `comment` and `timestamp` ([`single_form`]).
//!
//! Both send `Key: <api key>` (marked sensitive, never in a message) and
//! `Accept: application/json`. TLS, the CA file and the timeouts are the
//! project's ([`crate::tls`]), as for Threat Jammer.
//!
//! What a report says is tjfwd's own: the comment is made of its counts
//! (attempts, first and last sighting in UTC: [`comment`]), never of text
//! an attacker chose; `ReportDate`/`timestamp` is the last sighting
//! ([`report_date`]). tjfwd does not keep the protocol of an attack per
//! address, so the comment does not name one (the categories do).

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};

use super::config::{categories_text, endpoint_url, Mode, Section};
use crate::store::BatchItem;
use crate::targets::threatjammer::USER_AGENT;
use crate::tls::{read_ca_file, tls_client_builder};

/// Most rows of a bulk file (10,000 lines with the header).
pub const MAX_ROWS: usize = 9_999;

/// A bulk file must be smaller than this (2 MB); tjfwd keeps a margin.
pub const MAX_CSV_BYTES: usize = 2 * 1024 * 1024;

/// What tjfwd allows itself of [`MAX_CSV_BYTES`].
const CSV_BUDGET: usize = MAX_CSV_BYTES - 16 * 1024;

/// The CSV's first line, exactly as the API wants it.
pub const CSV_HEADER: &str = "IP,Categories,ReportDate,Comment";

/// The API cuts comments at 1,024 bytes: tjfwd's are far shorter.
pub const MAX_COMMENT_BYTES: usize = 1024;

/// Largest response body read: a bulk answer lists every refused row.
const MAX_BODY: usize = 1024 * 1024;

/// What came back from one attempt, before interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status, or None when no response arrived.
    pub status: Option<u16>,
    /// `Retry-After`, verbatim.
    pub retry_after: Option<String>,
    /// `X-RateLimit-Reset` (epoch seconds), verbatim.
    pub reset: Option<String>,
    /// `X-RateLimit-Limit`, verbatim.
    pub limit: Option<String>,
    /// `X-RateLimit-Remaining`, verbatim.
    pub remaining: Option<String>,
    /// The body (at most 1 MiB), or the transport error's description.
    pub body: String,
    /// The endpoint it came from.
    pub mode: Mode,
    /// The addresses sent, as written in the request, in batch order (to
    /// match a bulk answer's `invalidReports` to the batch).
    pub sent: Vec<String>,
}

impl Reply {
    /// A reply with no answer (a dry run, a transport error).
    pub fn none(mode: Mode, body: String) -> Reply {
        Reply {
            status: None,
            retry_after: None,
            reset: None,
            limit: None,
            remaining: None,
            body,
            mode,
            sent: Vec::new(),
        }
    }
}

/// Client setup errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no AbuseIPDB API key is configured: set [targets.abuseipdb] api_key_file (a file holding the key, mode 600) or api_key, or the environment variable TJFWD_ABUSEIPDB_KEY, or pass the systemd credential abuseipdb_key, or use --dry-run")]
    NoKey,
    #[error("the AbuseIPDB API key contains characters that cannot be sent in an HTTP header; check the key file")]
    BadKey,
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// Sends batches to the API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The mode's endpoint.
    url: url::Url,
    key: HeaderValue,
    mode: Mode,
    /// `18,22`.
    categories: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The HTTP client of `[targets.abuseipdb]`.
    pub fn new(s: &Section) -> Result<Client, ClientError> {
        let key = s.api_key.as_ref().ok_or(ClientError::NoKey)?;
        let mut key = HeaderValue::from_str(key.expose()).map_err(|_| ClientError::BadKey)?;
        key.set_sensitive(true);
        let roots = match &s.ca_file {
            Some(p) => read_ca_file(p).map_err(|e| {
                ClientError::Client(format!(
                    "[targets.abuseipdb] ca_file = \"{}\": {e}",
                    p.display()
                ))
            })?,
            None => Vec::new(),
        };
        let http = tls_client_builder(&roots)
            .user_agent(USER_AGENT)
            .timeout(s.request_timeout)
            .connect_timeout(s.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Client(e.to_string()))?;
        let endpoint = match s.mode {
            Mode::Bulk => "bulk-report",
            Mode::Single => "report",
        };
        Ok(Client {
            http,
            url: endpoint_url(&s.api_url, endpoint),
            key,
            mode: s.mode,
            categories: categories_text(&s.categories),
        })
    }

    /// Sends one batch (one address in single mode); never fails, a
    /// transport error is a [`Reply`] too. `now_ms`: the wall clock, which
    /// bounds the report dates.
    pub async fn send(&self, batch: &[BatchItem], now_ms: u64) -> Reply {
        let req = self
            .http
            .post(self.url.clone())
            .header("Key", self.key.clone())
            .header(ACCEPT, "application/json");
        let (req, sent) = match self.mode {
            Mode::Bulk => {
                let (csv, sent) = bulk_csv(batch, &self.categories, now_ms);
                let boundary = format!("tjfwd-{:016x}", rand::random::<u64>());
                let body = multipart(&boundary, csv.as_bytes());
                (
                    req.header(
                        CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body),
                    sent,
                )
            }
            Mode::Single => {
                let Some(item) = batch.first() else {
                    return Reply::none(self.mode, "empty batch: nothing sent".into());
                };
                (
                    req.header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(single_form(item, &self.categories, now_ms)),
                    vec![item.addr.to_string()],
                )
            }
        };
        let mut reply = match req.send().await {
            Err(e) => Reply::none(self.mode, transport_error(&e)),
            Ok(mut resp) => {
                let h = resp.headers();
                let get = |name: &str| {
                    h.get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().to_owned())
                };
                let mut reply = Reply {
                    status: Some(resp.status().as_u16()),
                    retry_after: get(RETRY_AFTER.as_str()),
                    reset: get("x-ratelimit-reset"),
                    limit: get("x-ratelimit-limit"),
                    remaining: get("x-ratelimit-remaining"),
                    body: String::new(),
                    mode: self.mode,
                    sent: Vec::new(),
                };
                let mut body = Vec::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    body.extend_from_slice(&chunk);
                    if body.len() >= MAX_BODY {
                        body.truncate(MAX_BODY);
                        break;
                    }
                }
                reply.body = String::from_utf8_lossy(&body).into_owned();
                reply
            }
        };
        reply.sent = sent;
        reply
    }
}

/// The `multipart/form-data` body with one file part, `csv`.
fn multipart(boundary: &str, csv: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(csv.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csv\"; \
             filename=\"report.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(csv);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The form of a single report.
pub fn single_form(item: &BatchItem, categories: &str, now_ms: u64) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("ip", &item.addr.to_string())
        .append_pair("categories", categories)
        .append_pair("comment", &comment(item, true))
        .append_pair("timestamp", &report_date(item, now_ms))
        .finish()
}

/// The bulk file of a batch (at most [`MAX_ROWS`] rows are written), and
/// the addresses as written, in order. Comments are shortened for the
/// whole file if the full ones would not keep it under `CSV_BUDGET` (2 MB
/// less a margin).
pub fn bulk_csv(batch: &[BatchItem], categories: &str, now_ms: u64) -> (String, Vec<String>) {
    let batch = &batch[..batch.len().min(MAX_ROWS)];
    let build = |full: bool| {
        let mut csv = String::with_capacity(64 + batch.len() * 160);
        csv.push_str(CSV_HEADER);
        csv.push('\n');
        for item in batch {
            // The comment is tjfwd's own text: no quote, backslash, comma
            // or newline to escape; quoted all the same, as the
            // categories (which hold commas) must be.
            csv.push_str(&format!(
                "{},\"{categories}\",{},\"{}\"\n",
                item.addr,
                report_date(item, now_ms),
                comment(item, full)
            ));
        }
        csv
    };
    let mut csv = build(true);
    if csv.len() > CSV_BUDGET {
        csv = build(false);
    }
    (csv, batch.iter().map(|i| i.addr.to_string()).collect())
}

/// A report's date: the address's last sighting, and never later than a
/// minute before `now_ms` (a service clock a little behind ours must not
/// find it in the future). ISO 8601 with an offset:
/// `2024-05-30T10:14:00+00:00`.
pub fn report_date(item: &BatchItem, now_ms: u64) -> String {
    let at = item.last_seen_ms.min(now_ms.saturating_sub(60_000));
    let t = crate::clock::writable_time(at);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    match s.strip_suffix('Z') {
        Some(s) => format!("{s}+00:00"),
        None => s,
    }
}

/// `2024-05-30 10:14:00`, UTC.
fn utc(ms: u64) -> String {
    let t = crate::clock::writable_time(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " ")
}

/// What tjfwd says of an address, from its own counts only: how many
/// attempts, first and last sighting (UTC). The short form (`full =
/// false`) keeps a bulk file of 9,999 rows under its size limit.
pub fn comment(item: &BatchItem, full: bool) -> String {
    let n = item.hits;
    let attempts = if n == 1 { "attempt" } else { "attempts" };
    let text = if !full {
        format!("Cowrie honeypot: {n} {attempts} (tjfwd)")
    } else if n <= 1 || item.first_seen_ms >= item.last_seen_ms {
        format!(
            "Cowrie honeypot: {n} login {attempts} at {} UTC (reported by tjfwd)",
            utc(item.last_seen_ms)
        )
    } else {
        format!(
            "Cowrie honeypot: {n} login {attempts} from {} to {} UTC (reported by tjfwd)",
            utc(item.first_seen_ms),
            utc(item.last_seen_ms)
        )
    };
    debug_assert!(text.len() <= MAX_COMMENT_BYTES);
    text
}

/// Describes a transport error with its cause chain (no URL query, no
/// headers); a refused certificate says what to check first.
fn transport_error(e: &reqwest::Error) -> String {
    crate::targets::http::transport_error(
        e,
        "check the host in [targets.abuseipdb] api_url, or set [targets.abuseipdb] ca_file for a \
         private CA",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv6Addr};

    fn item(addr: IpAddr, hits: u64, first: u64, last: u64) -> BatchItem {
        BatchItem {
            addr,
            seq: 0,
            index: 0,
            hits,
            first_seen_ms: first,
            last_seen_ms: last,
        }
    }

    const T: u64 = 1_717_064_040_000; // 2024-05-30T10:14:00Z

    #[test]
    fn reports_say_tjfwds_counts_and_the_last_sighting() {
        let i = item("203.0.113.9".parse().unwrap(), 12, T - 3_600_000, T);
        assert_eq!(report_date(&i, T + 3_600_000), "2024-05-30T10:14:00+00:00");
        // Never later than a minute before the request.
        assert_eq!(report_date(&i, T), "2024-05-30T10:13:00+00:00");
        assert_eq!(
            comment(&i, true),
            "Cowrie honeypot: 12 login attempts from 2024-05-30 09:14:00 to \
             2024-05-30 10:14:00 UTC (reported by tjfwd)"
        );
        let one = item("203.0.113.9".parse().unwrap(), 1, T, T);
        assert_eq!(
            comment(&one, true),
            "Cowrie honeypot: 1 login attempt at 2024-05-30 10:14:00 UTC (reported by tjfwd)"
        );
        let form = single_form(&i, "18,22", T + 3_600_000);
        assert!(
            form.starts_with("ip=203.0.113.9&categories=18%2C22&comment=Cowrie"),
            "{form}"
        );
        assert!(
            form.ends_with("&timestamp=2024-05-30T10%3A14%3A00%2B00%3A00"),
            "{form}"
        );
    }

    #[test]
    fn a_full_bulk_file_stays_under_two_megabytes() {
        // The longest rows: 39-character addresses, every category.
        let every: String = (1..=23)
            .map(|c: u8| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let batch: Vec<BatchItem> = (0..12_000u128)
            .map(|n| {
                let a = Ipv6Addr::from(u128::MAX - 0x1_0000 - n);
                item(IpAddr::V6(a), 123_456, T - 86_400_000, T)
            })
            .collect();
        assert_eq!(batch[0].addr.to_string().len(), 39);
        let (csv, sent) = bulk_csv(&batch, &every, T + 1);
        assert_eq!(sent.len(), MAX_ROWS);
        assert_eq!(csv.lines().count(), MAX_ROWS + 1);
        assert!(csv.len() < MAX_CSV_BYTES, "{}", csv.len());
        let row = csv.lines().nth(1).unwrap();
        assert_eq!(
            row,
            format!(
                "ffff:ffff:ffff:ffff:ffff:ffff:fffe:ffff,\"{every}\",2024-05-30T10:13:00+00:00,\"Cowrie honeypot: 123456 attempts (tjfwd)\""
            )
        );
        // The default categories: full comments fit.
        let (csv, _) = bulk_csv(&batch, "18,22", T + 120_000);
        assert!(csv.len() < MAX_CSV_BYTES, "{}", csv.len());
        assert!(csv.lines().nth(1).unwrap().ends_with(
            ",\"18,22\",2024-05-30T10:14:00+00:00,\"Cowrie honeypot: 123456 login attempts from 2024-05-29 10:14:00 to 2024-05-30 10:14:00 UTC (reported by tjfwd)\""
        ));
    }
}
