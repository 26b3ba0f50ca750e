//! Decode: one line of Cowrie's JSON log → the three fields tjfwd uses.
//!
//! Only `eventid`, `src_ip` and `timestamp` are read; every other field is
//! skipped by the JSON parser without being kept, because it holds
//! attacker-controlled text (usernames, passwords, commands). A line that is
//! not valid is reported with a [`SkipReason`] and never panics.
//!
//! # The prefilter
//!
//! Most lines of a Cowrie log are events tjfwd does not select (connections,
//! client versions, the 1.5–2.3 KB `cowrie.client.kex` lines, commands...).
//! [`cannot_select`] rejects most of them with a few byte scans, before the
//! JSON parser, and says "in doubt" (full decode) otherwise. It never rejects
//! a line that [`decode`] + [`Rules::selects`] would select:
//!
//! 1. A line is selected only if it is valid JSON whose top-level object
//!    has one `eventid`, a string whose decoded value starts with
//!    `cowrie.login.` or `cowrie.session.`. In a JSON string a letter or a
//!    dot is written either literally or as a `\uXXXX` escape (`\"`, `\\`,
//!    `\n`... stand for other characters). So in a line without the two
//!    bytes `\u`, that key is written literally as `"eventid"`; if this byte
//!    string occurs only once in the line, that occurrence is the key (a
//!    nested or a duplicate key would be a second occurrence, and attacker
//!    text cannot make one: its quotes are escaped, `\"eventid\"`).
//! 2. Its value is read up to the next `"`; if no `\` stands before that
//!    quote, the bytes in between are the decoded value itself, and
//!    [`Rules::selects`] is asked about exactly them.
//!
//! Anything else — a `\u` anywhere, zero or two `"eventid"`, other spacing
//! than Cowrie's `:` or the socket output's `: `, a backslash in the value —
//! is sent to the full decoder. Lines that do not look well-formed also are,
//! so that the skip counters stay as they were ([`SkipReason`]): a line is
//! only rejected when it is printable ASCII (no byte ≥ 0x80, no control
//! character), starts with `{`, ends with `}`, and has exactly one
//! `"src_ip"` and at most one `"timestamp"`, each with a string value. What
//! the prefilter no longer counts is a line of that shape that is broken
//! elsewhere in its JSON syntax (a missing comma, an unbalanced bracket):
//! such a line, which cannot hold a selected event, now counts as read
//! (`lines_read`) instead of `not_json` (as does a valid line whose only
//! `"eventid"` is in a nested object, which Cowrie never writes, instead of
//! `missing_eventid`).

use serde::Deserialize;
use std::borrow::Cow;

use crate::filter::Rules;
use crate::stats::SkipReason;

/// The fields of one event that tjfwd needs, borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// e.g. `cowrie.login.failed`.
    pub eventid: Cow<'a, str>,
    /// The peer address as Cowrie wrote it (not yet validated).
    pub src_ip: Cow<'a, str>,
    /// Event time in ms since the epoch, when present and well-formed.
    pub timestamp_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    eventid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

/// Decodes one line (without its newline).
pub fn decode(line: &[u8]) -> Result<Event<'_>, SkipReason> {
    let text = std::str::from_utf8(line).map_err(|_| SkipReason::NotUtf8)?;
    let raw: Raw<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        // Valid JSON, wrong shape: a field of the wrong type, a duplicate
        // field, or not an object at all.
        serde_json::error::Category::Data => SkipReason::InvalidField,
        _ => SkipReason::NotJson,
    })?;
    let eventid = raw.eventid.ok_or(SkipReason::MissingEventid)?;
    let src_ip = raw.src_ip.ok_or(SkipReason::MissingSrcIp)?;
    let timestamp_ms = raw.timestamp.as_deref().and_then(parse_timestamp_ms);
    Ok(Event {
        eventid,
        src_ip,
        timestamp_ms,
    })
}

/// True when `line` certainly holds no event that `rules` select, so that
/// it need not be decoded; false when in doubt. See the module doc for why
/// this is exact for selection and almost exact for the skip counters.
pub fn cannot_select(line: &[u8], rules: &Rules) -> bool {
    if !rules.track_login && !rules.track_session {
        // Nothing is selected; the decoder still counts broken lines.
        return false;
    }
    if line.first() != Some(&b'{') || line.last() != Some(&b'}') {
        return false;
    }
    // The event id as written (steps 1 and 2 of the module doc). A selected
    // line, the most common kind, is let through after this one scan.
    let key = &KEYS[0];
    let Some(at) = key.find(line) else {
        return false;
    };
    let Some(eventid) = key.string_at(line, at) else {
        return false;
    };
    if eventid.contains(&b'\\') {
        return false;
    }
    let Ok(eventid) = std::str::from_utf8(eventid) else {
        return false;
    };
    if rules.selects(eventid) {
        return false;
    }
    // What was read is the event id if this is the only `"eventid"` and no
    // \u escape stands anywhere.
    if !key.only_at(line, at)
        || memchr::memchr_iter(b'\\', line).any(|i| line.get(i + 1) == Some(&b'u'))
    {
        return false;
    }
    // Only for the skip counters: what the decoder would count (bytes that
    // are not UTF-8, control characters; `src_ip` missing, not a string or
    // duplicated; `timestamp` not a string or duplicated) sends the line to it.
    printable_ascii(line)
        && matches!(KEYS[1].unique_string(line), Ok(Some(_)))
        && KEYS[2].unique_string(line).is_ok()
}

/// A quoted key, searched for with SIMD (memchr's memmem).
struct Key(memchr::memmem::Finder<'static>);

/// `"eventid"`, `"src_ip"`, `"timestamp"`.
static KEYS: std::sync::LazyLock<[Key; 3]> = std::sync::LazyLock::new(|| {
    [
        Key(memchr::memmem::Finder::new(b"\"eventid\"")),
        Key(memchr::memmem::Finder::new(b"\"src_ip\"")),
        Key(memchr::memmem::Finder::new(b"\"timestamp\"")),
    ]
});

impl Key {
    /// Where the key first occurs in `line`.
    fn find(&self, line: &[u8]) -> Option<usize> {
        self.0.find(line)
    }

    /// Whether the first occurrence, at `at`, is the only one: no other
    /// starts after it (overlapping it or not).
    fn only_at(&self, line: &[u8], at: usize) -> bool {
        self.0.find(&line[at + 1..]).is_none()
    }

    /// The string value of the occurrence at `at`: after `:` or `: `, the
    /// bytes from the opening quote to the next `"` (escapes not undone).
    fn string_at<'a>(&self, line: &'a [u8], at: usize) -> Option<&'a [u8]> {
        let rest = &line[at + self.0.needle().len()..];
        let value = rest
            .strip_prefix(b": \"")
            .or_else(|| rest.strip_prefix(b":\""))?;
        let end = memchr::memchr(b'"', value)?;
        Some(&value[..end])
    }

    /// `Ok(None)` when the key does not occur, `Ok(Some(raw))` when it
    /// occurs once with a string value, `Err(())` otherwise.
    fn unique_string<'a>(&self, line: &'a [u8]) -> Result<Option<&'a [u8]>, ()> {
        let Some(at) = self.find(line) else {
            return Ok(None);
        };
        match self.string_at(line, at) {
            Some(v) if self.only_at(line, at) => Ok(Some(v)),
            _ => Err(()),
        }
    }
}

/// Every byte in 0x20..=0x7f (printable ASCII and DEL). No early exit, so
/// that the compiler vectorizes it.
fn printable_ascii(b: &[u8]) -> bool {
    b.iter().fold(true, |ok, &c| ok & (0x20..0x80).contains(&c))
}

/// Parses Cowrie's timestamps: `2026-11-22T12:02:37.839685Z`, or with a
/// numeric offset `+0100` / `+01:00`. Returns ms since the Unix epoch, or
/// None for anything else (the caller then uses the time it read the line).
pub fn parse_timestamp_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            Some(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_s = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => {
                    let d = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
                    (d(h1)? * 10 + d(h2)?, d(m1)? * 10 + d(m2)?)
                }
                _ => return None,
            };
            let off = h * 3600 + m * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_real_cowrie_line() {
        let line = br#"{"eventid":"cowrie.login.failed","username":"root","password":"x\"y","message":"login attempt [root/x] failed","sensor":"s","uuid":"u","timestamp":"2026-11-22T12:02:37.839685Z","src_ip":"1.2.3.4","session":"a1"}"#;
        let e = decode(line).unwrap();
        assert_eq!(e.eventid, "cowrie.login.failed");
        assert_eq!(e.src_ip, "1.2.3.4");
        assert_eq!(e.timestamp_ms, Some(1_795_348_957_839));
    }

    #[test]
    fn socketlog_separators_are_fine() {
        let line = br#"{"eventid": "cowrie.login.success", "src_ip": "::ffff:5.6.7.8", "timestamp": "2026-11-22T12:02:37Z"}"#;
        let e = decode(line).unwrap();
        assert_eq!(e.src_ip, "::ffff:5.6.7.8");
        assert_eq!(e.timestamp_ms, Some(1_795_348_957_000));
    }

    #[test]
    fn bad_lines_get_a_reason() {
        let cases: &[(&[u8], SkipReason)] = &[
            (b"\xff\xfe{}", SkipReason::NotUtf8),
            (b"not json", SkipReason::NotJson),
            (b"{\"eventid\":\"cowrie.login.failed\"", SkipReason::NotJson),
            (b"", SkipReason::NotJson),
            (b"[1,2]", SkipReason::InvalidField),
            (
                b"{\"eventid\":5,\"src_ip\":\"1.2.3.4\"}",
                SkipReason::InvalidField,
            ),
            (
                b"{\"eventid\":\"x\",\"src_ip\":null}",
                SkipReason::MissingSrcIp,
            ),
            (b"{\"src_ip\":\"1.2.3.4\"}", SkipReason::MissingEventid),
            (
                b"{\"eventid\":\"cowrie.login.failed\"}",
                SkipReason::MissingSrcIp,
            ),
            (
                b"{\"eventid\":\"a\",\"eventid\":\"b\",\"src_ip\":\"1.2.3.4\"}",
                SkipReason::InvalidField,
            ),
            (
                b"{\"eventid\":\"a\x00\",\"src_ip\":\"1\"} ",
                SkipReason::NotJson,
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(decode(line).unwrap_err(), *reason, "{line:?}");
        }
    }

    #[test]
    fn escaped_fields_decode() {
        let e = decode(br#"{"eventid":"cowrie.login.\u0066ailed","src_ip":"1.2.3.4"}"#).unwrap();
        assert_eq!(e.eventid, "cowrie.login.failed");
        assert_eq!(e.timestamp_ms, None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_timestamp_ms("2026-11-22T13:02:37.839685+0100"),
            parse_timestamp_ms("2026-11-22T12:02:37.839685Z")
        );
        assert_eq!(
            parse_timestamp_ms("2026-11-22T11:02:37.839685-01:00"),
            parse_timestamp_ms("2026-11-22T12:02:37.839685Z")
        );
        assert_eq!(
            parse_timestamp_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T12:02:37",
            "2026-13-22T12:02:37Z",
            "2026-11-22T12:02:37.Z",
            "2026-11-22T12:02:37+01",
            "2026-11-22T12:02:37Zjunk",
            "1969-12-31T23:59:59Z",
            "2026-11-22T12:02:3xZ",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad}");
        }
    }

    fn login_rules() -> Rules {
        Rules {
            track_login: true,
            track_session: false,
            report_non_public: false,
            allowlist: vec![],
        }
    }

    /// What the daemon did before the prefilter: selected by the full decode.
    fn selected(line: &[u8], rules: &Rules) -> bool {
        decode(line).is_ok_and(|e| rules.selects(&e.eventid))
    }

    const CONNECT: &str = r#"{"session":"ccb09c63f749","protocol":"ssh","src_ip":"1.2.3.4","src_port":42078,"dst_ip":"10.0.0.1","dst_port":2222,"eventid":"cowrie.session.connect","sensor":"s","uuid":"u","timestamp":"2026-11-25T10:58:47.245969Z","message":"New connection: 1.2.3.4:42078 (10.0.0.1:2222) [session: ccb09c63f749]"}"#;
    const KEX: &str = r#"{"session":"c0","protocol":"ssh","src_ip":"1.2.3.4","src_port":1,"dst_ip":"10.0.0.1","dst_port":2222,"hassh":"4c94","hasshAlgorithms":"curve25519-sha256;aes128-ctr;hmac-sha2-256;none","kexAlgs":["curve25519-sha256","ext-info-c"],"keyAlgs":["ssh-ed25519"],"encCS":["aes128-ctr"],"macCS":["hmac-sha2-256"],"compCS":["none"],"langCS":[""],"eventid":"cowrie.client.kex","sensor":"s","uuid":"u","timestamp":"2026-11-25T10:58:49.734383Z","message":"SSH client hassh fingerprint: 4c94"}"#;
    const LOGIN: &str = r#"{"session":"c0","protocol":"ssh","src_ip":"1.2.3.4","src_port":1,"dst_ip":"10.0.0.1","dst_port":2222,"username":"root","password":"123456","eventid":"cowrie.login.failed","sensor":"s","uuid":"u","timestamp":"2026-11-25T10:58:49.737329Z","message":"login attempt [root/123456] failed"}"#;

    #[test]
    fn prefilter_skips_unselected_cowrie_lines_in_both_spacings() {
        let r = login_rules();
        for line in [CONNECT, KEX] {
            assert!(cannot_select(line.as_bytes(), &r), "{line}");
            // Cowrie's socket output: ", " and ": ".
            let spaced = line.replace("\",\"", "\", \"").replace("\":", "\": ");
            assert!(cannot_select(spaced.as_bytes(), &r), "{spaced}");
            assert!(decode(spaced.as_bytes()).is_ok());
        }
    }

    #[test]
    fn prefilter_never_skips_a_selected_line() {
        let mut r = login_rules();
        for line in [
            LOGIN.to_string(),
            LOGIN.replace("login.failed", "login.success"),
            LOGIN.replace("\",\"", "\", \"").replace("\":", "\": "),
        ] {
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
            assert!(selected(line.as_bytes(), &r));
        }
        assert!(cannot_select(CONNECT.as_bytes(), &r));
        r.track_session = true;
        assert!(!cannot_select(CONNECT.as_bytes(), &r));
        r.track_login = false;
        assert!(cannot_select(LOGIN.as_bytes(), &r));
        // Nothing tracked: nothing to skip for, the decoder sees every line.
        r.track_session = false;
        assert!(!cannot_select(CONNECT.as_bytes(), &r));
    }

    /// Attacker text that spells the fields, as Cowrie writes it (escaped):
    /// never taken for the real ones, either way.
    #[test]
    fn prefilter_is_not_fooled_by_attacker_text() {
        let r = login_rules();
        let tricks = [
            r#""eventid":"cowrie.login.failed""#,
            r#"","eventid":"cowrie.login.success","src_ip":"6.6.6.6"#,
            r#""eventid": "cowrie.login.failed", "src_ip": "6.6.6.6""#,
            "}\n{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"6.6.6.6\"}",
            r#"\u0063owrie.login.failed"#,
            "cowrie.login.failed",
        ];
        for t in tricks {
            let esc = serde_json::to_string(t).unwrap();
            let esc = &esc[1..esc.len() - 1];
            // In a command, a client version, a user name: still not selected,
            // and (except where a \u appears) skipped by the prefilter.
            for (field, line) in [
                ("input", CONNECT),
                ("version", CONNECT),
                ("username", CONNECT),
            ] {
                let line = line.replacen(
                    "\"eventid\"",
                    &format!("\"{field}\":\"{esc}\",\"eventid\""),
                    1,
                );
                assert!(decode(line.as_bytes()).is_ok(), "{line}");
                assert!(!selected(line.as_bytes(), &r), "{line}");
                let has_u = line.contains("\\u");
                assert_eq!(cannot_select(line.as_bytes(), &r), !has_u, "{line}");
            }
            // In the password of a login: still selected, never skipped.
            let line = LOGIN.replace("\"123456\"", &format!("\"{esc}\""));
            assert!(selected(line.as_bytes(), &r), "{line}");
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
            // An unselected event whose password names a selected one.
            let line = CONNECT.replacen(
                "\"eventid\"",
                &format!("\"password\":\"{esc}\",\"eventid\""),
                1,
            );
            assert!(!selected(line.as_bytes(), &r), "{line}");
        }
    }

    #[test]
    fn prefilter_is_in_doubt_about_escapes_duplicates_and_nesting() {
        let r = login_rules();
        for line in [
            // Escaped value or key: decoded, they are a selected event.
            CONNECT.replace("cowrie.session.connect", r"cowrie.\u006cogin.failed"),
            CONNECT.replace("\"eventid\"", r#""\u0065ventid""#),
            // A \u anywhere (here it is harmless): in doubt.
            CONNECT.replace("\"sensor\":\"s\"", r#""sensor":"\u0073""#),
            // Escapes other than \u in the value: in doubt.
            CONNECT.replace("cowrie.session.connect", r"cowrie.session.connect\/x"),
            // Two "eventid": duplicate (an error) or nested (not the real one).
            CONNECT.replacen("{", r#"{"eventid":"cowrie.command.input","#, 1),
            CONNECT.replacen("{", r#"{"x":{"eventid":"cowrie.command.input"},"#, 1),
            // Other spacing than Cowrie's.
            CONNECT.replace("\"eventid\":", "\"eventid\"  :"),
            CONNECT.replace("\"eventid\":", "\"eventid\":\t"),
        ] {
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
        }
        let selected_escaped =
            CONNECT.replace("cowrie.session.connect", r"cowrie.\u006cogin.failed");
        assert!(selected(selected_escaped.as_bytes(), &r));
    }

    /// Broken lines still reach the decoder, which counts them by reason.
    #[test]
    fn prefilter_leaves_broken_lines_to_the_decoder() {
        let r = login_rules();
        let cases: Vec<(Vec<u8>, SkipReason)> = vec![
            (CONNECT.as_bytes()[..200].to_vec(), SkipReason::NotJson),
            (
                CONNECT
                    .replace("ccb09c63f749\"", "ccb09c63f749\u{1}\"")
                    .into_bytes(),
                SkipReason::NotJson,
            ),
            (
                {
                    let mut b = CONNECT.as_bytes().to_vec();
                    b[20] = 0xff;
                    b
                },
                SkipReason::NotUtf8,
            ),
            (
                CONNECT.replace("\"src_ip\":\"1.2.3.4\",", "").into_bytes(),
                SkipReason::MissingSrcIp,
            ),
            (
                CONNECT
                    .replace("\"src_ip\":\"1.2.3.4\"", "\"src_ip\":1234")
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replace("\"src_ip\":\"1.2.3.4\"", "\"src_ip\":null")
                    .into_bytes(),
                SkipReason::MissingSrcIp,
            ),
            (
                CONNECT
                    .replacen("{", "{\"src_ip\":\"1.2.3.4\",", 1)
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replace(
                        "\"timestamp\":\"2026-11-25T10:58:47.245969Z\"",
                        "\"timestamp\":5",
                    )
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replacen("{", "{\"timestamp\":\"x\",", 1)
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replace("\"eventid\":\"cowrie.session.connect\",", "")
                    .into_bytes(),
                SkipReason::MissingEventid,
            ),
            (
                CONNECT
                    .replace("\"eventid\":\"cowrie.session.connect\"", "\"eventid\":7")
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
        ];
        for (line, reason) in cases {
            let shown = String::from_utf8_lossy(&line).into_owned();
            assert_eq!(decode(&line).unwrap_err(), reason, "{shown}");
            assert!(!cannot_select(&line, &r), "{shown}");
        }
        // Not Cowrie's shape (trailing space, CRLF): in doubt, though valid.
        for line in [
            format!("{CONNECT} "),
            format!("{CONNECT}\r"),
            format!(" {CONNECT}"),
        ] {
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
        }
        // The documented exception: broken JSON syntax elsewhere in a line
        // of the right shape is no longer counted as not_json.
        let broken = CONNECT.replace(",\"dst_ip\"", "\"dst_ip\"");
        assert_eq!(decode(broken.as_bytes()).unwrap_err(), SkipReason::NotJson);
        assert!(cannot_select(broken.as_bytes(), &r));
    }
}
