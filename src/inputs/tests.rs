//! The error policy of [`run`], input by input: a storage failure is shown
//! to the storage watch whatever the input (the socket input's used not to
//! be, so a daemon fed only by the socket never reopened its database after
//! a full disk), the input stops uncommitted when the database is reopened,
//! and otherwise retries the same sightings and reads on once they are
//! stored. No timing luck: the tests wait for calls, closed connections and
//! notifications, never for a sleep to be long enough.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::socket::Listener;
use super::*;
use crate::config::StartAt;
use crate::pipeline::fake::{open_store, Call, FakeQueue};
use crate::pipeline::{Pipeline, StorageWatch};
use crate::stats::Stats;

/// A selected line from a public address (with its newline).
fn login(ip: &str) -> String {
    format!(
        r#"{{"eventid":"cowrie.login.failed","src_ip":"{ip}","timestamp":"2026-01-01T00:00:00.000000Z","session":"a1"}}"#
    ) + "\n"
}

/// Whether `n` was notified (consumes the permit).
fn notified(n: &Notify) -> bool {
    use std::future::Future;
    let f = std::pin::pin!(n.notified());
    f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        .is_ready()
}

struct Env {
    dir: tempfile::TempDir,
    config: Config,
    store: Arc<Store>,
    stats: Arc<Stats>,
    /// The schedulers' wake-up.
    notify: Arc<Notify>,
    /// The daemon's "reopen the database".
    reopen: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

impl Env {
    /// A state directory and a Cowrie log holding `log`.
    fn new(log: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default_for_tests(dir.path().join("state"));
        let path = dir.path().join("cowrie.json");
        std::fs::write(&path, log).unwrap();
        config.input.cowrie_json = Some(path);
        config.input.start_at = StartAt::Beginning;
        config.input.poll_interval = Duration::from_millis(20);
        let store = Arc::new(open_store(&config));
        Env {
            dir,
            config,
            store,
            stats: Arc::default(),
            notify: Arc::default(),
            reopen: Arc::default(),
            stop: Arc::default(),
        }
    }

    /// The pipeline into `queue`. Its storage watch looks at the state
    /// directory when `writable` (a disk that takes writes again: a new
    /// database can go on), else at a directory that is not there (a disk
    /// still full).
    fn pipeline(&self, queue: Arc<FakeQueue>, writable: bool) -> Arc<Pipeline> {
        let watched = if writable {
            self.config.state_dir.clone()
        } else {
            self.dir.path().join("missing")
        };
        Arc::new(
            Pipeline::new(queue, &self.config, self.stats.clone(), self.notify.clone())
                .with_storage_watch(StorageWatch::new(watched, self.reopen.clone())),
        )
    }

    fn context(&self, pipeline: Arc<Pipeline>, drain: bool) -> Context {
        Context {
            pipeline,
            store: self.store.clone(),
            stop: self.stop.clone(),
            drain,
            done: Arc::default(),
            input_tcp: None,
        }
    }

    /// The file input, built as the daemon builds it.
    fn file_input(&self, ctx: &Context) -> Ready {
        let mut config = self.config.clone();
        config.input.listen_tcp = None;
        file::prepare(&config, ctx)
            .unwrap()
            .expect("cowrie_json is set")
    }

    /// The socket input's listener on a free loopback port, on a thread.
    fn socket_input(
        &self,
        pipeline: Arc<Pipeline>,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<Ended>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = Listener {
            pipeline,
            stop: self.stop.clone(),
            max_line: 4096,
            max_connections: 4,
        };
        (addr, std::thread::spawn(move || socket.run(listener)))
    }

    fn stop_socket(&self, listener: std::thread::JoinHandle<Ended>) {
        self.stop.store(true, Ordering::Release);
        listener.thread().unpark();
        assert_eq!(listener.join().unwrap(), Ended::Stopped);
    }
}

/// Connects to the socket input (with a read timeout that only a broken
/// test reaches).
fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn sightings(call: &Call) -> &[crate::store::Sighting] {
    match call {
        Call::Enqueue { sightings, .. } => sightings,
        c => panic!("not an enqueue: {c:?}"),
    }
}

#[test]
fn a_storage_failure_of_the_file_input_is_shown_to_the_watch_and_it_stops_uncommitted() {
    let log = login("11.7.7.7");
    let env = Env::new(&log);
    let q = Arc::new(FakeQueue::failing(u32::MAX, 0).over(env.store.clone()));
    let ctx = env.context(env.pipeline(q.clone(), true), false);
    let ready = env.file_input(&ctx);
    assert_eq!((ready.run)(), Ended::Reopen);
    assert!(notified(&env.reopen), "the daemon is asked to reopen");
    // The chunk was offered with its checkpoint, which did not move.
    let calls = q.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let Call::Enqueue {
        checkpoint: Some((id, c)),
        ok: false,
        ..
    } = &calls[0]
    else {
        panic!("{calls:?}")
    };
    assert_eq!(c.offset, log.len() as u64);
    // (the tailer records the file it started on, at offset 0)
    assert_eq!(env.store.checkpoint(id).unwrap().map_or(0, |c| c.offset), 0);
    assert_eq!(Stats::get(&env.stats.queued_new), 0);
    assert_eq!(env.store.pending_count().unwrap(), 0);
    assert!(!notified(&env.notify));
}

/// The defect issue 15 fixed: the socket input retried a failed write
/// forever without telling the storage watch, so a daemon fed only by the
/// socket never reopened its database once the disk had room again.
#[test]
fn a_storage_failure_of_the_socket_input_is_shown_to_the_watch_and_it_stops() {
    let env = Env::new("");
    let q = Arc::new(FakeQueue::failing(u32::MAX, 0));
    let (addr, listener) = env.socket_input(env.pipeline(q.clone(), true));
    let mut client = connect(addr);
    client.write_all(login("11.7.7.7").as_bytes()).unwrap();
    // The connection closes once its input has stopped...
    let mut b = [0u8; 1];
    assert_eq!(
        client.read(&mut b).unwrap(),
        0,
        "tjfwd closes the connection"
    );
    // ...for the database to be reopened.
    assert!(notified(&env.reopen), "the daemon is asked to reopen");
    let calls = q.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(sightings(&calls[0]).len(), 1);
    assert_eq!(Stats::get(&env.stats.queued_new), 0);
    env.stop_socket(listener);
}

#[test]
fn the_file_input_retries_the_same_sightings_until_they_are_stored() {
    let log = login("11.7.7.7");
    let env = Env::new(&log);
    let q = Arc::new(FakeQueue::failing(1, 0).over(env.store.clone()));
    // The disk is still full: no reopen, a retry.
    let ctx = env.context(env.pipeline(q.clone(), false), true);
    let ready = env.file_input(&ctx);
    assert_eq!((ready.run)(), Ended::Done);
    let calls = q.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (Call::Enqueue { ok: false, .. }, Call::Enqueue { ok: true, .. }) = (&calls[0], &calls[1])
    else {
        panic!("{calls:?}")
    };
    // The same sightings with the same checkpoint, read once.
    assert_eq!(sightings(&calls[0]), sightings(&calls[1]));
    let (Call::Enqueue { checkpoint: a, .. }, Call::Enqueue { checkpoint: b, .. }) =
        (&calls[0], &calls[1])
    else {
        unreachable!()
    };
    assert_eq!(a, b);
    let (id, c) = a.clone().unwrap();
    assert_eq!(env.store.checkpoint(&id).unwrap(), Some(c));
    assert_eq!(Stats::get(&env.stats.lines_read), 1);
    assert_eq!(Stats::get(&env.stats.queued_new), 1);
    assert!(!notified(&env.reopen));
    // Paused while it failed, resumed since.
    assert_eq!(Stats::get(&env.stats.input_pauses), 1);
    assert_eq!(env.stats.paused(), None);
}

#[test]
fn the_socket_input_retries_the_same_sightings_and_reads_on_once_they_are_on_disk() {
    let env = Env::new("");
    let q = Arc::new(FakeQueue::failing(1, 0));
    let (addr, listener) = env.socket_input(env.pipeline(q.clone(), false));
    let mut client = connect(addr);
    client.write_all(login("11.7.7.7").as_bytes()).unwrap();
    let calls = q.wait_calls(3);
    assert_eq!(sightings(&calls[0]), sightings(&calls[1]));
    assert!(matches!(calls[0], Call::Enqueue { ok: false, .. }));
    assert!(matches!(calls[1], Call::Enqueue { ok: true, .. }));
    assert_eq!(calls[2], Call::Flush { ok: true });
    // Read on once the first chunk was on disk.
    client.write_all(login("11.7.7.8").as_bytes()).unwrap();
    let calls = q.wait_calls(5);
    assert_eq!(sightings(&calls[3])[0].addr.to_string(), "11.7.7.8");
    assert_eq!(calls[4], Call::Flush { ok: true });
    assert!(!notified(&env.reopen));
    assert_eq!(Stats::get(&env.stats.lines_read), 2);
    assert_eq!(Stats::get(&env.stats.input_pauses), 1);
    assert_eq!(env.stats.paused(), None);
    drop(client);
    env.stop_socket(listener);
}

#[test]
fn start_enabled_says_when_the_inputs_are_done() {
    // No input: done at once.
    let env = Env::new("");
    let q = Arc::new(FakeQueue::default().over(env.store.clone()));
    let ctx = env.context(env.pipeline(q.clone(), false), true);
    let mut none = env.config.clone();
    none.input.cowrie_json = None;
    start_enabled(&none, &ctx, &mut Supervisor::new())
        .unwrap()
        .stop();
    assert!(ctx.done.load(Ordering::Acquire));

    // A file read to its end in drain mode (the socket input does not
    // start then): done once it is, and the schedulers are woken.
    let env = Env::new(&login("11.7.7.7"));
    let q = Arc::new(FakeQueue::default().over(env.store.clone()));
    let mut ctx = env.context(env.pipeline(q.clone(), false), true);
    let mut both = env.config.clone();
    both.input.listen_tcp = Some("127.0.0.1:1".parse().unwrap());
    // (a listening socket handed over all the same: it is not served)
    ctx.input_tcp = Some(Arc::new(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ));
    let running = start_enabled(&both, &ctx, &mut Supervisor::new()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    while !ctx.done.load(Ordering::Acquire) {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), env.notify.notified()).await
        })
        .expect("the schedulers are woken");
    }
    assert_eq!(Stats::get(&env.stats.queued_new), 1);
    running.stop();
}

#[test]
fn the_backoff_doubles_from_one_second_up_to_thirty() {
    let secs: Vec<f64> = (1..=8).map(|n| backoff(n).as_secs_f64()).collect();
    assert_eq!(secs, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
}

#[test]
fn a_pause_ends_at_stop() {
    let stop = AtomicBool::new(true);
    let t = std::time::Instant::now();
    pause(&stop, Duration::from_secs(3600));
    assert!(t.elapsed() < Duration::from_secs(60));
}
