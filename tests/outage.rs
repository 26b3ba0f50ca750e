//! Long outages with a backlog of 100,000 addresses, read by the daemon
//! (`tjfwd::daemon::run`) from a generated Cowrie log, against the fake
//! Report API on loopback:
//!
//! - the API answers 503 for a while, then refuses connections (its port is
//!   closed), then comes back on the same port;
//! - the API revokes the token (401) while tjfwd is delivering; the
//!   operator writes the new token to the token file and restarts the
//!   service, as they would (tjfwd reads its token at start only: no reload
//!   signal).
//!
//! After recovery every address is delivered exactly once (nothing crashed,
//! so nothing is sent twice), in batches of at most 1000, never above 6
//! requests in a rolling window (every request counted, from the server's
//! own arrival times, both servers together); during the outage consecutive
//! attempts were never further apart than `max_backoff` (plus a small
//! tolerance for the request itself) and never closer than half the backoff
//! step, and the backoff grew.
//!
//! Time is scaled, not paused: the rate window is 1.5 s instead of 60 s,
//! `max_backoff` 4 s instead of 600 s, `flush_interval` 100 ms. A paused
//! tokio clock does not fit here: it auto-advances whenever the runtime is
//! idle, which is exactly when the daemon waits on loopback HTTP, so
//! reqwest's timeouts would fire; and the fake API, sled and the ingest
//! thread run on real time anyway. The backoff's first step (1 s, a
//! constant in `ratelimit::backoff`) is not scaled, so the retry sequence is
//! the real one: 0.5-1 s, 1-2 s, 2-4 s, then 2-4 s (the 4 s cap).
//!
//! The two tests take a lock so they do not run at the same time: their
//! timing checks would suffer on a 2-core machine.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig, RequestRecord};
use tjfwd::config::{Config, LoadOptions};
use tjfwd::daemon::{self, Listeners, RunOptions};
use tjfwd::stats::Stats;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const N: usize = 100_000;
/// Long enough that the limit binds after recovery (a debug build sends
/// about 6 batches of 1000 a second here), so exceeding it would show.
const WINDOW: Duration = Duration::from_millis(1500);
const MAX_PER_WINDOW: usize = 6;
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Allowance for the request itself and scheduling on a loaded machine.
const TOLERANCE: Duration = Duration::from_millis(300);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    dir: tempfile::TempDir,
    addrs: Vec<String>,
}

impl Env {
    /// A directory with a Cowrie log of `N` failed logins from `N` distinct
    /// public addresses, and a configuration file (token in a 0600 file).
    fn new(api: &FakeApi) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let addrs = cowrie::public_addresses(N);
        let mut log = String::with_capacity(N * 400);
        for (i, a) in addrs.iter().enumerate() {
            log.push_str(&cowrie::login_failed(a, i as u64));
            log.push('\n');
        }
        std::fs::write(dir.path().join("cowrie.json"), log).unwrap();
        let env = Env { dir, addrs };
        env.write_token(&api.token());
        let cfg = env.config_path();
        std::fs::write(
            &cfg,
            format!(
                r#"state_dir = "state"

[input]
cowrie_json = "cowrie.json"
start_at = "beginning"
poll_interval = "20ms"

[targets.threatjammer]
api_url = "{url}"
bearer_token_file = "token"
flush_interval = "100ms"
max_backoff = "{backoff}ms"
request_timeout = "2s"
"#,
                url = api.url(),
                backoff = MAX_BACKOFF.as_millis()
            ),
        )
        .unwrap();
        support::bin::set_mode(&cfg, 0o600);
        env
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("tjfwd.toml")
    }

    fn write_token(&self, token: &str) {
        let path = self.dir.path().join("token");
        std::fs::write(&path, format!("{token}\n")).unwrap();
        support::bin::set_mode(&path, 0o600);
    }

    /// The configuration as the service loads it, with the scaled window
    /// (not a TOML key: tests built in code set it).
    fn config(&self) -> Config {
        let mut c = Config::load(&self.config_path(), &LoadOptions::default()).unwrap();
        c.threatjammer_mut().schedule.rate_window = WINDOW;
        c
    }
}

/// A running daemon and the way to stop it (SIGTERM, in the binary).
struct Daemon {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<std::sync::Arc<Stats>, daemon::DaemonError>>,
}

fn start(config: Config) -> Daemon {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(
        config,
        RunOptions::default(),
        Listeners::none(),
        async {
            let _ = stopped.await;
        },
    ));
    Daemon { stop, task }
}

impl Daemon {
    async fn stop(self) -> std::sync::Arc<Stats> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the daemon did not stop in time")
            .unwrap()
            .expect("the daemon failed")
    }
}

fn fake() -> FakeApi {
    FakeApi::start(fake_config())
}

fn fake_config() -> FakeConfig {
    FakeConfig {
        window: WINDOW,
        ..FakeConfig::default()
    }
}

/// Largest number of requests within any rolling `WINDOW`, every request
/// counted (any path, token or answer).
/// Also: how many requests completed a full window (the limit was binding).
fn max_in_window(records: &[&RequestRecord]) -> (usize, usize) {
    let mut times: Vec<Instant> = records.iter().map(|r| r.at).collect();
    times.sort();
    let (mut best, mut full, mut start) = (0, 0, 0);
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= WINDOW {
            start += 1;
        }
        best = best.max(end - start + 1);
        full += usize::from(end - start + 1 >= MAX_PER_WINDOW);
    }
    (best, full)
}

/// Gaps between consecutive requests.
fn gaps(records: &[&RequestRecord]) -> Vec<Duration> {
    records
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
}

/// Everything delivered exactly once, in batches of at most 1000, under the
/// rate limit.
fn check_delivery(env: &Env, records: &[&RequestRecord]) {
    let mut accepted: Vec<&String> = records
        .iter()
        .filter(|r| r.is_accepted_report())
        .flat_map(|r| &r.addresses)
        .collect();
    let total = accepted.len();
    accepted.sort();
    accepted.dedup();
    let want: BTreeSet<&String> = env.addrs.iter().collect();
    let got: BTreeSet<&String> = accepted.iter().copied().collect();
    assert_eq!(
        got.len(),
        N,
        "{} addresses missing",
        want.difference(&got).count()
    );
    assert_eq!(got, want);
    assert_eq!(total, N, "{} addresses delivered twice", total - N);
    let largest = records.iter().map(|r| r.addresses.len()).max().unwrap();
    assert!(largest <= 1000, "a batch of {largest}");
    let (max, full) = max_in_window(records);
    assert!(
        max <= MAX_PER_WINDOW,
        "{max} requests in one {WINDOW:?} window"
    );
    assert!(full > 0, "the limit never bound: the check proves nothing");
    eprintln!(
        "delivered {N} addresses exactly once in {} accepted requests ({} requests in all), at most {max} requests in any {WINDOW:?} window ({full} requests completed a full window)",
        records.iter().filter(|r| r.is_accepted_report()).count(),
        records.len()
    );
}

/// Retries during an outage: never further apart than `max_backoff`, never
/// closer than half the first backoff step.
fn check_outage_gaps(what: &str, gaps: &[Duration]) {
    eprintln!("{what}: gaps between attempts {gaps:?}");
    for g in gaps {
        assert!(
            *g <= MAX_BACKOFF + TOLERANCE,
            "{what}: a gap of {g:?} between attempts"
        );
        assert!(
            *g >= Duration::from_millis(450),
            "{what}: a gap of {g:?} between attempts"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_503_then_refused_delays_but_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let api = fake();
    let addr = api.addr();
    let env = Env::new(&api);
    api.set_down(true);
    let daemon = start(env.config());

    // 503 for 10 s from the first attempt.
    assert!(
        api.wait_for_requests_async(1, Duration::from_secs(60))
            .await
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Then connection refused for 6 s: the port is closed.
    let down = api.requests();
    api.shutdown();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Back on the same port.
    let back = Instant::now();
    let api = FakeApi::start_at(addr, fake_config());
    assert!(api.wait_for_requests_async(1, MAX_BACKOFF * 3).await);
    let first = api.requests()[0].at.duration_since(back);
    assert!(
        api.wait_for_accepted_async(N, Duration::from_secs(120))
            .await,
        "only {} of {N} delivered after the outage",
        api.accepted_unique().len()
    );
    let recovered = back.elapsed();
    let stats = daemon.stop().await;

    // During the outage: only 503s, retried with a growing, capped backoff.
    let down: Vec<&RequestRecord> = down.iter().collect();
    assert!(down.iter().all(|r| r.status == 503 && !r.accepted));
    let g = gaps(&down);
    check_outage_gaps("503", &g);
    assert!(g.len() >= 3, "too few attempts during the outage: {g:?}");
    assert!(g[0] <= Duration::from_secs(1) + TOLERANCE, "{g:?}");
    assert!(
        g.iter().any(|d| *d >= Duration::from_secs(2)),
        "the backoff did not grow: {g:?}"
    );
    // While refused, attempts went on at most max_backoff apart: the first
    // one after the port reopened came within max_backoff.
    assert!(
        first <= MAX_BACKOFF + TOLERANCE,
        "first attempt {first:?} after the API came back"
    );
    let after = api.requests();
    let all: Vec<&RequestRecord> = down.iter().copied().chain(after.iter()).collect();
    check_delivery(&env, &all);
    assert!(Stats::get(&stats.retries) as usize >= down.len());
    eprintln!(
        "503 then refused: {} attempts answered 503, first attempt {first:?} after the API came back, all delivered {recovered:?} after it, {:?} in all",
        down.len(),
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_pauses_sending_until_the_operator_installs_the_new_one() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let api = fake();
    let env = Env::new(&api);
    let daemon = start(env.config());

    // Delivering; then the token is revoked (a new one was issued).
    assert!(
        api.wait_for_accepted_async(10_000, Duration::from_secs(120))
            .await
    );
    const NEW_TOKEN: &str = "test-token-rotated-9876543210";
    api.set_token(NEW_TOKEN);
    let revoked = Instant::now();
    let before = api.request_count();
    tokio::time::sleep(Duration::from_secs(10)).await;

    // The operator notices (status degraded, 401 in the log), writes the new
    // token and restarts the service.
    daemon.stop().await;
    let q = daemon::open_queue(&env.config()).unwrap();
    let health = q.health(q.first_target()).unwrap();
    assert_eq!(health.last_error_code, 401, "{health:?}");
    assert!(health.failing_since_ms.is_some());
    assert_eq!(
        q.dead_count(q.first_target()),
        0,
        "addresses were dropped as rejected"
    );
    let pending = q.pending_count().unwrap();
    assert!(pending > 0);
    drop(q);
    let during: Vec<RequestRecord> = api.requests()[before..].to_vec();
    let delivered_before = api.accepted_unique().len();
    assert_eq!(pending as usize + delivered_before, N);

    env.write_token(NEW_TOKEN);
    let restarted = Instant::now();
    let daemon = start(env.config());
    assert!(
        api.wait_for_accepted_async(N, Duration::from_secs(120))
            .await,
        "only {} of {N} delivered after the token was fixed",
        api.accepted_unique().len()
    );
    let recovered = restarted.elapsed();
    daemon.stop().await;

    // While revoked: 401s only (a request in flight at the revocation may
    // have been accepted), retried slowly: max_backoff apart (the first
    // retry waits a minute, capped by max_backoff, at 4 s here).
    let unauthorized: Vec<&RequestRecord> = during.iter().filter(|r| r.status == 401).collect();
    assert!(during.iter().all(|r| r.status == 401 || r.accepted));
    assert!(
        unauthorized.len() >= 2,
        "{} attempts while revoked",
        unauthorized.len()
    );
    assert!(unauthorized.iter().all(|r| !r.authorized));
    let g = gaps(&unauthorized);
    check_outage_gaps("401", &g);
    assert!(
        g.iter().all(|d| *d >= MAX_BACKOFF - TOLERANCE),
        "401 must be retried slowly: {g:?}"
    );
    let all = api.requests();
    let all: Vec<&RequestRecord> = all.iter().collect();
    check_delivery(&env, &all);
    eprintln!(
        "401: {} attempts in {:?} while revoked ({pending} pending, {delivered_before} delivered before), all delivered {recovered:?} after the restart with the new token, {:?} in all",
        unauthorized.len(),
        restarted.duration_since(revoked),
        t0.elapsed()
    );
}
