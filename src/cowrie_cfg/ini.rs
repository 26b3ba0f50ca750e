//! [`Ini`]: an INI reader with the semantics of Python's `configparser` as
//! Cowrie uses it (see the module documentation of `cowrie_cfg` for the
//! rules): the syntax of a file, the sections and their keys, `[DEFAULT]`,
//! several files on top of each other, and the `COWRIE_<SECTION>_<KEY>`
//! environment variables. Reading a value (interpolation, conversion) is in
//! `interpolate.rs`.
//!
//! Syntax errors name the file and the line, never quote it: the line may
//! hold the token.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::COWRIE_VERSION;
use crate::config::ConfigError;

/// configparser's `default_section`.
pub(super) const DEFAULT_SECTION: &str = "DEFAULT";

/// Where a value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// tjfwd's embedded copy of Cowrie's defaults.
    Defaults,
    /// A line of a file (1-based: the line of the key).
    File {
        /// The file, as it was named when read.
        path: PathBuf,
        /// The line of the key.
        line: usize,
    },
    /// One of Cowrie's `COWRIE_<SECTION>_<KEY>` environment variables.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => write!(f, "Cowrie {COWRIE_VERSION}'s defaults (built into tjfwd)"),
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Env(name) => write!(f, "the environment variable {name}"),
        }
    }
}

/// Why an [`Ini`] could not be read or a value not be obtained. The messages
/// never quote a value's text (only key names and `${...}` references of keys
/// that are not secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    /// The text is not valid INI (configparser would refuse the file).
    #[error("{file}: line {line}: {message}")]
    Syntax {
        /// The file, as named when read.
        file: String,
        /// The 1-based line at fault.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value cannot be interpolated or converted.
    #[error("[{section}] {key} ({origin}): {message}")]
    Value {
        /// The section of the key being read.
        section: String,
        /// The key being read.
        key: String,
        /// Where that key was set.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
}

/// One key's raw (not interpolated) value.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) value: String,
    pub(super) origin: Origin,
}

/// A configuration read like Cowrie's `EnvironmentConfigParser` with
/// `ExtendedInterpolation`. See the module documentation for the rules.
pub struct Ini {
    /// `[DEFAULT]`: inherited by every section.
    defaults: BTreeMap<String, Entry>,
    /// The other sections (names as written, case-sensitive), keys lowercased.
    sections: BTreeMap<String, BTreeMap<String, Entry>>,
    /// The `COWRIE_*` environment variables in effect.
    pub(super) env: BTreeMap<String, String>,
    /// The files read so far, in order (not the embedded defaults).
    files: Vec<PathBuf>,
}

impl fmt::Debug for Ini {
    /// Section and key names only: values may hold the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        m.entry(&DEFAULT_SECTION, &self.defaults.keys().collect::<Vec<_>>());
        for (name, keys) in &self.sections {
            m.entry(name, &keys.keys().collect::<Vec<_>>());
        }
        m.finish()
    }
}

/// Which section a line belongs to while parsing.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Sect {
    Default,
    Named(String),
}

impl Sect {
    fn name(&self) -> &str {
        match self {
            Sect::Default => DEFAULT_SECTION,
            Sect::Named(n) => n,
        }
    }
}

impl Ini {
    /// An empty configuration; of `env`, only the `COWRIE_*` variables are kept.
    pub fn new(env: impl IntoIterator<Item = (String, String)>) -> Ini {
        Ini {
            defaults: BTreeMap::new(),
            sections: BTreeMap::new(),
            env: env
                .into_iter()
                .filter(|(k, _)| k.starts_with("COWRIE_"))
                .collect(),
            files: Vec::new(),
        }
    }

    /// The files read so far, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads a file on top of what was read before (later wins per key).
    pub fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let bytes = fs::read(path).map_err(|io| ConfigError::Read {
            path: path.to_path_buf(),
            io,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Parse {
            file: path.display().to_string(),
            message: format!(
                "the file is not UTF-8 text (invalid byte at offset {}): Cowrie reads it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        })?;
        self.read_text(&text, Some(path))
            .map_err(|e| ConfigError::Parse {
                file: path.display().to_string(),
                message: match e {
                    IniError::Syntax { line, message, .. } => format!("line {line}: {message}"),
                    other => other.to_string(),
                },
            })?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// Parses `text` (from `path`, or the embedded defaults when None) on top
    /// of what was read before. Nothing is changed when it fails.
    pub fn read_text(&mut self, text: &str, path: Option<&Path>) -> Result<(), IniError> {
        let file = path.map_or_else(
            || format!("<Cowrie {COWRIE_VERSION} defaults>"),
            |p| p.display().to_string(),
        );
        let syntax = |line: usize, message: String| IniError::Syntax {
            file: file.clone(),
            line,
            message,
        };
        // The values of this file: (section, key) -> (lines, line number),
        // in order of appearance; merged at the end, as configparser joins
        // multi-line values once the file is read.
        let mut values: Vec<((Sect, String), Vec<String>, usize)> = Vec::new();
        let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut sections_added: HashSet<String> = HashSet::new();
        let mut new_sections: Vec<String> = Vec::new();
        let mut cursect: Option<Sect> = None;
        // Index into `values` of the option that continuation lines extend.
        let mut optname: Option<usize> = None;
        let mut indent_level = 0usize;

        for (n, raw_line) in text.split('\n').enumerate() {
            let lineno = n + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            let stripped = line.trim();
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            let value = if is_comment { "" } else { stripped };
            if value.is_empty() {
                // A blank line (not a comment) inside a value is kept.
                if !is_comment && cursect.is_some() {
                    if let Some(i) = optname {
                        values[i].1.push(String::new());
                    }
                }
                continue;
            }
            let cur_indent = line.chars().take_while(|c| c.is_whitespace()).count();
            if let (Some(_), Some(i)) = (&cursect, optname) {
                if cur_indent > indent_level {
                    values[i].1.push(value.to_string());
                    continue;
                }
            }
            indent_level = cur_indent;
            // A section header: `[` + at least one character + the last `]`.
            if let Some(rest) = value.strip_prefix('[') {
                if let Some(end) = rest.rfind(']').filter(|&e| e > 0) {
                    let name = &rest[..end];
                    if name == DEFAULT_SECTION {
                        cursect = Some(Sect::Default);
                    } else {
                        let exists = self.sections.contains_key(name)
                            || new_sections.iter().any(|s| s == name);
                        if exists && sections_added.contains(name) {
                            return Err(syntax(
                                lineno,
                                format!(
                                    "the section [{name}] appears twice in this file: \
                                     merge the two into one"
                                ),
                            ));
                        }
                        if !exists {
                            new_sections.push(name.to_string());
                        }
                        sections_added.insert(name.to_string());
                        cursect = Some(Sect::Named(name.to_string()));
                    }
                    optname = None;
                    continue;
                }
            }
            let Some(sect) = cursect.clone() else {
                return Err(syntax(
                    lineno,
                    "a key before the first section header: put it under a section \
                     such as [honeypot]"
                        .to_string(),
                ));
            };
            let Some(delim) = value.find(['=', ':']) else {
                return Err(syntax(
                    lineno,
                    "neither a section header, a `key = value` (or `key: value`) line, nor a \
                     comment (comments start with # or ; at the beginning of a line; a \
                     continuation line must be indented deeper than its key)"
                        .to_string(),
                ));
            };
            let key = value[..delim].trim_end().to_lowercase();
            if key.is_empty() {
                return Err(syntax(
                    lineno,
                    "a value without a key name before its `=` or `:`".to_string(),
                ));
            }
            let id = (sect.name().to_string(), key.clone());
            if index.contains_key(&id) {
                return Err(syntax(
                    lineno,
                    format!(
                        "the key {key} appears twice in [{}] in this file: keep only one",
                        sect.name()
                    ),
                ));
            }
            index.insert(id, values.len());
            optname = Some(values.len());
            values.push((
                (sect, key),
                vec![value[delim + 1..].trim().to_string()],
                lineno,
            ));
        }

        for name in new_sections {
            self.sections.entry(name).or_default();
        }
        for ((sect, key), lines, lineno) in values {
            let entry = Entry {
                value: lines.join("\n").trim_end().to_string(),
                origin: match path {
                    Some(p) => Origin::File {
                        path: p.to_path_buf(),
                        line: lineno,
                    },
                    None => Origin::Defaults,
                },
            };
            match sect {
                Sect::Default => self.defaults.insert(key, entry),
                Sect::Named(s) => self.sections.entry(s).or_default().insert(key, entry),
            };
        }
        Ok(())
    }

    /// Whether the section exists (`[DEFAULT]` always does).
    pub fn has_section(&self, section: &str) -> bool {
        section == DEFAULT_SECTION || self.sections.contains_key(section)
    }

    /// The keys set in the section itself (not inherited from `[DEFAULT]`).
    pub fn own_keys(&self, section: &str) -> Vec<&str> {
        let keys = if section == DEFAULT_SECTION {
            Some(&self.defaults)
        } else {
            self.sections.get(section)
        };
        keys.map(|k| k.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The name of the environment variable that overrides a key.
    pub fn env_key(section: &str, key: &str) -> String {
        format!("cowrie_{section}_{key}").to_uppercase()
    }

    /// The raw entry of `key` in `section` (or `[DEFAULT]`), without the
    /// environment. None when the section or the key does not exist.
    pub(super) fn lookup(&self, section: &str, key: &str) -> Option<&Entry> {
        let own = if section == DEFAULT_SECTION {
            None
        } else {
            Some(self.sections.get(section)?)
        };
        own.and_then(|s| s.get(key))
            .or_else(|| self.defaults.get(key))
    }

    /// `parser.get(section, key, raw=True)` of Cowrie's parser: the
    /// environment first, then the files.
    pub(super) fn get_raw(&self, section: &str, key: &str) -> Option<Entry> {
        let name = Ini::env_key(section, key);
        if let Some(v) = self.env.get(&name) {
            return Some(Entry {
                value: v.clone(),
                origin: Origin::Env(name),
            });
        }
        self.lookup(section, key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::{get, ini, TOKEN};

    use std::path::{Path, PathBuf};

    fn syntax_error(text: &str) -> (usize, String) {
        let mut i = Ini::new(Vec::new());
        match i.read_text(text, Some(Path::new("/c/cowrie.cfg"))) {
            Err(IniError::Syntax {
                line,
                message,
                file,
            }) => {
                assert_eq!(file, "/c/cowrie.cfg");
                (line, message)
            }
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn both_delimiters_and_case_insensitive_keys() {
        let i =
            ini("[honeypot]\nHostName: svr04\nlog_path = var/log/x\nurl = http://a:b=c\nk:v=w\n");
        assert_eq!(get(&i, "honeypot", "hostname").as_deref(), Some("svr04"));
        assert_eq!(
            get(&i, "honeypot", "log_path").as_deref(),
            Some("var/log/x")
        );
        // Split at the first `=` or `:`.
        assert_eq!(get(&i, "honeypot", "url").as_deref(), Some("http://a:b=c"));
        assert_eq!(get(&i, "honeypot", "k").as_deref(), Some("v=w"));
        // Section names are case-sensitive.
        assert_eq!(get(&i, "Honeypot", "hostname"), None);
        assert_eq!(get(&i, "honeypot", "missing"), None);
    }

    #[test]
    fn spaces_around_keys_and_values_and_empty_values() {
        let i = ini("[s]\n  a key   =   spaced value  \nempty =\nalso:\n");
        assert_eq!(get(&i, "s", "a key").as_deref(), Some("spaced value"));
        assert_eq!(get(&i, "s", "empty").as_deref(), Some(""));
        assert_eq!(get(&i, "s", "also").as_deref(), Some(""));
    }

    #[test]
    fn full_line_comments_only() {
        let i = ini("# top\n; top\n[s]\n# a = 1\n  ; b = 2\nc = 3 # not a comment\nd = x ; y\n");
        assert_eq!(get(&i, "s", "a"), None);
        assert_eq!(get(&i, "s", "b"), None);
        assert_eq!(get(&i, "s", "c").as_deref(), Some("3 # not a comment"));
        assert_eq!(get(&i, "s", "d").as_deref(), Some("x ; y"));
    }

    #[test]
    fn continuation_lines() {
        let text =
            "[s]\nlist = one\n  two\n\n    three\n  # a comment inside\n  four\n\n\nnext = 1\n";
        let i = ini(text);
        assert_eq!(
            get(&i, "s", "list").as_deref(),
            Some("one\ntwo\n\nthree\nfour")
        );
        assert_eq!(get(&i, "s", "next").as_deref(), Some("1"));
        // An empty first line, then the value on indented lines.
        let i = ini("[s]\nkey =\n    a\n    b\n");
        assert_eq!(get(&i, "s", "key").as_deref(), Some("\na\nb"));
        // Deeper than the key line, not than column 0.
        let i = ini("[s]\n  k = 1\n  j = 2\n   more\n");
        assert_eq!(get(&i, "s", "k").as_deref(), Some("1"));
        assert_eq!(get(&i, "s", "j").as_deref(), Some("2\nmore"));
        // An indented line right after a section header is a key, not a continuation.
        let i = ini("[s]\n  k = 1\n");
        assert_eq!(get(&i, "s", "k").as_deref(), Some("1"));
        // CRLF line ends.
        let i = ini("[s]\r\nk = 1\r\n  2\r\n");
        assert_eq!(get(&i, "s", "k").as_deref(), Some("1\n2"));
    }

    #[test]
    fn section_headers() {
        let i = ini("[a] trailing\nk = 1\n[b]]\nk = 2\n[ c ]\nk = 3\n");
        assert_eq!(get(&i, "a", "k").as_deref(), Some("1"));
        assert_eq!(get(&i, "b]", "k").as_deref(), Some("2"));
        assert_eq!(get(&i, " c ", "k").as_deref(), Some("3"));
        assert!(i.has_section("a"));
        assert!(!i.has_section("c"));
    }

    #[test]
    fn default_section_is_inherited() {
        let i = ini("[DEFAULT]\nroot = /srv\nk = d\n[s]\nk = own\n[t]\n");
        assert_eq!(get(&i, "s", "root").as_deref(), Some("/srv"));
        assert_eq!(get(&i, "s", "k").as_deref(), Some("own"));
        assert_eq!(get(&i, "t", "k").as_deref(), Some("d"));
        assert_eq!(get(&i, "DEFAULT", "k").as_deref(), Some("d"));
        // Not for a section that does not exist.
        assert_eq!(get(&i, "u", "k"), None);
        assert_eq!(i.own_keys("t"), Vec::<&str>::new());
        assert_eq!(i.own_keys("s"), ["k"]);
        // [DEFAULT] may appear twice.
        let i = ini("[DEFAULT]\na = 1\n[s]\n[DEFAULT]\nb = 2\n");
        assert_eq!(get(&i, "s", "b").as_deref(), Some("2"));
    }

    #[test]
    fn syntax_errors_name_the_line_and_never_quote_it() {
        let (line, msg) = syntax_error("key = 1\n[s]\n");
        assert_eq!(line, 1);
        assert!(msg.contains("before the first section"), "{msg}");
        let (line, msg) = syntax_error(&format!("[s]\na = 1\n{TOKEN}\n"));
        assert_eq!(line, 3);
        assert!(!msg.contains(TOKEN), "{msg}");
        assert!(msg.contains("key = value"), "{msg}");
        let (line, msg) = syntax_error("[s]\n= 1\n");
        assert_eq!(line, 2);
        assert!(msg.contains("without a key"), "{msg}");
        let (line, msg) = syntax_error("[s]\na = 1\n[t]\n[s]\n");
        assert_eq!(line, 4);
        assert!(msg.contains("[s] appears twice"), "{msg}");
        let (line, msg) = syntax_error("[s]\na = 1\nA: 2\n");
        assert_eq!(line, 3);
        assert!(msg.contains("key a appears twice in [s]"), "{msg}");
        let (line, _) = syntax_error("[s]\n[]\n");
        assert_eq!(line, 2);
        let (line, _) = syntax_error("[DEFAULT]\na = 1\n[DEFAULT]\na = 2\n");
        assert_eq!(line, 4);
    }

    #[test]
    fn a_failed_read_changes_nothing() {
        let mut i = ini("[s]\na = 1\n");
        assert!(i.read_text("[s]\na = 2\n[t]\nbogus\n", None).is_err());
        assert_eq!(get(&i, "s", "a").as_deref(), Some("1"));
        assert!(!i.has_section("t"));
    }

    #[test]
    fn later_files_win_per_key_and_sections_merge() {
        let mut i = ini("[s]\na = 1\nb = 2\n[DEFAULT]\nd = x\n");
        i.read_text(
            "[s]\nb = 3\nc = 4\n[DEFAULT]\nd = y\n",
            Some(Path::new("/c/second.cfg")),
        )
        .unwrap();
        assert_eq!(get(&i, "s", "a").as_deref(), Some("1"));
        assert_eq!(get(&i, "s", "b").as_deref(), Some("3"));
        assert_eq!(get(&i, "s", "c").as_deref(), Some("4"));
        assert_eq!(get(&i, "s", "d").as_deref(), Some("y"));
        let v = i.get("s", "b").unwrap().unwrap();
        assert_eq!(
            v.origin,
            Origin::File {
                path: PathBuf::from("/c/second.cfg"),
                line: 2
            }
        );
        assert_eq!(
            i.get("s", "a").unwrap().unwrap().origin.to_string(),
            "/c/etc/cowrie.cfg line 2"
        );
    }
}
