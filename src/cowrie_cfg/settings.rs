//! [`CowrieSettings`]: the layers Cowrie reads (the embedded defaults, a
//! `cowrie.cfg.dist` next to the given file, the given file, the
//! environment), and what tjfwd takes from them: the JSON log, the socket
//! output, every key of `[output_threatjammer]`; with the warnings and notes
//! about them (Cowrie's own plugin enabled, unknown keys, a readable token,
//! other files Cowrie reads).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ini::{Ini, IniError, Origin};
use super::layout::cowrie_dir_for;
use super::{COWRIE_VERSION, PLACEHOLDER_TOKEN, PLUGIN_SECTION};
use crate::config::{ConfigError, RawThreatJammer, Secret, TOKEN_ENV};

/// The keys of `[output_threatjammer]` tjfwd reads: the plugin's own, and
/// `allow_insecure_http` (a tjfwd extension Cowrie ignores).
const PLUGIN_KEYS: [&str; 9] = [
    "enabled",
    "api_url",
    "bearer_token",
    "track_login",
    "track_session",
    "ttl",
    "category",
    "tags",
    "allow_insecure_http",
];

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
    /// The `[output_threatjammer]` values, for config.rs's checks.
    pub(super) threatjammer: RawThreatJammer,
    /// Where each `[output_threatjammer]` key was set, to name it in errors.
    pub(super) origins: BTreeMap<String, Origin>,
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
            .field("warnings", &self.warnings)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
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

        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        let mut env_overrides = BTreeSet::new();
        // Converts an IniError about a key into a ConfigError naming the file
        // the key was set in (or the given file), the section and the key.
        let value_error = |e: IniError| -> ConfigError {
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
                        other => (shown.clone(), other.to_string()),
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
        };
        let mut note_env = |origin: &Origin| {
            if let Origin::Env(name) = origin {
                env_overrides.insert(name.clone());
            }
        };

        // The JSON log.
        let (jsonlog_enabled, origin) = ini
            .get_bool("output_jsonlog", "enabled")
            .map_err(value_error)?
            .unwrap_or((false, Origin::Defaults));
        note_env(&origin);
        let json_log = if jsonlog_enabled {
            let v = ini
                .get("output_jsonlog", "logfile")
                .map_err(value_error)?
                .ok_or_else(|| ConfigError::Invalid {
                    file: shown.clone(),
                    key: "[output_jsonlog] logfile".to_string(),
                    message: "[output_jsonlog] logfile is missing: Cowrie would not start \
                              its JSON log; set it, e.g. logfile = \
                              ${honeypot:log_path}/cowrie.json"
                        .to_string(),
                })?;
            note_env(&v.origin);
            if v.text.trim().is_empty() {
                return Err(value_error(IniError::Value {
                    section: "output_jsonlog".into(),
                    key: "logfile".into(),
                    origin: v.origin,
                    message: "the path is empty: set the JSON log's path, e.g. \
                              ${honeypot:log_path}/cowrie.json"
                        .into(),
                }));
            }
            let path = cowrie_dir.join(&v.text);
            match path.parent() {
                Some(dir) if !dir.is_dir() => warnings.push(format!(
                    "{shown}: the directory of Cowrie's JSON log, {}, does not exist (yet); \
                     tjfwd waits for the log to appear. If Cowrie runs in another directory \
                     than {} (relative paths of cowrie.cfg are relative to it), give that \
                     directory with --cowrie-dir",
                    dir.display(),
                    cowrie_dir.display()
                )),
                _ => {}
            }
            Some(path)
        } else {
            None
        };

        // The socket output, to point at it when there is no JSON log.
        let (socket_enabled, origin) = ini
            .get_bool("output_socketlog", "enabled")
            .map_err(value_error)?
            .unwrap_or((false, Origin::Defaults));
        note_env(&origin);
        let socketlog = if socket_enabled {
            let v = ini
                .get("output_socketlog", "address")
                .map_err(value_error)?;
            v.map(|v| {
                note_env(&v.origin);
                v.text
            })
        } else {
            None
        };

        // [output_threatjammer].
        let sec = PLUGIN_SECTION;
        let mut origins = BTreeMap::new();
        let mut tj = RawThreatJammer::default();
        let mut string = |key: &str| -> Result<Option<String>, ConfigError> {
            let v = ini.get(sec, key).map_err(value_error)?;
            Ok(v.map(|v| {
                origins.insert(key.to_string(), v.origin);
                v.text
            }))
        };
        tj.api_url = string("api_url")?;
        tj.category = string("category")?;
        tj.tags = string("tags")?.map(toml::Value::String);
        let token = string("bearer_token")?;
        let token_origin = origins.get("bearer_token").cloned();
        let token = token.filter(|t| !t.trim().is_empty() && t.trim() != PLACEHOLDER_TOKEN);
        let has_token = token.is_some();
        if !has_token {
            // Nothing of it is used: errors about the token are not about that line.
            origins.remove("bearer_token");
        }
        tj.bearer_token = token.map(Secret::new);
        let mut boolean = |key: &str| -> Result<Option<bool>, ConfigError> {
            let v = ini.get_bool(sec, key).map_err(value_error)?;
            Ok(v.map(|(b, origin)| {
                origins.insert(key.to_string(), origin);
                b
            }))
        };
        let enabled = boolean("enabled")?.unwrap_or(false);
        tj.track_login = boolean("track_login")?;
        tj.track_session = boolean("track_session")?;
        tj.allow_insecure_http = boolean("allow_insecure_http")?;
        if let Some((ttl, origin)) = ini.get_int(sec, "ttl").map_err(value_error)? {
            tj.ttl = Some(ttl);
            origins.insert("ttl".to_string(), origin);
        }
        for origin in origins.values() {
            note_env(origin);
        }

        let enabled_at = origins
            .get("enabled")
            .map_or_else(String::new, |o| format!(" ({o})"));
        if enabled {
            warnings.push(format!(
                "{shown}: [{sec}] enabled = true{enabled_at}: Cowrie's own Threat Jammer \
                 plugin runs too, so Cowrie and tjfwd would both report the same addresses \
                 and share the token's limit of 6 requests a minute (expect 429 answers and \
                 delays). Set enabled = false in [{sec}] of cowrie.cfg and restart Cowrie: \
                 tjfwd reads the section's other keys either way"
            ));
        } else {
            notes.push(format!(
                "{shown}: [{sec}] enabled = false: Cowrie's Threat Jammer plugin is off and \
                 tjfwd reports in its place, with the section's settings"
            ));
        }

        let mut ignored: Vec<&str> = ini
            .own_keys(sec)
            .into_iter()
            .filter(|k| !PLUGIN_KEYS.contains(k))
            .collect();
        ignored.sort_unstable();
        if !ignored.is_empty() {
            warnings.push(format!(
                "{shown}: [{sec}] has keys tjfwd does not know, ignored: {} (it reads {})",
                ignored.join(", "),
                PLUGIN_KEYS.join(", ")
            ));
        }

        if let (true, Some(Origin::File { path, .. })) = (has_token, &token_origin) {
            if let Ok(meta) = fs::metadata(path) {
                let mode = meta.permissions().mode();
                if mode & 0o004 != 0 {
                    warnings.push(format!(
                        "{}: the file holds [{sec}] bearer_token and every user can read it \
                         (mode {:04o}): run `chmod o-r {}` (tjfwd's user needs read access, \
                         e.g. through the group), or, with Cowrie's plugin disabled, move the \
                         token out of cowrie.cfg into the environment variable {TOKEN_ENV} of \
                         tjfwd",
                        path.display(),
                        mode & 0o7777,
                        path.display()
                    ));
                }
            }
        }

        // Files Cowrie would read too, which tjfwd does not.
        let mut others = vec![PathBuf::from("/etc/cowrie/cowrie.cfg")];
        others.push(cowrie_dir.join("etc/cowrie.cfg"));
        others.push(cowrie_dir.join("cowrie.cfg"));
        let read: Vec<PathBuf> = ini
            .files()
            .iter()
            .map(|p| fs::canonicalize(p).unwrap_or_else(|_| absolute(p)))
            .collect();
        for other in others {
            if let Ok(canon) = fs::canonicalize(&other) {
                if canon.is_file() && !read.contains(&canon) {
                    warnings.push(format!(
                        "{shown}: Cowrie, run in {}, also reads {} (its files are read in the \
                         order /etc/cowrie/cowrie.cfg, etc/cowrie.cfg, cowrie.cfg; the last \
                         wins per key), which tjfwd does not: if it sets [output_jsonlog], \
                         [honeypot] log_path or [{sec}], tjfwd does not see it",
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
            plugin_enabled: enabled,
            json_log,
            socketlog,
            has_token,
            warnings,
            notes,
            threatjammer: tj,
            origins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::{Tree, TOKEN};

    use crate::config::{Config, LoadOptions};
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
        let c = s
            .into_config(None, &LoadOptions { dry_run: true }, None)
            .unwrap();
        let d = Config::default();
        assert_eq!(c.threatjammer, d.threatjammer);
        assert_eq!(
            c.input.cowrie_json.as_deref(),
            Some(t.root().join("var/log/cowrie/cowrie.json").as_path())
        );
        assert_eq!(c.schedule, d.schedule);
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
             api_url: https://london.report.threatjammer.com/v1/ip\ntrack_login = no\n\
             track_session = on\nttl = 3_600\ncategory = MY_SET\ntags = COWRIE, SSH\n"
        );
        let c = t.config(&text, &[], Some("env-token")).unwrap();
        let tj = &c.threatjammer;
        assert_eq!(
            tj.api_url.as_str(),
            "https://london.report.threatjammer.com/v1/ip"
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
            .into_config(None, &LoadOptions { dry_run: true }, None)
            .unwrap();
        assert_eq!(c.threatjammer.ttl, 120);
        assert_eq!(c.threatjammer.category, "DIST");
        // The environment wins over both.
        let c = t
            .config(
                "[output_threatjammer]\nttl = 120\n",
                &[("COWRIE_OUTPUT_THREATJAMMER_TTL", "7")],
                Some(TOKEN),
            )
            .unwrap();
        assert_eq!(c.threatjammer.ttl, 7);
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
