//! Cowrie-shaped log lines for tests, in the field order Cowrie 3.1.4
//! writes (connection fields, the event's own fields, then `eventid`,
//! `sensor`, `uuid`, `timestamp`, `message`), and helpers to write them.

use std::io::Write;
use std::path::Path;

/// A timestamp in Cowrie's format, `ms` after 2026-11-22T00:00:00Z.
pub fn timestamp(ms: u64) -> String {
    timestamp_at(1_795_305_600_000 + ms) // 2026-11-22T00:00:00Z
}

/// A timestamp in Cowrie's format (`2026-11-22T12:02:37.839685Z`) for
/// `epoch_ms` milliseconds since 1970-01-01T00:00:00Z.
pub fn timestamp_at(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let day_secs = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}000Z",
        date_at(epoch_ms),
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        epoch_ms % 1000
    )
}

/// The UTC date `YYYY-MM-DD` of `epoch_ms` (the suffix Cowrie gives a
/// rotated log: `cowrie.json.2026-11-22`).
pub fn date_at(epoch_ms: u64) -> String {
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = (epoch_ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A JSON string literal (escaped) for `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One event line (no newline).
pub fn event(eventid: &str, src_ip: &str, own_fields: &str, ts_ms: u64) -> String {
    event_with_timestamp(eventid, src_ip, own_fields, &timestamp(ts_ms))
}

/// One event line (no newline) with a timestamp as written (see
/// [`timestamp_at`]).
pub fn event_with_timestamp(eventid: &str, src_ip: &str, own_fields: &str, ts: &str) -> String {
    let own = if own_fields.is_empty() {
        String::new()
    } else {
        format!("{own_fields},")
    };
    format!(
        r#"{{"session":"a1b2c3d4e5f6","protocol":"ssh","src_ip":{ip},"src_port":51234,"dst_ip":"127.0.0.1","dst_port":2222,{own}"eventid":{eid},"sensor":"test","uuid":"6f0e3c2a-9a5b-11f0-8d2e-0242ac120002","timestamp":"{ts}","message":"test event"}}"#,
        ip = js(src_ip),
        eid = js(eventid),
    )
}

/// A failed login from `src_ip` (attacker-controlled username and password).
pub fn login_failed(src_ip: &str, ts_ms: u64) -> String {
    event(
        "cowrie.login.failed",
        src_ip,
        r#""username":"root","password":"\"eventid\":\"cowrie.login.success\"""#,
        ts_ms,
    )
}

/// A session connect from `src_ip` (not selected by default).
pub fn connect(src_ip: &str, ts_ms: u64) -> String {
    event("cowrie.session.connect", src_ip, "", ts_ms)
}

/// `n` distinct public IPv4 addresses (in 11.0.0.0/8 .. and so on: public,
/// not documentation or private space).
pub fn public_addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let i = i as u32 + 1;
            format!("11.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
        })
        .collect()
}

/// Appends lines (each with a newline) to a file, creating it.
pub fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// Appends raw bytes to a file, creating it.
pub fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}
