//! Helpers the tests of every part of `cowrie_cfg` share: an [`Ini`] read
//! from a text, and a Cowrie tree in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{CowrieSettings, Ini};
use crate::config::{Config, ConfigError, LoadOptions};

pub(super) const TOKEN: &str = "tj-UNIT-test-token-7c1e";

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
    pub(super) fn settings(
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
