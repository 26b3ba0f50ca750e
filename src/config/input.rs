//! The `[input]` section: the cowrie.json tailer and the socket input.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::config_kit::{format_duration, ser, ConfigError, Ctx, KIB, MIB};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Default of `[input] max_line_bytes`: longer lines are skipped and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = MIB as usize;

/// Smallest accepted `[input] max_line_bytes` (Cowrie's lines are ~350 bytes,
/// ~1.9 KB for `cowrie.client.kex`).
pub const MIN_MAX_LINE_BYTES: usize = KIB as usize;

/// Largest accepted `[input] max_line_bytes` (a line is buffered whole).
pub const MAX_MAX_LINE_BYTES: usize = 64 * MIB as usize;

/// Default of `[input] max_connections` (socket clients served at once).
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;

/// Largest accepted `[input] max_connections`.
pub const MAX_MAX_CONNECTIONS: usize = 1024;

/// Where the tailer starts reading a cowrie.json it has no checkpoint for.
/// Serializes to its TOML spelling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartAt {
    /// Only new events (the log's past is not reported).
    #[default]
    End,
    /// From the first line of the current file.
    Beginning,
}

impl StartAt {
    /// The TOML spelling of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartAt::End => "end",
            StartAt::Beginning => "beginning",
        }
    }
}

impl Serialize for StartAt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `[input]` section: the cowrie JSON log. Serializes to the section's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Input {
    /// cowrie.json to tail; None when events come only from other inputs.
    #[serde(
        serialize_with = "ser::path_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cowrie_json: Option<PathBuf>,
    /// Where to start in a file seen for the first time (no checkpoint yet).
    pub start_at: StartAt,
    /// How often the tailer looks for new data, rotation and truncation.
    #[serde(serialize_with = "ser::duration")]
    pub poll_interval: Duration,
    /// Longest input line accepted, in bytes; a longer line is skipped
    /// (without being buffered whole) and counted. 1 KiB..=64 MiB.
    #[serde(serialize_with = "ser::size_usize")]
    pub max_line_bytes: usize,
    /// Address to accept Cowrie's `[output_socketlog]` connections on (JSON
    /// lines over TCP); None: no socket input. Port is never 0.
    #[serde(
        serialize_with = "ser::display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub listen_tcp: Option<SocketAddr>,
    /// Most socket clients served at once (1..=1024); further ones wait or are refused.
    #[serde(serialize_with = "ser::saturating_i64")]
    pub max_connections: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            cowrie_json: None,
            start_at: StartAt::End,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            listen_tcp: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// `[input]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInput {
    /// cowrie.json path; relative to the config file's directory.
    pub(super) cowrie_json: Option<PathBuf>,
    /// "end" or "beginning"; a string so that a bad value gets our message.
    pub(super) start_at: Option<String>,
    /// humantime duration string.
    pub(super) poll_interval: Option<toml::Value>,
    /// A size string ("1MiB") or an integer number of bytes.
    pub(super) max_line_bytes: Option<toml::Value>,
    /// A socket address such as "127.0.0.1:9000" or "[::1]:9000".
    pub(super) listen_tcp: Option<String>,
    /// Socket clients at once, 1..=1024.
    pub(super) max_connections: Option<i64>,
}

/// Checks `[input]` as written and applies its defaults.
pub(super) fn validate(ctx: &mut Ctx, raw: RawInput) -> Result<Input, ConfigError> {
    let cowrie_json = raw
        .cowrie_json
        .map(|p| ctx.path("[input] cowrie_json", p))
        .transpose()?;
    let start_at = match raw.start_at.as_deref() {
        None => StartAt::End,
        Some(s) if s.eq_ignore_ascii_case("end") => StartAt::End,
        Some(s) if s.eq_ignore_ascii_case("beginning") => StartAt::Beginning,
        Some(s) => {
            let key = "[input] start_at";
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {s:?} is not valid: use \"end\" (only new events) or \"beginning\" \
                     (the whole current file)"
                ),
            ));
        }
    };
    let key = "[input] poll_interval";
    let poll_interval = ctx.nonzero(
        key,
        ctx.duration(key, raw.poll_interval, DEFAULT_POLL_INTERVAL)?,
    )?;
    if poll_interval > MAX_POLL_INTERVAL {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = \"{}\" is too long: it must be at most 60s (default 500ms)",
                format_duration(poll_interval)
            ),
        ));
    }

    let key = "[input] max_line_bytes";
    let max_line_bytes = ctx.size(key, raw.max_line_bytes, DEFAULT_MAX_LINE_BYTES as u64)?;
    if !(MIN_MAX_LINE_BYTES as u64..=MAX_MAX_LINE_BYTES as u64).contains(&max_line_bytes) {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = {max_line_bytes} bytes is out of range: it must be between 1KiB and \
                 64MiB (default 1MiB; Cowrie's lines are a few KB at most)"
            ),
        ));
    }

    let key = "[input] listen_tcp";
    let listen_tcp = match raw.listen_tcp {
        None => None,
        Some(text) => {
            let addr = text.trim().parse::<SocketAddr>().map_err(|_| {
                ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} is not a socket address: write an IP address and a \
                         port, like \"127.0.0.1:9000\" or \"[::1]:9000\" (the address of \
                         Cowrie's [output_socketlog])"
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(ctx.invalid(
                    key,
                    format!(
                        "{key} = {text:?} has port 0: give the fixed port Cowrie's \
                         [output_socketlog] address connects to, like \"127.0.0.1:9000\""
                    ),
                ));
            }
            if !addr.ip().is_loopback() {
                ctx.warnings.push(format!(
                    "{}: {key} = \"{addr}\" is not a loopback address: anyone who can reach \
                     this port can feed tjfwd events (the socket takes unauthenticated input); \
                     prefer \"127.0.0.1:{}\" with Cowrie on the same host, or firewall the port",
                    ctx.file,
                    addr.port()
                ));
            }
            Some(addr)
        }
    };

    let key = "[input] max_connections";
    let max_connections = match raw.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) if (1..=MAX_MAX_CONNECTIONS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is out of range: it must be between 1 and \
                     {MAX_MAX_CONNECTIONS} (default {DEFAULT_MAX_CONNECTIONS})"
                ),
            ))
        }
    };

    Ok(Input {
        cowrie_json,
        start_at,
        poll_interval,
        max_line_bytes: max_line_bytes as usize,
        listen_tcp,
        max_connections,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, parse_ok, refused, FILE};
    use crate::config::ConfigError;

    #[test]
    fn refuses_bad_start_at() {
        let msg = refused("[input]\nstart_at = \"middle\"", "[input] start_at");
        assert!(msg.contains("\"beginning\""), "{msg}");
    }

    #[test]
    fn max_line_bytes_forms_and_refusals() {
        let size = |text: &str| parse_ok(text).input.max_line_bytes;
        assert_eq!(size("[input]\nmax_line_bytes = \"64KiB\""), 64 * 1024);
        assert_eq!(size("[input]\nmax_line_bytes = \"1 KiB\""), 1024);
        assert_eq!(size("[input]\nmax_line_bytes = \"64MiB\""), 64 << 20);
        assert_eq!(size("[input]\nmax_line_bytes = 4096"), 4096);
        let msg = refused(
            "[input]\nmax_line_bytes = \"lots\"",
            "[input] max_line_bytes",
        );
        assert!(msg.contains("\"lots\""), "{msg}");
        assert!(msg.contains("1MiB"), "{msg}");
        let msg = refused("[input]\nmax_line_bytes = 1023", "[input] max_line_bytes");
        assert!(msg.contains("between 1KiB and 64MiB"), "{msg}");
        refused(
            "[input]\nmax_line_bytes = \"65MiB\"",
            "[input] max_line_bytes",
        );
        refused("[input]\nmax_line_bytes = -1", "[input] max_line_bytes");
        refused("[input]\nmax_line_bytes = 1.5", "[input] max_line_bytes");
    }

    #[test]
    fn listen_tcp_forms_warnings_and_refusals() {
        let c = parse_ok("[input]\nlisten_tcp = \"[::1]:9000\"");
        assert_eq!(c.input.listen_tcp, Some("[::1]:9000".parse().unwrap()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = parse_ok("[input]\nlisten_tcp = \" 127.0.0.2:9000 \"");
        assert_eq!(c.input.listen_tcp, Some("127.0.0.2:9000".parse().unwrap()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Allowed, with a warning: the port takes unauthenticated input.
        for addr in ["0.0.0.0:9000", "192.0.2.1:9000", "[::]:9000"] {
            let c = parse_ok(&format!("[input]\nlisten_tcp = \"{addr}\""));
            assert_eq!(c.input.listen_tcp, Some(addr.parse().unwrap()));
            assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
            let w = &c.warnings[0];
            assert!(w.starts_with(FILE), "{w}");
            assert!(w.contains("[input] listen_tcp"), "{w}");
            assert!(w.contains("unauthenticated"), "{w}");
        }
        for bad in [
            "localhost:9000",
            "127.0.0.1",
            "::1:9000",
            "127.0.0.1:70000",
            "",
        ] {
            let msg = refused(
                &format!("[input]\nlisten_tcp = \"{bad}\""),
                "[input] listen_tcp",
            );
            assert!(msg.contains("127.0.0.1:9000"), "{msg}");
        }
        let msg = refused(
            "[input]\nlisten_tcp = \"127.0.0.1:0\"",
            "[input] listen_tcp",
        );
        assert!(msg.contains("port 0"), "{msg}");
        // A number is a type error.
        assert!(matches!(
            parse("[input]\nlisten_tcp = 9000").unwrap_err(),
            ConfigError::Parse { .. }
        ));
    }

    #[test]
    fn max_connections_range() {
        assert_eq!(
            parse_ok("[input]\nmax_connections = 1")
                .input
                .max_connections,
            1
        );
        assert_eq!(
            parse_ok("[input]\nmax_connections = 1024")
                .input
                .max_connections,
            1024
        );
        for n in [0, -1, 1025] {
            let msg = refused(
                &format!("[input]\nmax_connections = {n}"),
                "[input] max_connections",
            );
            assert!(msg.contains("between 1 and 1024"), "{msg}");
        }
    }
}
