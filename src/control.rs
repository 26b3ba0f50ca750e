//! Control: the operations behind `tjfwd status`, `replay`, `resend`,
//! `export` and `flush`, and the Unix socket through which a running daemon
//! performs them for the command line.
//!
//! sled allows one process per database, so while `tjfwd run` holds the state
//! directory the commands send their requests to `state_dir/control.sock`;
//! when no daemon runs, they open the database and perform the very same
//! [`Ops`] themselves. Either way the command behaves the same.
//!
//! # Protocol
//!
//! One JSON object per line, request then response, any number per
//! connection: `{"cmd":"status"}` → `{"ok":true,"result":{...}}` or
//! `{"ok":false,"error":"..."}`.
//!
//! # Limits
//!
//! What a client can make the daemon hold is bounded, as for the socket
//! input: a request is at most [`MAX_REQUEST`] bytes (`replay` sends 5,000
//! sightings, about 300 KB, at a time), read without buffering more than
//! that; a longer one is answered `request too large` and its connection
//! closed. At most [`MAX_CONNECTIONS`] connections are served at once; one
//! more is answered `busy` at once and closed (and logged), so the daemon
//! holds at most `MAX_CONNECTIONS` requests of `MAX_REQUEST` bytes, and a
//! connection that is refused costs nothing once closed. Responses (an
//! `export` of the whole denylist mirror) may be larger: the client reads
//! at most [`MAX_RESPONSE`].
//!
//! # Access
//!
//! The socket is created mode 0600 in the state directory (itself 0700), and
//! the daemon checks every connection's peer credentials: only its own user
//! (and root) may send requests; anyone else is refused and logged.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::Config;
use crate::errors::chain;
use crate::pipeline::{Commit, Pipeline, StorageWatch};
use crate::stats::Stats;
use crate::status::{rfc3339, Snapshot};
use crate::store::{EnqueueOutcome, Sighting, Store, StoreError};

/// The socket's file name in the state directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Largest request line, its newline included.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest response line the client reads (`export` answers with every
/// active entry of the denylist mirror).
pub const MAX_RESPONSE: usize = 64 << 20;
/// Most control connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// The socket path of a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Queue sightings (from `replay`): (address, event time ms).
    Enqueue {
        sightings: Vec<(IpAddr, u64)>,
    },
    Resend {
        filter: ResendFilter,
    },
    /// The denylist, or with `target` that target's reported mirror.
    Export {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    Flush {
        /// Only this target (every target when absent).
        #[serde(default)]
        target: Option<String>,
    },
}

/// Which addresses `resend` queues again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResendFilter {
    /// From the dead-letter set instead of the reported set.
    pub dead_letter: bool,
    /// Only entries whose TTL has not run out (reported set).
    pub active_only: bool,
    /// Only entries reported (or dead-lettered) within this many ms.
    pub within_ms: Option<u64>,
    /// Only this address.
    pub ip: Option<IpAddr>,
    /// Only addresses in this network.
    pub cidr: Option<IpNet>,
    /// Only this target's set, queued again for it alone (every enabled
    /// target's, each for itself, when absent).
    #[serde(default)]
    pub target: Option<String>,
}

/// What `resend` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResendOutcome {
    /// Entries that matched the filter.
    pub matched: u64,
    /// Of those, newly queued.
    pub queued: u64,
    /// Of those, already pending.
    pub already_pending: u64,
}

/// One entry of what `export` prints: of tjfwd's denylist (with
/// `last_seen` and `pending`), or of a target's reported mirror (with
/// `last_reported` and `reports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEntry {
    pub address: IpAddr,
    /// Denylist: its last sighting (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Denylist: a target still owes a report of it (it stays listed
    /// meanwhile; its expiry counts from now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<bool>,
    /// Mirror: its last accepted report (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reported: Option<String>,
    /// When it leaves the list (RFC 3339).
    pub expires_at: String,
    /// Seconds left.
    pub remaining_ttl_s: u64,
    /// Mirror: accepted reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<u64>,
}

/// What `flush` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushOutcome {
    /// Addresses pending when the flush was asked for.
    pub pending: u64,
}

/// A response line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors of the control operations.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Queue(#[from] StoreError),
    #[error("the control socket {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon answered: {0}")]
    Daemon(String),
    #[error("the daemon's answer could not be read: {0}; is the daemon the same tjfwd version as this command?")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("no enabled target is called {name:?}; enabled: {enabled}")]
    UnknownTarget { name: String, enabled: String },
    /// A request the operator must correct (an unknown target...).
    #[error("{0}")]
    Usage(String),
}

/// The hooks into a running daemon.
#[derive(Debug, Clone)]
pub struct DaemonHooks {
    /// Wakes the scheduler.
    pub notify: Arc<Notify>,
    /// Each scheduler's bell and flush flag (`tjfwd flush`).
    pub bells: Arc<crate::scheduler::Bells>,
    /// The daemon's counters.
    pub stats: Arc<Stats>,
    /// Shown the storage errors of `enqueue` (the daemon reopens the
    /// database once the disk takes writes again).
    pub storage: StorageWatch,
}

/// The operations, on an open queue.
pub struct Ops {
    pub queue: Arc<Store>,
    pub config: Config,
    /// Set inside the daemon; None when a command opened the database.
    pub daemon: Option<DaemonHooks>,
}

impl Ops {
    /// The status snapshot.
    pub fn status(&self) -> Result<Snapshot, ControlError> {
        let stats = self.daemon.as_ref().map(|d| &*d.stats);
        let pid = self.daemon.as_ref().map(|_| std::process::id());
        match Snapshot::collect(&self.queue, &self.config, stats, pid) {
            Ok(s) => Ok(s),
            // A running daemon answers whatever its database does.
            Err(e) if pid.is_some() => {
                tracing::warn!(error = %chain(&e), "status: cannot read the whole queue");
                Ok(Snapshot::unreadable(
                    &self.queue,
                    &self.config,
                    stats,
                    pid,
                    &e,
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Queues sightings and makes them durable before answering: the
    /// pipeline's second half ([`Pipeline::queue`], the position committed
    /// after the fsync: the answer). In the daemon, counted, the
    /// schedulers woken, a storage error shown to the storage watch.
    pub fn enqueue(&self, sightings: &[Sighting]) -> Result<EnqueueOutcome, ControlError> {
        let pipeline = match &self.daemon {
            Some(d) => Pipeline::new(
                self.queue.clone(),
                &self.config,
                d.stats.clone(),
                d.notify.clone(),
            )
            .with_storage_watch(d.storage.clone()),
            // No daemon: nothing to count for, no scheduler to wake.
            None => Pipeline::new(
                self.queue.clone(),
                &self.config,
                Arc::default(),
                Arc::default(),
            ),
        };
        pipeline
            .queue(sightings, &Commit::AfterFlush, now_ms())
            .map_err(|f| f.error.into())
    }

    /// Queues again the entries that match `filter`.
    pub fn resend(&self, filter: &ResendFilter) -> Result<ResendOutcome, ControlError> {
        let now = now_ms();
        let recent = |t: u64| filter.within_ms.is_none_or(|w| t >= now.saturating_sub(w));
        let wanted = |a: IpAddr| {
            filter.ip.is_none_or(|ip| crate::filter::normalize(ip) == a)
                && filter.cidr.is_none_or(|net| net.contains(&a))
        };
        let scope = self.targets_in_scope(filter.target.as_deref())?;
        let mut out = ResendOutcome::default();
        for t in scope {
            let mut addrs = Vec::new();
            if filter.dead_letter {
                for e in self.queue.dead_entries(t) {
                    let (a, d) = e?;
                    if wanted(a) && recent(d.at_ms) {
                        addrs.push(a);
                    }
                }
            } else {
                for e in self.queue.reported_entries(t) {
                    let (a, r) = e?;
                    if wanted(a)
                        && recent(r.last_reported_ms)
                        && (!filter.active_only || r.expires_at_ms > now)
                    {
                        addrs.push(a);
                    }
                }
            }
            out.matched += addrs.len() as u64;
            for chunk in addrs.chunks(1000) {
                let (q, a) = self.queue.requeue_for(chunk, now, Some(t))?;
                out.queued += q;
                out.already_pending += a;
            }
        }
        self.queue.flush()?;
        if let Some(d) = &self.daemon {
            if out.queued > 0 {
                d.bells.ring();
            }
        }
        Ok(out)
    }

    /// tjfwd's denylist (`[feed] ttl`), by address; or, with `target`,
    /// the active entries of that target's reported mirror, soonest expiry
    /// first.
    pub fn export(&self, target: Option<&str>) -> Result<Vec<ExportEntry>, ControlError> {
        let now = now_ms();
        let Some(name) = target else {
            let ttl = self.config.feed.ttl.as_millis() as u64;
            return Ok(self
                .queue
                .denylist(now, ttl)?
                .into_iter()
                .map(|l| {
                    // While pending it stays listed: its expiry counts from now.
                    let expires = if l.pending { now } else { l.last_seen_ms }.saturating_add(ttl);
                    ExportEntry {
                        address: l.addr,
                        last_seen: Some(rfc3339(l.last_seen_ms)),
                        pending: Some(l.pending),
                        last_reported: None,
                        expires_at: rfc3339(expires),
                        remaining_ttl_s: expires.saturating_sub(now).div_ceil(1000),
                        reports: None,
                    }
                })
                .collect());
        };
        let t = self.queue.target_id(name).ok_or_else(|| {
            let names: Vec<&str> = self
                .queue
                .served()
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            ControlError::Usage(format!(
                "--target {name:?} is not a configured target (configured: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })?;
        let mut out = Vec::new();
        for e in self.queue.reported_entries(t) {
            let (a, r) = e?;
            if r.expires_at_ms <= now {
                continue;
            }
            out.push(ExportEntry {
                address: a,
                last_seen: None,
                pending: None,
                last_reported: Some(rfc3339(r.last_reported_ms)),
                expires_at: rfc3339(r.expires_at_ms),
                remaining_ttl_s: (r.expires_at_ms - now).div_ceil(1000),
                reports: Some(r.count),
            });
        }
        out.sort_by(|a, b| {
            a.expires_at
                .cmp(&b.expires_at)
                .then(a.address.cmp(&b.address))
        });
        Ok(out)
    }

    /// Asks the daemon's schedulers (target `only`'s, when given) to send
    /// what is pending now.
    pub fn flush(&self, only: Option<&str>) -> Result<FlushOutcome, ControlError> {
        let d = self.daemon.as_ref().ok_or(ControlError::Unsupported(
            "flush needs the daemon's scheduler",
        ))?;
        let pending = match only {
            None => self.queue.pending_count()?,
            Some(_) => {
                let t = self.targets_in_scope(only)?[0];
                self.queue.pending_count_for(t)?
            }
        };
        if !d.bells.flush(only) {
            return Err(self.unknown_target(only.unwrap_or_default()));
        }
        Ok(FlushOutcome { pending })
    }

    /// The served targets `only` names (all of them when None), or an
    /// error naming the enabled ones.
    pub fn targets_in_scope(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<crate::store::TargetId>, ControlError> {
        let served = self.queue.served();
        match only {
            None => Ok(served.iter().map(|s| s.id).collect()),
            Some(name) => served
                .iter()
                .find(|s| s.name == name)
                .map(|s| vec![s.id])
                .ok_or_else(|| self.unknown_target(name)),
        }
    }

    fn unknown_target(&self, name: &str) -> ControlError {
        ControlError::UnknownTarget {
            name: name.to_string(),
            enabled: self
                .queue
                .served()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Performs a request.
    pub fn handle(&self, req: Request) -> Response {
        fn done<T: Serialize>(r: Result<T, ControlError>) -> Response {
            match r {
                Ok(v) => Response {
                    ok: true,
                    result: Some(serde_json::to_value(v).expect("plain data serializes")),
                    error: None,
                },
                Err(e) => Response {
                    ok: false,
                    result: None,
                    error: Some(chain(&e).to_string()),
                },
            }
        }
        match req {
            Request::Status => done(self.status()),
            Request::Enqueue { sightings } => {
                let s: Vec<Sighting> = sightings
                    .into_iter()
                    .map(|(addr, seen_ms)| Sighting {
                        addr: crate::filter::normalize(addr),
                        seen_ms,
                    })
                    .collect();
                done(self.enqueue(&s))
            }
            Request::Resend { filter } => done(self.resend(&filter)),
            Request::Export { target } => done(self.export(target.as_deref())),
            Request::Flush { target } => done(self.flush(target.as_deref())),
        }
    }
}

impl Response {
    /// A failure with its message.
    fn error(message: String) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(message),
        }
    }
}

/// The daemon's side of the protocol for one request line as read (at most
/// `MAX_REQUEST + 1` bytes, the newline included): the request, or the
/// response that refuses it. Pure, so that it can be fuzzed.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    if line.len() > MAX_REQUEST {
        return Err(Response::error(format!(
            "request too large: a request is at most {} MiB (the connection is closed)",
            MAX_REQUEST >> 20
        )));
    }
    serde_json::from_slice::<Request>(line)
        .map_err(|e| Response::error(format!("malformed request: {e}")))
}

/// Creates the daemon's control socket (any old one is stale: the daemon
/// holds the state directory's lock), mode 0600.
pub fn bind(state_dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves control requests until `shutdown` completes, at most
/// [`MAX_CONNECTIONS`] connections at once (see the module doc).
pub async fn serve(
    listener: tokio::net::UnixListener,
    ops: Arc<Ops>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let me = rustix::process::geteuid().as_raw();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            Ok(c) => {
                tracing::warn!(
                    uid = c.uid(),
                    "control socket: refused a request from another user"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot check the peer; refused");
                continue;
            }
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = MAX_CONNECTIONS,
                "too many control connections: refusing one"
            );
            refuse_busy(stream);
            continue;
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection(stream, ops).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(socket_path(&ops.config.state_dir));
}

/// Answers a connection over [`MAX_CONNECTIONS`] that the daemon is busy,
/// and closes it. Without waiting: one non-blocking write of a new
/// connection's first bytes, which its socket buffer takes (a client that
/// is gone is not missed).
fn refuse_busy(stream: tokio::net::UnixStream) {
    let mut out = serde_json::to_vec(&Response::error(format!(
        "the daemon is busy: {MAX_CONNECTIONS} control connections are open (other tjfwd \
         commands); try again when they are done"
    )))
    .expect("plain data serializes");
    out.push(b'\n');
    // The write itself, not tokio's: its readiness of a stream just
    // accepted is not known yet. (Still non-blocking.)
    if let Ok(stream) = stream.into_std() {
        let _ = (&stream).write(&out);
    }
}

async fn connection(stream: tokio::net::UnixStream, ops: Arc<Ops>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = match parse_request(&line) {
            Ok(req) => {
                let ops = ops.clone();
                tokio::task::spawn_blocking(move || ops.handle(req))
                    .await
                    .unwrap_or_else(|e| Response::error(format!("internal error: {e}")))
            }
            Err(refusal) => refusal,
        };
        let mut out = serde_json::to_vec(&response).expect("plain data serializes");
        out.push(b'\n');
        w.write_all(&out).await?;
        if line.len() > MAX_REQUEST {
            tracing::warn!(
                max = MAX_REQUEST,
                "control socket: a request too large was refused; its connection is closed"
            );
            return Ok(());
        }
    }
}

use tokio::io::AsyncReadExt as _;

/// A connection to a running daemon.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the daemon of `state_dir`; None when no daemon listens.
    pub fn connect(state_dir: &Path) -> Result<Option<Client>, ControlError> {
        let path = socket_path(state_dir);
        let io = |source| ControlError::Io {
            path: path.clone(),
            source,
        };
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(io(e)),
        };
        let writer = stream.try_clone().map_err(io)?;
        Ok(Some(Client {
            reader: BufReader::new(stream),
            writer,
            path,
        }))
    }

    /// Sends a request and returns its result.
    pub fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        req: &Request,
    ) -> Result<T, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let refused = || {
            ControlError::Protocol(
                "the daemon closed the connection: only the daemon's user and root may use the control socket".into(),
            )
        };
        let mut line = serde_json::to_vec(req).expect("plain data serializes");
        line.push(b'\n');
        match self.writer.write_all(&line) {
            Ok(()) => {}
            // Closed by the daemon: it may have said why first (busy, a
            // request too large), else it refused this user.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(io(e)),
        }
        let mut answer = Vec::new();
        let n = match std::io::Read::take(&mut self.reader, MAX_RESPONSE as u64 + 1)
            .read_until(b'\n', &mut answer)
        {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Err(refused());
        }
        let resp: Response =
            serde_json::from_slice(&answer).map_err(|e| ControlError::Protocol(e.to_string()))?;
        if !resp.ok {
            return Err(ControlError::Daemon(resp.error.unwrap_or_default()));
        }
        serde_json::from_value(resp.result.unwrap_or(serde_json::Value::Null))
            .map_err(|e| ControlError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sighting dated past the year 9999 (the control socket takes any
    /// time; a log may carry any year) is exported, its time written as
    /// the latest RFC 3339 can say, not a panic (found by the
    /// control_protocol fuzz target).
    #[test]
    fn export_writes_a_sighting_from_the_far_future() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default_for_tests(dir.path().join("state"));
        let queue = crate::pipeline::fake::open_store(&config);
        let ops = Ops {
            queue: Arc::new(queue),
            config,
            daemon: None,
        };
        let r = ops.handle(
            parse_request(
                br#"{"cmd":"enqueue","sightings":[["203.0.113.7",18446744073709551615]]}"#,
            )
            .unwrap(),
        );
        assert!(r.ok, "{r:?}");
        let r = ops.handle(parse_request(br#"{"cmd":"export"}"#).unwrap());
        assert!(r.ok, "{r:?}");
        let entries: Vec<ExportEntry> = serde_json::from_value(r.result.unwrap()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].last_seen.as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
    }

    #[test]
    fn parse_request_accepts_requests_and_answers_the_rest() {
        assert_eq!(
            parse_request(b"{\"cmd\":\"status\"}\n").unwrap(),
            Request::Status
        );
        assert_eq!(
            parse_request(br#"{"cmd":"enqueue","sightings":[["203.0.113.7",5]]}"#).unwrap(),
            Request::Enqueue {
                sightings: vec![("203.0.113.7".parse().unwrap(), 5)]
            }
        );
        for (line, why) in [
            (&b"{\"cmd\":\"reboot\"}\n"[..], "malformed request"),
            (b"\xff\xfe", "malformed request"),
            (b"", "malformed request"),
        ] {
            let r = parse_request(line).unwrap_err();
            assert!(!r.ok);
            assert!(r.error.unwrap().starts_with(why));
        }
        let big = vec![b' '; MAX_REQUEST + 1];
        assert!(parse_request(&big)
            .unwrap_err()
            .error
            .unwrap()
            .starts_with("request too large: a request is at most 1 MiB"));
    }
}
