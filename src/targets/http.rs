//! What every HTTP target's client shares: the client itself (rustls,
//! verification always on, the private CAs of a `ca_file` or the public
//! roots, time limits, no redirects, tjfwd's User-Agent), a bounded read of
//! an answer's body, and a transport error described with its causes.
//!
//! Built on [`crate::tls`]; Threat Jammer's client predates it and has the
//! same pieces inline.

use std::path::Path;
use std::time::Duration;

/// The User-Agent tjfwd sends: `tjfwd/VERSION`, one `/` (CrowdSec's LAPI
/// refuses a machine's login whose User-Agent is not `name/version`).
pub const USER_AGENT: &str = concat!("tjfwd/", env!("CARGO_PKG_VERSION"));

/// An HTTP client for a target: trusts exactly the CAs of `ca_file` when
/// given (else the public roots), gives up a request after `timeout`
/// (connecting after at most 10 s of it), follows no redirect. `table`
/// names the section in errors.
pub fn client(
    table: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let roots = match ca_file {
        Some(p) => crate::tls::read_ca_file(p)
            .map_err(|e| format!("{table} ca_file = \"{}\": {e}", p.display()))?,
        None => Vec::new(),
    };
    crate::tls::tls_client_builder(&roots)
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// The body of `resp`, at most `max` bytes (lossy UTF-8); a failure while
/// reading ends it where it is.
pub async fn body(mut resp: reqwest::Response, max: usize) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= max {
            body.truncate(max);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A transport error with its cause chain (no URL query, no headers). A
/// refused certificate says so first, with `tls_hint` (which keys to
/// check), as retrying alone will not fix it.
pub fn transport_error(e: &reqwest::Error, tls_hint: &str) -> String {
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
    if let Some(at) = msg.find("invalid peer certificate") {
        return format!("TLS certificate not accepted ({tls_hint}): {}", &msg[at..]);
    }
    msg
}
