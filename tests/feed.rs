//! The denylist feed (`[feed] listen`) of the real binary, fetched as the
//! firewalls fetch it, over plain HTTP/1.1 from this test: the text and
//! JSON lists, the family filter, `ETag` and `If-None-Match` → 304, the
//! token as a Bearer token and as the password of HTTP basic auth, a peer
//! outside `allow_from` refused, a LAN scanner's idle connections unable
//! to keep the list from a firewall, and a `listen` that other hosts can
//! reach without any access control refused at start.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::bin::{
    bin, bound_address, output_of, sigterm, spawn, text, wait_with_limit, Env, Running,
    EPHEMERAL_PORTS_ENV,
};
use support::cowrie;
use support::fake_api::{FakeApi, FakeConfig};

const TOKEN: &str = "feed-T0ken_for.firewalls";

/// A daemon whose feed serves `feed` (the `[feed]` table's keys), with a
/// log of `addrs` sighted now; and where its feed listens.
fn start(env: &Env, api: &FakeApi, feed: &str, addrs: &[String]) -> (Running, SocketAddr) {
    let cfg = env.config(api, "");
    std::fs::write(env.path("feed_token"), format!("{TOKEN}\n")).unwrap();
    support::bin::set_mode(&env.path("feed_token"), 0o600);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("\n[feed]\nlisten = \"127.0.0.1:9109\"\n{feed}\n"));
    std::fs::write(&cfg, text).unwrap();
    write_log(&env.log(), addrs);
    let mut d = spawn(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env(EPHEMERAL_PORTS_ENV, "1"),
    );
    let at = bound_address(&mut d, "[feed] listen", Duration::from_secs(20));
    (d, at)
}

/// Failed logins from each address, dated now.
fn write_log(path: &Path, addrs: &[String]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ts = cowrie::timestamp_at(now);
    let lines: Vec<String> = addrs
        .iter()
        .map(|a| {
            cowrie::event_with_timestamp(
                "cowrie.login.failed",
                a,
                r#""username":"root","password":"x""#,
                &ts,
            )
        })
        .collect();
    cowrie::append(path, &lines);
}

/// An answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with the extra header lines `headers`, over a connection of
/// its own.
fn get(at: SocketAddr, path: &str, headers: &[String]) -> Answer {
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: sensor\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status: status.parse().unwrap(),
        headers,
        body: body.to_string(),
    }
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {b}")
}

fn lines(body: &str) -> BTreeSet<String> {
    body.lines().map(str::to_owned).collect()
}

/// Waits until the feed lists `n` addresses (the daemon reads its log).
fn wait_for(d: &mut Running, at: SocketAddr, n: usize) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = get(at, "/denylist.txt", &[bearer()]);
        if a.status == 200 && a.body.lines().count() == n {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "the feed never listed {n} addresses: {} {:?}\n{}",
            a.status,
            a.body,
            output_of(d)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(mut d: Running) {
    sigterm(&d);
    let status = wait_with_limit(&mut d, Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        output_of(&mut d)
    );
}

#[test]
fn the_feed_serves_the_list_to_the_token_with_etags_and_families() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let v4 = cowrie::public_addresses(5);
    let v6: Vec<String> = (1..=3).map(|i| format!("2a01:4f8::{i}")).collect();
    let all: Vec<String> = v4.iter().chain(&v6).cloned().collect();
    let (mut d, at) = start(
        &env,
        &api,
        "allow_from = [\"127.0.0.0/8\", \"::1\"]\ntoken_file = \"feed_token\"\nttl = \"1h\"",
        &all,
    );
    let list = wait_for(&mut d, at, all.len());
    assert_eq!(lines(&list.body), all.iter().cloned().collect());
    assert_eq!(
        list.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let etag = list.header("etag").expect("an ETag").to_string();

    // Without the token, or with a wrong one: 401, the list not shown.
    for headers in [
        vec![],
        vec!["Authorization: Bearer wrong".to_string()],
        vec![basic("admin", "wrong")],
        vec![basic(TOKEN, "")],
    ] {
        let a = get(at, "/denylist.txt", &headers);
        assert_eq!(a.status, 401, "{headers:?}");
        assert_eq!(a.body, "unauthorized\n");
        assert!(!a.body.contains(&v4[0]));
        assert!(a
            .headers
            .iter()
            .any(|(n, v)| n == "www-authenticate" && v.starts_with("Basic")));
    }
    // Anything else asked without the token is refused the same way.
    assert_eq!(get(at, "/metrics", &[]).status, 401);
    assert_eq!(get(at, "/metrics", &[bearer()]).status, 404);

    // The token as basic auth's password (FortiGate, pfSense's
    // user:password@ URLs), any user name: the same list, the same ETag.
    let a = get(at, "/denylist.txt", &[basic("fortigate", TOKEN)]);
    assert_eq!((a.status, a.body.as_str()), (200, list.body.as_str()));
    assert_eq!(a.header("etag"), Some(etag.as_str()));

    // If-None-Match: 304 and no body while the list is the same.
    let a = get(
        at,
        "/denylist.txt",
        &[bearer(), format!("If-None-Match: {etag}")],
    );
    assert_eq!((a.status, a.body.as_str()), (304, ""));
    assert_eq!(a.header("etag"), Some(etag.as_str()));
    let a = get(
        at,
        "/denylist.txt",
        &[bearer(), "If-None-Match: \"stale\"".to_string()],
    );
    assert_eq!(a.status, 200);

    // One family.
    let a = get(at, "/denylist.txt?family=ipv4", &[bearer()]);
    assert_eq!(lines(&a.body), v4.iter().cloned().collect());
    assert_ne!(a.header("etag"), Some(etag.as_str()));
    let a = get(at, "/denylist.txt?family=ipv6", &[bearer()]);
    assert_eq!(lines(&a.body), v6.iter().cloned().collect());
    assert_eq!(get(at, "/denylist.txt?family=ipx", &[bearer()]).status, 400);

    // JSON.
    let a = get(at, "/denylist.json?family=ipv6", &[bearer()]);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["ttl_s"], 3600);
    assert_eq!(v["count"], 3);
    let got: BTreeSet<String> = v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, v6.iter().cloned().collect());
    assert!(v["addresses"][0]["last_seen"].is_string());
    let json_etag = a.header("etag").unwrap().to_string();
    let a = get(
        at,
        "/denylist.json?family=ipv6",
        &[bearer(), format!("If-None-Match: {json_etag}")],
    );
    assert_eq!(a.status, 304);

    // A scanner holding more idle connections than the feed serves: the
    // extra ones are closed at once, the others once the header timeout
    // ran out; then a firewall gets the list again.
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(at).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            match (&**s).read(&mut [0u8; 1]) {
                Ok(n) => n == 0,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
        .count();
    assert!(
        (8..40).contains(&closed),
        "{closed} of 40 idle connections were closed at once"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = TcpStream::connect(at).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(
                format!(
                    "GET /denylist.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n\r\n",
                    bearer()
                )
                .as_bytes(),
            )
            .ok()?;
            let mut raw = String::new();
            s.read_to_string(&mut raw).ok()?;
            raw.starts_with("HTTP/1.1 200").then_some(())
        });
        if ok.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed stayed busy with idle connections\n{}",
            output_of(&mut d)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
    stop(d);
}

#[test]
fn a_peer_outside_allow_from_is_refused() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let addrs = cowrie::public_addresses(3);
    let (d, at) = start(&env, &api, "allow_from = [\"192.0.2.0/24\"]", &addrs);
    // Even with time to read the log: refused, whatever is asked.
    std::thread::sleep(Duration::from_millis(500));
    for path in ["/denylist.txt", "/denylist.json", "/"] {
        let a = get(at, path, &[]);
        assert_eq!((a.status, a.body.as_str()), (403, "forbidden\n"), "{path}");
    }
    stop(d);
}

/// The state directory's config written with `[feed]` keys `feed`.
fn config_with_feed(env: &Env, api: &FakeApi, feed: &str) -> PathBuf {
    let cfg = env.config(api, "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("\n[feed]\n{feed}\n"));
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn a_listen_others_can_reach_without_access_control_is_refused_at_start() {
    let env = Env::new();
    let api = FakeApi::start(FakeConfig::default());
    let cfg = config_with_feed(&env, &api, "listen = \"0.0.0.0:9109\"");
    let mut d = spawn(bin().args(["run", "--config"]).arg(&cfg));
    let status = wait_with_limit(&mut d, Duration::from_secs(20));
    let out = output_of(&mut d);
    assert_ne!(status.and_then(|s| s.code()), Some(0), "{out}");
    assert!(
        out.contains("[feed] listen = \"0.0.0.0:9109\" is reachable from other hosts"),
        "{out}"
    );
    assert!(out.contains("allow_from"), "{out}");
    assert!(!env.path("state").join("db").exists(), "started anyway");
    let o = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));

    // With a token it starts; check-config shows the section, never the token.
    std::fs::write(env.path("feed_token"), TOKEN).unwrap();
    support::bin::set_mode(&env.path("feed_token"), 0o600);
    let cfg = config_with_feed(
        &env,
        &api,
        "listen = \"0.0.0.0:9109\"\ntoken_file = \"feed_token\"",
    );
    let o = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        shown.contains("[feed]\nlisten = \"0.0.0.0:9109\""),
        "{shown}"
    );
    assert!(shown.contains("token = \"<redacted>\""), "{shown}");
    assert!(
        !shown.contains(TOKEN) && !text(&o).contains(TOKEN),
        "{shown}"
    );
}
