//! Running the real `tjfwd` binary in tests: a temporary directory with a
//! config pointing at a fake API, children whose output goes to a file (a
//! pipe nobody reads would fill up and block them), waits with limits.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::fake_api::FakeApi;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tjfwd"));
    c.env_remove("RUST_LOG")
        .env_remove("TJFWD_CONFIG")
        .env_remove("TJFWD_BEARER_TOKEN")
        .env_remove("TJFWD_TEST_RATE_WINDOW_MS")
        .env_remove("TJFWD_TEST_ABUSEIPDB_DAY_SECS")
        .env_remove(EPHEMERAL_PORTS_ENV);
    c
}

/// Test only: with it set to `1`, `tjfwd run` binds `[admin] listen` and
/// `[input] listen_tcp` on port 0 of the configured address (the configured
/// port is not used) and logs the bound addresses: read them with
/// [`bound_address`]. No test guesses a free port.
pub const EPHEMERAL_PORTS_ENV: &str = "TJFWD_TEST_EPHEMERAL_PORTS";

/// The address `r` (started with [`EPHEMERAL_PORTS_ENV`]) bound for `key`
/// (`"[input] listen_tcp"` or `"[admin] listen"`), from its log: waits for
/// the line, at most `limit`.
pub fn bound_address(r: &mut Running, key: &str, limit: Duration) -> SocketAddr {
    let needle = format!("{key} listens on ");
    let deadline = Instant::now() + limit;
    loop {
        let out = output_of(r);
        if let Some(at) = out.find(&needle) {
            let addr: String = out[at + needle.len()..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return addr
                .parse()
                .unwrap_or_else(|e| panic!("{e}: {addr:?} in:\n{out}"));
        }
        if let Some(status) = r.child.try_wait().unwrap() {
            panic!("tjfwd exited ({status}) before it listened ({key}):\n{out}");
        }
        assert!(
            Instant::now() < deadline,
            "tjfwd never said where it listens ({key}):\n{out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn log(&self) -> PathBuf {
        self.path("cowrie.json")
    }
    /// Writes a config file (token in a 0600 file) and returns its path:
    /// Threat Jammer at `api`, with `extra_schedule` at the end of its
    /// table.
    pub fn config(&self, api: &FakeApi, extra_schedule: &str) -> PathBuf {
        let token = self.path("token");
        std::fs::write(&token, format!("{}\n", api.token())).unwrap();
        set_mode(&token, 0o600);
        let cfg = self.path("tjfwd.toml");
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
max_backoff = "500ms"
{extra_schedule}
"#,
                url = api.url()
            ),
        )
        .unwrap();
        set_mode(&cfg, 0o600);
        cfg
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A running binary whose output goes to a file (a pipe nobody reads would
/// fill up and block it).
pub struct Running {
    pub child: Child,
    pub out: tempfile::NamedTempFile,
}

/// A test that fails (panics) must not leave its daemon running.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn spawn(cmd: &mut Command) -> Running {
    let out = tempfile::NamedTempFile::new().unwrap();
    // One open file for both: two would each write from their own offset,
    // the later writes over the earlier ones.
    let file = out.reopen().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Running { child, out }
}

/// Waits for the child to exit, killing it after `limit`.
pub fn wait_with_limit(r: &mut Running, limit: Duration) -> Option<ExitStatus> {
    let child = &mut r.child;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

pub fn output_of(r: &mut Running) -> String {
    let mut s = String::new();
    r.out.reopen().unwrap().read_to_string(&mut s).unwrap();
    s
}

pub fn sigterm(r: &Running) {
    use rustix::process::{kill_process, Pid, Signal};
    let _ = kill_process(Pid::from_child(&r.child), Signal::TERM);
}

/// A finished command's exit code, stdout and stderr, for assert messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
