//! Reading a value of an [`Ini`]: the environment override, then
//! configparser's `ExtendedInterpolation` (`${key}`, `${section:key}`, `$$`,
//! at most 10 levels, loops named as such), and the conversions of
//! `getboolean` and `getint`.
//!
//! Errors never quote a value: only key names, and `${...}` references when
//! no secret is involved. A secret is never interpolated into another value.

use std::fmt;

use super::ini::{Ini, IniError, Origin, DEFAULT_SECTION};
use crate::config_kit::{self, looks_secret};

/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

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
            .field("text", &config_kit::REDACTED)
            .field("origin", &self.origin)
            .finish()
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

impl Ini {
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
        let secret = stack.iter().any(|(_, k)| looks_secret(k));
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
                    if looks_secret(&opt) && !looks_secret(&stack[0].1) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::{get, ini, ini_env, TOKEN};

    fn value_error(i: &Ini, section: &str, key: &str) -> String {
        match i.get(section, key) {
            Err(e @ IniError::Value { .. }) => e.to_string(),
            other => panic!("expected an error, got {other:?}"),
        }
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
}
