//! [`Ctx`], the state shared by the validation of every section: the file
//! named in messages, the directory relative paths are joined to, the
//! warnings collected so far, and the checks of values common to several
//! sections (paths, durations, sizes).
//!
//! Every refusal is a [`ConfigError::Invalid`] whose message starts with the
//! key at fault and says what to write instead.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::errors::ConfigError;
use super::format::format_size;

/// State shared by the validation steps: the file name for messages, the
/// directory for relative paths, and the warnings collected so far.
pub struct Ctx {
    /// The file as named in messages.
    pub(crate) file: String,
    /// Directory relative paths are joined to (None: kept as written).
    pub(crate) base_dir: Option<PathBuf>,
    /// Warnings collected so far.
    pub(crate) warnings: Vec<String>,
    /// Where the sections find what is not written in the file: secrets
    /// from the environment or systemd credentials, and what decides who
    /// may read a file holding one.
    pub(crate) secrets: SecretSources,
}

/// What a section holding a secret (a token, a key, a password) reads
/// besides the file: the environment variables the loader was given (only
/// those: tests give theirs explicitly), `$CREDENTIALS_DIRECTORY`, the
/// state directory (its group may read a secret file), the file's own
/// metadata (a secret written inline in a file others can read draws a
/// warning), and whether this is a dry run (nothing is sent, so a missing
/// secret is no error).
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    /// Environment variables, by name.
    pub(crate) env: BTreeMap<String, String>,
    /// `$CREDENTIALS_DIRECTORY` (systemd credentials); None: none looked for.
    pub(crate) credentials_dir: Option<PathBuf>,
    /// The state directory, as configured.
    pub(crate) state_dir: PathBuf,
    /// The configuration file's metadata, when it is a file.
    pub(crate) file_meta: Option<fs::Metadata>,
    /// `--dry-run`: nothing is sent, so a missing secret is no error.
    pub(crate) dry_run: bool,
}

impl SecretSources {
    /// The environment variable `name`, when given.
    pub(crate) fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The file of the systemd credential `name`, when credentials are
    /// looked for (it may not exist).
    pub(crate) fn credential(&self, name: &str) -> Option<PathBuf> {
        self.credentials_dir.as_ref().map(|d| d.join(name))
    }

    /// The `TJFWD_*` variables of this process.
    pub(crate) fn process_env() -> BTreeMap<String, String> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("TJFWD_"))
            .collect()
    }
}

impl Ctx {
    #[cfg(test)]
    /// The context of checking `file` (as named in messages), with no
    /// directory for relative paths and no secret sources.
    pub(crate) fn new(file: impl Into<String>) -> Ctx {
        Ctx {
            file: file.into(),
            base_dir: None,
            warnings: Vec::new(),
            secrets: SecretSources::default(),
        }
    }

    pub(crate) fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.to_string(),
            message,
        }
    }

    pub(crate) fn resolve(&self, p: PathBuf) -> PathBuf {
        match &self.base_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        }
    }

    pub(crate) fn path(&self, key: &str, p: PathBuf) -> Result<PathBuf, ConfigError> {
        if p.as_os_str().is_empty() {
            return Err(self.invalid(
                key,
                format!("{key} is empty: give a path, or remove the key to use the default"),
            ));
        }
        Ok(self.resolve(p))
    }

    pub(crate) fn duration(
        &self,
        key: &str,
        value: Option<toml::Value>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(toml::Value::String(s)) => humantime::parse_duration(s.trim()).map_err(|e| {
                self.invalid(
                    key,
                    format!(
                        "{key} = {s:?} is not a valid duration ({e}): \
                         write it like \"500ms\", \"60s\", \"10m\" or \"1h 30m\""
                    ),
                )
            }),
            Some(toml::Value::Integer(n)) => Err(self.invalid(
                key,
                format!(
                    "{key} = {n} has no unit: write the duration as a string with a unit, \
                     e.g. {key} = \"{n}s\""
                ),
            )),
            Some(other) => Err(self.invalid(
                key,
                format!(
                    "{key} = {other} is not a duration: write it as a string like \"60s\" or \"10m\""
                ),
            )),
        }
    }

    /// A size: a string like "32MiB" or "1 GiB", or an integer number of bytes.
    pub(crate) fn size(
        &self,
        key: &str,
        value: Option<toml::Value>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match value {
            None => Ok(default),
            Some(toml::Value::String(s)) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| {
                    self.invalid(
                        key,
                        format!(
                            "{key} = {s:?} is not a valid size ({e}): write it like \
                             \"{}\" or as a number of bytes",
                            format_size(default)
                        ),
                    )
                }),
            Some(toml::Value::Integer(n)) if n >= 0 => Ok(n as u64),
            Some(other) => Err(self.invalid(
                key,
                format!(
                    "{key} = {other} is not a size: write it like \"{}\" or as a number of bytes",
                    format_size(default)
                ),
            )),
        }
    }

    pub(crate) fn nonzero(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.invalid(
                key,
                format!("{key} = \"0s\" is not allowed: it must be greater than zero"),
            ))
        } else {
            Ok(d)
        }
    }
}
