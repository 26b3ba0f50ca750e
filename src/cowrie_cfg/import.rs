//! `tjfwd config import-cowrie`: the tjfwd TOML equivalent to a cowrie.cfg,
//! written with comments like `packaging/tjfwd.toml`. It never holds the
//! Threat Jammer token nor the AbuseIPDB API key: it names a file for each
//! instead.

use std::path::Path;

use super::settings::{absolute, CowrieSettings};
use super::{COWRIE_VERSION, SUGGESTED_ABUSEIPDB_KEY_FILE, SUGGESTED_TOKEN_FILE};
use crate::config::{Config, ConfigError, LoadOptions, ThreatJammerSection, TOKEN_ENV};
use crate::config_kit::{format_duration, format_size};
use crate::targets::abuseipdb::config::{categories_text, Section as AbuseIpdbSection, KEY_ENV};

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
/// environment variables and `TJFWD_BEARER_TOKEN` (which enables Threat
/// Jammer as it does for `run --cowrie-config`; it is never written).
pub fn import_toml(cowrie_cfg: &Path, cowrie_dir: Option<&Path>) -> Result<Imported, ConfigError> {
    import_settings(
        CowrieSettings::read(cowrie_cfg, cowrie_dir)?,
        std::env::var(TOKEN_ENV).ok(),
    )
}

/// [`import_toml`] from settings already read; `env_token` stands for
/// `TJFWD_BEARER_TOKEN`.
pub fn import_settings(
    settings: CowrieSettings,
    env_token: Option<String>,
) -> Result<Imported, ConfigError> {
    let file = absolute(&settings.file);
    let files_read: Vec<String> = settings
        .files_read
        .iter()
        .map(|p| absolute(p).display().to_string())
        .collect();
    let env_overrides = settings.env_overrides.clone();
    let cowrie_dir = settings.cowrie_dir.clone();
    let has_token = settings.has_token;
    let has_abuseipdb_key = settings.has_abuseipdb_key;
    // Checked as `run` would check it; the token is not needed to print.
    let config = settings.into_config(None, &LoadOptions { dry_run: true }, env_token)?;
    let toml = render(&RenderInput {
        config: &config,
        file: &file,
        files_read: &files_read,
        env_overrides: &env_overrides,
        cowrie_dir: &cowrie_dir,
        has_token,
        has_abuseipdb_key,
    });
    Ok(Imported {
        toml,
        warnings: config.warnings,
        notes: config.notes,
    })
}

struct RenderInput<'a> {
    config: &'a Config,
    file: &'a Path,
    files_read: &'a [String],
    env_overrides: &'a [String],
    cowrie_dir: &'a Path,
    has_token: bool,
    has_abuseipdb_key: bool,
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
    // What came from where: only the sections this configuration has.
    let mut from = Vec::new();
    if c.threatjammer().is_some() {
        from.push("[targets.threatjammer] from its [output_threatjammer]");
    }
    if c.targets.abuseipdb.is_some() {
        from.push("[targets.abuseipdb] from its [output_abuseipdb]");
    }
    from.push("[input] cowrie_json from its [output_jsonlog] logfile");
    out.push_str("#\n");
    comment(
        &mut out,
        "Imported:",
        &format!(
            "{}; everything else has tjfwd's defaults. Unknown keys are refused.",
            from.join(", ")
        ),
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

    if let Some(tj) = c.threatjammer() {
        threatjammer(&mut out, tj, r.has_token);
    }
    if let Some(a) = &c.targets.abuseipdb {
        abuseipdb(&mut out, a, r.has_abuseipdb_key);
    }

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
        &q(&format_duration(input.poll_interval)),
        "how often an idle tailer looks for new data",
    );
    kv(
        &mut out,
        "max_line_bytes",
        &q(&format_size(input.max_line_bytes as u64)),
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
        &q(&format_size(c.storage.cache_capacity)),
        "sled's page cache",
    );
    out
}

/// `[targets.threatjammer]`: the report keys from cowrie.cfg, then the
/// sending keys.
fn threatjammer(out: &mut String, section: &ThreatJammerSection, has_token: bool) {
    let tj = &section.report;
    out.push_str(
        "# Threat Jammer: from [output_threatjammer] of cowrie.cfg; the sending keys\n\
         # (batch_size and below) are tjfwd's defaults.\n[targets.threatjammer]\n",
    );
    kv(out, "api_url", &q(tj.api_url.as_str()), "");
    if has_token {
        out.push_str(&format!(
            "# cowrie.cfg holds the API token; it is not copied here. Put it in this file,\n\
             # readable only by the user tjfwd runs as, e.g. (paste the token, then Ctrl-D):\n\
             #   install -m 600 -o tjfwd /dev/stdin {SUGGESTED_TOKEN_FILE}\n"
        ));
        kv(out, "bearer_token_file", &q(SUGGESTED_TOKEN_FILE), "");
    } else {
        out.push_str(&format!(
            "# cowrie.cfg holds no API token (Cowrie's placeholder counts as none). Put\n\
             # yours in a file readable only by tjfwd's user and uncomment the next line,\n\
             # or set the environment variable {TOKEN_ENV}. Without a token only\n\
             # --dry-run works.\n"
        ));
        out.push_str(&format!(
            "# bearer_token_file = {}\n",
            q(SUGGESTED_TOKEN_FILE)
        ));
    }
    kv(
        out,
        "track_login",
        &tj.track_login.to_string(),
        "report cowrie.login.* events",
    );
    kv(
        out,
        "track_session",
        &tj.track_session.to_string(),
        "report cowrie.session.* events",
    );
    kv(
        out,
        "ttl",
        &tj.ttl.to_string(),
        "seconds in your private denylist",
    );
    kv(
        out,
        "category",
        &q(&tj.category),
        "the dataset (\"type\" in the API)",
    );
    let tags = if tj.tags.is_empty() {
        "[]".to_string()
    } else {
        q(&tj.tags.join(","))
    };
    kv(out, "tags", &tags, "");
    kv(
        out,
        "allow_insecure_http",
        &tj.allow_insecure_http.to_string(),
        "plain http:// only to loopback hosts otherwise",
    );
    let s = &section.schedule;
    kv(
        out,
        "batch_size",
        &s.batch_size.to_string(),
        "1..=1000 addresses a request",
    );
    kv(
        out,
        "flush_interval",
        &q(&format_duration(s.flush_interval)),
        "longest an address waits for a batch to fill",
    );
    kv(
        out,
        "max_requests_per_minute",
        &s.max_requests_per_minute.to_string(),
        "the API's limit, rolling 60 s window, retries included",
    );
    kv(
        out,
        "request_timeout",
        &q(&format_duration(s.request_timeout)),
        "",
    );
    kv(
        out,
        "max_backoff",
        &q(&format_duration(s.max_backoff)),
        "cap of the retry delay after server errors",
    );
    kv(
        out,
        "rereport_after",
        &q(&format_duration(s.rereport_after)),
        "a sighting this soon after the last report does not re-queue",
    );
    out.push('\n');
}

/// `[targets.abuseipdb]`: the key's file and the thresholds from
/// cowrie.cfg, then tjfwd's defaults for the rest.
fn abuseipdb(out: &mut String, a: &AbuseIpdbSection, has_key: bool) {
    out.push_str(
        "# AbuseIPDB: rereport_after, min_attempts and attempts_window from\n\
         # [output_abuseipdb] of cowrie.cfg (rereport_after in hours there,\n\
         # tolerance_attempts, tolerance_window in minutes; the plugin's defaults,\n\
         # 24 hours, 10 attempts and 120 minutes, where cowrie.cfg sets none);\n\
         # dump_path has no equivalent (tjfwd's state is in state_dir). The other\n\
         # keys are tjfwd's defaults; categories are the plugin's, 18,22.\n\
         [targets.abuseipdb]\n",
    );
    kv(out, "api_url", &q(a.api_url.as_str()), "");
    if has_key {
        out.push_str(&format!(
            "# cowrie.cfg holds the API key; it is not copied here. Put it in this file,\n\
             # readable only by the user tjfwd runs as, e.g. (paste the key, then Ctrl-D):\n\
             #   install -m 600 -o tjfwd /dev/stdin {SUGGESTED_ABUSEIPDB_KEY_FILE}\n"
        ));
        kv(out, "api_key_file", &q(SUGGESTED_ABUSEIPDB_KEY_FILE), "");
    } else {
        out.push_str(&format!(
            "# cowrie.cfg holds no API key. Put yours in a file readable only by tjfwd's\n\
             # user and uncomment the next line, or set the environment variable\n\
             # {KEY_ENV}. Without a key only --dry-run works.\n"
        ));
        out.push_str(&format!(
            "# api_key_file = {}\n",
            q(SUGGESTED_ABUSEIPDB_KEY_FILE)
        ));
    }
    kv(
        out,
        "mode",
        &q(a.mode.as_str()),
        "\"bulk\" (CSV, /bulk-report) | \"single\" (/report)",
    );
    kv(
        out,
        "categories",
        &q(&categories_text(&a.categories)),
        "18 Brute-Force, 22 SSH (23 IoT Targeted for Telnet)",
    );
    kv(
        out,
        "daily_limit",
        &a.daily_limit.to_string(),
        "requests a UTC day on the mode's endpoint (your plan's)",
    );
    kv(
        out,
        "rereport_after",
        &q(&format_duration(a.rereport_after)),
        "[output_abuseipdb] rereport_after",
    );
    kv(
        out,
        "min_attempts",
        &a.min_attempts.to_string(),
        "[output_abuseipdb] tolerance_attempts",
    );
    kv(
        out,
        "attempts_window",
        &q(&format_duration(a.attempts_window)),
        "[output_abuseipdb] tolerance_window",
    );
    kv(
        out,
        "flush_interval",
        &q(&format_duration(a.flush_interval)),
        "longest the oldest address waits for a batch",
    );
    kv(
        out,
        "request_timeout",
        &q(&format_duration(a.request_timeout)),
        "",
    );
    kv(
        out,
        "max_backoff",
        &q(&format_duration(a.max_backoff)),
        "cap of the retry delay after server errors",
    );
    kv(
        out,
        "allow_insecure_http",
        &a.allow_insecure_http.to_string(),
        "plain http:// only to loopback hosts otherwise",
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::{Tree, API_URL, TOKEN};

    use crate::config::{Config, LoadOptions};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

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
        let imported = import_settings(s, None).unwrap();
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
        let mut back_tj = back.threatjammer().unwrap().clone();
        assert_eq!(back_tj.report.token.as_ref().unwrap().expose(), TOKEN);
        back_tj.report.token = None;
        let mut expected_tj = expected.threatjammer().unwrap().clone();
        expected_tj.report.token = None;
        assert_eq!(back_tj, expected_tj);
        assert_eq!(back_tj.report.api_url.as_str(), API_URL);
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        assert_eq!(back.input, expected.input);
        assert_eq!(back.filter, expected.filter);
        assert_eq!(back.storage, expected.storage);
        assert_eq!(back.state_dir, expected.state_dir);
    }

    /// Without a token, the import enables no target: refused, saying how
    /// to enable one (as `run --cowrie-config` is).
    #[test]
    fn import_without_a_token_is_refused_and_with_the_environments_comments_it_out() {
        let t = Tree::new();
        for text in [
            "",
            "[output_threatjammer]\nbearer_token = THREATJAMMER_API_TOKEN\n",
        ] {
            let err = import_settings(t.settings(text, &[]).unwrap(), None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("no report target is enabled"), "{msg}");
            assert!(msg.contains("THREATJAMMER_API_TOKEN"), "{msg}");
            // The environment's token enables Threat Jammer; the file then
            // leaves the token file's line commented out.
            let imported =
                import_settings(t.settings(text, &[]).unwrap(), Some(TOKEN.into())).unwrap();
            let out = &imported.toml;
            assert!(!out.contains(TOKEN), "{out}");
            assert!(
                out.contains("# bearer_token_file = \"/etc/tjfwd/token\""),
                "{out}"
            );
            assert!(!out.contains("\nbearer_token_file"), "{out}");
            let back = Config::from_toml_str(out, None, &LoadOptions { dry_run: true }, None)
                .unwrap_or_else(|e| panic!("{e}\n{out}"));
            let tj = back.threatjammer().unwrap();
            assert!(tj.report.token.is_none());
            assert_eq!(tj.report.api_url.as_str(), API_URL);
        }
    }

    /// AbuseIPDB: the table holds the converted thresholds and names a key
    /// file, never the key; loaded back, it is the configuration
    /// `run --cowrie-config` builds.
    #[test]
    fn import_writes_abuseipdb_without_the_key_and_round_trips() {
        const KEY: &str = "aipdb-IMPORT-key-fedcba9876543210";
        let t = Tree::new();
        let text = format!(
            "[output_abuseipdb]\nenabled = false\napi_key = {KEY}\nrereport_after = 6\n\
             tolerance_window = 30\ndump_path = /var/lib/cowrie/abuseipdb\n"
        );
        let expected = t
            .settings(&text, &[])
            .unwrap()
            .into_config(None, &LoadOptions::default(), None)
            .unwrap();
        let imported = import_settings(t.settings(&text, &[]).unwrap(), None).unwrap();
        let out = &imported.toml;
        assert!(!out.contains(KEY), "{out}");
        assert!(!format!("{imported:?}").contains(KEY));
        assert!(out.contains("[targets.abuseipdb]"), "{out}");
        // Not a section, and not named by the header either.
        assert!(!out.contains("[targets.threatjammer]"), "{out}");
        assert!(
            out.contains("# Imported: [targets.abuseipdb] from its"),
            "{out}"
        );
        for line in [
            "api_key_file = \"/etc/tjfwd/abuseipdb_key\"",
            "rereport_after = \"6h\"",
            "attempts_window = \"30m\"",
            "min_attempts = 10",
            "categories = \"18,22\"",
        ] {
            assert!(out.lines().any(|l| l.starts_with(line)), "{line}:\n{out}");
        }
        assert!(
            imported.notes.iter().any(|n| n.contains("dump_path")),
            "{:?}",
            imported.notes
        );
        let key = t.write("abuseipdb_key", KEY);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let out = out.replace("/etc/tjfwd/abuseipdb_key", &key.display().to_string());
        let back = Config::from_toml_str(&out, None, &LoadOptions::default(), None)
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(back.targets, expected.targets);
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);

        // A key only in the environment: the key file's line is commented out.
        let text = "[output_abuseipdb]\ntolerance_attempts = 2\n";
        let toml = t.write("tjfwd.toml", "[targets.abuseipdb]\n");
        let config = t
            .settings(text, &[])
            .unwrap()
            .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
            .unwrap();
        let out = render(&RenderInput {
            config: &config,
            file: &t.root().join("etc/cowrie.cfg"),
            files_read: &[],
            env_overrides: &[],
            cowrie_dir: t.root(),
            has_token: false,
            has_abuseipdb_key: false,
        });
        assert!(
            out.contains("# api_key_file = \"/etc/tjfwd/abuseipdb_key\""),
            "{out}"
        );
        assert!(!out.contains("\napi_key_file"), "{out}");
        let back = Config::from_toml_str(&out, None, &LoadOptions { dry_run: true }, None)
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(back.targets.abuseipdb.as_ref().unwrap().min_attempts, 2);
    }
}
