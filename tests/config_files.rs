//! The configuration files shipped with tjfwd stay valid and truthful.

use std::path::Path;

use tjfwd::config::{Config, LoadOptions};

/// packaging/tjfwd.toml documents every key with its default value: loading
/// it must give exactly the defaults (but for the paths it sets, and Threat
/// Jammer's api_url, which has none: a placeholder that never resolves).
#[test]
fn the_example_config_shows_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/tjfwd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The token file does not exist here; everything else is as shipped.
    let text = text.replace("bearer_token_file = \"/etc/tjfwd/token\"", "");
    let c =
        Config::from_toml_str(&text, Some(&path), &LoadOptions { dry_run: true }, None).unwrap();
    let mut d = Config::default_for_tests(c.state_dir.clone());
    assert_eq!(c.state_dir, Path::new("/var/lib/tjfwd"));
    let api_url = &c.threatjammer().unwrap().report.api_url;
    assert_eq!(api_url.host_str(), Some("tj-api.example.invalid"));
    d.threatjammer_mut().report.api_url = api_url.clone();
    d.path = c.path.clone();
    d.input.cowrie_json = c.input.cowrie_json.clone();
    d.warnings = c.warnings.clone();
    assert_eq!(c, d);
}

#[test]
fn the_sample_config_loads_without_a_token_in_dry_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample/tjfwd.toml");
    let c = Config::load(&path, &LoadOptions { dry_run: true }).unwrap();
    assert!(c
        .input
        .cowrie_json
        .as_ref()
        .unwrap()
        .ends_with("examples/sample/cowrie.json"));
    assert!(Config::load(&path, &LoadOptions { dry_run: false }).is_err());
    // It enables Threat Jammer at a placeholder on loopback, in the new
    // form (no deprecation warning).
    let tj = c.threatjammer().unwrap();
    assert!(tj.report.token.is_none());
    let host = tj.report.api_url.host_str().unwrap().to_string();
    assert_eq!(host, "127.0.0.1");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// No shipped file names the Threat Jammer service's old domain as a
/// setting, nor uses the deprecated tables.
#[test]
fn no_shipped_config_points_at_the_old_domain() {
    for rel in ["packaging/tjfwd.toml", "examples/sample/tjfwd.toml"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(!line.contains("threatjammer.com"), "{rel}: {line}");
            assert!(line.trim() != "[threatjammer]", "{rel}: {line}");
            assert!(line.trim() != "[schedule]", "{rel}: {line}");
        }
    }
}
