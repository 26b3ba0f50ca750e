//! [`CowrieSettings`]: the layers Cowrie reads (the embedded defaults, a
//! `cowrie.cfg.dist` next to the given file, the given file, the
//! environment), and what tjfwd takes from them: the JSON log, the socket
//! output, every key of `[output_threatjammer]` and of `[output_abuseipdb]`,
//! each read by its function in `outputs.rs`; with the remarks about the whole (other files Cowrie
//! reads, where the settings came from).
//!
//! Warnings and notes keep the order in which the sections are read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::ini::{Ini, IniError, Origin};
use super::layout::{cowrie_dir_for, files_cowrie_reads};
use super::outputs;
use super::{ABUSEIPDB_SECTION, COWRIE_VERSION, PLUGIN_SECTION};
use crate::config::ConfigError;
use crate::targets::abuseipdb::config::FromCowrie;
use crate::targets::threatjammer::config::RawThreatJammer;

/// The settings tjfwd takes from a Cowrie configuration.
pub struct CowrieSettings {
    /// The cowrie.cfg, as given.
    pub file: PathBuf,
    /// The files read, in order (a `cowrie.cfg.dist` next to it, then it).
    pub files_read: Vec<PathBuf>,
    /// The names of the `COWRIE_*` variables that set a key tjfwd read.
    pub env_overrides: Vec<String>,
    /// The directory Cowrie runs in: relative paths are relative to it.
    pub cowrie_dir: PathBuf,
    /// `[output_threatjammer] enabled`: Cowrie's own plugin reports too.
    pub plugin_enabled: bool,
    /// The JSON log (absolute), when `[output_jsonlog] enabled` is true.
    pub json_log: Option<PathBuf>,
    /// `[output_socketlog] address`, when that output is enabled.
    pub socketlog: Option<String>,
    /// Whether `[output_threatjammer] bearer_token` holds a token (not
    /// empty, not Cowrie's placeholder).
    pub has_token: bool,
    /// Problems to log at start-up (never contain the token).
    pub warnings: Vec<String>,
    /// Informational remarks to log at start-up.
    pub notes: Vec<String>,
    /// The `[output_threatjammer]` values, for the checks of Threat Jammer's section.
    pub(super) threatjammer: RawThreatJammer,
    /// Where each `[output_threatjammer]` key was set, to name it in errors.
    pub(super) origins: BTreeMap<String, Origin>,
    /// `[output_abuseipdb] enabled`: Cowrie's own AbuseIPDB plugin reports too.
    pub abuseipdb_plugin_enabled: bool,
    /// Whether `[output_abuseipdb] api_key` holds a key (not empty).
    pub has_abuseipdb_key: bool,
    /// The `[output_abuseipdb]` values, in tjfwd's units.
    pub(super) abuseipdb: FromCowrie,
    /// Where each `[output_abuseipdb]` key was set, to name it in errors.
    pub(super) abuseipdb_origins: BTreeMap<String, Origin>,
    /// Notes to log when tjfwd reports to AbuseIPDB with these settings.
    pub(super) abuseipdb_notes: Vec<String>,
}

impl fmt::Debug for CowrieSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CowrieSettings")
            .field("file", &self.file)
            .field("files_read", &self.files_read)
            .field("env_overrides", &self.env_overrides)
            .field("cowrie_dir", &self.cowrie_dir)
            .field("plugin_enabled", &self.plugin_enabled)
            .field("json_log", &self.json_log)
            .field("socketlog", &self.socketlog)
            .field("has_token", &self.has_token)
            .field("abuseipdb_plugin_enabled", &self.abuseipdb_plugin_enabled)
            .field("has_abuseipdb_key", &self.has_abuseipdb_key)
            .field("warnings", &self.warnings)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

/// One reading of Cowrie's configuration, as the readers of its sections
/// (`outputs.rs`) see it: the layers read, the given file as named in
/// messages, and what they collect.
pub(super) struct Reading<'a> {
    /// The layers read (defaults, dist file, cowrie.cfg, environment).
    pub(super) ini: &'a Ini,
    /// The cowrie.cfg, as named in messages.
    pub(super) shown: String,
    /// The `COWRIE_*` variables that set a key read.
    pub(super) env_overrides: BTreeSet<String>,
    /// Problems found so far (never contain the token).
    pub(super) warnings: Vec<String>,
    /// Informational remarks so far.
    pub(super) notes: Vec<String>,
}

impl Reading<'_> {
    /// An [`IniError`] about a key as a [`ConfigError`] naming the file the
    /// key was set in (or the given file), the section and the key.
    pub(super) fn value_error(&self, e: IniError) -> ConfigError {
        match e {
            IniError::Value {
                section,
                key,
                origin,
                message,
            } => {
                let (file, at) = match &origin {
                    Origin::File { path, line } => {
                        (path.display().to_string(), format!("line {line}"))
                    }
                    other => (self.shown.clone(), other.to_string()),
                };
                ConfigError::Invalid {
                    file,
                    key: format!("[{section}] {key}"),
                    message: format!("[{section}] {key} ({at}): {message}"),
                }
            }
            IniError::Syntax {
                file,
                line,
                message,
            } => ConfigError::Parse {
                file,
                message: format!("line {line}: {message}"),
            },
        }
    }

    /// Records the environment variable that set a key, if one did.
    pub(super) fn note_env(&mut self, origin: &Origin) {
        if let Origin::Env(name) = origin {
            self.env_overrides.insert(name.clone());
        }
    }
}

pub(super) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl CowrieSettings {
    /// Reads `file` as Cowrie would, with the process's `COWRIE_*`
    /// environment variables. `cowrie_dir` overrides the Cowrie directory.
    pub fn read(file: &Path, cowrie_dir: Option<&Path>) -> Result<CowrieSettings, ConfigError> {
        // Not env::vars(), which panics on a variable that is not Unicode.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        CowrieSettings::read_with_env(file, cowrie_dir, env)
    }

    /// [`CowrieSettings::read`] with the given environment.
    pub fn read_with_env(
        file: &Path,
        cowrie_dir: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<CowrieSettings, ConfigError> {
        let shown = file.display().to_string();
        let abs = absolute(file);
        let mut ini = Ini::new(env);
        ini.read_defaults();
        let dist = abs.with_file_name("cowrie.cfg.dist");
        if dist != abs && dist.is_file() {
            ini.read_file(&dist)?;
        }
        ini.read_file(file)?;
        let cowrie_dir = match cowrie_dir {
            Some(d) => absolute(d),
            None => cowrie_dir_for(&abs),
        };

        let mut r = Reading {
            ini: &ini,
            shown: shown.clone(),
            env_overrides: BTreeSet::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
        };
        let json_log = outputs::json_log(&mut r, &cowrie_dir)?;
        let socketlog = outputs::socketlog(&mut r)?;
        let plugin = outputs::threatjammer(&mut r)?;
        let abuseipdb = outputs::abuseipdb(&mut r)?;
        let Reading {
            env_overrides,
            mut warnings,
            mut notes,
            ..
        } = r;
        let sec = PLUGIN_SECTION;

        // Files Cowrie would read too, which tjfwd does not.
        let read: Vec<PathBuf> = ini
            .files()
            .iter()
            .map(|p| fs::canonicalize(p).unwrap_or_else(|_| absolute(p)))
            .collect();
        for other in files_cowrie_reads(&cowrie_dir) {
            if let Ok(canon) = fs::canonicalize(&other) {
                if canon.is_file() && !read.contains(&canon) {
                    warnings.push(format!(
                        "{shown}: Cowrie, run in {}, also reads {} (its files are read in the \
                         order /etc/cowrie/cowrie.cfg, etc/cowrie.cfg, cowrie.cfg; the last \
                         wins per key), which tjfwd does not: if it sets [output_jsonlog], \
                         [honeypot] log_path, [{sec}] or [{ABUSEIPDB_SECTION}], tjfwd does \
                         not see it",
                        cowrie_dir.display(),
                        other.display()
                    ));
                }
            }
        }

        let env_overrides: Vec<String> = env_overrides.into_iter().collect();
        let mut sources: Vec<String> = vec![format!("Cowrie {COWRIE_VERSION}'s defaults")];
        sources.extend(ini.files().iter().map(|p| p.display().to_string()));
        if !env_overrides.is_empty() {
            sources.push(format!("environment: {}", env_overrides.join(", ")));
        }
        notes.push(format!(
            "Cowrie configuration read from {}; Cowrie directory {}",
            sources.join(", "),
            cowrie_dir.display()
        ));

        Ok(CowrieSettings {
            file: file.to_path_buf(),
            files_read: ini.files().to_vec(),
            env_overrides,
            cowrie_dir,
            plugin_enabled: plugin.enabled,
            json_log,
            socketlog,
            has_token: plugin.has_token,
            warnings,
            notes,
            threatjammer: plugin.threatjammer,
            origins: plugin.origins,
            abuseipdb_plugin_enabled: abuseipdb.enabled,
            has_abuseipdb_key: abuseipdb.values.api_key.is_some(),
            abuseipdb: abuseipdb.values,
            abuseipdb_origins: abuseipdb.origins,
            abuseipdb_notes: abuseipdb.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::{Tree, API_URL, TOKEN};

    use crate::config::LoadOptions;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn an_empty_cowrie_cfg_gives_cowries_defaults() {
        let t = Tree::new();
        let s = t.settings("", &[]).unwrap();
        assert!(!s.plugin_enabled);
        assert!(!s.has_token);
        assert_eq!(s.cowrie_dir, t.root());
        assert_eq!(
            s.json_log.as_deref(),
            Some(t.root().join("var/log/cowrie/cowrie.json").as_path())
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(
            s.notes
                .iter()
                .any(|n| n.contains("tjfwd reports in its place")),
            "{:?}",
            s.notes
        );
        // No token: Threat Jammer is not enabled, and nothing else is.
        let err = t
            .settings_as_written("", &[])
            .unwrap()
            .into_config(None, &LoadOptions { dry_run: true }, None)
            .unwrap_err();
        assert!(err.to_string().contains("no report target"), "{err}");
        // With a token (here from the environment) and an endpoint, it is,
        // with Cowrie's defaults, which are tjfwd's.
        let c = t.config("", &[], Some(TOKEN)).unwrap();
        let tj = c.threatjammer().unwrap();
        let mut d = crate::config::ThreatJammerSection::with_api_url(API_URL.parse().unwrap());
        d.report.token = tj.report.token.clone();
        assert_eq!(tj, &d);
        assert_eq!(
            c.input.cowrie_json.as_deref(),
            Some(t.root().join("var/log/cowrie/cowrie.json").as_path())
        );
        assert_eq!(
            c.path.as_deref(),
            Some(t.root().join("etc/cowrie.cfg").as_path())
        );
    }

    #[test]
    fn every_plugin_key_is_taken() {
        let t = Tree::new();
        let text = format!(
            "[output_threatjammer]\nenabled = false\nbearer_token = {TOKEN}\n\
             api_url: https://london.report.example.net/v1/ip\ntrack_login = no\n\
             track_session = on\nttl = 3_600\ncategory = MY_SET\ntags = COWRIE, SSH\n"
        );
        let c = t.config(&text, &[], Some("env-token")).unwrap();
        let tj = &c.threatjammer().unwrap().report;
        assert_eq!(
            tj.api_url.as_str(),
            "https://london.report.example.net/v1/ip"
        );
        assert_eq!(tj.token.as_ref().unwrap().expose(), TOKEN);
        assert!(!tj.track_login);
        assert!(tj.track_session);
        assert_eq!(tj.ttl, 3600);
        assert_eq!(tj.category, "MY_SET");
        assert_eq!(tj.tags, ["COWRIE", "SSH"]);
        assert!(!format!("{c:?}").contains(TOKEN));
    }

    #[test]
    fn enabled_plugin_warns_and_disabled_plugin_notes() {
        let t = Tree::new();
        let c = t
            .config("[output_threatjammer]\nenabled = yes\n", &[], Some(TOKEN))
            .unwrap();
        let w = c
            .warnings
            .iter()
            .find(|w| w.contains("enabled = true"))
            .expect("a warning about the enabled plugin");
        assert!(w.contains("6 requests a minute"), "{w}");
        assert!(w.contains("enabled = false"), "{w}");
        assert!(w.contains("line 2"), "{w}");
        assert!(!c.notes.iter().any(|n| n.contains("in its place")));
        // From the environment.
        let c = t
            .config(
                "",
                &[("COWRIE_OUTPUT_THREATJAMMER_ENABLED", "true")],
                Some(TOKEN),
            )
            .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("COWRIE_OUTPUT_THREATJAMMER_ENABLED")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn dist_file_is_read_between_defaults_and_cowrie_cfg() {
        let t = Tree::new();
        t.write(
            "etc/cowrie.cfg.dist",
            "[honeypot]\nlog_path = var/log/from-dist\n[output_threatjammer]\n\
             enabled = false\nbearer_token = THREATJAMMER_API_TOKEN\nttl = 60\ncategory = DIST\n",
        );
        let s = t
            .settings("[output_threatjammer]\nttl = 120\n", &[])
            .unwrap();
        assert_eq!(s.files_read.len(), 2);
        assert!(s.files_read[0].ends_with("etc/cowrie.cfg.dist"));
        assert_eq!(
            s.json_log.as_deref(),
            Some(t.root().join("var/log/from-dist/cowrie.json").as_path())
        );
        let c = s
            .into_config(None, &LoadOptions { dry_run: true }, Some(TOKEN.into()))
            .unwrap();
        assert_eq!(c.threatjammer().unwrap().report.ttl, 120);
        assert_eq!(c.threatjammer().unwrap().report.category, "DIST");
        // The environment wins over both.
        let c = t
            .config(
                "[output_threatjammer]\nttl = 120\n",
                &[("COWRIE_OUTPUT_THREATJAMMER_TTL", "7")],
                Some(TOKEN),
            )
            .unwrap();
        assert_eq!(c.threatjammer().unwrap().report.ttl, 7);
    }

    #[test]
    fn unknown_plugin_keys_and_readable_token_files_warn() {
        let t = Tree::new();
        let text = format!(
            "[DEFAULT]\ninherited = 1\n[output_threatjammer]\nbearer_token = {TOKEN}\nbatch = 5\n"
        );
        let s = t.settings(&text, &[]).unwrap();
        let w: Vec<&String> = s
            .warnings
            .iter()
            .filter(|w| w.contains("does not know"))
            .collect();
        assert_eq!(w.len(), 1, "{:?}", s.warnings);
        assert!(w[0].contains("batch"), "{}", w[0]);
        assert!(!w[0].contains("inherited"), "{}", w[0]);
        assert!(
            !s.warnings.iter().any(|w| w.contains("every user")),
            "{:?}",
            s.warnings
        );

        let cfg = t.root().join("etc/cowrie.cfg");
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
        let s = CowrieSettings::read_with_env(&cfg, None, Vec::new()).unwrap();
        let w = s
            .warnings
            .iter()
            .find(|w| w.contains("every user"))
            .expect("a warning about the readable token");
        assert!(w.contains("chmod o-r"), "{w}");
        assert!(!w.contains(TOKEN), "{w}");
    }

    #[test]
    fn a_missing_log_directory_suggests_cowrie_dir() {
        let t = Tree::new();
        let s = t
            .settings("[honeypot]\nlog_path = /nonexistent/tjfwd-test/log\n", &[])
            .unwrap();
        assert_eq!(
            s.json_log.as_deref(),
            Some(Path::new("/nonexistent/tjfwd-test/log/cowrie.json"))
        );
        assert!(
            s.warnings.iter().any(|w| w.contains("--cowrie-dir")),
            "{:?}",
            s.warnings
        );
        // An explicit Cowrie directory.
        let cfg = t.root().join("etc/cowrie.cfg");
        let other = tempfile::tempdir().unwrap();
        fs::write(&cfg, "").unwrap();
        let s = CowrieSettings::read_with_env(&cfg, Some(other.path()), Vec::new()).unwrap();
        assert_eq!(s.cowrie_dir, other.path());
        assert_eq!(
            s.json_log.as_deref(),
            Some(other.path().join("var/log/cowrie/cowrie.json").as_path())
        );
    }

    #[test]
    fn other_files_cowrie_reads_are_mentioned() {
        let t = Tree::new();
        t.write("cowrie.cfg", "[honeypot]\nlog_path = elsewhere\n");
        let s = t.settings("", &[]).unwrap();
        assert!(
            s.warnings.iter().any(|w| w.contains("also reads")
                && w.contains(&t.root().join("cowrie.cfg").display().to_string())),
            "{:?}",
            s.warnings
        );
    }
}
