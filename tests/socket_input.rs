//! The socket input (Cowrie's `[output_socketlog]`): JSON lines over TCP
//! from several clients at once, with a connection limit and the line cap.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};
use tjfwd::config::{Config, Secret};
use tjfwd::daemon::{self, Listeners, RunOptions};

/// The socket input's listener, bound by the test on a port the kernel
/// picks (held from here on: no other test can take it), and its address.
fn listener() -> (Listeners, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let listeners = Listeners {
        input_tcp: Some(l),
        ..Listeners::none()
    };
    (listeners, addr)
}

/// A line as Cowrie's socketlog sends it: `json.dumps` separators.
fn socketlog_line(ip: &str, n: u64) -> String {
    let compact = cowrie::login_failed(ip, n);
    let v: serde_json::Value = serde_json::from_str(&compact).unwrap();
    let mut out = String::from("{");
    for (i, (k, v)) in v.as_object().unwrap().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("{}: {}", serde_json::to_string(k).unwrap(), v));
    }
    out.push_str("}\n");
    out
}

fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    }
}

fn config(state: &std::path::Path, api: &FakeApi, listen: SocketAddr) -> Config {
    let mut c = Config::default_for_tests(state.to_path_buf());
    c.threatjammer_mut().report.api_url = api.url().parse().unwrap();
    c.threatjammer_mut().report.token = Some(Secret::new(api.token()));
    c.input.listen_tcp = Some(listen);
    c.threatjammer_mut().schedule.flush_interval = Duration::from_millis(100);
    c.threatjammer_mut().schedule.rate_window = Duration::from_millis(300);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_at_once_deliver_every_address() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(FakeConfig {
        window: Duration::from_millis(300),
        ..FakeConfig::default()
    });
    let (listeners, listen) = listener();
    let mut c = config(&dir.path().join("state"), &api, listen);
    c.input.max_line_bytes = 4096;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = tokio::spawn(daemon::run(c, RunOptions::default(), listeners, async {
        let _ = rx.await;
    }));
    let addrs = cowrie::public_addresses(300);
    let clients: Vec<_> = addrs
        .chunks(100)
        .map(|part| {
            let part = part.to_vec();
            std::thread::spawn(move || {
                let mut s = connect(listen);
                for (i, a) in part.iter().enumerate() {
                    let line = socketlog_line(a, i as u64);
                    // Split writes in the middle of lines, as TCP may.
                    let (x, y) = line.split_at(line.len() / 3);
                    s.write_all(x.as_bytes()).unwrap();
                    s.write_all(y.as_bytes()).unwrap();
                    if i == 50 {
                        // A line over the cap is skipped, the next ones read.
                        s.write_all(&vec![b'x'; 10_000]).unwrap();
                        s.write_all(b"\n").unwrap();
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        api.wait_for_accepted_async(300, Duration::from_secs(20))
            .await
    );
    let expected: BTreeSet<String> = addrs.iter().cloned().collect();
    assert_eq!(api.accepted_unique(), expected);
    tx.send(()).unwrap();
    let stats = d.await.unwrap().unwrap();
    assert_eq!(stats.skipped(tjfwd::stats::SkipReason::TooLong), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(FakeConfig::default());
    let (listeners, listen) = listener();
    let mut c = config(&dir.path().join("state"), &api, listen);
    c.input.max_connections = 1;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = tokio::spawn(daemon::run(c, RunOptions::default(), listeners, async {
        let _ = rx.await;
    }));
    let mut first = connect(listen);
    first
        .write_all(socketlog_line("11.7.7.7", 1).as_bytes())
        .unwrap();
    assert!(
        api.wait_for_accepted_async(1, Duration::from_secs(10))
            .await
    );
    let mut second = connect(listen);
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    let n = second.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "the second connection is closed");
    drop(first);
    tx.send(()).unwrap();
    d.await.unwrap().unwrap();
}
