//! Property tests of the line decoder and the select/filter rules: no input
//! makes them panic, and attacker-controlled text — whatever it contains,
//! including strings that look like the fields tjfwd reads — never changes
//! what is read from a line.

use proptest::prelude::*;
use tjfwd::decode::decode;
use tjfwd::filter::Rules;

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
        let parsed: std::net::IpAddr = ip.parse().unwrap();
        let normalized = tjfwd::filter::normalize(parsed);
        prop_assert_eq!(r.address(&e.src_ip).is_ok(), tjfwd::filter::is_public(normalized));
    }
}
