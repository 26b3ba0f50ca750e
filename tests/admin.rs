//! The admin endpoint (`[admin] listen`) of a working daemon, scraped with a
//! real HTTP client: `/metrics` values move as the daemon reads, queues and
//! reports; `/healthz` turns 503 when the API refuses the token and back to
//! 200 when it accepts it again. The daemon library runs against the fake
//! Report API with durations scaled down (see tests/daemon.rs).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};
use tjfwd::config::{Config, Secret, StartAt};
use tjfwd::daemon::{self, DaemonError, Listeners, RunOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WINDOW: Duration = Duration::from_millis(400);

struct Daemon {
    _dir: tempfile::TempDir,
    log: PathBuf,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon reading an (empty) cowrie.json and reporting to `api`.
    async fn start(api: &FakeApi) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cowrie.json");
        std::fs::write(&log, "").unwrap();
        let mut c = Config::default_for_tests(dir.path().join("state"));
        c.threatjammer_mut().report.api_url = api.url().parse().unwrap();
        c.threatjammer_mut().report.token = Some(Secret::new(api.token()));
        c.input.cowrie_json = Some(log.clone());
        c.input.start_at = StartAt::Beginning;
        c.input.poll_interval = Duration::from_millis(20);
        c.threatjammer_mut().schedule.flush_interval = Duration::from_millis(100);
        c.threatjammer_mut().schedule.rate_window = WINDOW;
        c.threatjammer_mut().schedule.max_backoff = Duration::from_millis(300);
        c.threatjammer_mut().schedule.request_timeout = Duration::from_secs(5);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        // The endpoint's port: one the kernel picked, held from here on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = listener.local_addr().unwrap();
        c.admin.listen = Some(admin);
        let listeners = Listeners {
            admin: Some(listener),
            ..Listeners::none()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            daemon::run(c, RunOptions::default(), listeners, async {
                let _ = stopped.await;
            })
            .await
            .map(|_| ())
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while http
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                !task.is_finished(),
                "the daemon stopped: {:?}",
                task.await.unwrap()
            );
            assert!(
                Instant::now() < deadline,
                "the admin endpoint never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Daemon {
            _dir: dir,
            log,
            admin,
            stop: Some(stop),
            task: Some(task),
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self.http.get(self.url(path)).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    async fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").await.expect("scrape /metrics");
        assert_eq!(status, 200, "{body}");
        Metrics(body)
    }

    /// Scrapes until `ok` holds (10 s at most).
    async fn wait_until(&self, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((200, body)) = self.get("/metrics").await {
                let m = Metrics(body);
                if ok(&m) {
                    return m;
                }
                if Instant::now() > deadline {
                    panic!("timed out waiting until {what}; last scrape:\n{}", m.0);
                }
            } else if Instant::now() > deadline {
                panic!("timed out waiting until {what}: no answer");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_health(&self, want: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((status, body)) = self.get("/healthz").await {
                if status == want {
                    return body;
                }
                if Instant::now() > deadline {
                    panic!("/healthz stayed {status} ({body}), expected {want}");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let res = tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("the daemon did not stop in time")
            .unwrap();
        res.expect("the daemon failed");
    }
}

/// One scrape, in the Prometheus text format.
struct Metrics(String);

impl Metrics {
    /// The value of the sample `name` (with its labels, as written), if any.
    fn get(&self, name: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    fn value(&self, name: &str) -> f64 {
        self.get(name)
            .unwrap_or_else(|| panic!("no sample {name} in:\n{}", self.0))
    }
}

fn fake() -> FakeApi {
    FakeApi::start(FakeConfig {
        window: WINDOW,
        ..FakeConfig::default()
    })
}

fn write_logins(path: &std::path::Path, addrs: &[String]) {
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(path, &lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_the_daemon_reads_queues_and_reports() {
    let api = fake();
    let d = Daemon::start(&api).await;

    let m = d.metrics().await;
    assert_eq!(m.value("tjfwd_lines_read_total"), 0.0);
    assert_eq!(m.value("tjfwd_pending_addresses"), 0.0);
    assert_eq!(m.value("tjfwd_healthy"), 1.0);
    assert_eq!(m.value("tjfwd_input_bytes_behind"), 0.0);
    assert!(m
        .get("tjfwd_last_success_timestamp_seconds{target=\"threatjammer\"}")
        .is_none());
    assert!(
        m.0.contains("# TYPE tjfwd_requests_total counter"),
        "{}",
        m.0
    );

    // The API is down: addresses pile up, attempts fail and are retried.
    api.set_down(true);
    let first = cowrie::public_addresses(30);
    write_logins(&d.log, &first);
    cowrie::append(
        &d.log,
        &["{not json".to_string(), cowrie::login_failed("10.0.0.1", 1)],
    );
    let m = d
        .wait_until("30 addresses are pending and a 503 was retried", |m| {
            m.get("tjfwd_pending_addresses") == Some(30.0)
                && m.get("tjfwd_lines_read_total") == Some(32.0)
                && m.get("tjfwd_requests_total{target=\"threatjammer\",status=\"503\"}")
                    >= Some(1.0)
                && m.get("tjfwd_retries_total{target=\"threatjammer\"}") >= Some(1.0)
        })
        .await;
    assert_eq!(m.value("tjfwd_events_selected_total"), 31.0);
    assert_eq!(m.value("tjfwd_addresses_queued_total"), 30.0);
    assert_eq!(
        m.value("tjfwd_lines_skipped_total{reason=\"not_json\"}"),
        1.0
    );
    assert_eq!(
        m.value("tjfwd_lines_skipped_total{reason=\"non_public\"}"),
        1.0
    );
    assert_eq!(m.value("tjfwd_input_bytes_behind"), 0.0);
    assert_eq!(
        m.value("tjfwd_addresses_reported_total{target=\"threatjammer\"}"),
        0.0
    );
    let age = m.value("tjfwd_oldest_pending_age_seconds");
    assert!(age > 0.0 && age < 10.0, "age {age}");

    // Back up: everything is reported.
    api.set_down(false);
    let m = d
        .wait_until("30 addresses are reported", |m| {
            m.get("tjfwd_addresses_reported_total{target=\"threatjammer\"}") == Some(30.0)
                && m.get("tjfwd_reported_set_addresses{target=\"threatjammer\"}") == Some(30.0)
        })
        .await;
    assert_eq!(m.value("tjfwd_pending_addresses"), 0.0);
    assert_eq!(m.value("tjfwd_oldest_pending_age_seconds"), 0.0);
    assert!(m.value("tjfwd_requests_total{target=\"threatjammer\",status=\"202\"}") >= 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = m.value("tjfwd_last_success_timestamp_seconds{target=\"threatjammer\"}");
    assert!((now - last).abs() < 10.0, "last success {last}, now {now}");
    assert!(m.value("tjfwd_last_error_timestamp_seconds{target=\"threatjammer\"}") <= last);
    assert_eq!(m.value("tjfwd_healthy"), 1.0);
    assert!(m.value("tjfwd_requests_in_window{target=\"threatjammer\"}") <= 6.0);

    // More input moves the counters again.
    write_logins(&d.log, &cowrie::public_addresses(40)[30..]);
    d.wait_until("40 addresses are reported", |m| {
        m.get("tjfwd_addresses_reported_total{target=\"threatjammer\"}") == Some(40.0)
            && m.get("tjfwd_lines_read_total") == Some(42.0)
    })
    .await;
    assert_eq!(api.accepted_unique().len(), 40);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_when_the_token_is_refused_and_back() {
    let api = fake();
    let token = api.token();
    let d = Daemon::start(&api).await;
    assert_eq!(d.wait_health(200).await, "ok\n");

    api.set_token("another-token");
    write_logins(&d.log, &cowrie::public_addresses(5));
    let body = d.wait_health(503).await;
    assert!(body.starts_with("degraded: "), "{body}");
    assert!(body.contains("HTTP 401"), "{body}");
    assert!(!body.contains(&token), "{body}");
    let m = d.metrics().await;
    assert_eq!(m.value("tjfwd_healthy"), 0.0);
    assert_eq!(
        m.value("tjfwd_target_healthy{target=\"threatjammer\"}"),
        0.0
    );
    assert!(m.value("tjfwd_requests_total{target=\"threatjammer\",status=\"401\"}") >= 1.0);
    assert_eq!(
        m.value("tjfwd_pending_addresses"),
        5.0,
        "nothing is dropped"
    );

    api.set_token(token);
    assert_eq!(d.wait_health(200).await, "ok\n");
    d.wait_until("the 5 addresses are reported", |m| {
        m.get("tjfwd_addresses_reported_total{target=\"threatjammer\"}") == Some(5.0)
            && m.get("tjfwd_healthy") == Some(1.0)
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_on_request_and_plain_text_otherwise() {
    let api = fake();
    let d = Daemon::start(&api).await;
    let r = d.http.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    assert!(!body.contains("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE tjfwd_lines_read_total counter"),
        "{body}"
    );

    let r = d
        .http
        .get(d.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE tjfwd_lines_read counter"), "{body}");

    let (status, _) = d.get("/nope").await.unwrap();
    assert_eq!(status, 404);
    let (status, body) = d.get("/").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("/metrics"), "{body}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_admin_port_stops_the_start_with_a_clear_error() {
    let api = fake();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default_for_tests(dir.path().join("state"));
    c.threatjammer_mut().report.api_url = api.url().parse().unwrap();
    c.threatjammer_mut().report.token = Some(Secret::new(api.token()));
    c.admin.listen = Some(busy.local_addr().unwrap());
    // `tjfwd run` binds the configured sockets before the daemon starts.
    let err = Listeners::bind(&c, false).expect_err("the port is in use");
    let msg = err.to_string();
    assert!(msg.contains("[admin] listen"), "{msg}");
    assert!(
        msg.contains(&busy.local_addr().unwrap().to_string()),
        "{msg}"
    );
}
