//! A contract-faithful fake of the Threat Jammer Report API (v1), for tests.
//!
//! tjfwd's integration tests point the real code (the library, or the `tjfwd`
//! binary started as a child process) at this fake instead of the real
//! service. The fake implements the API contract of `DESIGN.md` strictly, so a
//! client bug (a wrong header, a malformed body, a non-public address in a
//! batch, too many requests per minute) shows up as the same error status the
//! real service would answer, and it records everything it receives so tests
//! can assert on what was sent, and when.
//!
//! # Running it
//!
//! [`FakeApi::start`] binds `127.0.0.1:0` and serves on its own background
//! std thread with its own (current-thread) tokio runtime, so it works the
//! same from plain `#[test]`s and from `#[tokio::test]`s, including tests
//! with a paused clock (the fake always runs on real time). Dropping the
//! [`FakeApi`] (or calling [`FakeApi::shutdown`]) stops the server and closes
//! its port and every open connection before returning.
//!
//! [`FakeApi::start_tls`] serves the same API over TLS (tokio-rustls), with
//! a certificate chain the test made (see `support::pki`): its URLs are
//! `https://127.0.0.1:PORT/...`. A client that refuses the certificate
//! makes no request; [`FakeApi::tls_handshake_failures`] counts those.
//!
//! # The contract it enforces
//!
//! Served paths: [`REPORT_PATH`] (`/v1/ip`, the one [`FakeApi::url`] returns)
//! and the related `/v1/unban/ip`, `/v1/false/add/ip`, `/v1/false/remove/ip`
//! ([`ENDPOINTS`]), all with the same rules. A request is answered by the
//! first rule that applies:
//!
//! 1. while [`FakeApi::set_down`]`(true)`: `503` to everything;
//! 2. unknown path: `404`; method other than `POST`: `405`;
//! 3. `Authorization: Bearer <token>` missing or not the current token: `401`
//!    (JSON body `{"detail": "..."}`);
//! 4. the next scripted [`Failure`], if any was pushed (FIFO, one per
//!    request, consumed only by requests that passed the bearer check);
//! 5. rate limit: more than `max_requests_per_window` requests with this token
//!    within any rolling `window` (this request included): `429` with a
//!    `Retry-After` header in whole seconds, the time until a new request
//!    would be admitted. *Every* request bearing a valid token counts,
//!    whatever its answer (`429`s, `5xx`, scripted failures, `404`s...);
//! 6. body checks (FastAPI style `422`, see below), `413` when `addresses`
//!    holds more than `max_addresses` entries;
//! 7. otherwise `202` with an empty body, the only success.
//!
//! Body checks: `Content-Type` must be `application/json`; the body must be a
//! JSON object `{"addresses": [string, ...], "ttl": int > 0, "type": string,
//! "tags": [string, ...]}` (unknown extra fields are ignored). `addresses`
//! must be non-empty; `type` must be one of [`DATASETS`]; every tag must be a
//! non-empty string of uppercase ASCII letters and digits (an empty `tags`
//! list is accepted). A field violation answers
//! `{"detail":[{"loc":["body","ttl"],"msg":"...","type":"..."}]}`, one entry
//! per problem, the `loc` naming the field (and the index inside a list):
//! clients should rely on `loc`, the `msg`/`type` texts are informative.
//!
//! Then every address must parse as a std [`IpAddr`] (so `"1.2.3.4:22"` or
//! `" 1.2.3.4"` are malformed), be public (see [`non_public_reason`], an oracle
//! written independently of tjfwd's own filter) and not be in the runtime set
//! of [`FakeApi::reject_address`]. One bad address fails the whole request
//! with `422`: with `detail_indices` the body lists each bad one as
//! `{"loc":["body","addresses",INDEX],"msg":...,"type":"value_error","input":...}`,
//! otherwise it is just `{"detail":"Invalid address list"}`.
//!
//! # Recording
//!
//! Every request is recorded as a [`RequestRecord`] before its answer is sent
//! (so once a client has seen a `202`, [`FakeApi::accepted_addresses`]
//! already includes it). A request is processed to the end even when the
//! client gives up waiting (e.g. times out during a [`Failure::Delay`]): like a
//! real server, the fake may accept a batch whose `202` the client never saw.
//! The "accepted" helpers only consider genuine (not scripted) `202`s on
//! [`REPORT_PATH`]; use [`FakeApi::requests`] for the other endpoints.
//! [`FakeApi::subscribe`] notifies each decided request as it is recorded,
//! before its answer is written (fault-injection tests kill the client then).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::IntoFuture;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::pki::ServerIdentity;

/// The token [`FakeConfig::default`] accepts.
pub const DEFAULT_TOKEN: &str = "test-token-0123456789";

/// The report endpoint, the path of [`FakeApi::url`].
pub const REPORT_PATH: &str = "/v1/ip";

/// Every path the fake serves (all with the same body rules).
pub const ENDPOINTS: [&str; 4] = [
    REPORT_PATH,
    "/v1/unban/ip",
    "/v1/false/add/ip",
    "/v1/false/remove/ip",
];

/// The dataset names accepted in the body's `type` field.
pub const DATASETS: &[&str] = &[
    "ABUSE", "ATTACK", "BOTNET", "MALWARE", "PHISHING", "SCANNER", "SPAM",
];

/// Largest request body the fake reads (a full 1000-address batch is ~50 KB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Poll period of the `wait_for_*` helpers.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Settings of a [`FakeApi`]; use struct update syntax over [`Default`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The bearer token accepted at start (see [`FakeApi::set_token`]).
    pub token: String,
    /// Requests allowed per token within any rolling `window` (API: 6).
    pub max_requests_per_window: usize,
    /// Length of the rolling rate-limit window (API: 60 s).
    pub window: Duration,
    /// Largest accepted `addresses` list; more answers `413` (API: 1000).
    pub max_addresses: usize,
    /// Whether a `422` for bad addresses lists their indices.
    pub detail_indices: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: DEFAULT_TOKEN.to_owned(),
            max_requests_per_window: 6,
            window: Duration::from_secs(60),
            max_addresses: 1000,
            detail_indices: false,
        }
    }
}

/// A scripted, one-shot misbehaviour, consumed (FIFO) by the next request
/// that passes the bearer check. See [`FakeApi::push_failure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer this status with a JSON `{"detail": ...}` body (no
    /// `Retry-After`, even for 429). It is never recorded as accepted, even
    /// if it is 202; an invalid code (not 100..=999) is answered as 500.
    Status(u16),
    /// Answer `429`, with this `Retry-After` header value verbatim (an integer
    /// number of seconds or an HTTP date), or with no such header.
    TooMany { retry_after: Option<String> },
    /// Close the connection without writing any response byte: the client
    /// sees a connection error. Recorded with `status == 0`, `dropped == true`.
    Drop,
    /// Wait this long, then answer normally: the rate-limit verdict is the
    /// one of the request's arrival, the body checks run after the delay.
    Delay(Duration),
    /// Latency on the way in: the request reaches the server this much
    /// later, so it is admitted, counted by the rate limiter, recorded (its
    /// `at`) and answered only then. Consumed when the request is read
    /// (whatever its token), before the other failures are considered.
    Late(Duration),
}

/// One request the fake received, whatever its answer.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// When the fake admitted it (after reading the body); the time the rate
    /// limiter and [`FakeApi::max_requests_in_window`] use.
    pub at: Instant,
    /// HTTP method, e.g. `"POST"`.
    pub method: String,
    /// Request path without the query, e.g. `"/v1/ip"`.
    pub path: String,
    /// Status answered; `0` when the connection was dropped.
    pub status: u16,
    /// Whether a scripted [`Failure::Drop`] closed the connection instead.
    pub dropped: bool,
    /// Whether the fake accepted the request: a genuine `202` after all the
    /// checks (a scripted `Failure::Status(202)` is not).
    pub accepted: bool,
    /// The `addresses` of the body as sent (best effort when the body is
    /// invalid: non-string entries appear as their JSON text).
    pub addresses: Vec<String>,
    /// The `ttl` of the body, when it was an integer.
    pub ttl: Option<i64>,
    /// The `type` (dataset) of the body, when it was a string.
    pub dataset: Option<String>,
    /// The string entries of the body's `tags`.
    pub tags: Vec<String>,
    /// Whether the bearer token was the accepted one at arrival.
    pub authorized: bool,
    /// The raw `Authorization` header value, if any (lossy UTF-8).
    pub authorization: Option<String>,
    /// All request headers, names lowercase, values lossy UTF-8, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body (lossy UTF-8).
    pub body: String,
    /// The `Retry-After` value answered, if any.
    pub retry_after: Option<String>,
}

impl RequestRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is an accepted request on the report endpoint.
    pub fn is_accepted_report(&self) -> bool {
        self.accepted && self.path == REPORT_PATH
    }
}

/// What [`FakeApi::subscribe`] sends for each decided request.
#[derive(Clone, Debug)]
pub struct Answered {
    /// The request's [`RequestRecord::at`].
    pub at: Instant,
    /// Request path without the query.
    pub path: String,
    /// Status answered; `0` when the connection is dropped.
    pub status: u16,
    /// Whether it is a genuine `202` (see [`RequestRecord::accepted`]).
    pub accepted: bool,
    /// How many addresses the body held.
    pub addresses: usize,
}

/// A running fake Report API. Stops when dropped.
pub struct FakeApi {
    addr: SocketAddr,
    /// "http", or "https" for [`FakeApi::start_tls`].
    scheme: &'static str,
    /// TLS handshakes that failed (the client refused the certificate...).
    tls_failures: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi").field("addr", &self.addr).finish()
    }
}

impl FakeApi {
    /// Binds `127.0.0.1:0` and starts serving on a background thread. The
    /// port accepts connections as soon as this returns. Panics (test setup
    /// failure) only if the socket, runtime or thread cannot be created.
    pub fn start(cfg: FakeConfig) -> FakeApi {
        FakeApi::start_with(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cfg, None)
    }

    /// Like [`FakeApi::start`], on the given address: e.g. the port of a fake
    /// that was shut down, to model an API that refused connections for a
    /// while and then came back. Panics if the address cannot be bound.
    pub fn start_at(addr: SocketAddr, cfg: FakeConfig) -> FakeApi {
        FakeApi::start_with(addr, cfg, None)
    }

    /// Like [`FakeApi::start`], over TLS with `identity` (a certificate
    /// chain and key, see `support::pki`): the URLs are `https://`.
    pub fn start_tls(cfg: FakeConfig, identity: &ServerIdentity) -> FakeApi {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(identity.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("fake API: server certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
            .expect("fake API: server key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("fake API: TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("fake API: TLS certificate and key");
        FakeApi::start_with(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            cfg,
            Some(TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn start_with(addr: SocketAddr, cfg: FakeConfig, tls: Option<TlsAcceptor>) -> FakeApi {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls_failures = Arc::new(AtomicUsize::new(0));
        let std_listener =
            std::net::TcpListener::bind(addr).expect("fake API: bind the requested address");
        std_listener
            .set_nonblocking(true)
            .expect("fake API: set_nonblocking");
        let addr = std_listener.local_addr().expect("fake API: local_addr");

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fake API: build tokio runtime");
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).expect("fake API: register listener")
        };

        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState::new(cfg)),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared))
            .into_make_service_with_connect_info::<ConnHandle>();

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let failures = Arc::clone(&tls_failures);
        let thread = std::thread::Builder::new()
            .name(format!("fake-api-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = KillableListener {
                        tcp: listener,
                        tls,
                        tls_failures: failures,
                    };
                    let server = axum::serve(listener, app).into_future();
                    tokio::select! {
                        _ = server => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime drops the listener and every
                // connection task, closing all sockets.
                drop(runtime);
            })
            .expect("fake API: spawn server thread");

        FakeApi {
            addr,
            scheme,
            tls_failures,
            shared,
            shutdown_tx: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server (same as dropping it): the port and every
    /// connection are closed when this returns.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// The report endpoint: `http://127.0.0.1:PORT/v1/ip` (`https://` with
    /// [`FakeApi::start_tls`], as in the other URLs).
    pub fn url(&self) -> String {
        self.endpoint_url(REPORT_PATH)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn endpoint_url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// TLS handshakes that failed (with [`FakeApi::start_tls`]): e.g. the
    /// client did not trust the certificate. Those clients sent no request.
    pub fn tls_handshake_failures(&self) -> usize {
        self.tls_failures.load(Ordering::SeqCst)
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    // ----- runtime controls -------------------------------------------

    /// The token currently accepted.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Switches the accepted token (the old one gets `401` from now on). The
    /// rate limit is per token, so the new one starts with a fresh window.
    pub fn set_token(&self, token: impl Into<String>) {
        self.shared.lock().token = token.into();
    }

    /// While down, every request (authorized or not) is answered `503`.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Whether `422`s for bad addresses list their indices from now on.
    pub fn set_detail_indices(&self, on: bool) {
        self.shared.lock().cfg.detail_indices = on;
    }

    /// Queues a one-shot failure for the next request passing the bearer check.
    pub fn push_failure(&self, failure: Failure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Queues several failures, in order.
    pub fn push_failures(&self, failures: impl IntoIterator<Item = Failure>) {
        self.shared.lock().failures.extend(failures);
    }

    /// Scripted failures not consumed yet.
    pub fn pending_failures(&self) -> usize {
        self.shared.lock().failures.len()
    }

    /// Forgets the scripted failures not consumed yet.
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
    }

    /// From now on, a request containing `address` fails with `422` as if the
    /// address were invalid. IP addresses are compared by value
    /// (`2001:4860::8888` matches `2001:4860:0:0::8888`), other strings
    /// verbatim.
    pub fn reject_address(&self, address: &str) {
        self.shared.lock().rejected.insert(canonical(address));
    }

    /// Undoes [`FakeApi::reject_address`] for `address`.
    pub fn unreject_address(&self, address: &str) {
        self.shared.lock().rejected.remove(&canonical(address));
    }

    /// Undoes every [`FakeApi::reject_address`].
    pub fn clear_rejected(&self) {
        self.shared.lock().rejected.clear();
    }

    /// A channel that receives an [`Answered`] for every request decided
    /// from now on, right after it is recorded and before its answer is
    /// written to the connection: a test can act (e.g. kill the client) at
    /// the moment a batch was accepted but the client may not have stored
    /// the acknowledgement yet. Dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<Answered> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.shared.lock().subscribers.push(tx);
        rx
    }

    // ----- recording ---------------------------------------------------

    /// Every request received so far, in the order their answers were decided.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().records.clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared.lock().records.len()
    }

    /// Forgets the recorded requests (not the rate-limit state).
    pub fn clear_requests(&self) {
        self.shared.lock().records.clear();
    }

    /// The addresses of every genuine `202` on [`REPORT_PATH`], batch after batch,
    /// duplicates included.
    pub fn accepted_addresses(&self) -> Vec<String> {
        self.accepted_batches().into_iter().flatten().collect()
    }

    /// The distinct accepted addresses (as sent, not canonicalized).
    pub fn accepted_unique(&self) -> BTreeSet<String> {
        self.accepted_addresses().into_iter().collect()
    }

    /// The address list of every genuine `202` on [`REPORT_PATH`], in order.
    pub fn accepted_batches(&self) -> Vec<Vec<String>> {
        self.accepted_batches_on(REPORT_PATH)
    }

    /// The address list of every genuine `202` on `path`, in order.
    pub fn accepted_batches_on(&self, path: &str) -> Vec<Vec<String>> {
        self.shared
            .lock()
            .records
            .iter()
            .filter(|r| r.accepted && r.path == path)
            .map(|r| r.addresses.clone())
            .collect()
    }

    /// The largest number of authorized requests (valid token, any path,
    /// any answer) recorded within any rolling `window`: two requests are in
    /// the same window when their `at` differ by less than `window` (so a
    /// zero `window` holds none).
    pub fn max_requests_in_window(&self, window: Duration) -> usize {
        if window.is_zero() {
            return 0;
        }
        let mut times: Vec<Instant> = self
            .shared
            .lock()
            .records
            .iter()
            .filter(|r| r.authorized)
            .map(|r| r.at)
            .collect();
        times.sort();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// The `Authorization` header of every request received so far, oldest
    /// first, the most recent last (`None` where it was missing).
    pub fn last_authorization_headers(&self) -> Vec<Option<String>> {
        self.shared
            .lock()
            .records
            .iter()
            .map(|r| r.authorization.clone())
            .collect()
    }

    /// The `Authorization` header of the most recent request (`None` if there
    /// was no request or it had no such header).
    pub fn last_authorization_header(&self) -> Option<String> {
        self.shared
            .lock()
            .records
            .last()
            .and_then(|r| r.authorization.clone())
    }

    /// Blocks (polling) until at least `n_unique` distinct addresses have been
    /// accepted on [`REPORT_PATH`], or `timeout` passed. Returns whether they
    /// were. For sync tests; in async code use
    /// [`FakeApi::wait_for_accepted_async`].
    pub fn wait_for_accepted(&self, n_unique: usize, timeout: Duration) -> bool {
        poll_blocking(timeout, || self.accepted_unique().len() >= n_unique)
    }

    /// Async [`FakeApi::wait_for_accepted`]. The deadline is real time, so it
    /// also works (by spinning) under a paused tokio clock.
    pub async fn wait_for_accepted_async(&self, n_unique: usize, timeout: Duration) -> bool {
        poll_async(timeout, || self.accepted_unique().len() >= n_unique).await
    }

    /// Blocks (polling) until at least `n` requests were recorded, or
    /// `timeout` passed. Returns whether they were.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        poll_blocking(timeout, || self.request_count() >= n)
    }

    /// Async [`FakeApi::wait_for_requests`].
    pub async fn wait_for_requests_async(&self, n: usize, timeout: Duration) -> bool {
        poll_async(timeout, || self.request_count() >= n).await
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn poll_blocking(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

async fn poll_async(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

// ===== the non-public oracle ============================================

/// Whether `ip` is a public address the API accepts (see
/// [`non_public_reason`]).
pub fn is_public(ip: &IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// Why the API refuses `ip` as non-public, or `None` if it is public.
///
/// IPv4 non-public ranges: 0.0.0.0/8, 10/8, 100.64/10 (CGNAT), 127/8,
/// 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24, 192.88.99/24 (6to4 relay),
/// 192.168/16, 198.18/15 (benchmarking), 198.51.100/24, 203.0.113/24,
/// 224/4 (multicast), 240/4 (reserved, includes 255.255.255.255).
///
/// IPv6: only global unicast 2000::/3 can be public (this excludes ::,
/// ::1, ::ffff:0:0/96 IPv4-mapped, ::/96 IPv4-compatible, 64:ff9b::/96,
/// 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8...), minus
/// 2001::/23 (IETF protocol assignments: Teredo, benchmarking, ORCHID),
/// 2001:db8::/32 and 3fff::/20 (documentation) and 2002::/16 (6to4).
///
/// Written independently of tjfwd's own filter, on purpose.
pub fn non_public_reason(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_non_public(*v4),
        IpAddr::V6(v6) => v6_non_public(*v6),
    }
}

fn v4_non_public(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "\"this network\" 0.0.0.0/8"),
        ([10, 0, 0, 0], 8, "private 10.0.0.0/8"),
        (
            [100, 64, 0, 0],
            10,
            "shared address space (CGNAT) 100.64.0.0/10",
        ),
        ([127, 0, 0, 0], 8, "loopback 127.0.0.0/8"),
        ([169, 254, 0, 0], 16, "link-local 169.254.0.0/16"),
        ([172, 16, 0, 0], 12, "private 172.16.0.0/12"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments 192.0.0.0/24"),
        ([192, 0, 2, 0], 24, "documentation 192.0.2.0/24"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast 192.88.99.0/24"),
        ([192, 168, 0, 0], 16, "private 192.168.0.0/16"),
        ([198, 18, 0, 0], 15, "benchmarking 198.18.0.0/15"),
        ([198, 51, 100, 0], 24, "documentation 198.51.100.0/24"),
        ([203, 0, 113, 0], 24, "documentation 203.0.113.0/24"),
        ([224, 0, 0, 0], 4, "multicast 224.0.0.0/4"),
        ([240, 0, 0, 0], 4, "reserved 240.0.0.0/4 (incl. broadcast)"),
    ];
    let bits = u128::from(u32::from(ip));
    RANGES
        .iter()
        .find(|(net, len, _)| in_prefix(bits, u128::from(u32::from_be_bytes(*net)), *len, 32))
        .map(|(_, _, why)| *why)
}

fn v6_non_public(ip: Ipv6Addr) -> Option<&'static str> {
    const RANGES: &[(u128, u32, &str)] = &[
        (0, 128, "unspecified ::/128"),
        (1, 128, "loopback ::1/128"),
        (0xffff_0000_0000, 96, "IPv4-mapped ::ffff:0:0/96"),
        (0, 96, "IPv4-compatible ::/96"),
        (0x0064_ff9b << 96, 96, "IPv4/IPv6 translation 64:ff9b::/96"),
        (
            0x0064_ff9b_0001 << 80,
            48,
            "IPv4/IPv6 translation 64:ff9b:1::/48",
        ),
        (0x0100 << 112, 64, "discard-only 100::/64"),
        (0x2001_0db8 << 96, 32, "documentation 2001:db8::/32"),
        (0x2001 << 112, 23, "IETF protocol assignments 2001::/23"),
        (0x2002 << 112, 16, "6to4 2002::/16"),
        (0x3fff << 112, 20, "documentation 3fff::/20"),
        (0xfc00 << 112, 7, "unique local fc00::/7"),
        (0xfe80 << 112, 10, "link-local fe80::/10"),
        (0xfec0 << 112, 10, "site-local fec0::/10"),
        (0xff00 << 112, 8, "multicast ff00::/8"),
    ];
    let bits = u128::from(ip);
    if let Some((_, _, why)) = RANGES
        .iter()
        .find(|(net, len, _)| in_prefix(bits, *net, *len, 128))
    {
        return Some(why);
    }
    if !in_prefix(bits, 0x2000 << 112, 3, 128) {
        return Some("not global unicast (outside 2000::/3)");
    }
    None
}

/// Whether the `width`-bit address `addr` is in `net/len`.
fn in_prefix(addr: u128, net: u128, len: u32, width: u32) -> bool {
    let host_bits = width - len;
    if host_bits >= 128 {
        return true;
    }
    (addr >> host_bits) == (net >> host_bits)
}

/// The form rejected addresses are compared in.
fn canonical(address: &str) -> String {
    address
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| address.to_owned())
}

// ===== server state ======================================================

struct Shared {
    state: Mutex<ServerState>,
}

impl Shared {
    /// Locks the state; a panic elsewhere (a failed assertion in a test
    /// thread) does not make the fake unusable.
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct ServerState {
    cfg: FakeConfig,
    token: String,
    down: bool,
    failures: VecDeque<Failure>,
    rejected: HashSet<String>,
    /// Per token: arrival times within the current window, oldest first.
    windows: HashMap<String, VecDeque<Instant>>,
    records: Vec<RequestRecord>,
    /// Receivers of [`FakeApi::subscribe`]; dropped ones are forgotten.
    subscribers: Vec<std::sync::mpsc::Sender<Answered>>,
}

impl ServerState {
    fn new(cfg: FakeConfig) -> Self {
        ServerState {
            token: cfg.token.clone(),
            cfg,
            down: false,
            failures: VecDeque::new(),
            rejected: HashSet::new(),
            windows: HashMap::new(),
            records: Vec::new(),
            subscribers: Vec::new(),
        }
    }

    /// Registers an authorized request at `now` with the limiter; returns
    /// the `Retry-After` seconds if it is over the limit.
    fn count_request(&mut self, token: &str, now: Instant) -> Option<u64> {
        let window = self.cfg.window;
        let max = self.cfg.max_requests_per_window;
        let times = self.windows.entry(token.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() <= max {
            return None;
        }
        // A new request is admitted once at most max-1 of these remain in its
        // window, i.e. once the (len-max)-th oldest has left it.
        let wait = match max {
            0 => window,
            _ => (times[times.len() - max] + window).saturating_duration_since(now),
        };
        Some(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Decides what to do with a request up to (not including) the body
    /// checks, and fills `rec.at` / `rec.authorized`.
    fn admit(&mut self, parts: &Parts, rec: &mut RequestRecord) -> Admission {
        let now = Instant::now();
        rec.at = now;
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        rec.authorized = bearer == Some(self.token.as_str());
        let over_limit = if rec.authorized {
            let token = self.token.clone();
            self.count_request(&token, now)
        } else {
            None
        };

        if self.down {
            return Admission::Reply(Reply::detail(503, "Service Unavailable"));
        }
        if !ENDPOINTS.contains(&rec.path.as_str()) {
            return Admission::Reply(Reply::detail(404, "Not Found"));
        }
        if parts.method != Method::POST {
            return Admission::Reply(Reply::detail(405, "Method Not Allowed"));
        }
        if !rec.authorized {
            return Admission::Reply(Reply::detail(401, "Invalid or missing API token"));
        }
        let mut delay = None;
        match self.failures.pop_front() {
            None => {}
            Some(Failure::Status(code)) => {
                let code = if (100..=999).contains(&code) {
                    code
                } else {
                    500
                };
                return Admission::Reply(Reply::detail(code, "Scripted failure"));
            }
            Some(Failure::TooMany { retry_after }) => {
                return Admission::Reply(Reply::too_many(retry_after));
            }
            Some(Failure::Drop) => return Admission::Reply(Reply::Drop),
            Some(Failure::Delay(d)) => delay = Some(d),
            // Taken on arrival by the next request (see `process`), not here.
            Some(late @ Failure::Late(_)) => self.failures.push_front(late),
        }
        Admission::Proceed {
            delay,
            over_limit: over_limit.map(|secs| secs.to_string()),
        }
    }

    /// The body checks and the final answer of an admitted request.
    fn judge(&self, parts: &Parts, body: &[u8]) -> Reply {
        match validate(
            parts,
            body,
            self.cfg.max_addresses,
            self.cfg.detail_indices,
            &self.rejected,
        ) {
            Ok(()) => Reply::Respond {
                status: StatusCode::ACCEPTED,
                retry_after: None,
                body: None,
            },
            Err(reply) => reply,
        }
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

enum Admission {
    Reply(Reply),
    Proceed {
        delay: Option<Duration>,
        over_limit: Option<String>,
    },
}

enum Reply {
    /// Close the connection without answering.
    Drop,
    Respond {
        status: StatusCode,
        retry_after: Option<String>,
        /// JSON body; `None` answers an empty body.
        body: Option<Value>,
    },
}

impl Reply {
    fn detail(code: u16, detail: &str) -> Reply {
        Reply::Respond {
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            retry_after: None,
            body: Some(json!({ "detail": detail })),
        }
    }

    fn too_many(retry_after: Option<String>) -> Reply {
        Reply::Respond {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            body: Some(json!({ "detail": "Too Many Requests: wait a minute" })),
        }
    }

    fn unprocessable(errors: Vec<Value>) -> Reply {
        Reply::Respond {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            retry_after: None,
            body: Some(json!({ "detail": errors })),
        }
    }

    fn status_code(&self) -> u16 {
        match self {
            Reply::Drop => 0,
            Reply::Respond { status, .. } => status.as_u16(),
        }
    }
}

// ===== body validation ===================================================

fn field_error(loc: &[Value], msg: &str, kind: &str) -> Value {
    let mut full = vec![json!("body")];
    full.extend_from_slice(loc);
    json!({ "loc": full, "msg": msg, "type": kind })
}

fn validate(
    parts: &Parts,
    body: &[u8],
    max_addresses: usize,
    detail_indices: bool,
    rejected: &HashSet<String>,
) -> Result<(), Reply> {
    let json_content = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json_content {
        return Err(Reply::unprocessable(vec![field_error(
            &[],
            "Content-Type must be application/json",
            "type_error",
        )]));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(Reply::unprocessable(vec![field_error(
                &[],
                &format!("JSON decode error: {e}"),
                "json_invalid",
            )]))
        }
    };
    let Some(obj) = value.as_object() else {
        return Err(Reply::unprocessable(vec![field_error(
            &[],
            "Input should be a JSON object",
            "type_error",
        )]));
    };

    let mut errors = Vec::new();

    // addresses: structure only here; the addresses themselves come last.
    let mut addresses: Vec<(usize, &str)> = Vec::new();
    match obj.get("addresses") {
        None => errors.push(field_error(
            &[json!("addresses")],
            "Field required",
            "missing",
        )),
        Some(Value::Array(items)) => {
            if items.len() > max_addresses {
                return Err(Reply::detail(
                    413,
                    &format!(
                        "Too many addresses: {} (at most {max_addresses})",
                        items.len()
                    ),
                ));
            }
            if items.is_empty() {
                errors.push(field_error(
                    &[json!("addresses")],
                    "List should have at least 1 item",
                    "value_error",
                ));
            }
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => addresses.push((i, s)),
                    None => errors.push(field_error(
                        &[json!("addresses"), json!(i)],
                        "Input should be a valid string",
                        "type_error",
                    )),
                }
            }
        }
        Some(_) => errors.push(field_error(
            &[json!("addresses")],
            "Input should be a valid list",
            "type_error",
        )),
    }

    match obj.get("ttl") {
        None => errors.push(field_error(&[json!("ttl")], "Field required", "missing")),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            if n.as_i64().is_some_and(|t| t <= 0) {
                errors.push(field_error(
                    &[json!("ttl")],
                    "Input should be greater than 0",
                    "value_error",
                ));
            }
        }
        Some(_) => errors.push(field_error(
            &[json!("ttl")],
            "Input should be a valid integer",
            "type_error",
        )),
    }

    match obj.get("type") {
        None => errors.push(field_error(&[json!("type")], "Field required", "missing")),
        Some(Value::String(s)) => {
            if !DATASETS.contains(&s.as_str()) {
                errors.push(field_error(
                    &[json!("type")],
                    &format!("Input should be one of {}", DATASETS.join(", ")),
                    "value_error",
                ));
            }
        }
        Some(_) => errors.push(field_error(
            &[json!("type")],
            "Input should be a valid string",
            "type_error",
        )),
    }

    match obj.get("tags") {
        None => errors.push(field_error(&[json!("tags")], "Field required", "missing")),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(tag) => {
                        let ok = !tag.is_empty()
                            && tag
                                .bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
                        if !ok {
                            errors.push(field_error(
                                &[json!("tags"), json!(i)],
                                "String should match pattern '^[A-Z0-9]+$'",
                                "value_error",
                            ));
                        }
                    }
                    None => errors.push(field_error(
                        &[json!("tags"), json!(i)],
                        "Input should be a valid string",
                        "type_error",
                    )),
                }
            }
        }
        Some(_) => errors.push(field_error(
            &[json!("tags")],
            "Input should be a valid list",
            "type_error",
        )),
    }

    let mut address_errors = Vec::new();
    for (i, s) in addresses {
        let why = match s.parse::<IpAddr>() {
            Err(_) => Some("value is not a valid IP address".to_owned()),
            Ok(ip) => non_public_reason(&ip)
                .map(|r| format!("value is not a public IP address: {r}"))
                .or_else(|| {
                    rejected
                        .contains(&ip.to_string())
                        .then(|| "address rejected by the server".to_owned())
                }),
        };
        if let Some(msg) = why {
            address_errors.push(json!({
                "loc": ["body", "addresses", i],
                "msg": msg,
                "type": "value_error",
                "input": s,
            }));
        }
    }

    if !errors.is_empty() {
        if detail_indices {
            errors.extend(address_errors);
        }
        return Err(Reply::unprocessable(errors));
    }
    if !address_errors.is_empty() {
        return Err(if detail_indices {
            Reply::unprocessable(address_errors)
        } else {
            Reply::Respond {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                retry_after: None,
                body: Some(json!({ "detail": "Invalid address list" })),
            }
        });
    }
    Ok(())
}

// ===== request handling ==================================================

/// Fills the body-derived fields of a record (best effort).
fn record_body(rec: &mut RequestRecord, body: &[u8]) {
    rec.body = String::from_utf8_lossy(body).into_owned();
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(Value::Array(items)) = obj.get("addresses") {
        rec.addresses = items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
    }
    rec.ttl = obj.get("ttl").and_then(Value::as_i64);
    rec.dataset = obj.get("type").and_then(Value::as_str).map(str::to_owned);
    if let Some(Value::Array(items)) = obj.get("tags") {
        rec.tags = items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
}

fn new_record(parts: &Parts) -> RequestRecord {
    let lossy = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    RequestRecord {
        at: Instant::now(),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        status: 0,
        dropped: false,
        accepted: false,
        addresses: Vec::new(),
        ttl: None,
        dataset: None,
        tags: Vec::new(),
        authorized: false,
        authorization: parts.headers.get(header::AUTHORIZATION).map(lossy),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), lossy(v)))
            .collect(),
        body: String::new(),
        retry_after: None,
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        // The client went away mid-body, or sent too much: nothing to record.
        Err(_) => return Reply::detail(400, "Could not read the request body").into_response(),
    };
    // Decide and record in a task of its own, so the request is processed to
    // the end (and recorded) even if the client disconnects meanwhile.
    let decided = tokio::spawn(process(shared, parts, body)).await;
    match decided {
        Ok(Reply::Drop) => {
            // Any further I/O on this connection fails, so hyper drops it
            // without writing the response below.
            conn.killed.store(true, Ordering::SeqCst);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Ok(reply) => reply.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn process(shared: Arc<Shared>, parts: Parts, body: Bytes) -> Reply {
    let late = {
        let mut state = shared.lock();
        match state.failures.front() {
            Some(Failure::Late(d)) => {
                let d = *d;
                state.failures.pop_front();
                Some(d)
            }
            _ => None,
        }
    };
    if let Some(d) = late {
        tokio::time::sleep(d).await;
    }
    let mut rec = new_record(&parts);
    record_body(&mut rec, &body);
    let admission = shared.lock().admit(&parts, &mut rec);
    // The record is pushed under the lock that judged the request, so a
    // test that sees a report also sees its request.
    let (mut state, reply) = match admission {
        Admission::Reply(reply) => (shared.lock(), reply),
        Admission::Proceed { delay, over_limit } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let state = shared.lock();
            let reply = match over_limit {
                Some(secs) => Reply::too_many(Some(secs)),
                None => {
                    let reply = state.judge(&parts, &body);
                    rec.accepted = reply.status_code() == 202;
                    reply
                }
            };
            (state, reply)
        }
    };
    rec.status = reply.status_code();
    rec.dropped = matches!(reply, Reply::Drop);
    if let Reply::Respond { retry_after, .. } = &reply {
        rec.retry_after = retry_after.clone();
    }
    if !state.subscribers.is_empty() {
        let answered = Answered {
            at: rec.at,
            path: rec.path.clone(),
            status: rec.status,
            accepted: rec.accepted,
            addresses: rec.addresses.len(),
        };
        state
            .subscribers
            .retain(|tx| tx.send(answered.clone()).is_ok());
    }
    state.records.push(rec);
    drop(state);
    reply
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let Reply::Respond {
            status,
            retry_after,
            body,
        } = self
        else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let mut response = match body {
            Some(json) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                json.to_string(),
            )
                .into_response(),
            None => status.into_response(),
        };
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

// ===== connections that can be dropped without an answer ===================

/// Accepts TCP connections (after a TLS handshake when `tls` is set),
/// wrapped in [`KillableStream`].
struct KillableListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    tls_failures: Arc<AtomicUsize>,
}

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    let inner: Box<dyn Io> = match &self.tls {
                        None => Box::new(tcp),
                        // In the accept loop, one at a time: fine for tests,
                        // bounded so a silent client cannot stall it.
                        Some(acceptor) => {
                            match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(tls)) => Box::new(tls),
                                _ => {
                                    self.tls_failures.fetch_add(1, Ordering::SeqCst);
                                    continue;
                                }
                            }
                        }
                    };
                    let stream = KillableStream {
                        inner,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (stream, addr);
                }
                // E.g. a connection reset before accept, or out of file
                // descriptors: retry quietly.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A TCP stream whose every read and write fails once `killed` is set, which
/// makes hyper abandon the connection (closing the socket) before it writes a
/// single byte of the pending response.
struct KillableStream {
    inner: Box<dyn Io>,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "fake API: scripted connection drop",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Per-connection handle given to the handler, to kill its own connection.
#[derive(Clone)]
struct ConnHandle {
    killed: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        ConnHandle {
            killed: Arc::clone(&stream.io().killed),
        }
    }
}
