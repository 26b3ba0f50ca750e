//! The serving machinery shared by the fakes of `fake_abuseipdb` and
//! `fake_crowdsec` (the Threat Jammer fake, `fake_api`, has its own copy):
//! a loopback HTTP/1 server on a background std thread with its own
//! current-thread tokio runtime, whose connections a handler can drop
//! without writing a byte, stopped (port and connections closed) on drop;
//! plus the small date, duration, form and multipart helpers the fakes
//! need, written here so the fakes depend on nothing of tjfwd's.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Largest request body a fake reads (AbuseIPDB's CSV limit is 2 MB; the
/// fakes must read more than that to refuse it the way the service does).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Poll period of the `wait_for_*` helpers.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// What a fake's handler decided for one request.
pub enum Outcome {
    /// Close the connection without writing any response byte.
    Drop,
    /// Write this response.
    Respond(Response),
}

/// A running loopback server. Stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shutdown_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves every request with
    /// `handler`, run in a task of its own so a request is processed to the
    /// end (and recorded) even when its client gives up. Panics (test setup
    /// failure) if the socket, runtime or thread cannot be created.
    pub fn start<F, Fut>(name: &str, addr: SocketAddr, handler: F) -> Server
    where
        F: Fn(Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("{name}: bind {addr}: {e}"));
        std_listener
            .set_nonblocking(true)
            .expect("fake server: set_nonblocking");
        let addr = std_listener.local_addr().expect("fake server: local_addr");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fake server: build tokio runtime");
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).expect("fake server: register listener")
        };
        let app = Router::new()
            .fallback(
                move |ConnectInfo(conn): ConnectInfo<ConnHandle>, req: Request| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                            Ok(b) => b,
                            Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
                        };
                        match tokio::spawn(handler(parts, body)).await {
                            Ok(Outcome::Respond(r)) => r,
                            Ok(Outcome::Drop) => {
                                // Every further I/O on this connection fails,
                                // so hyper drops it without writing this.
                                conn.killed.store(true, Ordering::SeqCst);
                                StatusCode::INTERNAL_SERVER_ERROR.into_response()
                            }
                            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        }
                    }
                },
            )
            .into_make_service_with_connect_info::<ConnHandle>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let server = axum::serve(KillableListener { tcp: listener }, app).into_future();
                    tokio::select! {
                        _ = server => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime closes the listener and connections.
                drop(runtime);
            })
            .expect("fake server: spawn thread");
        Server {
            addr,
            shutdown_tx: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:0`, the address fakes bind by default.
    pub fn any_port() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; returns once the port and connections are closed.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `done` every [`POLL_EVERY`] until it holds or `timeout` passed.
pub fn poll_blocking(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
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

/// Async [`poll_blocking`]; the deadline is real time.
pub async fn poll_async(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
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

// ===== a clock tests can move =============================================

/// Unix time in whole seconds of the real clock plus `offset_secs`.
pub fn shifted_now(offset_secs: i64) -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    real + offset_secs
}

/// Unix seconds of a [`SystemTime`] (negative before 1970).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

// ===== dates ================================================================

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` of unix seconds.
pub fn format_rfc3339(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Unix seconds of an ISO 8601 / RFC 3339 date and time with a zone:
/// `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (or a space for `T`) followed by `Z`,
/// `±HH:MM`, `±HHMM` or `±HH`. `None` for anything else, including a time
/// without a zone (the fakes are strict where services guess).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (h, mi) = (num(11, 2)?, num(14, 2)?);
    if b.get(13) != Some(&b':') {
        return None;
    }
    let mut i = 16;
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') => {
            let rest = &s[i + 1..];
            let (oh, om) = match rest.len() {
                2 => (num(i + 1, 2)?, 0),
                4 => (num(i + 1, 2)?, num(i + 3, 2)?),
                5 if rest.as_bytes()[2] == b':' => (num(i + 1, 2)?, num(i + 4, 2)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Seconds of a Go duration (`time.ParseDuration`): a sequence of decimal
/// numbers, each with a unit among `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`,
/// e.g. `"24h"`, `"1h30m"`, `"4h0m0.5s"`, optionally signed. Rounded down
/// to whole seconds. `None` when malformed (`""`, `"24"`, `"1d"`).
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += number * unit;
    }
    Some(if neg { -total } else { total })
}

/// A Go-style rendering of whole seconds, e.g. `23h59m58s` (as the LAPI
/// shows a decision's remaining duration).
pub fn format_go_duration(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sign}{sec}s"),
        (0, m, sec) => format!("{sign}{m}m{sec}s"),
        (h, m, sec) => format!("{sign}{h}h{m}m{sec}s"),
    }
}

// ===== request helpers ======================================================

/// The value of header `name` of `parts`, if present and visible ASCII.
pub fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// All headers, names lowercase, values lossy UTF-8, in order.
pub fn all_headers(parts: &Parts) -> Vec<(String, String)> {
    parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The media type of the `Content-Type` header, lowercase, without
/// parameters.
pub fn media_type(parts: &Parts) -> Option<String> {
    header(parts, "content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

/// One part of a `multipart/form-data` body.
#[derive(Clone, Debug)]
pub struct FormPart {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// The `filename` of its `Content-Disposition`, if any.
    pub filename: Option<String>,
    /// Its content.
    pub data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body (RFC 7578), given the request's
/// `Content-Type` header; `None` when it is not one or it is malformed.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<FormPart>> {
    let mut params = content_type.split(';');
    if !params
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    let boundary = params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    let delim = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, &delim, 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return None;
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delim);
        let data_end = find(body, &next_delim, data_start)?;
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for p in v.split(';').skip(1) {
                if let Some((pk, pv)) = p.split_once('=') {
                    let pv = pv.trim().trim_matches('"').to_owned();
                    match pk.trim() {
                        "name" => name = Some(pv),
                        "filename" => filename = Some(pv),
                        _ => {}
                    }
                }
            }
        }
        parts.push(FormPart {
            name: name?,
            filename,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + next_delim.len();
    }
}

// ===== connections that can be dropped without an answer ===================

struct KillableListener {
    tcp: TcpListener,
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    let stream = KillableStream {
                        inner: tcp,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (stream, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A TCP stream whose every read and write fails once `killed` is set, so
/// hyper abandons the connection before writing a byte of the response.
struct KillableStream {
    inner: tokio::net::TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "fake server: scripted connection drop",
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
        this.check()?;
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
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
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
