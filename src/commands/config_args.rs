//! The configuration flags every command takes (`--config`, `TJFWD_CONFIG`,
//! `--cowrie-config`, `--cowrie-dir`, `--state-dir`), flattened into each
//! command's `Args`, and the loading of the configuration they name.

use std::path::PathBuf;

use anyhow::Context;

use crate::commands::LOG_TARGET;
use crate::config::{Config, LoadOptions, TEST_RATE_WINDOW_ENV};
use crate::cowrie_cfg;

/// The configuration, the same for every command.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The configuration file (TOML). Optional with --cowrie-config.
    #[arg(
        short,
        long,
        env = "TJFWD_CONFIG",
        value_name = "FILE",
        required_unless_present = "cowrie_config"
    )]
    config: Option<PathBuf>,
    /// Take Threat Jammer's and AbuseIPDB's settings and the JSON log from
    /// Cowrie's cowrie.cfg ([output_threatjammer], [output_abuseipdb],
    /// [output_jsonlog]); the TOML file, if any, supplies the rest and must
    /// not set them.
    #[arg(long, value_name = "FILE")]
    cowrie_config: Option<PathBuf>,
    /// The directory Cowrie runs in (default: the directory of cowrie.cfg,
    /// or its parent if that is `etc`).
    #[arg(long, value_name = "DIR", requires = "cowrie_config")]
    cowrie_dir: Option<PathBuf>,
    /// Use this state directory instead of the configured state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the configuration; `need_token` refuses one without a token.
    pub fn load(&self, need_token: bool) -> anyhow::Result<Config> {
        let opts = LoadOptions {
            dry_run: !need_token,
        };
        let mut config = match &self.cowrie_config {
            Some(cowrie) => cowrie_cfg::load_config(
                cowrie,
                self.cowrie_dir.as_deref(),
                self.config.as_deref(),
                &opts,
            )?,
            None => {
                let path = self
                    .config
                    .as_deref()
                    .context("--config FILE is required")?;
                Config::load(path, &opts)?
            }
        };
        for n in &config.notes {
            tracing::info!(target: LOG_TARGET, "{n}");
        }
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        // Test-only: a shorter rate window, so tests of the binary need not
        // wait minutes (a warning says so at start and in check-config).
        let window = std::env::var_os(TEST_RATE_WINDOW_ENV);
        config.apply_test_rate_window(window.as_ref().map(|v| v.to_string_lossy()).as_deref())?;
        // Test-only: a shorter AbuseIPDB day, so tests of the binary need
        // not wait for the quota's midnight (a warning says so, likewise).
        let day = std::env::var_os(crate::targets::abuseipdb::config::TEST_DAY_ENV);
        config.apply_test_abuseipdb_day(day.as_ref().map(|v| v.to_string_lossy()).as_deref())?;
        Ok(config)
    }
}
