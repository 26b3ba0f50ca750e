//! End-to-end tests of the daemon library (`tjfwd::daemon::run`) against the
//! fake Report API on loopback, with short configured durations: the rate
//! window, flush interval and backoff are scaled down from minutes to
//! fractions of a second, so minute-scale behaviour runs in seconds.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cowrie;
use support::fake_api::{Failure, FakeApi, FakeConfig};
use tjfwd::config::{Config, Secret, StartAt};
use tjfwd::daemon::{self, Listeners, RunOptions};
use tjfwd::stats::Stats;

const WINDOW: Duration = Duration::from_millis(400);

struct Env {
    _dir: tempfile::TempDir,
    log: PathBuf,
    state: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        log: dir.path().join("cowrie.json"),
        state: dir.path().join("state"),
        _dir: dir,
    }
}

fn config(env: &Env, api: &FakeApi) -> Config {
    let mut c = Config::default_for_tests(env.state.clone());
    c.threatjammer_mut().report.api_url = api.url().parse().unwrap();
    c.threatjammer_mut().report.token = Some(Secret::new(api.token()));
    c.input.cowrie_json = Some(env.log.clone());
    c.input.start_at = StartAt::Beginning;
    c.input.poll_interval = Duration::from_millis(20);
    c.threatjammer_mut().schedule.flush_interval = Duration::from_millis(100);
    c.threatjammer_mut().schedule.rate_window = WINDOW;
    c.threatjammer_mut().schedule.max_backoff = Duration::from_millis(300);
    c.threatjammer_mut().schedule.request_timeout = Duration::from_secs(5);
    c
}

fn fake() -> FakeApi {
    FakeApi::start(FakeConfig {
        window: WINDOW,
        ..FakeConfig::default()
    })
}

/// Runs the daemon in drain mode (read everything, send everything, stop),
/// failing the test if it takes longer than `limit`.
async fn drain(config: Config, limit: Duration) -> Arc<Stats> {
    let run = daemon::run(
        config,
        RunOptions {
            dry_run: false,
            drain: true,
        },
        Listeners::none(),
        std::future::pending(),
    );
    tokio::time::timeout(limit, run)
        .await
        .expect("the daemon did not finish in time")
        .expect("the daemon failed")
}

/// Opens a stopped daemon's state directory, to look inside.
fn open_state(state: &Path) -> tjfwd::store::Store {
    tjfwd::daemon::open_queue(&Config::default_for_tests(state.to_path_buf())).unwrap()
}

fn write_logins(path: &Path, addrs: &[String]) {
    let lines: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| cowrie::login_failed(a, i as u64))
        .collect();
    cowrie::append(path, &lines);
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_selected_address_arrives_in_batches_within_the_limit() {
    let env = env();
    let api = fake();
    let addrs = cowrie::public_addresses(2500);
    // Noise: repeated sightings, unselected events, non-public and mapped
    // addresses, a garbage line.
    let mut lines = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        lines.push(cowrie::login_failed(a, i as u64));
        if i % 10 == 0 {
            lines.push(cowrie::login_failed(a, i as u64 + 1));
            lines.push(cowrie::connect("12.0.0.1", i as u64));
        }
    }
    lines.push(cowrie::login_failed("10.1.2.3", 1));
    lines.push(cowrie::login_failed("::ffff:11.0.0.1", 1));
    lines.push("{not json".into());
    cowrie::append(&env.log, &lines);

    // The batches are counted exactly: a partial one must not leave
    // because the input took longer than a short flush interval to read
    // (it did on a loaded machine). Drain mode sends the rest once read.
    let mut c = config(&env, &api);
    c.threatjammer_mut().schedule.flush_interval = Duration::from_secs(600);
    let stats = drain(c, Duration::from_secs(30)).await;

    let accepted = api.accepted_addresses();
    assert_eq!(
        api.accepted_unique(),
        set(&addrs),
        "every address, no other"
    );
    assert_eq!(accepted.len(), addrs.len(), "each exactly once");
    let batches = api.accepted_batches();
    assert_eq!(batches.len(), 3);
    assert!(batches.iter().all(|b| b.len() <= 1000));
    assert!(api.max_requests_in_window(WINDOW) <= 6);
    assert!(api.requests().iter().all(|r| r.status == 202));
    assert_eq!(stats.skipped(tjfwd::stats::SkipReason::NonPublic), 1);
    assert_eq!(stats.skipped(tjfwd::stats::SkipReason::NotJson), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rolling_window_holds_with_a_backlog_and_failures() {
    let env = env();
    let api = fake();
    let addrs = cowrie::public_addresses(3000);
    write_logins(&env.log, &addrs);
    api.push_failures([
        Failure::Status(503),
        Failure::Drop,
        Failure::Status(502),
        Failure::TooMany { retry_after: None },
        Failure::Status(500),
    ]);
    let mut c = config(&env, &api);
    c.threatjammer_mut().schedule.batch_size = 100;
    drain(c, Duration::from_secs(60)).await;

    assert_eq!(api.accepted_unique(), set(&addrs));
    let max = api.max_requests_in_window(WINDOW);
    let statuses: Vec<u16> = api.requests().iter().map(|r| r.status).collect();
    eprintln!(
        "requests: {}, max in any window: {max}, statuses: {statuses:?}",
        statuses.len()
    );
    assert!(max <= 6, "{max} requests in one window");
    // Only the scripted 429: the fake never had to enforce its limit.
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1);
    assert!(api.accepted_batches().iter().all(|b| b.len() <= 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let env = env();
    let api = fake();
    write_logins(&env.log, &cowrie::public_addresses(5));
    api.push_failure(Failure::TooMany {
        retry_after: Some("2".into()),
    });
    drain(config(&env, &api), Duration::from_secs(20)).await;
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!((reqs[0].status, reqs[1].status), (429, 202));
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_delivered_with_capped_backoff() {
    let env = env();
    let api = fake();
    let addrs = cowrie::public_addresses(20);
    write_logins(&env.log, &addrs);
    api.push_failures((0..8).map(|i| {
        if i % 2 == 0 {
            Failure::Status(503)
        } else {
            Failure::Drop
        }
    }));
    let started = Instant::now();
    drain(config(&env, &api), Duration::from_secs(30)).await;
    assert_eq!(api.accepted_unique(), set(&addrs));
    let reqs = api.requests();
    assert_eq!(reqs.len(), 9);
    // max_backoff is 300 ms: no gap between attempts is much longer than that
    // (or than the rate window, whichever is larger).
    for w in reqs.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap < WINDOW + Duration::from_millis(400), "gap {gap:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}

async fn one_bad_address(detail_indices: bool) -> FakeApi {
    let env = env();
    let api = FakeApi::start(FakeConfig {
        window: Duration::from_millis(100),
        detail_indices,
        ..FakeConfig::default()
    });
    let mut addrs = cowrie::public_addresses(1000);
    addrs[637] = "10.9.9.9".into();
    write_logins(&env.log, &addrs);
    let mut c = config(&env, &api);
    c.threatjammer_mut().schedule.rate_window = Duration::from_millis(100);
    // Let the private address through the local filter, as a stand-in for an
    // address the API rejects and we did not foresee.
    c.filter.report_non_public = true;
    // Requests are counted exactly: no partial batch while the input is
    // still being read (drain mode sends the rest once it is).
    c.threatjammer_mut().schedule.flush_interval = Duration::from_secs(600);
    let state = c.state_dir.clone();
    drain(c, Duration::from_secs(60)).await;
    let mut good = addrs.clone();
    good.remove(637);
    assert_eq!(api.accepted_unique(), set(&good));
    assert_eq!(api.accepted_addresses().len(), 999, "no duplicates");
    // The rejected address is in the dead-letter set, not pending.
    let q = open_state(&state);
    assert_eq!(q.pending_count().unwrap(), 0);
    let dead = q
        .dead(q.first_target(), "10.9.9.9".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(dead.status, 422);
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rejected_address_in_a_batch_of_1000_costs_only_itself_by_bisection() {
    let api = one_bad_address(false).await;
    let n = api.requests().len();
    eprintln!("requests to isolate one address by bisection: {n}");
    assert!(n <= 2 * 10 + 1, "{n} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rejected_address_named_by_the_server_costs_two_requests() {
    let api = one_bad_address(true).await;
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resighting_after_the_report_is_reported_again() {
    let env = env();
    let api = fake();
    cowrie::append(&env.log, &[cowrie::login_failed("11.1.1.1", 0)]);
    let c = config(&env, &api);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon::run(
        c,
        RunOptions::default(),
        Listeners::none(),
        async {
            let _ = rx.await;
        },
    ));
    assert!(
        api.wait_for_accepted_async(1, Duration::from_secs(10))
            .await
    );
    // Seen again, later than the report: the TTL must be reset.
    let later = tjfwd::clock::now_ms() - 1_795_305_600_000 + 1000;
    cowrie::append(&env.log, &[cowrie::login_failed("11.1.1.1", later)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.accepted_addresses().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(api.accepted_addresses(), ["11.1.1.1", "11.1.1.1"]);
    // An old sighting (before the report) does not queue it again.
    cowrie::append(&env.log, &[cowrie::login_failed("11.1.1.1", 5)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.accepted_addresses().len(), 2);
    tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_last_line_waits_for_its_newline() {
    let env = env();
    let api = fake();
    let line = cowrie::login_failed("11.2.2.2", 0);
    let (head, tail) = line.split_at(line.len() / 2);
    cowrie::append_raw(&env.log, head.as_bytes());
    let c = config(&env, &api);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon::run(
        c,
        RunOptions::default(),
        Listeners::none(),
        async {
            let _ = rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.request_count(), 0);
    cowrie::append_raw(&env.log, tail.as_bytes());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.request_count(), 0, "no newline yet");
    cowrie::append_raw(&env.log, b"\n");
    assert!(
        api.wait_for_accepted_async(1, Duration::from_secs(10))
            .await
    );
    assert_eq!(api.accepted_addresses(), ["11.2.2.2"]);
    tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_pauses_sending_and_drops_nothing() {
    let env = env();
    let api = fake();
    let addrs = cowrie::public_addresses(30);
    write_logins(&env.log, &addrs);
    let c = config(&env, &api);
    api.set_token("another-token-entirely");
    let state = c.state_dir.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon::run(
        c,
        RunOptions::default(),
        Listeners::none(),
        async {
            let _ = rx.await;
        },
    ));
    assert!(
        api.wait_for_requests_async(2, Duration::from_secs(10))
            .await
    );
    assert!(api.accepted_addresses().is_empty());
    // The operator fixes the token (here: the server starts accepting ours).
    api.set_token(support::fake_api::DEFAULT_TOKEN);
    assert!(
        api.wait_for_accepted_async(30, Duration::from_secs(10))
            .await
    );
    assert_eq!(api.accepted_unique(), set(&addrs));
    // The server has accepted; wait until the daemon has taken the 202 in
    // (a shutdown before that abandons the request unacknowledged).
    let s2 = state.clone();
    let acked = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(mut c)) = tjfwd::control::Client::connect(&s2) {
                let snap: Result<tjfwd::status::Snapshot, _> =
                    c.call(&tjfwd::control::Request::Status);
                if snap.is_ok_and(|s| s.pending == 0 && s.failing_since.is_none()) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    })
    .await
    .unwrap();
    assert!(acked, "the daemon never acknowledged the accepted batch");
    tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
    let q = open_state(&state);
    let h = q.health(q.first_target()).unwrap();
    assert_eq!(h.last_error_code, 401);
    assert!(h.failing_since_ms.is_none(), "healthy again");
}

/// A reload (what SIGHUP does, here sent through the channel) applies a
/// new token at once: sending paused by the refused one (for a minute,
/// here) resumes within moments. A reloaded configuration whose target
/// cannot be built changes nothing: the running token goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_new_token_at_once_and_a_bad_one_changes_nothing() {
    let env = env();
    let api = fake();
    let mut c = config(&env, &api);
    // A refused token pauses sending for min(1 min, max_backoff).
    c.threatjammer_mut().schedule.max_backoff = Duration::from_secs(60);
    let (reloader, reloads) = daemon::reload::Reloads::channel();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon::run_reloading(
        c.clone(),
        RunOptions::default(),
        Listeners::none(),
        async {
            let _ = rx.await;
        },
        reloads,
    ));
    let first = cowrie::public_addresses(30);
    write_logins(&env.log, &first[..10]);
    assert!(
        api.wait_for_accepted_async(10, Duration::from_secs(10))
            .await
    );

    // A token that cannot be sent in a header: the target cannot be built
    // from it, so the running one stays.
    let mut bad = c.clone();
    bad.threatjammer_mut().report.token = Some(Secret::new("bad\ntoken".to_string()));
    reloader.reload(bad);
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_logins(&env.log, &first[10..20]);
    assert!(
        api.wait_for_accepted_async(20, Duration::from_secs(10))
            .await
    );

    // The token is rotated at the server: ours is refused, sending pauses.
    api.set_token("rotated-token-0123456789");
    let before = api.request_count();
    write_logins(&env.log, &first[20..]);
    assert!(
        api.wait_for_requests_async(before + 1, Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.accepted_unique().len(), 20);
    // The operator puts the new token in place and reloads.
    let mut rotated = c.clone();
    rotated.threatjammer_mut().report.token =
        Some(Secret::new("rotated-token-0123456789".to_string()));
    let t = Instant::now();
    reloader.reload(rotated);
    assert!(
        api.wait_for_accepted_async(30, Duration::from_secs(10))
            .await,
        "the new token was not used"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(api.accepted_unique(), set(&first));
    tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_acknowledges_nothing() {
    let env = env();
    let api = fake();
    write_logins(&env.log, &cowrie::public_addresses(15));
    let mut c = config(&env, &api);
    c.threatjammer_mut().report.token = None;
    let state = c.state_dir.clone();
    daemon::run(
        c,
        RunOptions {
            dry_run: true,
            drain: true,
        },
        Listeners::none(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(api.request_count(), 0);
    let q = open_state(&state);
    assert_eq!(q.pending_count().unwrap(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_reset_the_rolling_window() {
    let env = env();
    // A long window, so that both runs fall inside one.
    let window = Duration::from_secs(3);
    let api = FakeApi::start(FakeConfig {
        window,
        ..FakeConfig::default()
    });
    let addrs = cowrie::public_addresses(100);
    write_logins(&env.log, &addrs[..50]);
    let mut c = config(&env, &api);
    c.threatjammer_mut().schedule.batch_size = 10;
    c.threatjammer_mut().schedule.rate_window = window;
    // First run: five batches of ten, then a "restart" with five more.
    drain(c.clone(), Duration::from_secs(30)).await;
    assert_eq!(api.request_count(), 5);
    write_logins(&env.log, &addrs[50..]);
    let t = Instant::now();
    drain(c, Duration::from_secs(30)).await;
    assert_eq!(api.accepted_unique(), set(&addrs));
    assert_eq!(api.request_count(), 10);
    assert!(api.max_requests_in_window(window) <= 6);
    // The second run had to wait for the first run's requests to age out.
    assert!(
        t.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert!(api.requests().iter().all(|r| r.status == 202));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_the_batch() {
    let env = env();
    let api = FakeApi::start(FakeConfig {
        window: WINDOW,
        max_addresses: 300,
        ..FakeConfig::default()
    });
    let addrs = cowrie::public_addresses(1000);
    write_logins(&env.log, &addrs);
    drain(config(&env, &api), Duration::from_secs(30)).await;
    assert_eq!(api.accepted_unique(), set(&addrs));
    assert_eq!(api.accepted_addresses().len(), 1000);
    assert!(api.accepted_batches().iter().all(|b| b.len() <= 300));
    assert!(api.requests().iter().any(|r| r.status == 413));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_address_is_rejected_it_is_a_configuration_problem_not_bad_addresses() {
    let env = env();
    let api = fake();
    let addrs = cowrie::public_addresses(16);
    for a in &addrs {
        api.reject_address(a);
    }
    write_logins(&env.log, &addrs);
    let c = config(&env, &api);
    let state = c.state_dir.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon::run(
        c,
        RunOptions::default(),
        Listeners::none(),
        async {
            let _ = rx.await;
        },
    ));
    // Bisection down to single addresses, two of them, one probe.
    assert!(
        api.wait_for_requests_async(12, Duration::from_secs(20))
            .await
    );
    tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
    let q = open_state(&state);
    assert_eq!(q.pending_count().unwrap(), 16, "nothing dropped");
    for a in &addrs {
        assert!(
            q.dead(q.first_target(), a.parse().unwrap())
                .unwrap()
                .is_none(),
            "{a} dead-lettered"
        );
    }
    let h = q.health(q.first_target()).unwrap();
    assert_eq!(h.last_error_code, 422);
    assert!(
        h.last_error_message
            .contains("check [targets.threatjammer]"),
        "{}",
        h.last_error_message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_documented_headers_and_body() {
    let env = env();
    let api = fake();
    write_logins(
        &env.log,
        &["11.5.5.5".to_string(), "2a01:4f8::7".to_string()],
    );
    let mut c = config(&env, &api);
    c.threatjammer_mut().report.ttl = 3600;
    c.threatjammer_mut().report.tags = vec!["COWRIE".into(), "SSH".into()];
    drain(c, Duration::from_secs(20)).await;
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("user-agent"),
        Some(concat!("tjfwd/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.authorization.as_deref(),
        Some(&*format!("Bearer {}", api.token()))
    );
    assert_eq!(r.ttl, Some(3600));
    assert_eq!(r.dataset.as_deref(), Some("ABUSE"));
    assert_eq!(r.tags, ["COWRIE", "SSH"]);
    assert_eq!(r.addresses, ["11.5.5.5", "2a01:4f8::7"]);
}
