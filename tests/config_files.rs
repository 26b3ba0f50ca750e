//! The configuration files shipped with tjfwd stay valid and truthful.

use std::path::Path;

use tjfwd::config::{Config, LoadOptions};

/// packaging/tjfwd.toml documents every key with its default value: loading
/// it must give exactly the defaults (but for the paths it sets).
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
        .unwrap()
        .ends_with("examples/sample/cowrie.json"));
    assert!(Config::load(&path, &LoadOptions { dry_run: false }).is_err());
}
