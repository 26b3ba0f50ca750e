//! Property tests of the line decoder, its prefilter and the select/filter
//! rules: no input makes them panic; attacker-controlled text — whatever it
//! contains, including strings that look like the fields tjfwd reads —
//! never changes what is read from a line; and the prefilter never skips a
//! line the decoder would select, nor one it would count as broken other
//! than by its JSON syntax (see `tjfwd::decode`'s module doc).

#[path = "../benches/support/cowrie_gen.rs"]
mod cowrie_gen;

use proptest::prelude::*;
use tjfwd::daemon::select_lines;
use tjfwd::decode::{cannot_select, decode};
use tjfwd::filter::Rules;
use tjfwd::stats::{SkipReason, Stats};

fn rules() -> Rules {
    Rules {
        track_login: true,
        track_session: false,
        report_non_public: false,
        allowlist: vec![],
    }
}

/// Text an attacker might send: anything, weighted towards JSON-looking
/// fragments that name the fields tjfwd reads.
fn attacker_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(r#""eventid":"cowrie.login.success""#.to_string()),
        Just(r#"","src_ip":"6.6.6.6"#.to_string()),
        Just("\"}\n{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"6.6.6.6\"}".to_string()),
        "[ -~]{0,80}",
        Just("\u{0}\u{1b}[2J\\x00\u{feff}".to_string()),
    ]
}

fn eventid() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cowrie.login.failed".to_string()),
        Just("cowrie.login.success".to_string()),
        Just("cowrie.session.connect".to_string()),
        Just("cowrie.command.input".to_string()),
        Just("cowrie.client.version".to_string()),
        Just("cowrie.session.file_download.failed".to_string()),
    ]
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
        any::<[u8; 4]>().prop_map(|o| format!("::ffff:{}", std::net::Ipv4Addr::from(o))),
    ]
}

/// Every combination of the two tracks.
fn all_rules() -> Vec<Rules> {
    [(true, false), (false, true), (true, true), (false, false)]
        .into_iter()
        .map(|(track_login, track_session)| Rules {
            track_login,
            track_session,
            report_non_public: false,
            allowlist: vec![],
        })
        .collect()
}

/// What the prefilter promises: a line it skips is not selected by the
/// full decode, and the decoder would have counted it as nothing worse than
/// broken JSON syntax (`not_json`), if at all.
fn prefilter_is_sound(line: &[u8], r: &Rules) -> Result<(), TestCaseError> {
    if cannot_select(line, r) {
        let shown = String::from_utf8_lossy(line).into_owned();
        match decode(line) {
            Ok(e) => prop_assert!(!r.selects(&e.eventid), "skipped a selected line: {}", shown),
            Err(reason) => prop_assert_eq!(
                reason,
                SkipReason::NotJson,
                "skipped a line counted as {}: {}",
                reason,
                shown
            ),
        }
    }
    Ok(())
}

/// A JSON string token for `s`: plain (as serde_json writes it), or with
/// some characters as \uXXXX escapes (valid JSON that Cowrie never writes).
fn json_string(s: &str, escape_some: bool, salt: usize) -> String {
    if !escape_some {
        return serde_json::to_string(s).unwrap();
    }
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if (i + salt).is_multiple_of(3) && c.is_ascii_alphanumeric() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            let one = serde_json::to_string(&c.to_string()).unwrap();
            out.push_str(&one[1..one.len() - 1]);
        }
    }
    out.push('"');
    out
}

/// A top-level member of a Cowrie-like object, possibly odd.
#[derive(Debug, Clone)]
enum Member {
    /// `"key":"value"`, key and value possibly \u-escaped.
    Str {
        key: String,
        value: String,
        esc_key: bool,
        esc_value: bool,
    },
    /// `"key":123` (a number where a string is expected, for known keys).
    Num { key: String },
    /// `"x":{"key":"value"}`: a nested object.
    Nested { key: String, value: String },
    /// `"key":["a","b"]`.
    List { key: String, items: Vec<String> },
}

fn member() -> impl Strategy<Value = Member> {
    let key = prop_oneof![
        Just("eventid".to_string()),
        Just("src_ip".to_string()),
        Just("timestamp".to_string()),
        Just("password".to_string()),
        Just("input".to_string()),
        Just("kexAlgs".to_string()),
        "[a-z_]{1,8}",
    ];
    let value = prop_oneof![
        eventid(),
        address(),
        Just("2026-11-22T12:02:37.839685Z".to_string()),
        attacker_text(),
    ];
    prop_oneof![
        6 => (key.clone(), value.clone(), any::<bool>(), any::<bool>()).prop_map(
            |(key, value, k, v)| Member::Str { key, value, esc_key: k && v, esc_value: v && !k }
        ),
        1 => key.clone().prop_map(|key| Member::Num { key }),
        1 => (key.clone(), value.clone()).prop_map(|(key, value)| Member::Nested { key, value }),
        1 => (key, proptest::collection::vec(value, 0..4)).prop_map(|(key, items)| Member::List { key, items }),
    ]
}

/// An object line: Cowrie's fields in any order, with extra, duplicated,
/// nested, escaped or mistyped members, compact or spaced, sometimes
/// mutated by one byte or cut short.
fn object_line() -> impl Strategy<Value = Vec<u8>> {
    (
        eventid(),
        address(),
        proptest::collection::vec(member(), 0..6),
        0usize..8,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![4 => Just(None), 1 => (0usize..400, any::<u8>()).prop_map(Some)],
        prop_oneof![6 => Just(None), 1 => (0usize..400).prop_map(Some)],
    )
        .prop_map(|(eid, ip, extra, at, spaced, esc_eid, flip, cut)| {
            let (colon, comma) = if spaced { (": ", ", ") } else { (":", ",") };
            let mut members: Vec<String> = extra
                .iter()
                .enumerate()
                .map(|(i, m)| match m {
                    Member::Str {
                        key,
                        value,
                        esc_key,
                        esc_value,
                    } => format!(
                        "{}{colon}{}",
                        json_string(key, *esc_key, i),
                        json_string(value, *esc_value, i)
                    ),
                    Member::Num { key } => format!("{}{colon}{i}", json_string(key, false, 0)),
                    Member::Nested { key, value } => format!(
                        "\"x{i}\"{colon}{{{}{colon}{}}}",
                        json_string(key, false, 0),
                        json_string(value, false, 0)
                    ),
                    Member::List { key, items } => format!(
                        "{}{colon}[{}]",
                        json_string(key, false, 0),
                        items
                            .iter()
                            .map(|v| json_string(v, false, 0))
                            .collect::<Vec<_>>()
                            .join(comma)
                    ),
                })
                .collect();
            let real = [
                format!("\"src_ip\"{colon}{}", json_string(&ip, false, 0)),
                format!("\"eventid\"{colon}{}", json_string(&eid, esc_eid, 1)),
                format!("\"timestamp\"{colon}\"2026-11-22T12:02:37.839685Z\""),
            ];
            for (j, m) in real.into_iter().enumerate() {
                let pos = (at + j * 3) % (members.len() + 1);
                members.insert(pos, m);
            }
            let mut line = format!("{{{}}}", members.join(comma)).into_bytes();
            if let Some((i, b)) = flip {
                if i < line.len() {
                    line[i] = b;
                }
            }
            if let Some(c) = cut {
                line.truncate(c);
            }
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_real_lines(
        cut in 0usize..400,
        flip in 0usize..400,
        byte in any::<u8>(),
    ) {
        let mut line = br#"{"session":"a1","protocol":"ssh","src_ip":"1.2.3.4","src_port":5,"username":"root","password":"x","eventid":"cowrie.login.failed","sensor":"s","uuid":"u","timestamp":"2026-11-22T12:02:37.839685Z","message":"m"}"#.to_vec();
        if flip < line.len() {
            line[flip] = byte;
        }
        line.truncate(cut.min(line.len()));
        let _ = decode(&line);
        for r in all_rules() {
            prefilter_is_sound(&line, &r)?;
        }
    }

    /// Whatever the attacker-controlled fields hold, and wherever they stand
    /// in the object, the decoded eventid, src_ip and selection are the real ones.
    #[test]
    fn attacker_text_never_changes_what_is_read(
        eid in eventid(),
        ip in address(),
        username in attacker_text(),
        password in attacker_text(),
        input in attacker_text(),
        version in attacker_text(),
        before in any::<bool>(),
        spaced in any::<bool>(),
    ) {
        let mut obj = serde_json::Map::new();
        let attacker = [("username", &username), ("password", &password), ("input", &input), ("version", &version)];
        if before {
            for (k, v) in attacker { obj.insert(k.into(), v.clone().into()); }
        }
        obj.insert("src_ip".into(), ip.clone().into());
        obj.insert("eventid".into(), eid.clone().into());
        obj.insert("timestamp".into(), "2026-11-22T12:02:37.839685Z".into());
        if !before {
            for (k, v) in attacker { obj.insert(k.into(), v.clone().into()); }
        }
        let value = serde_json::Value::Object(obj);
        // Cowrie's file log is compact; its socket output uses ", " and ": ".
        let line = if spaced {
            serde_json::to_string_pretty(&value).unwrap().replace('\n', "")
        } else {
            serde_json::to_string(&value).unwrap()
        };
        prop_assert!(!line.contains('\n'));
        let e = decode(line.as_bytes()).unwrap();
        prop_assert_eq!(&*e.eventid, eid.as_str());
        prop_assert_eq!(&*e.src_ip, ip.as_str());
        prop_assert_eq!(e.timestamp_ms, Some(1_795_348_957_839));
        let r = rules();
        prop_assert_eq!(r.selects(&e.eventid), eid.starts_with("cowrie.login."));
        // The prefilter skips none of the selected lines, and every skipped
        // one decodes (nothing the skip counters would have seen).
        if eid.starts_with("cowrie.login.") {
            prop_assert!(!cannot_select(line.as_bytes(), &r));
        }
        for r in all_rules() {
            prefilter_is_sound(line.as_bytes(), &r)?;
        }
        let parsed: std::net::IpAddr = ip.parse().unwrap();
        let normalized = tjfwd::filter::normalize(parsed);
        prop_assert_eq!(r.address(&e.src_ip).is_ok(), tjfwd::filter::is_public(normalized));
    }

    /// Whatever the object holds (attacker text, escapes, duplicates,
    /// nesting, odd types, a flipped byte, a cut), a line the prefilter
    /// skips is one the decoder would not select, nor count as anything
    /// but broken syntax.
    #[test]
    fn prefilter_never_skips_what_decode_would_select(line in object_line()) {
        for r in all_rules() {
            prefilter_is_sound(&line, &r)?;
        }
    }

    #[test]
    fn prefilter_is_sound_on_arbitrary_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        eid in eventid(),
    ) {
        // Braces and a real-looking eventid, so that the prefilter gets far.
        let mut line = b"{\"eventid\":\"".to_vec();
        line.extend_from_slice(eid.as_bytes());
        line.extend_from_slice(b"\",");
        line.extend_from_slice(&body);
        line.push(b'}');
        for r in all_rules() {
            prefilter_is_sound(&line, &r)?;
        }
    }
}

/// On Cowrie-shaped data (the benchmark generator's: every event kind, the
/// kex lines, attacker text naming the fields, \u escapes), `select_lines`
/// with its prefilter queues exactly what the decoder alone selects, and
/// counts the same.
#[test]
fn prefilter_changes_nothing_on_generated_cowrie_logs() {
    let data = cowrie_gen::lines(10_000, 500, 11);
    let lines: Vec<&[u8]> = data
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    for r in all_rules() {
        let stats = Stats::default();
        let mut got = Vec::new();
        select_lines(lines.iter().copied(), &r, &stats, u64::MAX, &mut got);
        let mut want = Vec::new();
        let (mut selected, mut skipped) = (0u64, [0u64; SkipReason::ALL.len()]);
        for line in &lines {
            match decode(line) {
                Ok(e) if r.selects(&e.eventid) => {
                    selected += 1;
                    match r.address(&e.src_ip) {
                        Ok(addr) => want.push((addr, e.timestamp_ms.unwrap())),
                        Err(reason) => {
                            skipped[SkipReason::ALL.iter().position(|x| *x == reason).unwrap()] += 1
                        }
                    }
                }
                Ok(_) => {}
                Err(reason) => {
                    skipped[SkipReason::ALL.iter().position(|x| *x == reason).unwrap()] += 1
                }
            }
        }
        let got: Vec<_> = got.iter().map(|s| (s.addr, s.seen_ms)).collect();
        assert_eq!(got, want, "{r:?}");
        assert_eq!(Stats::get(&stats.lines_read), lines.len() as u64);
        assert_eq!(Stats::get(&stats.events_selected), selected, "{r:?}");
        for (i, reason) in SkipReason::ALL.iter().enumerate() {
            assert_eq!(stats.skipped(*reason), skipped[i], "{reason} {r:?}");
        }
        if r.track_login {
            assert!(selected > 2_500, "{selected}");
        }
    }
    // The generator's tricky lines are there, and some go the slow way.
    assert!(lines.iter().any(|l| l.windows(4).any(|w| w == b"\\\"ev")));
    let login = &all_rules()[0];
    let skipped = lines.iter().filter(|l| cannot_select(l, login)).count();
    assert!(skipped > 2_500 && skipped < lines.len(), "{skipped}");
}

/// The generator's own public-address test agrees with the filter's, so
/// its "U unique addresses" are U reportable ones.
#[test]
fn generator_addresses_are_public() {
    let mut rng = cowrie_gen::Rng::new(5);
    for ip in cowrie_gen::address_pool(&mut rng, 20_000) {
        assert!(tjfwd::filter::is_public(ip), "{ip}");
    }
}
