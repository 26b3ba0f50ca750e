//! Helpers the tests of every part of `cowrie_cfg` share: an [`Ini`] read
//! from a text, and a Cowrie tree in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{CowrieSettings, Ini};
use crate::config::{Config, ConfigError, LoadOptions};

pub(super) const TOKEN: &str = "tj-UNIT-test-token-7c1e";

/// The Threat Jammer-compatible endpoint of the tests' cowrie.cfg (nothing
/// is sent).
pub(super) const API_URL: &str = "https://report.example.net/v1/ip";

/// `text` with `[output_threatjammer] api_url = API_URL`, unless it sets
/// `api_url` itself: the key has no default, and Threat Jammer is enabled
/// wherever a token is found. The line goes at the end of the section, so
/// that the lines of the keys written stay where they are.
pub(super) fn with_api_url(text: &str) -> String {
    let section = "[output_threatjammer]\n";
    let line = format!("api_url = {API_URL}\n");
    if text.contains("api_url") {
        return text.to_string();
    }
    let Some(at) = text.find(section) else {
        return format!("{text}\n{section}{line}");
    };
    let body = at + section.len();
    let end = text[body..]
        .find("\n[")
        .map_or(text.len(), |i| body + i + 1);
    let mut out = text.to_string();
    if !out[..end].ends_with('\n') {
        out.insert(end, '\n');
        out.insert_str(end + 1, &line);
    } else {
        out.insert_str(end, &line);
    }
    out
}

pub(super) fn ini(text: &str) -> Ini {
    ini_env(text, &[])
}

pub(super) fn ini_env(text: &str, env: &[(&str, &str)]) -> Ini {
    let mut i = Ini::new(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    i.read_text(text, Some(Path::new("/c/etc/cowrie.cfg")))
        .unwrap_or_else(|e| panic!("{e}"));
    i
}

pub(super) fn get(i: &Ini, section: &str, key: &str) -> Option<String> {
    i.get(section, key)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|v| v.text)
}

pub(super) struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    pub(super) fn new() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(t.dir.path().join("etc")).unwrap();
        fs::create_dir_all(t.dir.path().join("var/log/cowrie")).unwrap();
        t
    }
    pub(super) fn root(&self) -> &Path {
        self.dir.path()
    }
    pub(super) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root().join(rel);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        p
    }
    /// The settings of `text` as cowrie.cfg, with [`API_URL`] (see
    /// [`with_api_url`]).
    pub(super) fn settings(
        &self,
        text: &str,
        env: &[(&str, &str)],
    ) -> Result<CowrieSettings, ConfigError> {
        self.settings_as_written(&with_api_url(text), env)
    }
    /// The settings of `text` as cowrie.cfg, as it is.
    pub(super) fn settings_as_written(
        &self,
        text: &str,
        env: &[(&str, &str)],
    ) -> Result<CowrieSettings, ConfigError> {
        let cfg = self.write("etc/cowrie.cfg", text);
        CowrieSettings::read_with_env(
            &cfg,
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }
    /// The configuration of `text` as cowrie.cfg (with [`API_URL`]) and
    /// `token` as `TJFWD_BEARER_TOKEN`.
    pub(super) fn config(
        &self,
        text: &str,
        env: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<Config, ConfigError> {
        self.settings(text, env)?.into_config(
            None,
            &LoadOptions::default(),
            token.map(str::to_string),
        )
    }
}
