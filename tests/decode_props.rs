//! Property tests of the line decoder, its prefilter and the select/filter
//! rules: no input makes them panic; attacker-controlled text — whatever it
//! contains, including strings that look like the fields tjfwd reads —
//! never changes what is read from a line; the prefilter never skips a
//! line the decoder would select, nor one it would count as broken other
//! than by its JSON syntax (see `tjfwd::decode`'s module doc); and the
//! decoder's fast path answers exactly as serde_json does, or defers.

#[path = "../benches/support/cowrie_gen.rs"]
mod cowrie_gen;
mod support;

use proptest::prelude::*;
use support::props::proptest_config;
use tjfwd::decode::{cannot_select, decode, decode_fast, decode_fast_general, decode_serde};
use tjfwd::filter::Rules;
use tjfwd::pipeline::select_lines;
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
    /// `"x":{"key":"value"}`: a nested object, or `"x":[{"key":"value"}]`
    /// in a list.
    Nested {
        key: String,
        value: String,
        in_list: bool,
    },
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
        // Keys that end with a field's name after an escaped quote.
        Just("x\"eventid".to_string()),
        Just("x\"src_ip".to_string()),
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
        1 => (key.clone(), value.clone(), any::<bool>())
            .prop_map(|(key, value, in_list)| Member::Nested { key, value, in_list }),
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
                    Member::Nested {
                        key,
                        value,
                        in_list,
                    } => {
                        let (open, close) = if *in_list { ("[", "]") } else { ("", "") };
                        format!(
                            "\"x{i}\"{colon}{open}{{{}{colon}{}}}{close}",
                            json_string(key, false, 0),
                            json_string(value, false, 0)
                        )
                    }
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
    #![proptest_config(proptest_config(2000))]

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

/// Regression (issue 15): the line `prefilter_never_skips_what_decode_would_select`
/// once shrank to. Its only `"eventid"` is in a nested object (the
/// top-level key is mangled to `"eve tid"`): the decoder counts it as
/// `missing_eventid`, and the prefilter skipped it as unselectable. Its
/// siblings: the key in an object in a list, or ending another key after an
/// escaped quote; the same of `"src_ip"` (`missing_src_ip`).
#[test]
fn regression_prefilter_skipped_a_nested_eventid_counted_as_missing() {
    let lines = [
        r#"{"src_ip": "::ffff:0.0.100.10", "x0": {"eventid": "cowrie.session.file_download.failed"}, "eve tid": "cowrie.login.failed", "password": 1, "timestamp": "2026-11-22T12:02:37.839685Z", "password": "cowrie.login.failed"}"#,
        r#"{"src_ip":"1.2.3.4","x0":[{"eventid":"cowrie.session.connect"}],"timestamp":"2026-11-22T12:02:37.839685Z"}"#,
        r#"{"src_ip":"1.2.3.4","x\"eventid":"cowrie.session.connect"}"#,
        r#"{"eventid":"cowrie.session.connect","x0":{"src_ip":"1.2.3.4"}}"#,
        r#"{"eventid":"cowrie.session.connect","x\"src_ip":"1.2.3.4"}"#,
    ];
    for line in lines {
        for r in all_rules() {
            prefilter_is_sound(line.as_bytes(), &r).unwrap();
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

/// `decode` answers as serde_json alone (`decode_serde`) does; the fast
/// path, in both of its modes, answers the same or not at all; and on a
/// line without a backslash its two modes agree.
fn same_as_serde(line: &[u8]) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(line).into_owned();
    let want = decode_serde(line);
    prop_assert_eq!(&decode(line), &want, "decode: {}", shown);
    let fast = decode_fast(line);
    let general = decode_fast_general(line);
    for e in [&fast, &general].into_iter().flatten() {
        prop_assert_eq!(Ok(e), want.as_ref(), "fast path: {}", shown);
    }
    if !line.contains(&b'\\') {
        prop_assert_eq!(&fast, &general, "plain and general modes: {}", shown);
    }
    Ok(())
}

/// Generated Cowrie lines (every event kind, attacker text naming the
/// fields, `\x` and `\u` escapes), from three seeds.
fn cowrie_lines() -> &'static [Vec<u8>] {
    static LINES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        [3, 17, 29]
            .into_iter()
            .flat_map(|seed| {
                let data = cowrie_gen::lines(4_000, 300, seed);
                data.strip_suffix(b"\n")
                    .unwrap()
                    .split(|&b| b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

/// A byte to put in a line: mostly JSON's own punctuation, digits, the
/// letters of literals and exponents, spaces; sometimes anything.
fn json_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => proptest::sample::select(b"\"\\{}[],: 0123456789-+.eEtrufalsn/bu".to_vec()),
        1 => any::<u8>(),
    ]
}

/// A change to a line: a byte replaced, inserted or removed (positions
/// taken modulo the length).
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), json_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), json_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn mutate(line: &mut Vec<u8>, m: &Mutation) {
    match *m {
        Mutation::Replace(i, b) if !line.is_empty() => {
            let i = i % line.len();
            line[i] = b;
        }
        Mutation::Insert(i, b) => line.insert(i % (line.len() + 1), b),
        Mutation::Delete(i) if !line.is_empty() => {
            line.remove(i % line.len());
        }
        _ => {}
    }
}

/// Whitespace between tokens: mostly none or spaces (the fast path's
/// subset), sometimes the other kinds JSON allows.
fn ws() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["", "", "", " ", " ", "  ", "\t", "\n", "\r\n"])
}

/// A JSON number in any of its shapes, and some that are not numbers.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "-?(0|[1-9][0-9]{0,6})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
        1 => proptest::sample::select(vec![
            "-", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "1E-", "--1", "0x1f", "1.5.3",
            "NaN", "Infinity", "-0", "1e999999", "00",
        ])
        .prop_map(str::to_string),
    ]
}

/// The body of a JSON string (between its quotes): printable text, the
/// escapes serde_json accepts (\u with or without surrogates), and some
/// it does not.
fn string_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        24 => "[ !#-\\[\\]-~]{1,12}",
        8 => proptest::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\\\\\\"",
        ]).prop_map(str::to_string),
        1 => proptest::sample::select(vec![
            "\\u0041", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\udc00", "\\u12", "\\uzzzz",
            "\\x41", "\\a", "\\'", "\\ ", "\t", "\u{7f}", "\u{e9}",
        ]).prop_map(str::to_string),
        4 => proptest::sample::select(vec![
            "eventid", "src_ip", "timestamp", "\\\",\\\"eventid\\\":\\\"cowrie.login.success",
        ]).prop_map(str::to_string),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|v| v.concat())
}

/// Any JSON value as text, nested up to a few levels, with whitespace of
/// every kind between its tokens.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => string_body().prop_map(|s| format!("\"{s}\"")),
        2 => number_text(),
        1 => proptest::sample::select(vec!["true", "false", "null", "nul", "tru"]).prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (
                proptest::collection::vec((inner.clone(), ws(), ws()), 0..4),
                ws()
            )
                .prop_map(|(items, end)| {
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|(v, a, b)| format!("{a}{v}{b}"))
                        .collect();
                    format!("[{}{end}]", items.join(","))
                }),
            // A broken container now and then: a trailing or doubled comma,
            // a missing one, a bracket left open or the wrong one.
            (
                inner.clone(),
                proptest::sample::select(vec![
                    "[{v},]",
                    "[,{v}]",
                    "[{v},,{v}]",
                    "[{v} {v}]",
                    "[{v}",
                    "[{v}}",
                    "{{\"k\":{v},}}",
                    "{{\"k\" {v}}}",
                    "{{\"k\":{v}]",
                    "{{{v}}}",
                    "{{\"k\":{v},\"k\"}}",
                    "[{v}]]",
                ])
            )
                .prop_map(|(v, shape)| shape
                    .replace("{v}", &v)
                    .replace("{{", "{")
                    .replace("}}", "}")),
            (
                proptest::collection::vec((string_body(), inner, ws(), ws()), 0..4),
                ws()
            )
                .prop_map(|(members, end)| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v, a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}"))
                        .collect();
                    format!("{{{}{end}}}", members.join(","))
                }),
        ]
    })
}

/// A top-level member: one of the three fields (a plain string, an
/// escaped one, or another kind of value) or any other key with any value.
fn top_member() -> impl Strategy<Value = String> {
    let field = proptest::sample::select(vec!["eventid", "src_ip", "timestamp"]);
    let field_value = prop_oneof![
        6 => proptest::sample::select(vec![
            "\"cowrie.login.failed\"", "\"cowrie.session.connect\"", "\"1.2.3.4\"",
            "\"::ffff:5.6.7.8\"", "\"2026-11-22T12:02:37.839685Z\"", "\"2026-11-22T13:02:37+0100\"",
            "\"\"", "\"cowrie.login.\\u0066ailed\"", "\"1.2.3.4\\n\"", "\"x\\\"y\"",
        ]).prop_map(str::to_string),
        1 => json_value(),
    ];
    prop_oneof![
        2 => (field, field_value, ws(), ws()).prop_map(|(k, v, a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}")),
        3 => (string_body(), json_value(), ws(), ws()).prop_map(|(k, v, a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}")),
    ]
}

/// An object line of random members, with the three fields usually there
/// (and sometimes twice), whitespace around it, sometimes something after.
fn random_object() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(top_member(), 0..8),
        any::<bool>(),
        ws(),
        ws(),
        prop_oneof![8 => Just(""), 1 => Just("x"), 1 => Just("}"), 1 => Just(",")],
    )
        .prop_map(|(mut members, real, before, after, tail)| {
            if real {
                members.insert(0, "\"eventid\":\"cowrie.login.success\"".into());
                let at = members.len() / 2;
                members.insert(at, "\"src_ip\":\"1.2.3.4\"".into());
            }
            format!("{before}{{{}}}{after}{tail}", members.join(",")).into_bytes()
        })
}

/// A generated Cowrie line with one more member after its `{`: any key,
/// any value (numbers of every shape, nested values, broken ones now and
/// then), with or without spaces.
fn cowrie_line_with_a_member() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<proptest::sample::Index>(),
        string_body(),
        json_value(),
        ws(),
        ws(),
    )
        .prop_map(|(pick, key, value, a, b)| {
            let lines = cowrie_lines();
            let line = &lines[pick.index(lines.len())];
            let mut out = format!("{{{a}\"{key}\"{b}:{a}{value}{b},").into_bytes();
            out.extend_from_slice(&line[1..]);
            out
        })
}

proptest! {
    #![proptest_config(proptest_config(3000))]

    #[test]
    fn fast_path_answers_as_serde_with_any_extra_member(line in cowrie_line_with_a_member()) {
        same_as_serde(&line)?;
    }

    /// Every shape of number where Cowrie writes one (`src_port`).
    #[test]
    fn fast_path_answers_as_serde_on_any_number(
        pick in any::<proptest::sample::Index>(),
        number in number_text(),
        (a, b) in (ws(), ws()),
    ) {
        let lines = cowrie_lines();
        let line = String::from_utf8(lines[pick.index(lines.len())].clone()).unwrap();
        let at = line.find("\"src_port\":").unwrap() + "\"src_port\":".len();
        let end = at + line[at..].find(',').unwrap();
        let line = format!("{}{a}{number}{b}{}", &line[..at], &line[end..]);
        same_as_serde(line.as_bytes())?;
    }

    #[test]
    fn fast_path_answers_as_serde_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        same_as_serde(&bytes)?;
    }

    #[test]
    fn fast_path_answers_as_serde_on_json_bytes(bytes in proptest::collection::vec(json_byte(), 0..200)) {
        same_as_serde(&bytes)?;
        let mut line = b"{\"eventid\":\"e\",\"src_ip\":\"1\",\"x\":".to_vec();
        line.extend_from_slice(&bytes);
        same_as_serde(&line)?;
    }

    /// Generated Cowrie lines, as they are and with a few bytes changed,
    /// inserted or removed (mostly quotes, backslashes, brackets, commas,
    /// digits), and cut short.
    #[test]
    fn fast_path_answers_as_serde_on_mutated_cowrie_lines(
        pick in any::<proptest::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 0..4),
        cut in prop_oneof![6 => Just(None), 1 => any::<usize>().prop_map(Some)],
    ) {
        let lines = cowrie_lines();
        let mut line = lines[pick.index(lines.len())].clone();
        same_as_serde(&line)?;
        for m in &mutations {
            mutate(&mut line, m);
            same_as_serde(&line)?;
        }
        if let Some(c) = cut {
            line.truncate(c % (line.len() + 1));
            same_as_serde(&line)?;
        }
    }

    /// Random objects: any keys and values (nested, numbers of every
    /// shape, escapes valid and not, literals), the three fields as strings
    /// or not, duplicated or missing, any whitespace; then mutated.
    #[test]
    fn fast_path_answers_as_serde_on_random_objects(
        line in random_object(),
        mutations in proptest::collection::vec(mutation(), 0..3),
    ) {
        let mut line = line;
        same_as_serde(&line)?;
        for m in &mutations {
            mutate(&mut line, m);
            same_as_serde(&line)?;
        }
    }

    /// The objects of the prefilter's tests (attacker text, escaped keys,
    /// nesting, lists, numbers for strings, a flipped byte, a cut).
    #[test]
    fn fast_path_answers_as_serde_on_cowrie_like_objects(line in object_line()) {
        same_as_serde(&line)?;
    }
}

/// The fast path is taken: on generated Cowrie logs, for all login lines
/// but those with a `\u` escape (none: user names and passwords are
/// escaped byte by byte) and for nearly every line, so that a fast path
/// that always deferred would fail here.
#[test]
fn fast_path_is_taken_on_generated_cowrie_lines() {
    let lines = cowrie_lines();
    let is_login = |l: &[u8]| memchr::memmem::find(l, b"\"eventid\":\"cowrie.login.").is_some();
    let login: Vec<&Vec<u8>> = lines.iter().filter(|l| is_login(l)).collect();
    let fast_login = login.iter().filter(|l| decode_fast(l).is_some()).count();
    assert!(login.len() > 5_000, "{}", login.len());
    assert!(
        fast_login * 1000 >= login.len() * 999,
        "{fast_login} of {} login lines",
        login.len()
    );
    let fast_all = lines.iter().filter(|l| decode_fast(l).is_some()).count();
    assert!(
        fast_all * 100 >= lines.len() * 99,
        "{fast_all} of {}",
        lines.len()
    );
    // Both of its modes, and the lines with escapes (`\x` in passwords,
    // `\"` in commands) that the general one reads.
    let escaped = lines
        .iter()
        .filter(|l| l.contains(&b'\\') && decode_fast(l).is_some())
        .count();
    assert!(escaped > 0);
    for l in lines {
        same_as_serde(l).unwrap();
    }
}
