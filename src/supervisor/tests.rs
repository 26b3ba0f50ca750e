//! The supervisor with real threads and tasks that panic, fail, end too
//! early or never end. Every wait is bounded by a timeout, never a sleep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Longest any of these tests may wait for something that should happen.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the supervisor hung")
}

/// Panics with `msg` (typed `()`, as a component's body is).
fn fail(msg: &str) {
    panic!("{msg}")
}

/// A thread body that runs until `stop` is set.
fn until_set(stop: &Arc<AtomicBool>) -> impl FnOnce() + Send + 'static {
    let stop = stop.clone();
    move || {
        while !stop.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_thread_fails_the_run_and_names_itself() {
    let stop = Arc::new(AtomicBool::new(false));
    let mut sup = Supervisor::new();
    let tripped = sup.tripped();
    sup.thread(
        "control",
        "t-control",
        Lifetime::UntilStopped,
        until_set(&stop),
    );
    sup.thread("ingest thread", "t-ingest", Lifetime::MayFinish, || {
        std::thread::sleep(Duration::from_millis(20));
        fail(&format!("boom at line {}", 7))
    });
    let e = bounded(sup.until(std::future::pending::<()>()))
        .await
        .unwrap_err();
    let expected = Failure {
        component: "ingest thread".into(),
        cause: Cause::Panicked("boom at line 7".into()),
    };
    assert_eq!(e, expected);
    assert_eq!(e.to_string(), "the ingest thread panicked: boom at line 7");
    assert_eq!(tripped.failure(), Some(expected.clone()));
    // The others stop when asked; the run still ends with the failure.
    sup.stop();
    stop.store(true, Ordering::Release);
    assert_eq!(bounded(sup.join(LIMIT)).await, Err(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_the_run_and_is_recorded_before_it_is_seen_to_end() {
    let mut sup = Supervisor::new();
    let tripped = sup.tripped();
    let finished = sup.task("scheduler (x)", Lifetime::MayFinish, async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let v: Vec<u8> = Vec::new();
        let _ = v[3]; // a real panic, not a panic! call
    });
    bounded(finished.wait()).await;
    let f = tripped.failure().expect("recorded before the task ended");
    assert_eq!(f.component, "scheduler (x)");
    assert!(
        matches!(&f.cause, Cause::Panicked(m) if m.contains("index out of bounds")),
        "{f}"
    );
    assert_eq!(bounded(sup.until(async {})).await, Err(f.clone()));
    assert_eq!(bounded(sup.join(LIMIT)).await, Err(f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_before_the_stop_is_a_failure_only_for_what_runs_until_stopped() {
    // A job that finishes is fine; the run goes on.
    let mut sup = Supervisor::new();
    sup.thread("verify thread", "t-verify", Lifetime::MayFinish, || {});
    let job = sup.task("drain", Lifetime::MayFinish, async {});
    bounded(job.wait()).await;
    assert_eq!(bounded(sup.until(async { 5 })).await, Ok(5));
    assert_eq!(bounded(sup.join(LIMIT)).await, Ok(()));

    // A service that returns on its own is not.
    let mut sup = Supervisor::new();
    sup.task("control socket", Lifetime::UntilStopped, async {});
    let e = bounded(sup.until(std::future::pending::<()>()))
        .await
        .unwrap_err();
    assert_eq!(e.cause, Cause::Ended);
    assert_eq!(e.to_string(), "the control socket ended unexpectedly");
    assert_eq!(bounded(sup.join(LIMIT)).await, Err(e));

    let mut sup = Supervisor::new();
    sup.thread("socket input", "t-socket", Lifetime::UntilStopped, || {});
    let e = bounded(sup.until(std::future::pending::<()>()))
        .await
        .unwrap_err();
    assert_eq!(e.component, "socket input");
    assert_eq!(e.cause, Cause::Ended);
    let _ = bounded(sup.join(LIMIT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_after_the_stop_is_expected() {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = oneshot::channel::<()>();
    let mut sup = Supervisor::new();
    let tripped = sup.tripped();
    let t = sup
        .thread(
            "socket input",
            "t-socket",
            Lifetime::UntilStopped,
            until_set(&stop),
        )
        .expect("started");
    sup.task("admin endpoint", Lifetime::UntilStopped, async {
        let _ = rx.await;
    });
    let (go, went) = oneshot::channel::<()>();
    go.send(()).unwrap();
    assert_eq!(bounded(sup.until(went)).await, Ok(Ok(())));
    sup.stop();
    stop.store(true, Ordering::Release);
    t.unpark();
    tx.send(()).unwrap();
    assert_eq!(bounded(sup.join(LIMIT)).await, Ok(()));
    assert_eq!(tripped.failure(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_returned_is_a_failure_even_while_stopping() {
    let mut sup = Supervisor::new();
    let (tx, rx) = oneshot::channel::<()>();
    sup.task("admin endpoint", Lifetime::UntilStopped, async {
        let _ = rx.await;
        Err::<(), _>("the listener broke")
    });
    sup.stop();
    tx.send(()).unwrap();
    let e = bounded(sup.join(LIMIT)).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the admin endpoint failed: the listener broke"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_stopping_fails_the_run() {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut sup = Supervisor::new();
    sup.thread(
        "ingest thread",
        "t-ingest",
        Lifetime::MayFinish,
        move || {
            while !flag.load(Ordering::Acquire) {
                std::thread::park_timeout(Duration::from_millis(10));
            }
            fail("cannot stop cleanly");
        },
    );
    sup.stop();
    stop.store(true, Ordering::Release);
    let e = bounded(sup.join(LIMIT)).await.unwrap_err();
    assert_eq!(e.component, "ingest thread");
    assert_eq!(e.cause, Cause::Panicked("cannot stop cleanly".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_does_not_stop_in_time_is_named_and_not_waited_for() {
    let mut sup = Supervisor::new();
    // A thread that ignores the stop (it ends when the test does).
    let (_keep, hold) = std::sync::mpsc::channel::<()>();
    sup.thread("ingest thread", "t-stuck", Lifetime::MayFinish, move || {
        let _ = hold.recv();
    });
    sup.task(
        "scheduler (x)",
        Lifetime::UntilStopped,
        std::future::pending::<()>(),
    );
    let t0 = std::time::Instant::now();
    let e = bounded(sup.join(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(t0.elapsed() < LIMIT);
    assert_eq!(e.component, "ingest thread", "the first one found stuck");
    assert_eq!(e.cause, Cause::Stuck(Duration::from_millis(200)));
    assert_eq!(e.to_string(), "the ingest thread did not stop within 200ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_failure_is_the_one_returned() {
    let mut sup = Supervisor::new();
    let first = sup.task("scheduler (a)", Lifetime::MayFinish, async {
        fail("first")
    });
    bounded(first.wait()).await;
    let second = sup.task("scheduler (b)", Lifetime::MayFinish, async {
        fail("second")
    });
    bounded(second.wait()).await;
    let e = bounded(sup.join(LIMIT)).await.unwrap_err();
    assert_eq!(e.component, "scheduler (a)");
    assert_eq!(e.cause, Cause::Panicked("first".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sabotaged_component_misbehaves_in_place_of_its_work() {
    let worked = Arc::new(AtomicBool::new(false));
    // One supervisor per fault: which of two failures comes first is a race.
    let mut sup = Supervisor::new();
    sup.sabotage("ingest", Fault::Panic);
    let w = worked.clone();
    sup.thread(
        "ingest thread",
        "t-ingest",
        Lifetime::MayFinish,
        move || w.store(true, Ordering::Release),
    );
    let e = bounded(sup.join(LIMIT)).await.unwrap_err();
    assert_eq!(
        e,
        Failure {
            component: "ingest thread".into(),
            cause: Cause::Panicked("injected fault".into()),
        }
    );

    let mut sup = Supervisor::new();
    sup.sabotage("control", Fault::Return);
    let w = worked.clone();
    sup.task("control socket", Lifetime::UntilStopped, async move {
        w.store(true, Ordering::Release)
    });
    let e = bounded(sup.until(std::future::pending::<()>()))
        .await
        .unwrap_err();
    assert_eq!(e.component, "control socket");
    assert_eq!(e.cause, Cause::Ended);
    let _ = bounded(sup.join(LIMIT)).await;
    assert!(!worked.load(Ordering::Acquire), "the work was not done");
}

#[test]
fn a_never_tripped_view_reports_nothing() {
    assert_eq!(Tripped::never().failure(), None);
}
