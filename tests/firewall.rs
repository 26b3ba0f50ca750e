//! `tjfwd export` loads into the real firewall tools, whatever the list's
//! size: `ipset restore` and `nft -f` from Debian's `ipset` and `nftables`,
//! run inside a network namespace the test makes (its sets and tables are
//! its own, gone with it). Needs root, `ip`, `ipset` and `nft` (`.ci/run`
//! installs them): otherwise each test says it is skipped, and fails when
//! `CI` is set.

mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::bin::{bin, text, Env};
use support::fake_api::{FakeApi, FakeConfig};
use tjfwd::config::Config;
use tjfwd::store::Sighting;

/// Where ip, ipset and nft are (root's PATH has them; a user's may not).
const SBIN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A network namespace of the test's own, deleted on drop.
struct Netns(String);

impl Netns {
    /// A new namespace, or None (skipped) when the tools or root are
    /// missing.
    fn new(test: &str) -> Option<Netns> {
        if !rustix::process::geteuid().is_root() {
            support::skip_or_fail(test, "needs root (network namespaces, ipset, nft)");
            return None;
        }
        for tool in ["ip", "ipset", "nft"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .env("PATH", SBIN_PATH)
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                support::skip_or_fail(test, &format!("no {tool} (.ci/run installs it)"));
                return None;
            }
        }
        let name = format!("tjfwd-fw-{}-{test}", std::process::id());
        let name: String = name.chars().take(40).collect();
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(o.status.success(), "ip netns add: {}", text(&o));
        Some(Netns(name))
    }

    /// Runs `cmd args` in the namespace with `input` on its stdin.
    fn run(&self, cmd: &str, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, cmd])
            .env("PATH", SBIN_PATH)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let o = child.wait_with_output().unwrap();
        writer.join().unwrap();
        o
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .env("PATH", SBIN_PATH)
            .output();
    }
}

/// A state directory whose Threat Jammer mirror holds `v4` IPv4 and `v6`
/// IPv6 addresses (queued and acknowledged through the library), and the
/// configuration file of the binary for it. Sighted now, they are all on
/// tjfwd's denylist too, which is what `export` prints by default.
fn mirror(env: &Env, api: &FakeApi, v4: u32, v6: u32) -> std::path::PathBuf {
    let cfg = env.config(api, "");
    let config = Config::default_for_tests(env.path("state"));
    let store = tjfwd::daemon::open_queue(&config).unwrap();
    let t = store.first_target();
    let now = tjfwd::clock::now_ms();
    let addrs: Vec<IpAddr> = (0..v4)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)))
        .chain(
            (0..v6).map(|i| IpAddr::V6(Ipv6Addr::new(0x2a01, 0x4f8, 0, 0, 0, 0, 0, i as u16 + 1))),
        )
        .collect();
    for chunk in addrs.chunks(1000) {
        let sightings: Vec<Sighting> = chunk
            .iter()
            .map(|&addr| Sighting { addr, seen_ms: now })
            .collect();
        store.enqueue(&sightings, None, now).unwrap();
        let batch = store.peek_batch(t, 1000).unwrap();
        store.ack(t, &batch, now, now).unwrap();
    }
    assert_eq!(store.pending_count().unwrap(), 0);
    store.flush().unwrap();
    cfg
}

fn export(cfg: &Path, format: &str) -> Vec<u8> {
    let o = bin()
        .args(["export", "--format", format, "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    o.stdout
}

/// `Number of entries: N` of `ipset list -t SET`.
fn ipset_count(ns: &Netns, set: &str) -> usize {
    let o = ns.run("ipset", &["list", "-t", set], b"");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find_map(|l| l.strip_prefix("Number of entries: "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn an_ipset_export_of_70000_addresses_loads_reloads_and_replaces() {
    let Some(ns) = Netns::new("ipset") else {
        return;
    };
    let api = FakeApi::start(FakeConfig::default());
    let (big_env, small_env) = (Env::new(), Env::new());
    let big = export(&mirror(&big_env, &api, 70_000, 300), "ipset");
    let small = export(&mirror(&small_env, &api, 200, 0), "ipset");
    // Small first (the sets are made), then 70,000 into them, again, and
    // small again: each restore replaces the list.
    for (round, script, v4, v6) in [
        (0, &small, 200, 0),
        (1, &big, 70_000, 300),
        (2, &big, 70_000, 300),
        (3, &small, 200, 0),
    ] {
        let o = ns.run("ipset", &["restore"], script);
        assert!(o.status.success(), "round {round}: {}", text(&o));
        assert_eq!(ipset_count(&ns, "tjfwd4"), v4, "round {round}");
        assert_eq!(ipset_count(&ns, "tjfwd6"), v6, "round {round}");
    }
    // Only the live sets are left.
    let o = ns.run("ipset", &["list", "-n"], b"");
    let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, ["tjfwd4", "tjfwd6"]);
}

/// The number of elements of an nft set (`nft -j list set`).
fn nft_count(ns: &Netns, set: &str) -> usize {
    let o = ns.run("nft", &["-j", "list", "set", "inet", "tjfwd", set], b"");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| x.get("set"))
        .and_then(|s| s.get("elem"))
        .map_or(0, |e| e.as_array().unwrap().len())
}

#[test]
fn an_nft_export_of_70000_addresses_loads_reloads_and_replaces() {
    let Some(ns) = Netns::new("nft") else { return };
    let api = FakeApi::start(FakeConfig::default());
    let (big_env, small_env) = (Env::new(), Env::new());
    let big = export(&mirror(&big_env, &api, 70_000, 300), "nft");
    let small = export(&mirror(&small_env, &api, 200, 0), "nft");
    for (round, script, v4, v6) in [
        (0, &big, 70_000, 300),
        (1, &big, 70_000, 300),
        (2, &small, 200, 0),
    ] {
        let o = ns.run("nft", &["-f", "-"], script);
        assert!(o.status.success(), "round {round}: {}", text(&o));
        assert_eq!(nft_count(&ns, "tjfwd4"), v4, "round {round}");
        assert_eq!(nft_count(&ns, "tjfwd6"), v6, "round {round}");
    }
}
