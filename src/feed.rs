//! The denylist feed (`[feed] listen`, off by default): tjfwd's denylist
//! over HTTP, for the firewalls that fetch URL tables (pfSense and
//! OPNsense URL Table aliases, FortiGate external threat feeds, scripts
//! for nftables or MikroTik), on the daemon's runtime.
//!
//! - `GET /denylist.txt`: one address a line, sorted, nothing else (what
//!   every URL table reads).
//! - `GET /denylist.json`: `{"ttl_s": N, "count": N, "addresses":
//!   [{"address", "last_seen", "pending"}]}`.
//! - `?family=ipv4` or `?family=ipv6` (also `4`, `6`, `inet`, `inet6`)
//!   keeps one family; anything else is `400`.
//! - Each answer carries an `ETag` computed from its body; a request whose
//!   `If-None-Match` names it gets `304` and no body.
//!
//! What is listed is the store's [`Store::denylist`] for `[feed] ttl`,
//! read into a snapshot that serves every request for
//! [`SNAPSHOT_MAX_AGE`]: a firewall polling every minute never makes tjfwd
//! scan its database per request. Bodies are rendered once per snapshot
//! and variant. The ETag does not depend on the snapshot's time: the same
//! list gives the same ETag, and a firewall downloads it again only once
//! it changed.
//!
//! Access, fit for a LAN (`crate::config::Feed`): a peer outside
//! `allow_from` (when set) is answered `403` whatever it asks; without the
//! token (when set), `401` with the two challenges the firewalls know
//! (Basic, Bearer). The token is accepted as `Authorization: Bearer TOKEN`
//! or as the password of HTTP basic auth, any user name. Refusals carry a
//! one-word body, never the list, the token or the reason.
//!
//! Limits, so that a scanner on the LAN cannot hurt the daemon: at most
//! [`MAX_CONNECTIONS`] connections at once (one more is closed at once),
//! [`HEADER_READ_TIMEOUT`] to send a request's head, [`MAX_HEAD_BYTES`]
//! for it, and [`CONNECTION_TIMEOUT`] for a whole connection.
//!
//! The entries of `seen` whose last sighting is older than the TTL are
//! pruned by [`prune`], which the daemon runs whether or not the feed is
//! served (`tjfwd export` reads the same list).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;

use crate::clock::now_ms;
use crate::config::{Config, Secret};
use crate::errors::chain;
use crate::status::rfc3339;
use crate::store::{Listed, Store};

/// Longest time a snapshot of the list serves requests.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(10);
/// Most connections served at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of a connection, keep-alive included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How often the expired last sightings are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The `Content-Type` of `/denylist.txt`.
const TEXT: &str = "text/plain; charset=utf-8";
/// The `Content-Type` of `/denylist.json`.
const JSON: &str = "application/json";

/// What the feed serves, and to whom.
pub struct Sources {
    pub queue: Arc<Store>,
    /// `[feed] ttl`, ms.
    pub ttl_ms: u64,
    /// `[feed] allow_from` (empty: anyone, subject to the token).
    pub allow_from: Vec<IpNet>,
    /// `[feed] token`.
    pub token: Option<Secret>,
}

impl Sources {
    /// The feed of a daemon running `config`.
    pub fn new(config: &Config, queue: &Arc<Store>) -> Sources {
        Sources {
            queue: queue.clone(),
            ttl_ms: config.feed.ttl.as_millis() as u64,
            allow_from: config.feed.allow_from.clone(),
            token: config.feed.token.clone(),
        }
    }

    /// Whether a peer may fetch the list (`allow_from`; an IPv4-mapped
    /// IPv6 peer counts as its IPv4 address).
    fn admits(&self, peer: SocketAddr) -> bool {
        let ip = crate::filter::normalize(peer.ip());
        self.allow_from.is_empty() || self.allow_from.iter().any(|n| n.contains(&ip))
    }
}

/// Which body: the format and the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    Text(Family),
    Json(Family),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    All,
    V4,
    V6,
}

/// A rendered answer and its ETag.
#[derive(Clone)]
struct Rendered {
    body: axum::body::Bytes,
    etag: HeaderValue,
}

/// The list as read at one time, and the bodies rendered from it.
struct Snapshot {
    taken: Instant,
    list: Vec<Listed>,
    rendered: std::collections::HashMap<Variant, Rendered>,
}

/// The shared state of the endpoint.
struct Feed {
    sources: Sources,
    /// The current snapshot; held while one is taken, so concurrent
    /// requests wait for that one instead of scanning too.
    snapshot: tokio::sync::Mutex<Option<Snapshot>>,
}

impl Feed {
    /// The body of `variant` from a fresh enough snapshot.
    async fn rendered(&self, variant: Variant) -> Result<Rendered, String> {
        let mut snap = self.snapshot.lock().await;
        if snap
            .as_ref()
            .is_none_or(|s| s.taken.elapsed() >= SNAPSHOT_MAX_AGE)
        {
            let queue = self.sources.queue.clone();
            let ttl = self.sources.ttl_ms;
            let list = tokio::task::spawn_blocking(move || queue.denylist(now_ms(), ttl))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| chain(&e).to_string())?;
            *snap = Some(Snapshot {
                taken: Instant::now(),
                list,
                rendered: Default::default(),
            });
        }
        let snap = snap.as_mut().expect("just taken");
        let ttl_s = self.sources.ttl_ms / 1000;
        let list = &snap.list;
        Ok(snap
            .rendered
            .entry(variant)
            .or_insert_with(|| render(list, variant, ttl_s))
            .clone())
    }
}

/// Renders a body and its ETag (a hash of the body and its length).
fn render(list: &[Listed], variant: Variant, ttl_s: u64) -> Rendered {
    use std::fmt::Write as _;
    let keep = |family: Family, l: &&Listed| match family {
        Family::All => true,
        Family::V4 => l.addr.is_ipv4(),
        Family::V6 => l.addr.is_ipv6(),
    };
    let body = match variant {
        Variant::Text(f) => {
            let mut s = String::with_capacity(list.len() * 16);
            for l in list.iter().filter(|l| keep(f, l)) {
                let _ = writeln!(s, "{}", l.addr);
            }
            s
        }
        Variant::Json(f) => {
            let addresses: Vec<serde_json::Value> = list
                .iter()
                .filter(|l| keep(f, l))
                .map(|l| {
                    serde_json::json!({
                        "address": l.addr,
                        "last_seen": rfc3339(l.last_seen_ms),
                        "pending": l.pending,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "ttl_s": ttl_s,
                "count": addresses.len(),
                "addresses": addresses,
            });
            let mut s = serde_json::to_string(&doc).expect("plain data serializes");
            s.push('\n');
            s
        }
    };
    let etag = format!(
        "\"{:016x}-{:x}\"",
        migrations::fnv1a64(body.as_bytes()),
        body.len()
    );
    Rendered {
        body: body.into(),
        etag: HeaderValue::from_str(&etag).expect("ASCII"),
    }
}

/// Serves the feed on `listener` (bound by [`crate::listeners`]) until
/// `shutdown` completes; then closes the connections still open. Must run
/// within a tokio runtime.
pub async fn serve(
    listener: std::net::TcpListener,
    sources: Sources,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    let feed = Arc::new(Feed {
        sources,
        snapshot: tokio::sync::Mutex::new(None),
    });
    let app = router(feed.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    tracing::info!(
        listen = %local,
        allow_from = ?feed.sources.allow_from.iter().map(ToString::to_string).collect::<Vec<_>>(),
        token = feed.sources.token.is_some(),
        "denylist feed: /denylist.txt and /denylist.json"
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, a connection reset
                        // before it was accepted...: wait a little.
                        tracing::debug!(error = %e, "feed: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "feed: too many connections, closed");
                    continue;
                };
                let admitted = feed.sources.admits(peer);
                let app = app.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .max_buf_size(MAX_HEAD_BYTES);
                    let io = TokioIo::new(stream);
                    let served = if admitted {
                        let svc = hyper_util::service::TowerToHyperService::new(app);
                        tokio::time::timeout(CONNECTION_TIMEOUT, http.serve_connection(io, svc))
                            .await
                    } else {
                        tracing::debug!(%peer, "feed: refused a peer outside [feed] allow_from");
                        let svc = hyper::service::service_fn(|_req| async {
                            Ok::<_, std::convert::Infallible>(refusal(StatusCode::FORBIDDEN))
                        });
                        tokio::time::timeout(CONNECTION_TIMEOUT, http.serve_connection(io, svc))
                            .await
                    };
                    if let Ok(Err(e)) = served {
                        tracing::debug!(%peer, error = %e, "feed: connection ended");
                    }
                });
            }
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// The routes, behind the token check.
fn router(feed: Arc<Feed>) -> Router {
    Router::new()
        .route("/denylist.txt", get(txt))
        .route("/denylist.json", get(json))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(feed.clone(), authorize))
        .with_state(feed)
}

/// A refusal: its status and a word, nothing else.
fn refusal(status: StatusCode) -> Response<Body> {
    let word = match status {
        StatusCode::UNAUTHORIZED => "unauthorized\n",
        StatusCode::FORBIDDEN => "forbidden\n",
        StatusCode::NOT_FOUND => "not found\n",
        _ => "refused\n",
    };
    let mut r = (status, [(header::CONTENT_TYPE, TEXT)], word).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let h = r.headers_mut();
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tjfwd feed\", charset=\"UTF-8\""),
        );
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tjfwd feed\""),
        );
    }
    r
}

/// Lets a request through when no token is configured, or when it carries
/// it (Bearer, or basic auth's password).
async fn authorize(State(feed): State<Arc<Feed>>, req: Request<Body>, next: Next) -> Response {
    match &feed.sources.token {
        Some(token) if !carries(req.headers(), token) => refusal(StatusCode::UNAUTHORIZED),
        _ => next.run(req).await,
    }
}

/// Whether the request's `Authorization` carries the token.
fn carries(headers: &HeaderMap, token: &Secret) -> bool {
    use base64::Engine as _;
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return same(rest.as_bytes(), token.expose().as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        return same(&decoded[colon + 1..], token.expose().as_bytes());
    }
    false
}

/// Compares in a time that does not depend on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND)
}

async fn txt(State(feed): State<Arc<Feed>>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    answer(&feed, q.as_deref(), &h, Variant::Text, TEXT).await
}

async fn json(State(feed): State<Arc<Feed>>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    answer(&feed, q.as_deref(), &h, Variant::Json, JSON).await
}

/// The family a query asks for, or None for a query that is not
/// understood.
fn family(query: Option<&str>) -> Option<Family> {
    let mut family = Family::All;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "family" {
            continue;
        }
        family = match v.to_ascii_lowercase().as_str() {
            "ipv4" | "4" | "inet" => Family::V4,
            "ipv6" | "6" | "inet6" => Family::V6,
            "" | "all" | "any" => Family::All,
            _ => return None,
        };
    }
    Some(family)
}

async fn answer(
    feed: &Feed,
    query: Option<&str>,
    headers: &HeaderMap,
    variant: fn(Family) -> Variant,
    content_type: &'static str,
) -> Response {
    let Some(family) = family(query) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, TEXT)],
            "family: ipv4 or ipv6\n",
        )
            .into_response();
    };
    let r = match feed.rendered(variant(family)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "feed: cannot read the denylist");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, TEXT)],
                "unavailable\n",
            )
                .into_response();
        }
    };
    let cache = [
        (header::ETAG, r.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if matches_etag(headers, &r.etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        StatusCode::OK,
        cache,
        [(header::CONTENT_TYPE, content_type)],
        r.body,
    )
        .into_response()
}

/// Whether `If-None-Match` names the ETag (or is `*`); weak comparison.
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// Prunes the last sightings that fell off the list (older than `ttl`),
/// every [`PRUNE_EVERY`], until `shutdown` completes.
pub async fn prune(
    queue: Arc<Store>,
    ttl: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    const LIMIT: usize = 10_000;
    tokio::pin!(shutdown);
    let ttl = ttl.as_millis() as u64;
    loop {
        let q = queue.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let before = now_ms().saturating_sub(ttl);
            let mut total = 0;
            loop {
                match q.prune_seen(before, LIMIT) {
                    Ok(n) => {
                        total += n;
                        if n < LIMIT {
                            return Ok(total);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(pruned = n, "pruned the denylist's expired sightings"),
            Ok(Err(e)) => tracing::warn!(error = %chain(&e), "cannot prune the denylist"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the denylist"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_etags() {
        assert_eq!(family(None), Some(Family::All));
        assert_eq!(family(Some("family=ipv4")), Some(Family::V4));
        assert_eq!(family(Some("x=1&family=inet6")), Some(Family::V6));
        assert_eq!(family(Some("family=ipx")), None);
        let list = [
            Listed {
                addr: "11.0.0.1".parse().unwrap(),
                last_seen_ms: 0,
                pending: true,
            },
            Listed {
                addr: "2a01:4f8::1".parse().unwrap(),
                last_seen_ms: 0,
                pending: false,
            },
        ];
        let all = render(&list, Variant::Text(Family::All), 60);
        assert_eq!(all.body, "11.0.0.1\n2a01:4f8::1\n");
        assert_eq!(
            render(&list, Variant::Text(Family::V6), 60).body,
            "2a01:4f8::1\n"
        );
        assert_eq!(render(&list, Variant::Text(Family::All), 60).etag, all.etag);
        assert_ne!(
            render(&list[..1], Variant::Text(Family::All), 60).etag,
            all.etag
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"y\""),
        );
        assert!(!matches_etag(&h, &all.etag));
        let weak = format!("\"other\", W/{}", all.etag.to_str().unwrap());
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&weak).unwrap());
        assert!(matches_etag(&h, &all.etag));
    }

    #[test]
    fn the_token_as_bearer_or_basic_password() {
        use base64::Engine as _;
        let token = Secret::new("s3cret".into());
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            carries(&h, &token)
        };
        let basic = |up: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(up)
            )
        };
        assert!(with("Bearer s3cret"));
        assert!(with("bearer  s3cret "));
        assert!(with(&basic("fortigate:s3cret")));
        assert!(with(&basic(":s3cret")));
        assert!(!with("Bearer s3cre"));
        assert!(!with("Bearer s3crets"));
        assert!(!with(&basic("s3cret:wrong")));
        assert!(!with(&basic("s3cret")));
        assert!(!with("Basic !!!"));
        assert!(!with("Token s3cret"));
        assert!(!carries(&HeaderMap::new(), &token));
    }
}
