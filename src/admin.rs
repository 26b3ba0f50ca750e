//! The admin endpoint (`[admin] listen`, off by default): a small HTTP
//! server for monitoring, on the daemon's runtime.
//!
//! - `GET /metrics`: the Prometheus text format (0.0.4), or OpenMetrics
//!   1.0 when the scraper asks for it in `Accept` (Prometheus does). Every
//!   value is read at scrape time from the daemon's counters
//!   ([`Stats`]) and its database ([`Store`]); nothing is kept twice.
//!   Counters start at zero when the daemon starts (Prometheus' `rate()`
//!   handles the reset); gauges come from the database and survive
//!   restarts. The sizes of the reported and dead-letter sets are scans of
//!   their trees, so they are cached for [`SET_SIZES_MAX_AGE`] (or one
//!   `flush_interval`, if shorter).
//! - `GET /healthz`: `200 ok` when healthy, `503` with the reason when
//!   degraded — the verdict of [`crate::health::verdict`], the same one
//!   `tjfwd status` gives — and from the moment a component of the daemon
//!   failed ([`crate::supervisor`]): the daemon is then stopping, and never
//!   reports ok while half of it is gone.
//!
//! The names, types and meanings of the metrics are listed in
//! docs/monitoring.md; they are an interface: names are only ever added.
//! No label holds attacker-controlled text (labels are skip reasons and
//! HTTP statuses), and no metric holds the token.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock::now_ms;
use crate::config::Config;
use crate::errors::chain;
use crate::health::{overall, Conditions, Verdict};
use crate::ratelimit::Limit;
use crate::stats::{SkipReason, Stats};
use crate::store::{Store, StoreError};
use crate::supervisor::Tripped;

/// Longest time the cached sizes of the reported and dead-letter sets are
/// used before they are counted again.
pub const SET_SIZES_MAX_AGE: Duration = Duration::from_secs(30);

/// `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the metrics and the health verdict are read from.
#[derive(Clone)]
pub struct Sources {
    /// The daemon's database: pending, reported and dead-letter sets,
    /// checkpoints, request log, health record.
    pub queue: Arc<Store>,
    /// The daemon's in-memory counters.
    pub stats: Arc<Stats>,
    /// `[input] cowrie_json`, to measure how far behind the input is.
    pub input: Option<PathBuf>,
    /// Threat Jammer's `flush_interval`: the health verdict depends on it.
    pub flush_interval: Duration,
    /// The rate limit, to count the requests in the current window.
    pub limit: Limit,
    /// The daemon's first failed component, if one failed: from then on
    /// the daemon is stopping, and is not healthy.
    pub failure: Tripped,
}

impl Sources {
    /// The sources of a daemon running `config`, whose components are
    /// watched by `failure`'s supervisor.
    pub fn new(
        config: &Config,
        queue: &Arc<Store>,
        stats: &Arc<Stats>,
        failure: Tripped,
    ) -> Sources {
        Sources {
            queue: queue.clone(),
            stats: stats.clone(),
            input: config.input.cowrie_json.clone(),
            flush_interval: config.schedule().flush_interval,
            limit: Limit {
                max: config.schedule().max_requests_per_minute,
                window_ms: config.schedule().rate_window.as_millis() as u64,
            },
            failure,
        }
    }
}

/// Serves the endpoint on `listener` (bound by [`crate::listeners`])
/// until `shutdown` completes. Must run within a tokio runtime.
pub async fn serve(
    listener: std::net::TcpListener,
    sources: Sources,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    let app = router(Arc::new(Admin::new(sources)));
    tracing::info!(listen = %local, "admin endpoint: /metrics and /healthz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The routes, on shared state.
fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/", get(index))
        .with_state(admin)
}

/// The shared state of the endpoint.
struct Admin {
    /// Where values are read from.
    sources: Sources,
    /// The last count of the reported and dead-letter sets, and when.
    set_sizes: Mutex<Option<(Instant, SetSizes)>>,
    /// When the daemon started (ms since the epoch).
    started_ms: u64,
}

/// Sizes of the sets that take a scan to count.
#[derive(Debug, Clone, Copy)]
struct SetSizes {
    reported: u64,
    dead: u64,
}

impl Admin {
    fn new(sources: Sources) -> Admin {
        Admin {
            sources,
            set_sizes: Mutex::new(None),
            started_ms: now_ms(),
        }
    }

    /// The set sizes, counted again when the cached ones are too old.
    fn set_sizes(&self) -> SetSizes {
        let max_age = SET_SIZES_MAX_AGE.min(self.sources.flush_interval);
        let mut cache = self.set_sizes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, sizes)) = *cache {
            if at.elapsed() < max_age {
                return sizes;
            }
        }
        let q = &self.sources.queue;
        let sizes = SetSizes {
            reported: q.reported_count(q.first_target()) as u64,
            dead: q.dead_count(q.first_target()) as u64,
        };
        *cache = Some((Instant::now(), sizes));
        sizes
    }

    /// Reads every value, at `now`.
    fn sample(&self, now: u64) -> Result<Sample, StoreError> {
        let q = &self.sources.queue;
        let t = q.first_target();
        let health = q.health(t)?;
        let requests = q.request_times(t, &crate::clock::Clock::System.now_all())?;
        let bytes_behind = match &self.sources.input {
            Some(path) => input_bytes_behind(q, path)?,
            None => None,
        };
        let oldest = q.oldest_queued_at(t)?;
        Ok(Sample {
            stats: self.sources.stats.clone(),
            pending: q.pending_count()?,
            oldest_pending_age_s: oldest.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
            sets: self.set_sizes(),
            bytes_behind,
            last_success_s: health.last_success_ms.map(ms_to_s),
            last_error_s: health.last_error_ms.map(ms_to_s),
            healthy: self.sources.failure.failure().is_none()
                && overall(
                    &health,
                    now,
                    self.sources.flush_interval,
                    &Conditions {
                        paused: self.sources.stats.paused().as_deref(),
                        input_error: self.sources.stats.input_error().as_deref(),
                        oldest_pending_ms: oldest,
                        rate_window: Duration::from_millis(self.sources.limit.window_ms),
                    },
                )
                .is_healthy(),
            requests_in_window: self.sources.limit.in_window(&requests, now) as u64,
            started_s: ms_to_s(self.started_ms),
        })
    }
}

fn ms_to_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Bytes of the live input file not read yet: its size minus the
/// checkpoint of its content (None when the file does not exist).
fn input_bytes_behind(queue: &Store, path: &std::path::Path) -> Result<Option<u64>, StoreError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    let offset = match crate::source::identify_path(path).ok().flatten() {
        Some(id) => queue
            .checkpoints()?
            .into_iter()
            .filter(|(k, _)| k.fingerprint == id.fingerprint)
            .map(|(_, c)| c.offset)
            .max(),
        None => None,
    };
    Ok(Some(meta.len().saturating_sub(offset.unwrap_or(0))))
}

/// Every value of one scrape.
#[derive(Debug)]
struct Sample {
    stats: Arc<Stats>,
    pending: u64,
    oldest_pending_age_s: f64,
    sets: SetSizes,
    bytes_behind: Option<u64>,
    last_success_s: Option<f64>,
    last_error_s: Option<f64>,
    healthy: bool,
    requests_in_window: u64,
    started_s: f64,
}

impl Collector for Sample {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &*self.stats;
        let c = |enc: &mut DescriptorEncoder, name: &str, help: &str, v| {
            let m = ConstCounter::new(v);
            m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
        };
        let g = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            let m = ConstGauge::new(v);
            m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
        };
        let gi = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let m = ConstGauge::new(v as i64);
            m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
        };

        {
            let mut m =
                enc.encode_descriptor("build_info", "tjfwd's version", None, MetricType::Gauge)?;
            m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?
                .encode_gauge(&1i64)?;
        }
        g(
            &mut enc,
            "start_time_seconds",
            "When the daemon started, seconds since the Unix epoch",
            self.started_s,
        )?;

        // Input.
        c(
            &mut enc,
            "lines_read",
            "Complete lines read from the inputs",
            Stats::get(&s.lines_read),
        )?;
        c(
            &mut enc,
            "events_selected",
            "Lines whose event is reported (login/session events)",
            Stats::get(&s.events_selected),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "lines_skipped",
                "Lines or addresses skipped, by reason (broken input, non-public, allowlisted...)",
                None,
                MetricType::Counter,
            )?;
            for r in SkipReason::ALL {
                m.encode_family(&[("reason", r.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&s.skipped(r), None)?;
            }
        }
        c(
            &mut enc,
            "input_rotations",
            "Times an input file was replaced (rotation)",
            Stats::get(&s.rotations),
        )?;
        c(
            &mut enc,
            "input_truncations",
            "Times an input file got shorter than its checkpoint (copytruncate)",
            Stats::get(&s.truncations),
        )?;
        if let Some(b) = self.bytes_behind {
            gi(
                &mut enc,
                "input_bytes_behind",
                "Bytes of the live cowrie.json not read yet",
                b,
            )?;
        }

        // Queue.
        c(
            &mut enc,
            "addresses_queued",
            "Sightings that added an address to the pending queue",
            Stats::get(&s.queued_new),
        )?;
        c(
            &mut enc,
            "sightings_merged",
            "Sightings of an address already pending (its entry updated)",
            Stats::get(&s.queued_updates),
        )?;
        c(
            &mut enc,
            "sightings_already_reported",
            "Sightings dropped because the address was reported after them",
            Stats::get(&s.already_reported),
        )?;
        c(
            &mut enc,
            "sightings_dead_lettered",
            "Sightings of dead-lettered addresses (not queued again)",
            Stats::get(&s.dead_lettered_seen),
        )?;
        gi(
            &mut enc,
            "pending_addresses",
            "Addresses waiting to be reported",
            self.pending,
        )?;
        g(
            &mut enc,
            "oldest_pending_age_seconds",
            "Seconds the oldest pending address has waited (0 when none)",
            self.oldest_pending_age_s,
        )?;
        gi(
            &mut enc,
            "reported_set_addresses",
            "Entries of the reported set, the local mirror of the denylist (refreshed every 30 s)",
            self.sets.reported,
        )?;
        gi(
            &mut enc,
            "dead_letter_addresses",
            "Addresses the API rejected, in the dead-letter set (refreshed every 30 s)",
            self.sets.dead,
        )?;

        // Reporting.
        {
            let mut m = enc.encode_descriptor(
                "requests",
                "Requests answered by the Report API, by HTTP status (\"none\": no answer)",
                None,
                MetricType::Counter,
            )?;
            for (status, n) in s.replies() {
                let label = if status == 0 {
                    "none".to_string()
                } else {
                    status.to_string()
                };
                m.encode_family(&[("status", label.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        c(
            &mut enc,
            "addresses_reported",
            "Addresses acknowledged by the API (202)",
            Stats::get(&s.addresses_reported),
        )?;
        c(
            &mut enc,
            "addresses_dead_lettered",
            "Addresses moved to the dead-letter set",
            Stats::get(&s.addresses_dead_lettered),
        )?;
        c(
            &mut enc,
            "retries",
            "Failed attempts that will be retried",
            Stats::get(&s.retries),
        )?;
        c(
            &mut enc,
            "rate_limit_waits",
            "Waits imposed by the rolling-window limit or a 429",
            Stats::get(&s.rate_limit_waits),
        )?;
        gi(
            &mut enc,
            "requests_in_window",
            "Requests sent in the current rolling rate-limit window",
            self.requests_in_window,
        )?;
        if let Some(t) = self.last_success_s {
            g(
                &mut enc,
                "last_success_timestamp_seconds",
                "When the API last accepted a batch, seconds since the Unix epoch",
                t,
            )?;
        }
        if let Some(t) = self.last_error_s {
            g(
                &mut enc,
                "last_error_timestamp_seconds",
                "When sending last failed, seconds since the Unix epoch",
                t,
            )?;
        }
        gi(
            &mut enc,
            "healthy",
            "1 when healthy, 0 when degraded (the verdict of /healthz and tjfwd status)",
            u64::from(self.healthy),
        )?;
        Ok(())
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// Encodes a sample in the Prometheus text format, or OpenMetrics.
fn encode(sample: Sample, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("tjfwd");
    registry.register_collector(Box::new(sample));
    let mut out = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    }
    Ok(out)
}

async fn metrics(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    // Database reads and scans: off the async threads.
    let rendered = tokio::task::spawn_blocking(move || {
        let sample = admin.sample(now_ms()).map_err(|e| chain(&e).to_string())?;
        encode(sample, openmetrics).map_err(|e| e.to_string())
    })
    .await;
    match rendered {
        Ok(Ok(body)) => {
            let ct = if openmetrics {
                OPENMETRICS_TEXT
            } else {
                PROMETHEUS_TEXT
            };
            ([(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot collect the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot collect the metrics: {e}\n"),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot collect the metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn healthz(State(admin): State<Arc<Admin>>) -> Response {
    // A component failed: the daemon is stopping, whatever the record says.
    if let Some(failure) = admin.sources.failure.failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("degraded: {failure}; tjfwd is stopping\n"),
        )
            .into_response();
    }
    let queue = &admin.sources.queue;
    let health = match queue.health(queue.first_target()) {
        Ok(h) => h,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the health record: {}\n", chain(&e)),
            )
                .into_response()
        }
    };
    let paused = admin.sources.stats.paused();
    let input_error = admin.sources.stats.input_error();
    let oldest = match queue.oldest_queued_at(queue.first_target()) {
        Ok(o) => o,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the queue: {}\n", chain(&e)),
            )
                .into_response()
        }
    };
    match overall(
        &health,
        now_ms(),
        admin.sources.flush_interval,
        &Conditions {
            paused: paused.as_deref(),
            input_error: input_error.as_deref(),
            oldest_pending_ms: oldest,
            rate_window: Duration::from_millis(admin.sources.limit.window_ms),
        },
    ) {
        Verdict::Healthy => (StatusCode::OK, "ok\n").into_response(),
        Verdict::Degraded(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("degraded: {reason}\n"),
        )
            .into_response(),
    }
}

async fn index() -> &'static str {
    concat!(
        "tjfwd ",
        env!("CARGO_PKG_VERSION"),
        " admin endpoint\n/metrics  Prometheus metrics\n/healthz  200 ok, or 503 and why\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Policy;

    fn sources(dir: &std::path::Path) -> Sources {
        let queue = Arc::new(
            Store::open(
                dir,
                1 << 20,
                &[crate::store::TargetSpec {
                    name: "threatjammer".into(),
                    policy: Policy {
                        ttl_ms: 1000,
                        rereport_after_ms: 0,
                    },
                }],
            )
            .unwrap(),
        );
        Sources {
            queue,
            stats: Arc::new(Stats::default()),
            input: None,
            flush_interval: Duration::from_secs(60),
            limit: Limit {
                max: 6,
                window_ms: 60_000,
            },
            failure: Tripped::never(),
        }
    }

    #[test]
    fn both_text_formats_name_every_metric() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Admin::new(sources(dir.path()));
        admin.sources.stats.count_reply(202);
        admin.sources.stats.count_reply(0);
        for openmetrics in [false, true] {
            let out = encode(admin.sample(now_ms()).unwrap(), openmetrics).unwrap();
            for needle in [
                "# TYPE tjfwd_lines_read",
                "tjfwd_lines_read_total 0",
                "tjfwd_lines_skipped_total{reason=\"not_json\"} 0",
                "tjfwd_lines_skipped_total{reason=\"too_long\"} 0",
                "tjfwd_requests_total{status=\"202\"} 1",
                "tjfwd_requests_total{status=\"none\"} 1",
                "tjfwd_pending_addresses 0",
                "tjfwd_healthy 1",
                "tjfwd_build_info{version=\"",
            ] {
                assert!(out.contains(needle), "{needle} missing in:\n{out}");
            }
            // No success yet: no timestamp rather than a misleading 0.
            assert!(!out.contains("last_success"), "{out}");
            assert_eq!(out.ends_with("# EOF\n"), openmetrics, "{out}");
        }
    }

    /// A component's body that panics.
    fn boom() {
        panic!("boom")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_a_component_failed_healthz_and_the_gauge_say_degraded() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = sources(dir.path());
        let admin = Arc::new(Admin::new(sources.clone()));
        let r = healthz(State(admin.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);

        let mut sup = crate::supervisor::Supervisor::new();
        sources.failure = sup.tripped();
        let admin = Arc::new(Admin::new(sources));
        let failed = sup.task(
            "ingest thread",
            crate::supervisor::Lifetime::MayFinish,
            async { boom() },
        );
        tokio::time::timeout(Duration::from_secs(10), failed.wait())
            .await
            .unwrap();
        let r = healthz(State(admin.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(
            body,
            "degraded: the ingest thread panicked: boom; tjfwd is stopping\n"
        );
        let out = encode(admin.sample(now_ms()).unwrap(), false).unwrap();
        assert!(out.contains("tjfwd_healthy 0"), "{out}");
        let _ = sup.join(Duration::from_secs(10)).await;
    }
}
