//! Fuzzes the cowrie.cfg reader (a configparser work-alike with
//! interpolation, `tjfwd run --cowrie-config`) and `config import-cowrie`:
//! arbitrary bytes as cowrie.cfg give settings or an error, never a panic;
//! and the TOML that import prints must load as a tjfwd configuration.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tjfwd::config::{Config, LoadOptions};
use tjfwd::cowrie_cfg::{import_settings, CowrieSettings};

/// `$TMPDIR/tjfwd-fuzz-cowrie-PID/etc/cowrie.cfg`, rewritten for each input.
fn cfg_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tjfwd-fuzz-cowrie-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        dir.join("etc/cowrie.cfg")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = cfg_path();
    std::fs::write(path, data).unwrap();
    let env = [(
        "COWRIE_OUTPUT_THREATJAMMER_TTL".to_string(),
        "${output_threatjammer:ttl}".to_string(),
    )];
    let Ok(settings) = CowrieSettings::read_with_env(path, None, env) else {
        return;
    };
    // With a token in the environment: Threat Jammer is enabled even when
    // cowrie.cfg holds none (then the token file's line is commented out).
    let Ok(imported) = import_settings(settings, Some("fuzz-env-token".to_string())) else {
        return;
    };
    // The token file the import names does not exist here.
    let toml = imported
        .toml
        .replace("\nbearer_token_file = \"/etc/tjfwd/token\"\n", "\n");
    Config::from_toml_str(
        &toml,
        Some(path),
        &LoadOptions { dry_run: true },
        None,
    )
    .unwrap_or_else(|e| panic!("the imported TOML does not load: {e}\n{}", imported.toml));
});
