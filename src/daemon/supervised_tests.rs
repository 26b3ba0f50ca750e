//! The daemon under its supervisor: each kind of component made to panic
//! (or to end while it should run) in a real run of [`super::run`] —
//! threads and tasks, in drain mode and in a running daemon. The run must
//! end, bounded by a timeout (never a sleep), with an error naming the
//! component, and leave a consistent state directory that it no longer
//! holds.
//!
//! The fault is planted by [`arm`], which `run_once` calls under
//! `cfg(test)` only: the sabotaged component misbehaves in place of its
//! work (see [`crate::supervisor::Fault`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::config::StartAt;
use crate::supervisor::{Cause, Fault};

/// Faults planted for the runs of a state directory: (state_dir, component
/// name prefix, fault). Keyed by directory, as tests run in parallel.
static FAULTS: Mutex<Vec<(PathBuf, &'static str, Fault)>> = Mutex::new(Vec::new());

/// Plants the faults registered for `state_dir` in a run's supervisor.
pub(super) fn arm(state_dir: &Path, sup: &mut Supervisor) {
    let faults = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    for (dir, prefix, fault) in faults.iter() {
        if dir == state_dir {
            sup.sabotage(prefix, *fault);
        }
    }
}

/// Longest a failing run may take (its components stop within a second).
const LIMIT: Duration = Duration::from_secs(30);

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A state directory, and a Cowrie log with `n` login failures from
    /// distinct public addresses.
    fn new(n: usize) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..n)
            .map(|i| {
                format!(
                    "{{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"11.0.{}.{}\",\
                     \"timestamp\":\"2026-01-01T00:00:00.000000Z\"}}\n",
                    i / 250,
                    i % 250 + 1
                )
            })
            .collect();
        std::fs::write(dir.path().join("cowrie.json"), lines).unwrap();
        Env { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config(&self) -> Config {
        let mut c = Config::default_for_tests(self.state());
        c.input.cowrie_json = Some(self.dir.path().join("cowrie.json"));
        c.input.start_at = StartAt::Beginning;
        c.input.poll_interval = Duration::from_millis(20);
        c.threatjammer_mut().schedule.flush_interval = Duration::from_millis(100);
        c
    }

    fn sabotage(&self, prefix: &'static str, fault: Fault) {
        FAULTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.state(), prefix, fault));
    }

    /// The pending addresses, read by opening the state directory: this
    /// fails if the run still holds it.
    fn pending(&self) -> u64 {
        open_queue(&Config::default_for_tests(self.state()))
            .expect("the state directory is released and opens")
            .pending_count()
            .unwrap()
    }
}

/// A dry run: no token, no HTTP; pending addresses stay pending.
const DRAIN: RunOptions = RunOptions {
    dry_run: true,
    drain: true,
};
const RUNNING: RunOptions = RunOptions {
    dry_run: true,
    drain: false,
};

/// Runs the daemon until it ends by itself (the shutdown never comes).
async fn run_to_end(
    config: Config,
    opts: RunOptions,
    listeners: Listeners,
) -> Result<Arc<Stats>, DaemonError> {
    tokio::time::timeout(
        LIMIT,
        run(config, opts, listeners, std::future::pending::<()>()),
    )
    .await
    .expect("the daemon hung instead of stopping")
}

/// The failure a run ended with.
fn failure(r: Result<Arc<Stats>, DaemonError>) -> Failure {
    match r {
        Err(DaemonError::Failed(f)) => f,
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("the run ended as if nothing had happened"),
    }
}

fn panicked(component: &str) -> Failure {
    Failure {
        component: component.to_string(),
        cause: Cause::Panicked("injected fault".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_ingest_thread_panics_fails_instead_of_waiting_forever() {
    let env = Env::new(300);
    // A first, clean drain queues the 300 addresses (a dry run sends none).
    let stats = run_to_end(env.config(), DRAIN, Listeners::none())
        .await
        .unwrap();
    assert_eq!(Stats::get(&stats.queued_new), 300);
    env.sabotage("ingest", Fault::Panic);
    let e = run_to_end(env.config(), DRAIN, Listeners::none()).await;
    let msg = e.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(failure(e), panicked("ingest thread"));
    assert!(
        msg.starts_with("the ingest thread panicked: injected fault; tjfwd stopped: restart it"),
        "{msg}"
    );
    // Released, and nothing lost.
    assert_eq!(env.pending(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_scheduler_or_verify_thread_ends_the_drain_with_its_name() {
    for (prefix, component) in [
        ("scheduler", "scheduler (threatjammer)"),
        ("verify", "verify thread"),
    ] {
        let env = Env::new(50);
        env.sabotage(prefix, Fault::Panic);
        let e = run_to_end(env.config(), DRAIN, Listeners::none()).await;
        assert_eq!(failure(e), panicked(component));
        // Whatever was read before the stop is queued with its checkpoint:
        // the state directory opens.
        assert!(env.pending() <= 50);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_stops_when_a_service_panics_or_ends() {
    let listeners = || Listeners {
        admin: Some(TcpListener::bind("127.0.0.1:0").unwrap()),
        input_tcp: Some(TcpListener::bind("127.0.0.1:0").unwrap()),
        feed: Some(TcpListener::bind("127.0.0.1:0").unwrap()),
    };
    for (prefix, fault, component, cause) in [
        (
            "admin",
            Fault::Panic,
            "admin endpoint",
            Cause::Panicked("injected fault".into()),
        ),
        (
            "denylist feed",
            Fault::Panic,
            "denylist feed",
            Cause::Panicked("injected fault".into()),
        ),
        (
            "denylist pruning",
            Fault::Return,
            "denylist pruning",
            Cause::Ended,
        ),
        (
            "socket",
            Fault::Panic,
            "socket input",
            Cause::Panicked("injected fault".into()),
        ),
        ("control", Fault::Return, "control socket", Cause::Ended),
        (
            "scheduler",
            Fault::Return,
            "scheduler (threatjammer)",
            Cause::Ended,
        ),
        (
            "ingest",
            Fault::Panic,
            "ingest thread",
            Cause::Panicked("injected fault".into()),
        ),
    ] {
        let env = Env::new(50);
        env.sabotage(prefix, fault);
        let e = run_to_end(env.config(), RUNNING, listeners()).await;
        assert_eq!(
            failure(e),
            Failure {
                component: component.to_string(),
                cause
            }
        );
        assert!(env.pending() <= 50);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fault_the_listeners_are_served_and_the_run_ends_cleanly() {
    let env = Env::new(10);
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let input = TcpListener::bind("127.0.0.1:0").unwrap();
    let (admin_addr, input_addr) = (admin.local_addr().unwrap(), input.local_addr().unwrap());
    let listeners = Listeners {
        admin: Some(admin),
        input_tcp: Some(input),
        feed: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(run(env.config(), RUNNING, listeners, async {
        let _ = stopped.await;
    }));
    // The socket input takes a line from the listener the test bound.
    let line = b"{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"12.0.0.1\"}\n";
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(input_addr).unwrap();
        s.write_all(line).unwrap();
    })
    .await
    .unwrap();
    // The admin endpoint answers on the port the test bound.
    let http = reqwest::Client::new();
    let body = tokio::time::timeout(LIMIT, async {
        loop {
            let r = http
                .get(format!("http://{admin_addr}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if r.contains("tjfwd_pending_addresses 11") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the 11 addresses were never pending");
    assert!(body.contains("tjfwd_healthy 1"), "{body}");
    stop.send(()).unwrap();
    tokio::time::timeout(LIMIT, daemon)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(env.pending(), 11);
}
