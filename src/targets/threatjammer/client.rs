//! The Threat Jammer Report API client: one HTTP request per batch, its
//! answer returned unread as a [`Reply`] (see `classify.rs` for what it
//! means).
//!
//! The token is sent in a header marked sensitive and never appears in any
//! message produced here; server text is escaped and truncated before it is
//! logged or stored.
//!
//! TLS: the server's certificate is always verified (there is no switch to
//! turn that off). By default against the public roots built into tjfwd;
//! with `[targets.threatjammer] ca_file`, against exactly the CAs of that PEM bundle
//! and nothing else (see [`crate::tls::read_ca_file`]).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use super::config::ThreatJammer;
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
    #[error("no API token is configured: set [targets.threatjammer] bearer_token_file, bearer_token or TJFWD_BEARER_TOKEN, or use --dry-run")]
    NoToken,
    #[error("the API token contains characters that cannot be sent in an HTTP header; check the token file")]
    BadToken,
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// The JSON body of a report of `addrs` (the request's whole content
/// besides the token).
pub fn body(addrs: &[IpAddr], ttl: u64, dataset: &str, tags: &[String]) -> Vec<u8> {
    let addresses: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    serde_json::to_vec(&serde_json::json!({
        "addresses": addresses,
        "ttl": ttl,
        "type": dataset,
        "tags": tags,
    }))
    .expect("serializing strings and numbers")
}

impl Reporter {
    /// Builds the HTTP client from Threat Jammer's report keys, with
    /// `[targets.threatjammer] request_timeout` as the time limit of a request.
    pub fn new(tj: &ThreatJammer, request_timeout: Duration) -> Result<Reporter, ReporterError> {
        let token = tj.token.as_ref().ok_or(ReporterError::NoToken)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ReporterError::BadToken)?;
        auth.set_sensitive(true);
        let roots = match &tj.ca_file {
            Some(p) => read_ca_file(p).map_err(|e| {
                ReporterError::Client(format!(
                    "[targets.threatjammer] ca_file = \"{}\": {e}",
                    p.display()
                ))
            })?,
            None => Vec::new(),
        };
        let client = tls_client_builder(&roots)
            .user_agent(USER_AGENT)
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ReporterError::Client(e.to_string()))?;
        Ok(Reporter {
            client,
            url: tj.api_url.clone(),
            auth,
            ttl: tj.ttl,
            dataset: tj.category.clone(),
            tags: tj.tags.clone(),
        })
    }

    /// The JSON body for a batch.
    pub fn body(&self, addrs: &[IpAddr]) -> Vec<u8> {
        body(addrs, self.ttl, &self.dataset, &self.tags)
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

/// Describes a transport error with its cause chain (no URL query, no
/// headers); a refused certificate says what to check first.
fn transport_error(e: &reqwest::Error) -> String {
    crate::targets::http::transport_error(
        e,
        "check the host in [targets.threatjammer] api_url, or set [targets.threatjammer] ca_file for a \
         private CA",
    )
}
