//! The output sections of cowrie.cfg tjfwd reads, one function each:
//! `[output_jsonlog]` (the log tjfwd tails), `[output_socketlog]` (pointed
//! at when there is no JSON log) and `[output_threatjammer]` (the settings
//! of the reports), with what there is to say about each.
//!
//! A reader takes the values it needs from the [`Reading`], records the
//! `COWRIE_*` variables that set them, and adds its warnings and notes;
//! errors name the file and line (or variable) of the value at fault.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ini::{IniError, Origin};
use super::settings::Reading;
use super::{PLACEHOLDER_TOKEN, PLUGIN_SECTION};
use crate::config::{ConfigError, Secret, TOKEN_ENV};
use crate::targets::threatjammer::config::RawThreatJammer;

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
