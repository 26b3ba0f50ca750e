//! The tests of the report keys of `[targets.threatjammer]`
//! (`crate::targets::threatjammer::config`), through the whole loader:
//! messages name the file and the key.

use crate::config::tests::{
    dry, invalid_key, opts, parse_ok, refused, tj, write_file, FILE, TJ, TOKEN,
};
use crate::config::{build, Config, ConfigError, Source, CREDENTIAL_NAME, TOKEN_ENV};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn tags_as_string_and_as_list() {
    let c = parse_ok("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = \" COWRIE ,LOGIN,SSH2 \"");
    assert_eq!(tj(&c).tags, ["COWRIE", "LOGIN", "SSH2"]);
    let c = parse_ok("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = [\"COWRIE\", \" LOGIN \"]");
    assert_eq!(tj(&c).tags, ["COWRIE", "LOGIN"]);
    let c = parse_ok(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = []",
    );
    assert!(tj(&c).tags.is_empty());
    let c = parse_ok("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = \"COWRIE,COWRIE\"");
    assert_eq!(tj(&c).tags, ["COWRIE"]);
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn refuses_bad_tags() {
    let msg = refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = \"COWRIE,login\"",
        "[targets.threatjammer] tags",
    );
    assert!(msg.contains("\"LOGIN\""), "{msg}");
    refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = [\"COW-RIE\"]",
        "[targets.threatjammer] tags",
    );
    refused("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = \"COWRIE,\"", "[targets.threatjammer] tags");
    refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = [1]",
        "[targets.threatjammer] tags",
    );
    refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ntags = 5",
        "[targets.threatjammer] tags",
    );
}

#[test]
fn refuses_bad_category() {
    let msg = refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ncategory = \"abuse\"",
        "[targets.threatjammer] category",
    );
    assert!(msg.contains("\"ABUSE\""), "{msg}");
    refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ncategory = \"\"",
        "[targets.threatjammer] category",
    );
    refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\ncategory = \"A B\"",
        "[targets.threatjammer] category",
    );
}

#[test]
fn refuses_malformed_url() {
    let msg = refused(
        "[targets.threatjammer]\napi_url = \"not a url\"",
        "[targets.threatjammer] api_url",
    );
    assert!(msg.contains("https://"), "{msg}");
    refused(
        "[targets.threatjammer]\napi_url = \"https://\"",
        "[targets.threatjammer] api_url",
    );
    refused(
        "[targets.threatjammer]\napi_url = \"ftp://example.com/\"",
        "[targets.threatjammer] api_url",
    );
    refused(
        "[targets.threatjammer]\napi_url = \"https://user:pw@example.com/\"",
        "[targets.threatjammer] api_url",
    );
}

#[test]
fn refuses_http_to_non_loopback() {
    let msg = refused(
        "[targets.threatjammer]\napi_url = \"http://report.example.net/v1/ip\"",
        "[targets.threatjammer] api_url",
    );
    assert!(msg.contains("https"), "{msg}");
    assert!(msg.contains("allow_insecure_http"), "{msg}");
    refused(
        "[targets.threatjammer]\napi_url = \"http://10.0.0.1:8080/v1/ip\"",
        "[targets.threatjammer] api_url",
    );
}

#[test]
fn accepts_http_to_loopback() {
    for url in [
        "http://127.0.0.1:8080/v1/ip",
        "http://127.3.2.1/v1/ip",
        "http://[::1]:9000/v1/ip",
        "http://localhost:8080/v1/ip",
        "http://LOCALHOST/v1/ip",
    ] {
        let c = parse_ok(&format!("[targets.threatjammer]\napi_url = \"{url}\""));
        assert_eq!(tj(&c).api_url.scheme(), "http");
        assert!(c.warnings.is_empty(), "{url}: {:?}", c.warnings);
    }
}

#[test]
fn allow_insecure_http_accepts_http_with_a_warning() {
    let c = parse_ok(
        "[targets.threatjammer]\napi_url = \"http://10.0.0.1/v1/ip\"\nallow_insecure_http = true",
    );
    assert!(tj(&c).allow_insecure_http);
    assert_eq!(tj(&c).api_url.as_str(), "http://10.0.0.1/v1/ip");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("unencrypted"));
}

#[test]
fn refuses_ttl_zero_or_negative() {
    let msg = refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nttl = 0",
        "[targets.threatjammer] ttl",
    );
    assert!(msg.contains("greater than 0"), "{msg}");
    refused(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nttl = -5",
        "[targets.threatjammer] ttl",
    );
}

#[test]
fn refuses_missing_token() {
    let err = Config::from_toml_str(TJ, Some(Path::new(FILE)), &opts(), None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(FILE), "{msg}");
    assert!(msg.contains("bearer_token_file"), "{msg}");
    assert!(msg.contains(TOKEN_ENV), "{msg}");
    assert!(msg.contains("--dry-run"), "{msg}");
    assert_eq!(invalid_key(&err), "[targets.threatjammer] bearer_token");
    // An empty environment variable counts as unset.
    let err = Config::from_toml_str(TJ, Some(Path::new(FILE)), &opts(), Some("  ".into()));
    assert!(err.is_err());
}

#[test]
fn missing_token_is_fine_in_dry_run() {
    let c = Config::from_toml_str(TJ, Some(Path::new(FILE)), &dry(), None).unwrap();
    assert!(tj(&c).token.is_none());
}

#[test]
fn refuses_empty_or_malformed_inline_token() {
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"  \"\n";
    let err = Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
    assert_eq!(invalid_key(&err), "[targets.threatjammer] bearer_token");
    assert!(err.to_string().starts_with(FILE));
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"two words\"\n";
    let err = Config::from_toml_str(text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
    assert!(!err.to_string().contains("two words"), "{err}");
}

#[test]
fn refuses_both_token_keys() {
    let text = format!(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN}\"\nbearer_token_file = \"/etc/tjfwd/token\"\n"
    );
    let err = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(FILE), "{msg}");
    assert!(msg.contains("bearer_token_file"), "{msg}");
    assert!(msg.contains("both"), "{msg}");
    assert!(!msg.contains(TOKEN), "{msg}");
}

#[test]
fn token_from_file_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", &format!("\n  {TOKEN}\n\n"), 0o600);
    let config = dir.path().join("tjfwd.toml");
    let text = "state_dir = \"state\"\n[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"token\"\n\
                [input]\ncowrie_json = \"log/cowrie.json\"\n";
    let c = Config::from_toml_str(text, Some(&config), &opts(), Some("from-env".into())).unwrap();
    assert_eq!(tj(&c).token.as_ref().unwrap().expose(), TOKEN);
    assert_eq!(c.state_dir, dir.path().join("state"));
    assert_eq!(
        c.input.cowrie_json.as_deref(),
        Some(dir.path().join("log/cowrie.json").as_path())
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn refuses_empty_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "token", " \n\n", 0o600);
    let text = format!(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"{}\"\n",
        token.display()
    );
    let err = Config::from_toml_str(&text, Some(Path::new(FILE)), &opts(), None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(FILE), "{msg}");
    assert!(
        msg.contains("[targets.threatjammer] bearer_token_file"),
        "{msg}"
    );
    assert!(msg.contains(&token.display().to_string()), "{msg}");
    assert!(msg.contains("empty"), "{msg}");
}

#[test]
fn refuses_unreadable_or_malformed_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"missing\"\n";
    let config = dir.path().join("tjfwd.toml");
    let err = Config::from_toml_str(text, Some(&config), &opts(), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[targets.threatjammer] bearer_token_file"),
        "{msg}"
    );
    assert!(msg.contains(&dir.path().join("missing").display().to_string()));

    // A file that is not a token: its content is never printed.
    write_file(dir.path(), "token", "line one\nline two\n", 0o600);
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"token\"\n";
    let err = Config::from_toml_str(text, Some(&config), &opts(), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[targets.threatjammer] bearer_token_file"),
        "{msg}"
    );
    assert!(!msg.contains("line one"), "{msg}");
}

#[test]
fn token_from_env() {
    let c = Config::from_toml_str(
        TJ,
        Some(Path::new(FILE)),
        &opts(),
        Some(format!(" {TOKEN}\n")),
    )
    .unwrap();
    assert_eq!(tj(&c).token.clone().unwrap().expose(), TOKEN);
    // The file's token wins over the environment.
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"inline\"\n";
    let c = Config::from_toml_str(text, None, &opts(), Some(TOKEN.into())).unwrap();
    assert_eq!(tj(&c).token.clone().unwrap().expose(), "inline");
    // A malformed env token is refused without being printed.
    let err = Config::from_toml_str(TJ, None, &opts(), Some("a b".into())).unwrap_err();
    assert_eq!(invalid_key(&err), TOKEN_ENV);
}

#[test]
fn warns_about_readable_inline_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"{TOKEN}\"\n");
    // 0640 with tjfwd's own group (the file's here) is fine: see
    // secret_readers_of_another_group for a group of other users.
    for (mode, warned) in [(0o644, true), (0o640, false), (0o604, true), (0o600, false)] {
        let path = write_file(dir.path(), "tjfwd.toml", &text, mode);
        let c = Config::load(&path, &opts()).unwrap();
        assert_eq!(
            c.warnings.len(),
            usize::from(warned),
            "mode {mode:o}: {:?}",
            c.warnings
        );
        if warned {
            let w = &c.warnings[0];
            assert!(w.contains("chmod 600"), "{w}");
            assert!(w.contains("bearer_token_file"), "{w}");
            assert!(w.contains(&path.display().to_string()), "{w}");
            assert!(!w.contains(TOKEN), "{w}");
        }
    }
    // No inline token: a readable config file is fine.
    let token = write_file(dir.path(), "token", TOKEN, 0o600);
    let text = format!(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"{}\"\n",
        token.display()
    );
    let path = write_file(dir.path(), "tjfwd.toml", &text, 0o644);
    let c = Config::load(&path, &opts()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn warns_about_world_readable_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tjfwd.toml");
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"token\"\n";
    for (mode, warned) in [(0o644, true), (0o604, true), (0o640, false), (0o600, false)] {
        write_file(dir.path(), "token", TOKEN, mode);
        let c = Config::from_toml_str(text, Some(&config), &opts(), None).unwrap();
        assert_eq!(
            c.warnings.len(),
            usize::from(warned),
            "mode {mode:o}: {:?}",
            c.warnings
        );
        if warned {
            let w = &c.warnings[0];
            assert!(w.contains("chmod 600"), "{w}");
            assert!(!w.contains(TOKEN), "{w}");
        }
    }
}

/// A file readable by a group tjfwd neither runs as nor owns its state
/// with draws a warning; the package's root:tjfwd 0640 (the service's
/// group owns the state directory) does not. Needs root (chown).
#[test]
fn secret_readers_of_another_group() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to give a file another group");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let token = write_file(dir.path(), "token", TOKEN, 0o640);
    let other_gid = 65534; // nogroup
    std::os::unix::fs::chown(&token, Some(0), Some(other_gid)).unwrap();
    let text = format!(
        "state_dir = \"{}\"\n[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"{}\"\n",
        state.display(),
        token.display()
    );
    let c = Config::from_toml_str(&text, None, &opts(), None).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert!(w.contains("group 65534") && w.contains("0640"), "{w}");
    assert!(w.contains(&format!("chmod 600 {}", token.display())), "{w}");
    assert!(!w.contains(TOKEN), "{w}");
    // The group owning the state directory is the service's: quiet.
    std::os::unix::fs::chown(&state, Some(0), Some(other_gid)).unwrap();
    let c = Config::from_toml_str(&text, None, &opts(), None).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // World-readable is never fine.
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::from_toml_str(&text, None, &opts(), None).unwrap();
    assert!(c.warnings[0].contains("every user"), "{:?}", c.warnings);
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn ca_file_is_read_at_load_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "ca.pem", &ca_pem(), 0o644);
    let config = dir.path().join("tjfwd.toml");
    let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nca_file = \"ca.pem\"\n";
    let c = Config::from_toml_str(text, Some(&config), &dry(), None).unwrap();
    assert_eq!(tj(&c).ca_file, Some(dir.path().join("ca.pem")));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let out = c.redacted_toml();
    assert!(out.contains("ca_file = "), "{out}");
    let back = Config::from_toml_str(&out, Some(&config), &dry(), None).unwrap();
    assert_eq!(tj(&back).ca_file, tj(&c).ca_file);
    // Not set: the public roots, and nothing about it in the output.
    assert_eq!(tj(&parse_ok("")).ca_file, None);
    assert!(!parse_ok("").redacted_toml().contains("ca_file"));
}

#[test]
fn refuses_missing_empty_or_non_pem_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tjfwd.toml");
    let bad_der = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    let bad_b64 = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
    for (content, expect) in [
        (None, "cannot read it"),
        (Some(""), "no PEM certificate"),
        (Some("just some text\n"), "no PEM certificate"),
        (Some(bad_b64), "malformed PEM"),
        (Some(bad_der), "not a valid X.509"),
    ] {
        let ca = dir.path().join("ca.pem");
        let _ = fs::remove_file(&ca);
        if let Some(c) = content {
            write_file(dir.path(), "ca.pem", c, 0o644);
        }
        let text = "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nca_file = \"ca.pem\"\n";
        let err = Config::from_toml_str(text, Some(&config), &dry(), None).unwrap_err();
        let msg = err.to_string();
        assert_eq!(invalid_key(&err), "[targets.threatjammer] ca_file", "{msg}");
        assert!(msg.contains(expect), "{content:?}: {msg}");
        assert!(msg.contains(&ca.display().to_string()), "{msg}");
        assert!(msg.starts_with(&config.display().to_string()), "{msg}");
    }
    let err = Config::from_toml_str(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nca_file = \"\"\n",
        None,
        &dry(),
        None,
    )
    .unwrap_err();
    assert_eq!(invalid_key(&err), "[targets.threatjammer] ca_file");
}

/// Builds from `text` as `load_with` would, with `$CREDENTIALS_DIRECTORY`
/// = `creds` (no process environment involved).
fn with_credentials(
    text: &str,
    env_token: Option<&str>,
    creds: Option<&Path>,
) -> Result<Config, ConfigError> {
    let source = Source {
        text,
        path: Some(Path::new(FILE)),
        resolve_base: Some(Path::new(FILE)),
        file_meta: None,
        credentials_dir: creds.map(Path::to_path_buf),
        env: Default::default(),
    };
    build(source, &opts(), env_token.map(str::to_string), None)
}

#[test]
fn token_from_a_systemd_credential_comes_last() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path();
    write_file(creds, CREDENTIAL_NAME, &format!("  {TOKEN}\n"), 0o400);
    // Only the credential: used.
    let c = with_credentials(TJ, None, Some(creds)).unwrap();
    assert_eq!(tj(&c).token.clone().unwrap().expose(), TOKEN);
    // Every other source wins over it.
    let c = with_credentials(TJ, Some("from-env"), Some(creds)).unwrap();
    assert_eq!(tj(&c).token.clone().unwrap().expose(), "from-env");
    let c = with_credentials(
        "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token = \"inline\"\n",
        None,
        Some(creds),
    )
    .unwrap();
    assert_eq!(tj(&c).token.clone().unwrap().expose(), "inline");
    let file = write_file(creds, "other", "from-file", 0o600);
    let c = with_credentials(
        &format!(
            "[targets.threatjammer]\napi_url = \"https://report.example.net/v1/ip\"\nbearer_token_file = \"{}\"\n",
            file.display()
        ),
        None,
        Some(creds),
    )
    .unwrap();
    assert_eq!(tj(&c).token.clone().unwrap().expose(), "from-file");
    // from_toml_str never looks at credentials.
    assert!(Config::from_toml_str(TJ, None, &opts(), None).is_err());
}

#[test]
fn a_missing_credential_is_no_token_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = with_credentials(TJ, None, Some(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("LoadCredential=bearer_token:"), "{msg}");
    for (content, what) in [
        ("", "is empty"),
        ("a b", "spaces"),
        ("\u{e9}t\u{e9}", "spaces"),
    ] {
        write_file(dir.path(), CREDENTIAL_NAME, content, 0o400);
        let err = with_credentials(TJ, None, Some(dir.path())).unwrap_err();
        assert_eq!(invalid_key(&err), "systemd credential bearer_token");
        let msg = err.to_string();
        assert!(msg.contains(what), "{msg}");
        assert!(msg.contains(CREDENTIAL_NAME), "{msg}");
    }
    fs::write(dir.path().join(CREDENTIAL_NAME), b"\xff\xfe").unwrap();
    let msg = with_credentials(TJ, None, Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not UTF-8"), "{msg}");
    // The credentials directory itself is not a file: a read error names it.
    fs::remove_file(dir.path().join(CREDENTIAL_NAME)).unwrap();
    fs::create_dir(dir.path().join(CREDENTIAL_NAME)).unwrap();
    let msg = with_credentials(TJ, None, Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cannot read it"), "{msg}");
}
