//! Reading the operator's `cowrie.cfg` the way Cowrie 3.1.4 does, and turning
//! it into tjfwd settings (`tjfwd run --cowrie-config`, `tjfwd config
//! import-cowrie`).
//!
//! Three layers:
//!
//! 1. [`Ini`]: an INI reader with the semantics of Python's `configparser`
//!    as Cowrie uses it (`ConfigParser(interpolation=ExtendedInterpolation())`,
//!    default options): sections; `key = value` and `key: value` (split at the
//!    first `=` or `:`); keys lowercased, section names kept as written;
//!    full-line comments starting with `#` or `;` (no inline comments);
//!    continuation lines (a line indented deeper than its key line appends to
//!    the value with a newline; blank lines inside a value are kept, trailing
//!    ones dropped); a `[DEFAULT]` section whose keys every section inherits;
//!    a key or section given twice in one file is an error, later files
//!    override earlier ones per key. Values are interpolated when read:
//!    `${key}` (same section, or `[DEFAULT]`), `${section:key}`, `$$` for a
//!    literal `$`, nested up to 10 levels; a loop is reported as such.
//!    Cowrie's `COWRIE_<SECTION>_<KEY>` environment variables override a key
//!    when it is read (also through `${section:key}`), and are used as they
//!    are, without interpolation. Booleans are read like `getboolean`.
//! 2. [`CowrieSettings`]: the layers Cowrie reads (an embedded copy of the
//!    Cowrie 3.1.4 defaults that matter here, then a `cowrie.cfg.dist` next to
//!    the given file if there is one, then the given file, then the
//!    environment), and the settings tjfwd takes from them: the JSON log
//!    (`[output_jsonlog] logfile`, relative to the Cowrie directory) and every
//!    key of `[output_threatjammer]`.
//! 3. [`load_config`] / [`import_toml`]: a [`Config`] whose `[threatjammer]`
//!    and `[input] cowrie_json` come from cowrie.cfg (checked by the same rules
//!    as the TOML keys, see `config.rs`), or the equivalent TOML text.
//!
//! Only the keys tjfwd needs are interpolated and converted, as Cowrie itself
//! only evaluates the values it reads: a broken value elsewhere in cowrie.cfg
//! is not tjfwd's concern.
//!
//! The bearer token never appears in a message, a warning, a `Debug` output or
//! the imported TOML: parse errors do not quote lines, interpolation errors do
//! not quote values, and [`Value`]'s `Debug` hides its text.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{
    self, Config, ConfigError, LoadOptions, RawThreatJammer, Secret, Supplied, TOKEN_ENV,
};

/// The Cowrie version whose configuration rules and defaults are mirrored.
pub const COWRIE_VERSION: &str = "3.1.4";
/// The placeholder of `[output_threatjammer] bearer_token` in Cowrie's
/// `cowrie.cfg.dist`: it means "no token".
pub const PLACEHOLDER_TOKEN: &str = "THREATJAMMER_API_TOKEN";
/// Where `tjfwd config import-cowrie` tells the operator to put the token.
pub const SUGGESTED_TOKEN_FILE: &str = "/etc/tjfwd/token";
/// The section of Cowrie's Threat Jammer plugin.
pub const PLUGIN_SECTION: &str = "output_threatjammer";
/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;
/// configparser's `default_section`.
const DEFAULT_SECTION: &str = "DEFAULT";
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

/// The Cowrie 3.1.4 defaults tjfwd depends on (from its bundled
/// `cowrie.cfg.dist` and the plugin's fallbacks). `bearer_token` has no usable
/// default. `tags` has none in Cowrie's code, and is commented out in its
/// dist file: the documented value is used (and is tjfwd's default too).
const EMBEDDED_DEFAULTS: &str = "\
[honeypot]
log_path = var/log/cowrie

[output_jsonlog]
enabled = true
logfile = ${honeypot:log_path}/cowrie.json

[output_socketlog]
enabled = false
address = 127.0.0.1:9000

[output_threatjammer]
enabled = false
api_url = https://dublin.report.threatjammer.com/v1/ip
track_login = true
track_session = false
ttl = 86400
category = ABUSE
tags = COWRIE,LOGIN,SESSION
";

// ---------------------------------------------------------------------------
// Origins and values
// ---------------------------------------------------------------------------

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

/// A value read from an [`Ini`], interpolated, with where it was set. Its
/// `Debug` output hides the text (it may be the token).
#[derive(Clone, PartialEq, Eq)]
pub struct Value {
    /// The value.
    pub text: String,
    /// Where the key was set (for an interpolated value: the key itself, not
    /// the keys it refers to).
    pub origin: Origin,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("text", &config::REDACTED)
            .field("origin", &self.origin)
            .finish()
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

// ---------------------------------------------------------------------------
// The INI reader
// ---------------------------------------------------------------------------

/// One key's raw (not interpolated) value.
#[derive(Clone)]
struct Entry {
    value: String,
    origin: Origin,
}

/// A configuration read like Cowrie's `EnvironmentConfigParser` with
/// `ExtendedInterpolation`. See the module documentation for the rules.
pub struct Ini {
    /// `[DEFAULT]`: inherited by every section.
    defaults: BTreeMap<String, Entry>,
    /// The other sections (names as written, case-sensitive), keys lowercased.
    sections: BTreeMap<String, BTreeMap<String, Entry>>,
    /// The `COWRIE_*` environment variables in effect.
    env: BTreeMap<String, String>,
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

/// configparser's `BOOLEAN_STATES`, case-insensitive.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Python's `int(text)` for the forms a configuration holds: surrounding
/// whitespace, an optional sign, ASCII digits with single underscores
/// between them.
pub fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let n: i64 = clean.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// Whether a key's value must never be quoted (same words as config.rs uses).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "passw",
        "bearer",
        "apikey",
        "api_key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
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

    /// Reads the embedded copy of Cowrie's defaults.
    pub fn read_defaults(&mut self) {
        self.read_text(EMBEDDED_DEFAULTS, None)
            .expect("the embedded Cowrie defaults are valid");
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
    fn lookup(&self, section: &str, key: &str) -> Option<&Entry> {
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
    fn get_raw(&self, section: &str, key: &str) -> Option<Entry> {
        let name = Ini::env_key(section, key);
        if let Some(v) = self.env.get(&name) {
            return Some(Entry {
                value: v.clone(),
                origin: Origin::Env(name),
            });
        }
        self.lookup(section, key).cloned()
    }

    /// The value of `key` (lowercase) in `section`, interpolated; None when
    /// the key (or the section) does not exist. An environment override is
    /// returned as it is, as Cowrie does.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<Value>, IniError> {
        let name = Ini::env_key(section, key);
        if let Some(v) = self.env.get(&name) {
            return Ok(Some(Value {
                text: v.clone(),
                origin: Origin::Env(name),
            }));
        }
        let Some(entry) = self.lookup(section, key) else {
            return Ok(None);
        };
        let mut out = String::new();
        let mut stack = vec![(section.to_string(), key.to_string())];
        self.interpolate(
            section,
            key,
            &entry.value,
            &entry.origin,
            1,
            &mut stack,
            &mut out,
        )
        .map_err(|message| IniError::Value {
            section: section.to_string(),
            key: key.to_string(),
            origin: entry.origin.clone(),
            message,
        })?;
        Ok(Some(Value {
            text: out,
            origin: entry.origin.clone(),
        }))
    }

    /// `getboolean`: None when the key does not exist.
    pub fn get_bool(&self, section: &str, key: &str) -> Result<Option<(bool, Origin)>, IniError> {
        let Some(v) = self.get(section, key)? else {
            return Ok(None);
        };
        match parse_bool(&v.text) {
            Some(b) => Ok(Some((b, v.origin))),
            None => Err(IniError::Value {
                section: section.to_string(),
                key: key.to_string(),
                message: format!(
                    "{:?} is not a boolean: write true or false (Cowrie also accepts yes/no, \
                     on/off, 1/0)",
                    v.text
                ),
                origin: v.origin,
            }),
        }
    }

    /// `getint`: None when the key does not exist.
    pub fn get_int(&self, section: &str, key: &str) -> Result<Option<(i64, Origin)>, IniError> {
        let Some(v) = self.get(section, key)? else {
            return Ok(None);
        };
        match parse_int(&v.text) {
            Some(n) => Ok(Some((n, v.origin))),
            None => Err(IniError::Value {
                section: section.to_string(),
                key: key.to_string(),
                message: format!("{:?} is not an integer: write a whole number", v.text),
                origin: v.origin,
            }),
        }
    }

    /// configparser's `ExtendedInterpolation._interpolate_some`, appending
    /// the expansion of `rest` (the value of `key` in `section`) to `out`.
    /// `stack` holds the keys being expanded, to name a loop. Errors are the
    /// message only; they never quote the value.
    #[allow(clippy::too_many_arguments)]
    fn interpolate(
        &self,
        section: &str,
        key: &str,
        rest: &str,
        origin: &Origin,
        depth: usize,
        stack: &mut Vec<(String, String)>,
        out: &mut String,
    ) -> Result<(), String> {
        // Names the key being expanded when it is not the one read.
        let here = if stack.len() > 1 {
            format!("in [{section}] {key} ({origin}): ")
        } else {
            String::new()
        };
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(format!(
                "{here}more than {MAX_INTERPOLATION_DEPTH} levels of ${{...}} references"
            ));
        }
        let secret = stack.iter().any(|(_, k)| is_secret_key(k));
        let mut rest = rest;
        while let Some(p) = rest.find('$') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            match rest.as_bytes().get(1) {
                Some(b'$') => {
                    out.push('$');
                    rest = &rest[2..];
                }
                Some(b'{') => {
                    let Some(close) = rest.find('}').filter(|&c| c > 2) else {
                        return Err(format!(
                            "{here}a `${{` without a name and a closing `}}`: write ${{key}} or \
                             ${{section:key}}, and $$ for a literal $"
                        ));
                    };
                    let reference = &rest[2..close];
                    rest = &rest[close + 1..];
                    let shown = if secret {
                        "a reference".to_string()
                    } else {
                        format!("${{{reference}}}")
                    };
                    let parts: Vec<&str> = reference.split(':').collect();
                    let (sect, opt, found) = match parts.as_slice() {
                        [opt] => {
                            let opt = opt.to_lowercase();
                            let found = self.lookup(section, &opt).cloned();
                            (section.to_string(), opt, found)
                        }
                        [sect, opt] => {
                            let opt = opt.to_lowercase();
                            let found = if self.has_section(sect)
                                || self.env.contains_key(&Ini::env_key(sect, &opt))
                            {
                                self.get_raw(sect, &opt)
                            } else {
                                None
                            };
                            (sect.to_string(), opt, found)
                        }
                        _ => {
                            return Err(format!(
                                "{here}{shown} has more than one `:`: write ${{key}} or \
                                 ${{section:key}}"
                            ))
                        }
                    };
                    // A secret copied into another value could be shown by
                    // that value's messages (a URL, a path...): refused.
                    if is_secret_key(&opt) && !is_secret_key(&stack[0].1) {
                        return Err(format!(
                            "{here}{shown} refers to [{sect}] {opt}, which holds a secret: \
                             tjfwd does not copy it into another value"
                        ));
                    }
                    let Some(entry) = found else {
                        let why = if sect == DEFAULT_SECTION {
                            format!("[DEFAULT] has no key {opt}")
                        } else if self.has_section(&sect) {
                            format!("[{sect}] has no key {opt} (nor has [DEFAULT])")
                        } else {
                            format!("there is no section [{sect}]")
                        };
                        return Err(format!("{here}{shown} refers to nothing: {why}"));
                    };
                    if entry.value.contains('$') {
                        let pair = (sect.clone(), opt.clone());
                        if let Some(pos) = stack.iter().position(|s| *s == pair) {
                            let mut chain: Vec<String> = stack[pos..]
                                .iter()
                                .map(|(s, k)| format!("[{s}] {k}"))
                                .collect();
                            chain.push(format!("[{sect}] {opt}"));
                            return Err(format!(
                                "the ${{...}} references form a loop: {}",
                                chain.join(" -> ")
                            ));
                        }
                        stack.push(pair);
                        self.interpolate(
                            &sect,
                            &opt,
                            &entry.value,
                            &entry.origin,
                            depth + 1,
                            stack,
                            out,
                        )?;
                        stack.pop();
                    } else {
                        out.push_str(&entry.value);
                    }
                }
                _ => {
                    return Err(format!(
                        "{here}a `$` must be followed by `{{` (a ${{key}} or ${{section:key}} \
                         reference) or by another `$` (write $$ for a literal $)"
                    ))
                }
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Cowrie's layout and the settings tjfwd takes
// ---------------------------------------------------------------------------

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
    threatjammer: RawThreatJammer,
    /// Where each `[output_threatjammer]` key was set, to name it in errors.
    origins: BTreeMap<String, Origin>,
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

/// The directory Cowrie runs in, for a cowrie.cfg at `file` (absolute):
/// the file's directory, or its parent when that directory is `etc`
/// (Cowrie's layout: `etc/cowrie.cfg` next to `var/log/cowrie`).
pub fn cowrie_dir_for(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("/"));
    match (dir.file_name(), dir.parent()) {
        (Some(name), Some(parent)) if name == "etc" => parent.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

fn absolute(p: &Path) -> PathBuf {
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

    /// The configuration of `tjfwd run`: `[threatjammer]` and `[input]
    /// cowrie_json` from these settings, everything else from the TOML file
    /// `toml` (which must not set them) or the defaults. `env_token` stands
    /// for `TJFWD_BEARER_TOKEN`, used when cowrie.cfg holds no token.
    pub fn into_config(
        self,
        toml: Option<&Path>,
        opts: &LoadOptions,
        env_token: Option<String>,
    ) -> Result<Config, ConfigError> {
        let shown = self.file.display().to_string();
        let sec = format!("[{PLUGIN_SECTION}]");
        let no_input = match &self.socketlog {
            Some(address) => format!(
                "[output_jsonlog] is disabled (enabled = false): tjfwd needs Cowrie's JSON log \
                 or its socket output. Cowrie's [output_socketlog] is enabled and sends to \
                 {address:?}: run tjfwd with a --config file that sets [input] listen_tcp = \
                 {address:?}, or set [output_jsonlog] enabled = true in cowrie.cfg"
            ),
            None => "[output_jsonlog] is disabled (enabled = false): tjfwd needs Cowrie's JSON \
                     log or its socket output: set [output_jsonlog] enabled = true in \
                     cowrie.cfg, or enable [output_socketlog] there and run tjfwd with a \
                     --config file that sets [input] listen_tcp to its address"
                .to_string(),
        };
        let origins = self.origins;
        let supplied = Supplied {
            file: shown.clone(),
            section: sec.clone(),
            threatjammer: self.threatjammer,
            cowrie_json: self.json_log,
            cowrie_json_key: "[output_jsonlog] logfile".to_string(),
            no_input: ("[output_jsonlog] enabled".to_string(), no_input),
            token_hint: format!(
                "{sec} bearer_token has none (Cowrie's placeholder {PLACEHOLDER_TOKEN} counts \
                 as none): set it there, or set the environment variable {TOKEN_ENV}, or use \
                 --dry-run"
            ),
            warnings: self.warnings,
            notes: self.notes,
        };
        let mut config =
            config::load_with(toml, opts, env_token, Some(supplied)).map_err(|e| match e {
                // Say where in cowrie.cfg (or the environment) a refused value was set.
                ConfigError::Invalid { file, key, message } if file == shown => {
                    let origin = key
                        .strip_prefix(&sec)
                        .map(str::trim)
                        .and_then(|k| origins.get(k));
                    match origin {
                        Some(Origin::File { path, line }) => ConfigError::Invalid {
                            file: path.display().to_string(),
                            key,
                            message: format!("{message} (line {line})"),
                        },
                        Some(o @ Origin::Env(_)) => ConfigError::Invalid {
                            file,
                            key,
                            message: format!("{message} (set by {o})"),
                        },
                        _ => ConfigError::Invalid { file, key, message },
                    }
                }
                other => other,
            })?;
        if config.path.is_none() {
            config.path = Some(self.file);
        }
        Ok(config)
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// The configuration of `tjfwd run --cowrie-config FILE [--cowrie-dir DIR]
/// [--config TOML]`, with the process's environment (`COWRIE_*` overrides,
/// `TJFWD_BEARER_TOKEN`).
pub fn load_config(
    cowrie_cfg: &Path,
    cowrie_dir: Option<&Path>,
    toml: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Config, ConfigError> {
    CowrieSettings::read(cowrie_cfg, cowrie_dir)?.into_config(
        toml,
        opts,
        std::env::var(TOKEN_ENV).ok(),
    )
}

/// What `tjfwd config import-cowrie` prints, and what it has to say.
#[derive(Debug)]
pub struct Imported {
    /// The tjfwd TOML configuration (never holds the token).
    pub toml: String,
    /// Warnings (also written as comments at the top of `toml`).
    pub warnings: Vec<String>,
    /// Informational remarks.
    pub notes: Vec<String>,
}

/// `tjfwd config import-cowrie FILE [--cowrie-dir DIR]`: the tjfwd TOML
/// configuration equivalent to a cowrie.cfg, with the process's `COWRIE_*`
/// environment variables.
pub fn import_toml(cowrie_cfg: &Path, cowrie_dir: Option<&Path>) -> Result<Imported, ConfigError> {
    import_settings(CowrieSettings::read(cowrie_cfg, cowrie_dir)?)
}

/// [`import_toml`] from settings already read.
pub fn import_settings(settings: CowrieSettings) -> Result<Imported, ConfigError> {
    let file = absolute(&settings.file);
    let files_read: Vec<String> = settings
        .files_read
        .iter()
        .map(|p| absolute(p).display().to_string())
        .collect();
    let env_overrides = settings.env_overrides.clone();
    let cowrie_dir = settings.cowrie_dir.clone();
    let has_token = settings.has_token;
    // Checked as `run` would check it; the token is not needed to print.
    let config = settings.into_config(None, &LoadOptions { dry_run: true }, None)?;
    let toml = render(&RenderInput {
        config: &config,
        file: &file,
        files_read: &files_read,
        env_overrides: &env_overrides,
        cowrie_dir: &cowrie_dir,
        has_token,
    });
    Ok(Imported {
        toml,
        warnings: config.warnings,
        notes: config.notes,
    })
}

// ---------------------------------------------------------------------------
// The imported TOML
// ---------------------------------------------------------------------------

struct RenderInput<'a> {
    config: &'a Config,
    file: &'a Path,
    files_read: &'a [String],
    env_overrides: &'a [String],
    cowrie_dir: &'a Path,
    has_token: bool,
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `text` as `# ` comment lines of at most about 78 columns, the first
/// starting with `first`, the next ones indented like it.
fn comment(out: &mut String, first: &str, text: &str) {
    let indent = " ".repeat(first.len() + 1);
    let mut line = format!("# {first}");
    let mut empty = first.is_empty();
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > 78 {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("# {indent}");
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// A `key = value` line with its comment aligned at column 33, like
/// packaging/tjfwd.toml.
fn kv(out: &mut String, key: &str, value: &str, note: &str) {
    let line = format!("{key} = {value}");
    if note.is_empty() {
        out.push_str(&line);
    } else {
        out.push_str(&format!("{line:<31} # {note}"));
    }
    out.push('\n');
}

fn render(r: &RenderInput<'_>) -> String {
    let c = r.config;
    let tj = &c.threatjammer;
    let mut out = String::new();
    out.push_str(&format!(
        "# tjfwd configuration imported from Cowrie's {} by\n\
         # `tjfwd config import-cowrie` (tjfwd {}). Use it with `tjfwd run --config FILE`.\n#\n",
        r.file.display(),
        env!("CARGO_PKG_VERSION")
    ));
    let mut read = vec![format!(
        "Cowrie {COWRIE_VERSION}'s defaults (built into tjfwd)"
    )];
    read.extend(r.files_read.iter().cloned());
    comment(&mut out, "Read:", &read.join(", "));
    if !r.env_overrides.is_empty() {
        comment(&mut out, "Environment:", &r.env_overrides.join(", "));
    }
    comment(
        &mut out,
        "Cowrie directory:",
        &format!(
            "{} (the relative paths of cowrie.cfg are relative to it)",
            r.cowrie_dir.display()
        ),
    );
    out.push_str(
        "#\n# [threatjammer] holds the keys of cowrie.cfg's [output_threatjammer] and\n\
         # [input] cowrie_json its [output_jsonlog] logfile; everything else has\n\
         # tjfwd's defaults. Every key is optional; unknown keys are refused.\n",
    );
    for w in &c.warnings {
        out.push_str("#\n");
        comment(&mut out, "WARNING:", w);
    }
    out.push('\n');

    out.push_str("# The sled database (the queue). Created 0700.\n");
    kv(
        &mut out,
        "state_dir",
        &q(&c.state_dir.to_string_lossy()),
        "",
    );
    out.push('\n');

    out.push_str("# From [output_threatjammer] of cowrie.cfg.\n[threatjammer]\n");
    kv(&mut out, "api_url", &q(tj.api_url.as_str()), "");
    if r.has_token {
        out.push_str(&format!(
            "# cowrie.cfg holds the API token; it is not copied here. Put it in this file,\n\
             # readable only by the user tjfwd runs as, e.g. (paste the token, then Ctrl-D):\n\
             #   install -m 600 -o tjfwd /dev/stdin {SUGGESTED_TOKEN_FILE}\n"
        ));
        kv(&mut out, "bearer_token_file", &q(SUGGESTED_TOKEN_FILE), "");
    } else {
        out.push_str(&format!(
            "# cowrie.cfg holds no API token (only Cowrie's placeholder). Put yours in a file\n\
             # readable only by tjfwd's user and uncomment the next line, or set the\n\
             # environment variable {TOKEN_ENV}. Without a token only --dry-run works.\n"
        ));
        out.push_str(&format!(
            "# bearer_token_file = {}\n",
            q(SUGGESTED_TOKEN_FILE)
        ));
    }
    kv(
        &mut out,
        "track_login",
        &tj.track_login.to_string(),
        "report cowrie.login.* events",
    );
    kv(
        &mut out,
        "track_session",
        &tj.track_session.to_string(),
        "report cowrie.session.* events",
    );
    kv(
        &mut out,
        "ttl",
        &tj.ttl.to_string(),
        "seconds in your private denylist",
    );
    kv(
        &mut out,
        "category",
        &q(&tj.category),
        "the dataset (\"type\" in the API)",
    );
    let tags = if tj.tags.is_empty() {
        "[]".to_string()
    } else {
        q(&tj.tags.join(","))
    };
    kv(&mut out, "tags", &tags, "");
    kv(
        &mut out,
        "allow_insecure_http",
        &tj.allow_insecure_http.to_string(),
        "plain http:// only to loopback hosts otherwise",
    );
    out.push('\n');

    let input = &c.input;
    out.push_str("[input]\n");
    match &input.cowrie_json {
        Some(p) => {
            out.push_str("# [output_jsonlog] logfile of cowrie.cfg.\n");
            kv(&mut out, "cowrie_json", &q(&p.to_string_lossy()), "");
        }
        None => out.push_str("# cowrie.cfg names no JSON log.\n"),
    }
    kv(
        &mut out,
        "start_at",
        &q(input.start_at.as_str()),
        "first run only (no checkpoint yet): \"end\" | \"beginning\"",
    );
    kv(
        &mut out,
        "poll_interval",
        &q(&config::format_duration(input.poll_interval)),
        "how often an idle tailer looks for new data",
    );
    kv(
        &mut out,
        "max_line_bytes",
        &q(&config::format_size(input.max_line_bytes as u64)),
        "longer lines are skipped and counted",
    );
    match input.listen_tcp {
        Some(a) => kv(&mut out, "listen_tcp", &q(&a.to_string()), ""),
        None => out.push_str(
            "# listen_tcp = \"127.0.0.1:9000\"  # also take Cowrie's [output_socketlog] (TCP)\n",
        ),
    }
    kv(
        &mut out,
        "max_connections",
        &input.max_connections.to_string(),
        "socket clients at once (with listen_tcp)",
    );
    out.push('\n');

    let s = &c.schedule;
    out.push_str("[schedule]\n");
    kv(
        &mut out,
        "batch_size",
        &s.batch_size.to_string(),
        "1..=1000 addresses a request",
    );
    kv(
        &mut out,
        "flush_interval",
        &q(&config::format_duration(s.flush_interval)),
        "longest an address waits for a batch to fill",
    );
    kv(
        &mut out,
        "max_requests_per_minute",
        &s.max_requests_per_minute.to_string(),
        "the API's limit, rolling 60 s window, retries included",
    );
    kv(
        &mut out,
        "request_timeout",
        &q(&config::format_duration(s.request_timeout)),
        "",
    );
    kv(
        &mut out,
        "max_backoff",
        &q(&config::format_duration(s.max_backoff)),
        "cap of the retry delay after server errors",
    );
    kv(
        &mut out,
        "rereport_after",
        &q(&config::format_duration(s.rereport_after)),
        "a sighting this soon after the last report does not re-queue",
    );
    out.push('\n');

    out.push_str("[filter]\n");
    kv(
        &mut out,
        "report_non_public",
        &c.filter.report_non_public.to_string(),
        "private, loopback, documentation... addresses are skipped",
    );
    let allow: Vec<String> = c
        .filter
        .allowlist
        .iter()
        .map(|n| q(&n.to_string()))
        .collect();
    kv(
        &mut out,
        "allowlist",
        &format!("[{}]", allow.join(", ")),
        "CIDRs never reported, e.g. [\"192.0.2.0/24\"]",
    );
    out.push('\n');

    out.push_str("[storage]\n");
    kv(
        &mut out,
        "cache_capacity",
        &q(&config::format_size(c.storage.cache_capacity)),
        "sled's page cache",
    );
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "tj-UNIT-test-token-7c1e";

    fn ini(text: &str) -> Ini {
        ini_env(text, &[])
    }

    fn ini_env(text: &str, env: &[(&str, &str)]) -> Ini {
        let mut i = Ini::new(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        i.read_text(text, Some(Path::new("/c/etc/cowrie.cfg")))
            .unwrap_or_else(|e| panic!("{e}"));
        i
    }

    fn get(i: &Ini, section: &str, key: &str) -> Option<String> {
        i.get(section, key)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|v| v.text)
    }

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

    fn value_error(i: &Ini, section: &str, key: &str) -> String {
        match i.get(section, key) {
            Err(e @ IniError::Value { .. }) => e.to_string(),
            other => panic!("expected an error, got {other:?}"),
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

    #[test]
    fn interpolation() {
        let text = "[DEFAULT]\nbase = /srv\n\
                    [honeypot]\nlog_path = ${base}/log\nstate = ${log_path}/../state\n\
                    [output_jsonlog]\nlogfile = ${honeypot:log_path}/cowrie.json\n\
                    price = $$5 and $${literal}\nrefdefault = ${DEFAULT:base}\n\
                    upper = ${honeypot:LOG_PATH}\nnested = ${honeypot:state}\n";
        let i = ini(text);
        assert_eq!(get(&i, "honeypot", "log_path").as_deref(), Some("/srv/log"));
        assert_eq!(
            get(&i, "output_jsonlog", "logfile").as_deref(),
            Some("/srv/log/cowrie.json")
        );
        assert_eq!(
            get(&i, "output_jsonlog", "price").as_deref(),
            Some("$5 and ${literal}")
        );
        assert_eq!(
            get(&i, "output_jsonlog", "refdefault").as_deref(),
            Some("/srv")
        );
        // Key names in references are case-insensitive.
        assert_eq!(
            get(&i, "output_jsonlog", "upper").as_deref(),
            Some("/srv/log")
        );
        // A reference from another section is expanded in its own section.
        assert_eq!(
            get(&i, "output_jsonlog", "nested").as_deref(),
            Some("/srv/log/../state")
        );
    }

    #[test]
    fn a_default_value_is_interpolated_in_the_section_read() {
        let i = ini("[DEFAULT]\npath = ${name}.log\n[a]\nname = first\n[b]\nname = second\n");
        assert_eq!(get(&i, "a", "path").as_deref(), Some("first.log"));
        assert_eq!(get(&i, "b", "path").as_deref(), Some("second.log"));
    }

    #[test]
    fn interpolation_errors() {
        let i = ini(
            "[s]\nmissing = ${nokey}\nnosect = ${nosection:key}\nother = ${t:nokey}\n\
             colons = ${a:b:c}\nunclosed = ${abc\nempty = ${}\ndollar = 5$\nbad = $x\n\
             deep = ${missing}\n[t]\n",
        );
        let msg = value_error(&i, "s", "missing");
        assert!(msg.contains("${nokey} refers to nothing"), "{msg}");
        assert!(msg.contains("[s] has no key nokey"), "{msg}");
        assert!(msg.contains("/c/etc/cowrie.cfg line 2"), "{msg}");
        let msg = value_error(&i, "s", "nosect");
        assert!(msg.contains("there is no section [nosection]"), "{msg}");
        let msg = value_error(&i, "s", "other");
        assert!(msg.contains("[t] has no key nokey"), "{msg}");
        let msg = value_error(&i, "s", "colons");
        assert!(msg.contains("more than one `:`"), "{msg}");
        for key in ["unclosed", "empty"] {
            let msg = value_error(&i, "s", key);
            assert!(msg.contains("closing"), "{key}: {msg}");
        }
        for key in ["dollar", "bad"] {
            let msg = value_error(&i, "s", key);
            assert!(msg.contains("$$"), "{key}: {msg}");
        }
        // An error in a referenced key names that key too.
        let msg = value_error(&i, "s", "deep");
        assert!(
            msg.starts_with(
                "[s] deep (/c/etc/cowrie.cfg line 10): in [s] missing \
                 (/c/etc/cowrie.cfg line 2): ${nokey} refers to nothing"
            ),
            "{msg}"
        );
    }

    #[test]
    fn interpolation_loops_and_depth() {
        let i = ini("[s]\na = ${b}\nb = ${t:c}\nself = x${self}\n[t]\nc = ${s:a}\n");
        let msg = value_error(&i, "s", "a");
        assert!(
            msg.contains("loop: [s] a -> [s] b -> [t] c -> [s] a"),
            "{msg}"
        );
        let msg = value_error(&i, "s", "self");
        assert!(msg.contains("loop: [s] self -> [s] self"), "{msg}");

        // A chain of 10 levels is fine, 11 is not (configparser's limit).
        let mut text = String::from("[s]\nk0 = end\n");
        for n in 1..=11 {
            text.push_str(&format!("k{n} = ${{k{}}}\n", n - 1));
        }
        let i = ini(&text);
        // k9 -> ... -> k1 -> k0: k1..k9 hold references, 9 levels.
        assert_eq!(get(&i, "s", "k9").as_deref(), Some("end"));
        assert_eq!(get(&i, "s", "k10").as_deref(), Some("end"));
        let msg = value_error(&i, "s", "k11");
        assert!(msg.contains("more than 10 levels"), "{msg}");
    }

    #[test]
    fn interpolation_errors_do_not_quote_secret_values() {
        let i = ini(&format!(
            "[output_threatjammer]\nbearer_token = {TOKEN}${{{TOKEN}}}\nother = $oops{TOKEN}\n"
        ));
        let msg = value_error(&i, "output_threatjammer", "bearer_token");
        assert!(!msg.contains(TOKEN), "{msg}");
        let msg = value_error(&i, "output_threatjammer", "other");
        assert!(!msg.contains(TOKEN), "{msg}");
        let v = i.get("output_threatjammer", "other");
        assert!(!format!("{v:?}").contains(TOKEN));
        // A secret interpolated into another value is refused, so that the
        // other value's messages cannot show it.
        let i = ini(&format!(
            "[output_threatjammer]\nbearer_token = {TOKEN}\n\
             api_url = https://x.example/${{bearer_token}}\n\
             [output_jsonlog]\nlogfile = ${{output_threatjammer:bearer_token}}/x\n\
             [honeypot]\nlog_path = ${{output_threatjammer:api_url}}\n"
        ));
        for (section, key) in [
            ("output_threatjammer", "api_url"),
            ("output_jsonlog", "logfile"),
            ("honeypot", "log_path"),
        ] {
            let msg = value_error(&i, section, key);
            assert!(msg.contains("holds a secret"), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
        }
        let i = ini(&format!("[output_threatjammer]\nbearer_token = {TOKEN}\n"));
        let v = i
            .get("output_threatjammer", "bearer_token")
            .unwrap()
            .unwrap();
        assert_eq!(v.text, TOKEN);
        assert!(!format!("{v:?}").contains(TOKEN));
        assert!(!format!("{i:?}").contains(TOKEN));
    }

    #[test]
    fn environment_overrides() {
        let text = "[honeypot]\nlog_path = var/log/cowrie\n\
                    [output_jsonlog]\nlogfile = ${honeypot:log_path}/cowrie.json\nsame = ${own}\nown = 1\n";
        let i = ini_env(
            text,
            &[
                ("COWRIE_HONEYPOT_LOG_PATH", "/var/log/honeypot"),
                ("COWRIE_OUTPUT_JSONLOG_OWN", "2"),
                ("COWRIE_OUTPUT_JSONLOG_RAW", "${not interpolated}"),
                ("COWRIE_NEWSECTION_KEY", "x"),
                ("OTHER_VAR", "y"),
            ],
        );
        // Through ${section:key}, as Cowrie's get(raw=True) sees the environment.
        assert_eq!(
            get(&i, "output_jsonlog", "logfile").as_deref(),
            Some("/var/log/honeypot/cowrie.json")
        );
        // Not through ${key} (configparser reads the section's own map).
        assert_eq!(get(&i, "output_jsonlog", "same").as_deref(), Some("1"));
        assert_eq!(get(&i, "output_jsonlog", "own").as_deref(), Some("2"));
        // Used as it is.
        assert_eq!(
            get(&i, "output_jsonlog", "raw").as_deref(),
            Some("${not interpolated}")
        );
        // Even in a section that no file has.
        assert_eq!(get(&i, "newsection", "key").as_deref(), Some("x"));
        assert_eq!(
            i.get("output_jsonlog", "own").unwrap().unwrap().origin,
            Origin::Env("COWRIE_OUTPUT_JSONLOG_OWN".into())
        );
        assert_eq!(
            Ini::env_key("output_threatjammer", "ttl"),
            "COWRIE_OUTPUT_THREATJAMMER_TTL"
        );
    }

    #[test]
    fn booleans_and_integers() {
        for t in ["1", "yes", "TRUE", "On", "true"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for t in ["0", "no", "False", "OFF"] {
            assert_eq!(parse_bool(t), Some(false), "{t}");
        }
        for t in ["", "y", "2", " true", "enabled"] {
            assert_eq!(parse_bool(t), None, "{t}");
        }
        assert_eq!(parse_int(" 86400 "), Some(86400));
        assert_eq!(parse_int("+5"), Some(5));
        assert_eq!(parse_int("-5"), Some(-5));
        assert_eq!(parse_int("86_400"), Some(86400));
        for t in ["", "1.5", "1e3", "_1", "1_", "1__0", "0x10", "ten", "- 5"] {
            assert_eq!(parse_int(t), None, "{t}");
        }
        let i = ini("[s]\nb = maybe\nn = 1d\nok = Yes\n");
        let e = i.get_bool("s", "b").unwrap_err().to_string();
        assert!(e.contains("\"maybe\" is not a boolean"), "{e}");
        let e = i.get_int("s", "n").unwrap_err().to_string();
        assert!(e.contains("\"1d\" is not an integer"), "{e}");
        assert!(i.get_bool("s", "ok").unwrap().unwrap().0);
        assert_eq!(i.get_bool("s", "none").unwrap(), None);
    }

    #[test]
    fn the_embedded_defaults() {
        let mut i = Ini::new(Vec::new());
        i.read_defaults();
        assert_eq!(
            get(&i, "output_jsonlog", "logfile").as_deref(),
            Some("var/log/cowrie/cowrie.json")
        );
        assert!(i.get_bool("output_jsonlog", "enabled").unwrap().unwrap().0);
        assert!(!i.get_bool(PLUGIN_SECTION, "enabled").unwrap().unwrap().0);
        assert_eq!(
            get(&i, PLUGIN_SECTION, "api_url").as_deref(),
            Some(config::DEFAULT_API_URL)
        );
        assert_eq!(get(&i, PLUGIN_SECTION, "bearer_token"), None);
        assert_eq!(
            i.get(PLUGIN_SECTION, "ttl").unwrap().unwrap().origin,
            Origin::Defaults
        );
    }

    #[test]
    fn cowrie_dir_follows_the_layout() {
        assert_eq!(
            cowrie_dir_for(Path::new("/home/cowrie/cowrie/etc/cowrie.cfg")),
            Path::new("/home/cowrie/cowrie")
        );
        assert_eq!(
            cowrie_dir_for(Path::new("/home/cowrie/cowrie/cowrie.cfg")),
            Path::new("/home/cowrie/cowrie")
        );
        assert_eq!(cowrie_dir_for(Path::new("/etc/cowrie.cfg")), Path::new("/"));
        assert_eq!(
            cowrie_dir_for(Path::new("/etc/cowrie/cowrie.cfg")),
            Path::new("/etc/cowrie")
        );
    }

    // -- CowrieSettings --------------------------------------------------

    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let t = Tree {
                dir: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(t.dir.path().join("etc")).unwrap();
            fs::create_dir_all(t.dir.path().join("var/log/cowrie")).unwrap();
            t
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.root().join(rel);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            p
        }
        fn settings(
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
        fn config(
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
    fn the_placeholder_is_no_token_and_the_env_token_is_the_fallback() {
        let t = Tree::new();
        for text in [
            "[output_threatjammer]\nbearer_token = THREATJAMMER_API_TOKEN\n",
            "[output_threatjammer]\nbearer_token =\n",
            "",
        ] {
            let s = t.settings(text, &[]).unwrap();
            assert!(!s.has_token, "{text}");
            let err = t.config(text, &[], None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("no Threat Jammer bearer token"), "{msg}");
            assert!(msg.contains(TOKEN_ENV), "{msg}");
            assert!(msg.contains("[output_threatjammer] bearer_token"), "{msg}");
            assert!(
                msg.starts_with(&t.root().join("etc/cowrie.cfg").display().to_string()),
                "{msg}"
            );
            let c = t.config(text, &[], Some(TOKEN)).unwrap();
            assert_eq!(c.threatjammer.token.unwrap().expose(), TOKEN);
        }
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
    fn invalid_values_name_the_file_section_key_and_line() {
        let t = Tree::new();
        let cfg = t.root().join("etc/cowrie.cfg").display().to_string();
        let cases = [
            (
                "[output_threatjammer]\nttl = 0\n",
                "[output_threatjammer] ttl",
                "greater than 0",
            ),
            (
                "[output_threatjammer]\nttl = 1d\n",
                "[output_threatjammer] ttl",
                "not an integer",
            ),
            (
                "[output_threatjammer]\ncategory = abuse\n",
                "[output_threatjammer] category",
                "\"ABUSE\"",
            ),
            (
                "[output_threatjammer]\ntags = COWRIE,ssh\n",
                "[output_threatjammer] tags",
                "\"SSH\"",
            ),
            (
                "[output_threatjammer]\napi_url = http://example.com/v1/ip\n",
                "[output_threatjammer] api_url",
                "[output_threatjammer] allow_insecure_http",
            ),
            (
                "[output_threatjammer]\ntrack_login = maybe\n",
                "[output_threatjammer] track_login",
                "boolean",
            ),
            (
                "[output_jsonlog]\nenabled = sure\n",
                "[output_jsonlog] enabled",
                "boolean",
            ),
            (
                "[output_jsonlog]\nlogfile = ${honeypot:nope}/x\n",
                "[output_jsonlog] logfile",
                "refers to nothing",
            ),
        ];
        for (text, key, what) in cases {
            let err = t.config(text, &[], Some(TOKEN)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&cfg), "{text}: {msg}");
            assert!(msg.contains(key), "{text}: {msg}");
            assert!(msg.contains(what), "{text}: {msg}");
            assert!(msg.contains("line 2"), "{text}: {msg}");
            match err {
                ConfigError::Invalid { key: k, .. } => assert_eq!(k, key),
                other => panic!("{other:?}"),
            }
        }
        // A value from the environment says so.
        let err = t
            .config("", &[("COWRIE_OUTPUT_THREATJAMMER_TTL", "-1")], Some(TOKEN))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("COWRIE_OUTPUT_THREATJAMMER_TTL"), "{msg}");
        assert!(msg.starts_with(&cfg), "{msg}");
    }

    #[test]
    fn a_malformed_token_is_refused_without_being_shown() {
        let t = Tree::new();
        let text = format!("[output_threatjammer]\nbearer_token = {TOKEN} {TOKEN}\n");
        let err = t.config(&text, &[], None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[output_threatjammer] bearer_token"), "{msg}");
        assert!(!msg.contains(TOKEN), "{msg}");
        assert!(!format!("{err:?}").contains(TOKEN));
    }

    #[test]
    fn disabled_json_log_is_an_error_that_points_at_socketlog() {
        let t = Tree::new();
        let err = t
            .config("[output_jsonlog]\nenabled = false\n", &[], Some(TOKEN))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[output_jsonlog]"), "{msg}");
        assert!(msg.contains("socket"), "{msg}");
        let err = t
            .config(
                "[output_jsonlog]\nenabled = false\n[output_socketlog]\nenabled = true\naddress = 127.0.0.1:9100\n",
                &[],
                Some(TOKEN),
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("listen_tcp = \"127.0.0.1:9100\""), "{msg}");
    }

    #[test]
    fn a_toml_file_adds_the_rest_and_may_not_set_what_cowrie_cfg_sets() {
        let t = Tree::new();
        let toml = t.write(
            "tjfwd.toml",
            "state_dir = \"state\"\n[input]\nstart_at = \"beginning\"\n[schedule]\nbatch_size = 10\n",
        );
        let s = t.settings("[output_threatjammer]\nttl = 5\n", &[]).unwrap();
        let c = s
            .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
            .unwrap();
        assert_eq!(c.threatjammer.ttl, 5);
        assert_eq!(c.schedule.batch_size, 10);
        assert_eq!(c.input.start_at, crate::config::StartAt::Beginning);
        assert_eq!(c.state_dir, t.root().join("state"));
        assert_eq!(c.path.as_deref(), Some(toml.as_path()));

        for (extra, key) in [
            (
                "[threatjammer]\napi_url = \"https://x.example/v1/ip\"\n",
                "[threatjammer] api_url",
            ),
            (
                "[threatjammer]\nbearer_token_file = \"token\"\n",
                "[threatjammer] bearer_token_file",
            ),
            ("[input]\ncowrie_json = \"x.json\"\n", "[input] cowrie_json"),
        ] {
            let toml = t.write("tjfwd.toml", extra);
            let err = t
                .settings("", &[])
                .unwrap()
                .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&toml.display().to_string()), "{msg}");
            assert!(msg.contains(key), "{msg}");
            assert!(
                msg.contains(&t.root().join("etc/cowrie.cfg").display().to_string()),
                "{msg}"
            );
        }

        // With the JSON log disabled, a TOML listen_tcp is the input.
        let toml = t.write("tjfwd.toml", "[input]\nlisten_tcp = \"127.0.0.1:9000\"\n");
        let c = t
            .settings("[output_jsonlog]\nenabled = false\n", &[])
            .unwrap()
            .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
            .unwrap();
        assert_eq!(c.input.cowrie_json, None);
        assert_eq!(c.input.listen_tcp, Some("127.0.0.1:9000".parse().unwrap()));
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

    #[test]
    fn import_round_trips_through_the_toml_loader() {
        let t = Tree::new();
        let text = format!(
            "[honeypot]\nlog_path = /srv/cowrie/log\n[output_threatjammer]\nenabled = true\n\
             bearer_token = {TOKEN}\nttl = 600\ntags = COWRIE\ntrack_session = true\n"
        );
        let s = t.settings(&text, &[]).unwrap();
        let expected = t
            .settings(&text, &[])
            .unwrap()
            .into_config(None, &LoadOptions { dry_run: true }, None)
            .unwrap();
        let imported = import_settings(s).unwrap();
        let out = &imported.toml;
        assert!(!out.contains(TOKEN), "{out}");
        assert!(
            out.contains("bearer_token_file = \"/etc/tjfwd/token\""),
            "{out}"
        );
        assert!(out.contains("enabled = false"), "{out}");
        assert!(imported
            .warnings
            .iter()
            .any(|w| w.contains("enabled = true")));
        // Load it back, with a token file where the comment says.
        let token = t.write("token", TOKEN);
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        let out = out.replace("/etc/tjfwd/token", &token.display().to_string());
        let back = Config::from_toml_str(&out, None, &LoadOptions::default(), None)
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(back.threatjammer.token.as_ref().unwrap().expose(), TOKEN);
        let mut back_tj = back.threatjammer.clone();
        back_tj.token = None;
        let mut expected_tj = expected.threatjammer.clone();
        expected_tj.token = None;
        assert_eq!(back_tj, expected_tj);
        assert_eq!(back.input, expected.input);
        assert_eq!(back.schedule, expected.schedule);
        assert_eq!(back.filter, expected.filter);
        assert_eq!(back.storage, expected.storage);
        assert_eq!(back.state_dir, expected.state_dir);
    }

    #[test]
    fn import_without_a_token_comments_the_token_file_out() {
        let t = Tree::new();
        let imported = import_settings(t.settings("", &[]).unwrap()).unwrap();
        let out = &imported.toml;
        assert!(
            out.contains("# bearer_token_file = \"/etc/tjfwd/token\""),
            "{out}"
        );
        assert!(!out.contains("\nbearer_token_file"), "{out}");
        let back = Config::from_toml_str(out, None, &LoadOptions { dry_run: true }, None)
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert!(back.threatjammer.token.is_none());
        assert_eq!(back.threatjammer, Config::default().threatjammer);
    }
}
