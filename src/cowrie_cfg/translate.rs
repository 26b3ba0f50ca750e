//! From [`CowrieSettings`] to a [`Config`]: the settings are handed to the
//! TOML loader as its `Supplied` values (Threat Jammer's report keys and
//! `[input] cowrie_json`), so that they are checked by the same rules as the TOML
//! keys; a refusal is then made to name the line of cowrie.cfg (or the
//! environment variable) that set the value.
//!
//! This is the whole interface between `cowrie_cfg` and `config`:
//! `config::load_with` with a `Supplied`. `config` does not use `cowrie_cfg`.

use std::path::Path;

use super::ini::Origin;
use super::settings::CowrieSettings;
use super::{ABUSEIPDB_SECTION, PLACEHOLDER_TOKEN, PLUGIN_SECTION};
use crate::config::{
    self, Config, ConfigError, LoadOptions, Supplied, SuppliedAbuseIpdb, TOKEN_ENV,
};
use crate::targets::abuseipdb::config::{CREDENTIAL_NAME as KEY_CREDENTIAL, KEY_ENV};

impl CowrieSettings {
    /// The configuration of `tjfwd run`: Threat Jammer's report keys and
    /// `[input] cowrie_json` from these settings, everything else from the
    /// TOML file `toml` (which must not set them) or the defaults.
    /// `env_token` stands for `TJFWD_BEARER_TOKEN`, used when cowrie.cfg
    /// holds no token. Threat Jammer is enabled by a token (cowrie.cfg's,
    /// not Cowrie's placeholder, or the environment's or the systemd
    /// credential) or by its table in the TOML file.
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
        let a_sec = format!("[{ABUSEIPDB_SECTION}]");
        let a_origins = self.abuseipdb_origins;
        let abuseipdb = SuppliedAbuseIpdb {
            section: a_sec.clone(),
            values: self.abuseipdb,
            names: vec![
                ("api_key", "api_key"),
                ("api_key_file", "api_key"),
                ("rereport_after", "rereport_after (hours)"),
                ("min_attempts", "tolerance_attempts"),
                ("attempts_window", "tolerance_window (minutes)"),
            ],
            key_hint: format!(
                "{a_sec} api_key has none: set it there, or set the environment variable                  {KEY_ENV}, or pass the systemd credential {KEY_CREDENTIAL}, or use --dry-run"
            ),
        };
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
            target_hint: format!(
                "enable Threat Jammer with a token in {sec} bearer_token of {shown} (Cowrie's \
                 placeholder {PLACEHOLDER_TOKEN} counts as none) or in the environment \
                 variable {TOKEN_ENV}, and api_url there; or AbuseIPDB with a key in {a_sec} \
                 api_key of {shown} or in the environment variable {KEY_ENV}"
            ),
            warnings: self.warnings,
            notes: self.notes,
            abuseipdb,
        };
        let mut config =
            config::load_with(toml, opts, env_token, Some(supplied)).map_err(|e| match e {
                // Say where in cowrie.cfg (or the environment) a refused value was set.
                ConfigError::Invalid { file, key, message } if file == shown => {
                    let origin = key
                        .strip_prefix(&sec)
                        .map(str::trim)
                        .and_then(|k| origins.get(k))
                        .or_else(|| {
                            key.strip_prefix(&a_sec)
                                .map(str::trim)
                                .and_then(|k| a_origins.get(k))
                        });
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
        if config.targets.abuseipdb.is_some() {
            config.notes.extend(self.abuseipdb_notes);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::{Tree, API_URL, TOKEN};

    use crate::config::{ConfigError, LoadOptions};

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
            // No token: Threat Jammer is not enabled, and no other target is.
            let err = t.config(text, &[], None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("no report target is enabled"), "{msg}");
            assert!(msg.contains("threatjammer"), "{msg}");
            assert!(msg.contains(PLACEHOLDER_TOKEN), "{msg}");
            assert!(msg.contains(TOKEN_ENV), "{msg}");
            assert!(msg.contains("[output_threatjammer] bearer_token"), "{msg}");
            assert!(
                msg.starts_with(&t.root().join("etc/cowrie.cfg").display().to_string()),
                "{msg}"
            );
            match err {
                ConfigError::Invalid { key, .. } => assert_eq!(key, "[targets]"),
                other => panic!("{other:?}"),
            }
            // Not in a dry run either: there is nothing to try.
            let err = t
                .settings(text, &[])
                .unwrap()
                .into_config(None, &LoadOptions { dry_run: true }, None)
                .unwrap_err();
            assert!(err.to_string().contains("no report target"), "{err}");
            // The environment's token enables it.
            let c = t.config(text, &[], Some(TOKEN)).unwrap();
            let tj = &c.threatjammer().unwrap().report;
            assert_eq!(tj.token.as_ref().unwrap().expose(), TOKEN);
        }
        // A real token in cowrie.cfg enables it.
        let c = t
            .config(
                &format!("[output_threatjammer]\nbearer_token = {TOKEN}\n"),
                &[],
                None,
            )
            .unwrap();
        let tj = &c.threatjammer().unwrap().report;
        assert_eq!(tj.token.as_ref().unwrap().expose(), TOKEN);
        assert_eq!(tj.api_url.as_str(), API_URL);
    }

    /// The plugin's old default endpoint is not a setting (nor is the
    /// dist file's commented `#api_url=` line): a real token without
    /// `api_url` is refused with the reason, in a dry run too.
    #[test]
    fn a_token_without_api_url_is_refused_with_the_reason() {
        let t = Tree::new();
        t.write(
            "etc/cowrie.cfg.dist",
            "[output_threatjammer]\nenabled = false\n\
             #api_url=https://dublin.report.threatjammer.com/v1/ip\n\
             bearer_token = THREATJAMMER_API_TOKEN\n",
        );
        let text = format!("[output_threatjammer]\nbearer_token = {TOKEN}\n");
        for dry_run in [false, true] {
            let err = t
                .settings_as_written(&text, &[])
                .unwrap()
                .into_config(None, &LoadOptions { dry_run }, None)
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("[output_threatjammer] api_url"), "{msg}");
            assert!(msg.contains("shut down"), "{msg}");
            assert!(msg.contains("someone else"), "{msg}");
            assert!(msg.contains("another target"), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
            assert!(
                msg.starts_with(&t.root().join("etc/cowrie.cfg").display().to_string()),
                "{msg}"
            );
        }
        // Set by the operator: taken.
        let c = t
            .settings_as_written(
                &format!("{text}api_url = https://tj.example.org/v1/ip\n"),
                &[],
            )
            .unwrap()
            .into_config(None, &LoadOptions::default(), None)
            .unwrap();
        let tj = &c.threatjammer().unwrap().report;
        assert_eq!(tj.api_url.as_str(), "https://tj.example.org/v1/ip");
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
            "state_dir = \"state\"\n[input]\nstart_at = \"beginning\"\n\
             [targets.threatjammer]\nbatch_size = 10\n",
        );
        // Its [targets.threatjammer] enables Threat Jammer, without a token.
        let s = t.settings("[output_threatjammer]\nttl = 5\n", &[]).unwrap();
        let c = s
            .into_config(Some(&toml), &LoadOptions { dry_run: true }, None)
            .unwrap();
        assert_eq!(c.threatjammer().unwrap().report.ttl, 5);
        assert_eq!(c.schedule().batch_size, 10);
        assert_eq!(c.input.start_at, crate::config::StartAt::Beginning);
        assert_eq!(c.state_dir, t.root().join("state"));
        assert_eq!(c.path.as_deref(), Some(toml.as_path()));

        for (extra, key) in [
            (
                "[targets.threatjammer]\napi_url = \"https://x.example/v1/ip\"\n",
                "[targets.threatjammer] api_url",
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
            .into_config(
                Some(&toml),
                &LoadOptions { dry_run: true },
                Some(TOKEN.into()),
            )
            .unwrap();
        assert_eq!(c.input.cowrie_json, None);
        assert_eq!(c.input.listen_tcp, Some("127.0.0.1:9000".parse().unwrap()));
    }
}
