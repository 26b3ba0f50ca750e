//! The output sections of cowrie.cfg tjfwd reads, one function each:
//! `[output_jsonlog]` (the log tjfwd tails), `[output_socketlog]` (pointed
//! at when there is no JSON log), `[output_threatjammer]` (the settings of
//! Threat Jammer's reports) and `[output_abuseipdb]` (AbuseIPDB's), with
//! what there is to say about each.
//!
//! A reader takes the values it needs from the [`Reading`], records the
//! `COWRIE_*` variables that set them, and adds its warnings and notes;
//! errors name the file and line (or variable) of the value at fault.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ini::{IniError, Origin};
use super::settings::Reading;
use super::{ABUSEIPDB_SECTION, PLACEHOLDER_TOKEN, PLUGIN_SECTION};
use crate::config::{ConfigError, Secret, TOKEN_ENV};
use crate::config_kit::format_duration;
use crate::targets::abuseipdb::config::{FromCowrie, KEY_ENV, MIN_REREPORT_AFTER};
use crate::targets::threatjammer::config::RawThreatJammer;

/// The longest `rereport_after` or `tolerance_window` taken: ten years.
const MAX_REREPORT_AFTER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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

/// `[output_jsonlog]`: the JSON log (relative paths joined to `cowrie_dir`),
/// when that output is enabled.
pub(super) fn json_log(
    r: &mut Reading<'_>,
    cowrie_dir: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    let shown = r.shown.clone();
    let (jsonlog_enabled, origin) = r
        .ini
        .get_bool("output_jsonlog", "enabled")
        .map_err(|e| r.value_error(e))?
        .unwrap_or((false, Origin::Defaults));
    r.note_env(&origin);
    if !jsonlog_enabled {
        return Ok(None);
    }
    let v = r
        .ini
        .get("output_jsonlog", "logfile")
        .map_err(|e| r.value_error(e))?
        .ok_or_else(|| ConfigError::Invalid {
            file: shown.clone(),
            key: "[output_jsonlog] logfile".to_string(),
            message: "[output_jsonlog] logfile is missing: Cowrie would not start \
                      its JSON log; set it, e.g. logfile = \
                      ${honeypot:log_path}/cowrie.json"
                .to_string(),
        })?;
    r.note_env(&v.origin);
    if v.text.trim().is_empty() {
        return Err(r.value_error(IniError::Value {
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
        Some(dir) if !dir.is_dir() => r.warnings.push(format!(
            "{shown}: the directory of Cowrie's JSON log, {}, does not exist (yet); \
             tjfwd waits for the log to appear. If Cowrie runs in another directory \
             than {} (relative paths of cowrie.cfg are relative to it), give that \
             directory with --cowrie-dir",
            dir.display(),
            cowrie_dir.display()
        )),
        _ => {}
    }
    Ok(Some(path))
}

/// `[output_socketlog]`: the address Cowrie sends its events to, when that
/// output is enabled (to point at it when there is no JSON log).
pub(super) fn socketlog(r: &mut Reading<'_>) -> Result<Option<String>, ConfigError> {
    let (socket_enabled, origin) = r
        .ini
        .get_bool("output_socketlog", "enabled")
        .map_err(|e| r.value_error(e))?
        .unwrap_or((false, Origin::Defaults));
    r.note_env(&origin);
    if !socket_enabled {
        return Ok(None);
    }
    let v = r
        .ini
        .get("output_socketlog", "address")
        .map_err(|e| r.value_error(e))?;
    Ok(v.map(|v| {
        r.note_env(&v.origin);
        v.text
    }))
}

/// What `[output_threatjammer]` holds.
pub(super) struct Plugin {
    /// The values, for the checks of Threat Jammer's section.
    pub(super) threatjammer: RawThreatJammer,
    /// Where each key was set, to name it in errors (not `bearer_token`
    /// when it holds no token).
    pub(super) origins: BTreeMap<String, Origin>,
    /// `enabled`: Cowrie's own plugin reports too.
    pub(super) enabled: bool,
    /// `bearer_token` holds a token (not empty, not Cowrie's placeholder).
    pub(super) has_token: bool,
}

/// `[output_threatjammer]`: every key tjfwd reads; warns when Cowrie's own
/// plugin is enabled, about keys tjfwd does not know, and about a token in
/// a file every user can read.
pub(super) fn threatjammer(r: &mut Reading<'_>) -> Result<Plugin, ConfigError> {
    let shown = r.shown.clone();
    let ini = r.ini;
    let sec = PLUGIN_SECTION;
    let mut origins = BTreeMap::new();
    let mut tj = RawThreatJammer::default();
    let mut string = |key: &str| -> Result<Option<String>, ConfigError> {
        let v = ini.get(sec, key).map_err(|e| r.value_error(e))?;
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
        let v = ini.get_bool(sec, key).map_err(|e| r.value_error(e))?;
        Ok(v.map(|(b, origin)| {
            origins.insert(key.to_string(), origin);
            b
        }))
    };
    let enabled = boolean("enabled")?.unwrap_or(false);
    tj.track_login = boolean("track_login")?;
    tj.track_session = boolean("track_session")?;
    tj.allow_insecure_http = boolean("allow_insecure_http")?;
    if let Some((ttl, origin)) = ini.get_int(sec, "ttl").map_err(|e| r.value_error(e))? {
        tj.ttl = Some(ttl);
        origins.insert("ttl".to_string(), origin);
    }
    for origin in origins.values() {
        r.note_env(origin);
    }

    let enabled_at = origins
        .get("enabled")
        .map_or_else(String::new, |o| format!(" ({o})"));
    if enabled {
        r.warnings.push(format!(
            "{shown}: [{sec}] enabled = true{enabled_at}: Cowrie's own Threat Jammer \
             plugin runs too, so Cowrie and tjfwd would both report the same addresses \
             and share the token's limit of 6 requests a minute (expect 429 answers and \
             delays). Set enabled = false in [{sec}] of cowrie.cfg and restart Cowrie: \
             tjfwd reads the section's other keys either way"
        ));
    } else {
        r.notes.push(format!(
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
        r.warnings.push(format!(
            "{shown}: [{sec}] has keys tjfwd does not know, ignored: {} (it reads {})",
            ignored.join(", "),
            PLUGIN_KEYS.join(", ")
        ));
    }

    if let (true, Some(Origin::File { path, .. })) = (has_token, &token_origin) {
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o004 != 0 {
                r.warnings.push(format!(
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

    Ok(Plugin {
        threatjammer: tj,
        origins,
        enabled,
        has_token,
    })
}

/// The keys of `[output_abuseipdb]` tjfwd reads: all of the plugin's.
const ABUSEIPDB_KEYS: [&str; 6] = [
    "enabled",
    "api_key",
    "rereport_after",
    "tolerance_window",
    "tolerance_attempts",
    "dump_path",
];

/// What `[output_abuseipdb]` holds.
pub(super) struct AbuseIpdbPlugin {
    /// The values, converted to tjfwd's units; `api_key` is cowrie.cfg's
    /// (None: empty or not set).
    pub(super) values: FromCowrie,
    /// Where each key was set, to name it in errors (not `api_key` when it
    /// holds no key).
    pub(super) origins: BTreeMap<String, Origin>,
    /// `enabled`: Cowrie's own plugin reports too.
    pub(super) enabled: bool,
    /// What to say once tjfwd reports to AbuseIPDB with these settings.
    pub(super) notes: Vec<String>,
}

/// Python's `float(text)` for the forms a configuration holds (the
/// plugin reads `rereport_after` with `getfloat`): surrounding whitespace,
/// a sign, digits with single underscores between them, a decimal point,
/// an exponent. Infinities and NaN are left out: they are no duration.
fn parse_float(text: &str) -> Option<f64> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'+' | b'-' | b'e' | b'E'));
    let digit = |b: Option<&u8>| b.is_some_and(u8::is_ascii_digit);
    let bytes = t.as_bytes();
    let underscores_ok = bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'_' || (i > 0 && digit(bytes.get(i - 1)) && digit(bytes.get(i + 1))));
    if !ok || !underscores_ok {
        return None;
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    clean.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `[output_abuseipdb]`: the API key, the plugin's thresholds converted
/// (`rereport_after` hours, `tolerance_window` minutes,
/// `tolerance_attempts`), `dump_path` ignored; warns when Cowrie's own
/// plugin is enabled, about keys tjfwd does not know, and about a key in a
/// file every user can read.
pub(super) fn abuseipdb(r: &mut Reading<'_>) -> Result<AbuseIpdbPlugin, ConfigError> {
    let shown = r.shown.clone();
    let ini = r.ini;
    let sec = ABUSEIPDB_SECTION;
    let mut origins = BTreeMap::new();
    let mut notes = Vec::new();
    let value_error = |origin: Origin, key: &str, message: String| IniError::Value {
        section: sec.to_string(),
        key: key.to_string(),
        origin,
        message,
    };

    let (enabled, origin) = ini
        .get_bool(sec, "enabled")
        .map_err(|e| r.value_error(e))?
        .unwrap_or((false, Origin::Defaults));
    origins.insert("enabled".to_string(), origin);

    let key = ini.get(sec, "api_key").map_err(|e| r.value_error(e))?;
    let api_key = match key {
        Some(v) if !v.text.trim().is_empty() => {
            origins.insert("api_key".to_string(), v.origin);
            Some(Secret::new(v.text))
        }
        _ => None,
    };

    // rereport_after: hours, a float (the plugin's getfloat); the plugin
    // raises anything under 900 s to 900 s, and so does tjfwd, saying so.
    let v = ini
        .get(sec, "rereport_after")
        .map_err(|e| r.value_error(e))?
        .ok_or_else(|| {
            r.value_error(value_error(
                Origin::Defaults,
                "rereport_after",
                "missing".into(),
            ))
        })?;
    let hours = parse_float(&v.text).filter(|h| *h >= 0.0).ok_or_else(|| {
        r.value_error(value_error(
            v.origin.clone(),
            "rereport_after",
            format!(
                "{:?} is not a number of hours: write how long after a report an address \
                 may be reported again, in hours (e.g. 24; 0.25 is the least, 15 minutes)",
                v.text
            ),
        ))
    })?;
    let mut rereport_after = Duration::try_from_secs_f64((hours * 3600.0).round())
        .ok()
        .filter(|d| *d <= MAX_REREPORT_AFTER)
        .ok_or_else(|| {
            r.value_error(value_error(
                v.origin.clone(),
                "rereport_after",
                format!(
                    "{hours} hours is too long: at most {} hours",
                    MAX_REREPORT_AFTER.as_secs() / 3600
                ),
            ))
        })?;
    let at = |o: &Origin| match o {
        Origin::Defaults => "the plugin's default".to_string(),
        other => other.to_string(),
    };
    if rereport_after < MIN_REREPORT_AFTER {
        r.warnings.push(format!(
            "{shown}: [{sec}] rereport_after = {hours} ({}) is less than 15 minutes \
             (0.25 hours): AbuseIPDB refuses a second report of an address within 15 \
             minutes, so tjfwd waits 15 minutes, as Cowrie's plugin does",
            at(&v.origin)
        ));
        rereport_after = MIN_REREPORT_AFTER;
    }
    origins.insert("rereport_after".to_string(), v.origin);

    // tolerance_window: minutes, an integer.
    let (minutes, origin) = ini
        .get_int(sec, "tolerance_window")
        .map_err(|e| r.value_error(e))?
        .unwrap_or((120, Origin::Defaults));
    let attempts_window = u64::try_from(minutes)
        .ok()
        .filter(|m| *m >= 1)
        .and_then(|m| m.checked_mul(60))
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_REREPORT_AFTER)
        .ok_or_else(|| {
            r.value_error(value_error(
                origin.clone(),
                "tolerance_window",
                format!(
                    "{minutes} is out of range: it is the window, in minutes, within which \
                     tolerance_attempts login attempts make an address reported; write at \
                     least 1 (the plugin's default: 120)"
                ),
            ))
        })?;
    origins.insert("tolerance_window".to_string(), origin);

    // tolerance_attempts: the plugin reports on the first attempt when it
    // is 1 or less.
    let (attempts, origin) = ini
        .get_int(sec, "tolerance_attempts")
        .map_err(|e| r.value_error(e))?
        .unwrap_or((10, Origin::Defaults));
    let min_attempts = match u32::try_from(attempts) {
        Ok(0) => {
            notes.push(format!(
                "{shown}: [{sec}] tolerance_attempts = 0 ({origin}) reports an address on its \
                 first login attempt, as 1 does (so does Cowrie's plugin): min_attempts = 1"
            ));
            1
        }
        Ok(n) => n,
        Err(_) => {
            return Err(r.value_error(value_error(
                origin,
                "tolerance_attempts",
                format!(
                    "{attempts} is out of range: it is how many login attempts within \
                     tolerance_window make an address reported; write 1 or more (the \
                     plugin's default: 10)"
                ),
            )))
        }
    };
    origins.insert("tolerance_attempts".to_string(), origin);

    if let Some(v) = ini.get(sec, "dump_path").map_err(|e| r.value_error(e))? {
        r.notes.push(format!(
            "{shown}: [{sec}] dump_path ({}) is ignored: it is where Cowrie's plugin \
             pickles its state; tjfwd keeps its own in its database (state_dir)",
            v.origin
        ));
        origins.insert("dump_path".to_string(), v.origin);
    }
    for origin in origins.values() {
        r.note_env(origin);
    }

    let has_key = api_key.is_some();
    if enabled {
        let at = origins
            .get("enabled")
            .map_or_else(String::new, |o| format!(" ({o})"));
        r.warnings.push(format!(
            "{shown}: [{sec}] enabled = true{at}: Cowrie's own AbuseIPDB plugin runs too, \
             so Cowrie and tjfwd would both report the same addresses with the same key and \
             share its daily limit (and the plugin loses reports: it counts an address as \
             reported before the request succeeds, and drops events while it waits on a \
             429). Set enabled = false in [{sec}] of cowrie.cfg and restart Cowrie: tjfwd \
             reads the section's other keys either way"
        ));
    } else if has_key {
        r.notes.push(format!(
            "{shown}: [{sec}] enabled = false: Cowrie's AbuseIPDB plugin is off and tjfwd \
             reports to AbuseIPDB in its place, with the section's settings"
        ));
    }

    let set = |key: &str| match origins.get(key) {
        Some(Origin::Defaults) | None => "not set: the plugin's default".to_string(),
        Some(o) => format!("{o}"),
    };
    notes.push(format!(
        "{shown}: [{sec}] as [targets.abuseipdb]: rereport_after {hours} hours ({}) → \
         rereport_after = \"{}\"; tolerance_window {minutes} minutes ({}) → attempts_window = \
         \"{}\"; tolerance_attempts {attempts} ({}) → min_attempts = {min_attempts}. Keys not \
         set in cowrie.cfg take the plugin's defaults (24 hours, 120 minutes, 10 attempts), \
         not tjfwd's (min_attempts = 1), so an address is reported as the plugin would \
         report it; categories are 18,22, as the plugin's",
        set("rereport_after"),
        format_duration(rereport_after),
        set("tolerance_window"),
        format_duration(attempts_window),
        set("tolerance_attempts"),
    ));

    let mut ignored: Vec<&str> = ini
        .own_keys(sec)
        .into_iter()
        .filter(|k| !ABUSEIPDB_KEYS.contains(k))
        .collect();
    ignored.sort_unstable();
    if !ignored.is_empty() {
        r.warnings.push(format!(
            "{shown}: [{sec}] has keys tjfwd does not know, ignored: {} (it reads {})",
            ignored.join(", "),
            ABUSEIPDB_KEYS.join(", ")
        ));
    }

    if let (true, Some(Origin::File { path, .. })) = (has_key, origins.get("api_key")) {
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o004 != 0 {
                r.warnings.push(format!(
                    "{}: the file holds [{sec}] api_key and every user can read it \
                     (mode {:04o}): run `chmod o-r {}` (tjfwd's user needs read access, \
                     e.g. through the group), or, with Cowrie's plugin disabled, move the \
                     key out of cowrie.cfg into the environment variable {KEY_ENV} of tjfwd",
                    path.display(),
                    mode & 0o7777,
                    path.display()
                ));
            }
        }
    }

    Ok(AbuseIpdbPlugin {
        values: FromCowrie {
            api_key,
            rereport_after,
            min_attempts,
            attempts_window,
        },
        origins,
        enabled,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError, LoadOptions};
    use crate::cowrie_cfg::tests::{Tree, TOKEN};

    /// An AbuseIPDB key in the tests' cowrie.cfg (nothing is sent).
    const KEY: &str = "aipdb-UNIT-key-0123456789abcdef";

    fn no_key_anywhere(c: &Config) {
        let all = format!(
            "{c:?}\n{}\n{}\n{}",
            c.warnings.join("\n"),
            c.notes.join("\n"),
            c.redacted_toml()
        );
        assert!(!all.contains(KEY), "the key leaked:\n{all}");
    }

    #[test]
    fn python_floats() {
        for (text, f) in [
            ("24", 24.0),
            (" 0.5 ", 0.5),
            ("1_000", 1000.0),
            ("+2", 2.0),
            ("1e1", 10.0),
            (".25", 0.25),
            ("-1", -1.0),
        ] {
            assert_eq!(parse_float(text), Some(f), "{text}");
        }
        for text in ["", "abc", "1__0", "_1", "1_", "inf", "nan", "1h", "1,5"] {
            assert_eq!(parse_float(text), None, "{text}");
        }
    }

    /// `enabled = false` is read: a key there enables tjfwd's AbuseIPDB
    /// target, with the plugin's thresholds (its defaults where unset),
    /// and only it (no Threat Jammer token).
    #[test]
    fn a_key_in_a_disabled_section_enables_abuseipdb_with_the_plugins_defaults() {
        let t = Tree::new();
        let text = format!("[output_abuseipdb]\nenabled = false\napi_key = {KEY}\n");
        let c = t.config(&text, &[], None).unwrap();
        assert!(c.threatjammer().is_none());
        let a = c.targets.abuseipdb.as_ref().expect("AbuseIPDB enabled");
        assert_eq!(a.api_key.as_ref().unwrap().expose(), KEY);
        assert_eq!(a.rereport_after, Duration::from_secs(24 * 3600));
        assert_eq!(a.attempts_window, Duration::from_secs(120 * 60));
        assert_eq!(a.min_attempts, 10);
        // The rest is tjfwd's defaults, categories the plugin's.
        assert_eq!(a.categories, [18, 22]);
        assert_eq!(a.api_url.as_str(), "https://api.abuseipdb.com/api/v2");
        assert!(
            !c.warnings.iter().any(|w| w.contains(ABUSEIPDB_SECTION)),
            "{:?}",
            c.warnings
        );
        let note = c
            .notes
            .iter()
            .find(|n| n.contains("min_attempts = 10"))
            .expect("a note on the conversions");
        assert!(note.contains("the plugin's defaults"), "{note}");
        assert!(note.contains("not set"), "{note}");
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("[output_abuseipdb] enabled = false")
                    && n.contains("in its place")),
            "{:?}",
            c.notes
        );
        no_key_anywhere(&c);
    }

    #[test]
    fn enabled_true_warns_that_both_would_report() {
        let t = Tree::new();
        let text = format!("[output_abuseipdb]\nenabled = true\napi_key = {KEY}\n");
        let c = t.config(&text, &[], None).unwrap();
        assert!(c.targets.abuseipdb.is_some());
        let w = c
            .warnings
            .iter()
            .find(|w| w.contains("[output_abuseipdb] enabled = true"))
            .expect("a warning about the enabled plugin");
        assert!(w.contains("line 2"), "{w}");
        assert!(w.contains("both report"), "{w}");
        assert!(w.contains("loses reports"), "{w}");
        assert!(w.contains("Set enabled = false"), "{w}");
        assert!(!c
            .notes
            .iter()
            .any(|n| n.contains("[output_abuseipdb] enabled = false")));
        no_key_anywhere(&c);
        // Without a key it still warns (Cowrie's plugin runs).
        let s = t
            .settings("[output_abuseipdb]\nenabled = on\n", &[])
            .unwrap();
        assert!(s.abuseipdb_plugin_enabled);
        assert!(s.warnings.iter().any(|w| w.contains("both report")));
    }

    /// No key (none set, or an empty one): the target is not enabled; with
    /// nothing else, the refusal says how to enable it from cowrie.cfg.
    #[test]
    fn no_key_does_not_enable_abuseipdb() {
        let t = Tree::new();
        for text in [
            "",
            "[output_abuseipdb]\nenabled = false\n",
            "[output_abuseipdb]\napi_key =\n",
            "[output_abuseipdb]\napi_key =   \ntolerance_attempts = 3\n",
        ] {
            let s = t.settings(text, &[]).unwrap();
            assert!(!s.has_abuseipdb_key, "{text}");
            let c = t.config(text, &[], Some(TOKEN)).unwrap();
            assert!(c.targets.abuseipdb.is_none(), "{text}");
            assert!(c.threatjammer().is_some(), "{text}");
            // Its notes are about a target that does not report.
            assert!(
                !c.notes.iter().any(|n| n.contains("[targets.abuseipdb]")),
                "{:?}",
                c.notes
            );
            let msg = t.config(text, &[], None).unwrap_err().to_string();
            assert!(msg.contains("no report target is enabled"), "{msg}");
            assert!(msg.contains("[output_abuseipdb] api_key"), "{msg}");
            assert!(msg.contains(KEY_ENV), "{msg}");
        }
    }

    #[test]
    fn the_plugins_units_are_converted() {
        let t = Tree::new();
        let text = format!(
            "[output_abuseipdb]\napi_key = {KEY}\nrereport_after = 0.5\ntolerance_window = 45\n\
             tolerance_attempts = 1_0\n"
        );
        let c = t.config(&text, &[], None).unwrap();
        let a = c.targets.abuseipdb.as_ref().unwrap();
        assert_eq!(a.rereport_after, Duration::from_secs(30 * 60));
        assert_eq!(a.attempts_window, Duration::from_secs(45 * 60));
        assert_eq!(a.min_attempts, 10);
        let note = c.notes.iter().find(|n| n.contains("→")).unwrap();
        assert!(note.contains("rereport_after = \"30m\""), "{note}");
        assert!(note.contains("attempts_window = \"45m\""), "{note}");
        assert!(note.contains("line 3"), "{note}");
        // From the environment, as Cowrie reads it.
        let c = t
            .config(
                &text,
                &[("COWRIE_OUTPUT_ABUSEIPDB_TOLERANCE_ATTEMPTS", "2")],
                None,
            )
            .unwrap();
        assert_eq!(c.targets.abuseipdb.as_ref().unwrap().min_attempts, 2);
    }

    /// Under 15 minutes (0 included) is raised to 15 minutes, as the
    /// plugin does, with a warning; 0 attempts is 1, as in the plugin.
    #[test]
    fn short_rereport_after_is_raised_and_zero_attempts_is_one() {
        let t = Tree::new();
        for hours in ["0", "0.1"] {
            let text = format!(
                "[output_abuseipdb]\napi_key = {KEY}\nrereport_after = {hours}\n\
                 tolerance_attempts = 0\n"
            );
            let c = t.config(&text, &[], None).unwrap();
            let a = c.targets.abuseipdb.as_ref().unwrap();
            assert_eq!(a.rereport_after, MIN_REREPORT_AFTER, "{hours}");
            assert_eq!(a.min_attempts, 1);
            let w = c
                .warnings
                .iter()
                .find(|w| w.contains("rereport_after"))
                .expect("a warning about the raised value");
            assert!(w.contains("15 minutes"), "{w}");
            assert!(w.contains("line 3"), "{w}");
            assert!(
                c.notes.iter().any(|n| n.contains("tolerance_attempts = 0")),
                "{:?}",
                c.notes
            );
        }
    }

    #[test]
    fn invalid_values_name_the_file_section_key_and_line() {
        let t = Tree::new();
        let cfg = t.root().join("etc/cowrie.cfg").display().to_string();
        for (line, key, what) in [
            ("rereport_after = -1", "rereport_after", "number of hours"),
            ("rereport_after = 24h", "rereport_after", "number of hours"),
            ("rereport_after = 1e9", "rereport_after", "too long"),
            ("tolerance_window = 0", "tolerance_window", "at least 1"),
            (
                "tolerance_window = 2h",
                "tolerance_window",
                "not an integer",
            ),
            ("tolerance_attempts = -3", "tolerance_attempts", "1 or more"),
            ("enabled = maybe", "enabled", "boolean"),
        ] {
            let text = format!("[output_abuseipdb]\n{line}\napi_key = {KEY}\n");
            let err = t.config(&text, &[], Some(TOKEN)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&cfg), "{line}: {msg}");
            assert!(msg.contains(&format!("[output_abuseipdb] {key}")), "{msg}");
            assert!(msg.contains(what), "{line}: {msg}");
            assert!(msg.contains("line 2"), "{line}: {msg}");
            assert!(!msg.contains(KEY), "{msg}");
            match err {
                ConfigError::Invalid { key: k, .. } => {
                    assert_eq!(k, format!("[output_abuseipdb] {key}"))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn dump_path_is_ignored_with_a_note() {
        let t = Tree::new();
        let text = format!(
            "[output_abuseipdb]\napi_key = {KEY}\ndump_path = ${{honeypot:log_path}}/abuseipdb\n"
        );
        let c = t.config(&text, &[], None).unwrap();
        let n = c
            .notes
            .iter()
            .find(|n| n.contains("dump_path"))
            .expect("a note about dump_path");
        assert!(n.contains("ignored"), "{n}");
        assert!(n.contains("state_dir"), "{n}");
        assert!(n.contains("line 3"), "{n}");
        // Not a key tjfwd does not know.
        assert!(!c.warnings.iter().any(|w| w.contains("does not know")));
    }

    /// A malformed key is refused naming its line, never quoting it;
    /// unknown keys and a key in a world-readable file warn.
    #[test]
    fn the_key_is_never_shown() {
        let t = Tree::new();
        let text = format!("[output_abuseipdb]\napi_key = {KEY} {KEY}\n");
        let err = t.config(&text, &[], None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[output_abuseipdb] api_key"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains(KEY), "{msg}");
        assert!(!format!("{err:?}").contains(KEY));

        let text = format!("[output_abuseipdb]\napi_key = {KEY}\ncategories = 14\n");
        let s = t.settings(&text, &[]).unwrap();
        assert!(!format!("{s:?}").contains(KEY));
        let w = s
            .warnings
            .iter()
            .find(|w| w.contains("does not know"))
            .expect("unknown keys warn");
        assert!(w.contains("categories"), "{w}");
        assert!(!s.warnings.iter().any(|w| w.contains("every user")));
        let cfg = t.root().join("etc/cowrie.cfg");
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
        let s = super::super::CowrieSettings::read_with_env(&cfg, None, Vec::new()).unwrap();
        let w = s
            .warnings
            .iter()
            .find(|w| w.contains("every user"))
            .expect("a warning about the readable key");
        assert!(w.contains("[output_abuseipdb] api_key"), "{w}");
        assert!(w.contains(KEY_ENV), "{w}");
        assert!(!s.warnings.concat().contains(KEY));
        assert!(!s.notes.concat().contains(KEY));
    }

    /// `[targets.abuseipdb]` in the TOML file given with cowrie.cfg enables
    /// the target and gives the keys cowrie.cfg does not; the ones it does
    /// are refused there.
    #[test]
    fn a_toml_table_adds_the_rest_and_may_not_set_what_cowrie_cfg_sets() {
        let t = Tree::new();
        let toml = t.write(
            "tjfwd.toml",
            "[targets.abuseipdb]\nmode = \"single\"\ncategories = \"18,22,23\"\n",
        );
        // Without a key: enabled by the table, in a dry run.
        let c = t
            .settings("[output_abuseipdb]\ntolerance_attempts = 4\n", &[])
            .unwrap()
            .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
            .unwrap();
        let a = c.targets.abuseipdb.as_ref().unwrap();
        assert_eq!(a.mode.as_str(), "single");
        assert_eq!(a.daily_limit, 1000);
        assert_eq!(a.categories, [18, 22, 23]);
        assert_eq!(a.min_attempts, 4);
        assert!(a.api_key.is_none());
        // Not in a real run: the refusal names cowrie.cfg and where to put one.
        let err = t
            .settings("", &[])
            .unwrap()
            .into_config(Some(&toml), &LoadOptions::default(), None)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no AbuseIPDB API key"), "{msg}");
        assert!(msg.contains("[output_abuseipdb] api_key"), "{msg}");
        assert!(msg.contains(KEY_ENV), "{msg}");
        assert!(
            msg.starts_with(&t.root().join("etc/cowrie.cfg").display().to_string()),
            "{msg}"
        );
        // With a key in cowrie.cfg, it is taken.
        let c = t
            .settings(&format!("[output_abuseipdb]\napi_key = {KEY}\n"), &[])
            .unwrap()
            .into_config(Some(&toml), &LoadOptions::default(), None)
            .unwrap();
        let a = c.targets.abuseipdb.as_ref().unwrap();
        assert_eq!(a.api_key.as_ref().unwrap().expose(), KEY);
        no_key_anywhere(&c);

        for (line, ours, theirs) in [
            ("min_attempts = 2", "min_attempts", "tolerance_attempts"),
            (
                "attempts_window = \"1h\"",
                "attempts_window",
                "tolerance_window",
            ),
            (
                "rereport_after = \"1h\"",
                "rereport_after",
                "rereport_after",
            ),
            ("api_key_file = \"key\"", "api_key_file", "api_key"),
            ("api_key = \"x\"", "api_key", "api_key"),
        ] {
            let toml = t.write("tjfwd.toml", &format!("[targets.abuseipdb]\n{line}\n"));
            let err = t
                .settings(&format!("[output_abuseipdb]\napi_key = {KEY}\n"), &[])
                .unwrap()
                .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&toml.display().to_string()), "{msg}");
            assert!(
                msg.contains(&format!("[targets.abuseipdb] {ours}")),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("[output_abuseipdb] {theirs}")),
                "{msg}"
            );
            assert!(
                msg.contains(&t.root().join("etc/cowrie.cfg").display().to_string()),
                "{msg}"
            );
            assert!(!msg.contains(KEY), "{msg}");
        }
    }
}
