//! Reloading the configuration of a running daemon (`tjfwd run` on
//! SIGHUP): which settings a reload applies while running, which wait for
//! a restart, and the channel through which the configurations come.
//!
//! Only `main` knows about signals: on SIGHUP, `tjfwd run` loads the
//! configuration again exactly as at start (the file, `--cowrie-config`,
//! the token from whichever source gives it: `bearer_token`, the file named
//! by `bearer_token_file`, `TJFWD_BEARER_TOKEN`, the systemd credential)
//! and, if it is valid, sends it through a [`Reloader`]; one that is not is
//! logged there and the daemon is not told. The daemon ([`super::run_reloading`])
//! takes each one it gets from its [`Reloads`] and [`merge`]s it into the
//! one it runs with:
//!
//! - the keys of [`LIVE_KEYS`] (what a request to a target is made of: its
//!   endpoint, its credentials, its TLS trust, what a report says, the time
//!   limit of a request) are taken from the new configuration; the targets
//!   are built again from it (the token file and `ca_file` are read again)
//!   and replace the running ones ([`crate::targets::Live`]): the next
//!   request uses them, and a target paused by a refused token tries again
//!   at once. If a target cannot be built from it, nothing changes (logged);
//! - every other key keeps its running value until a restart, and each one
//!   that changed is logged with that advice. They are what the running
//!   parts were built from once: the listening sockets, the state
//!   directory and the database, the inputs, the pipeline's rules
//!   (`track_*`, `[filter]`), what the store knows of a target (`ttl`,
//!   `rereport_after`) and the policy its scheduler read (batches, rate
//!   limit, backoff). A key added later needs a restart until it is listed
//!   in [`LIVE_KEYS`] and [`merge`] takes it.
//!
//! The log level comes from the command line and the environment, which a
//! reload does not change.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;

/// The keys a reload applies while running, as the configuration file
/// names them (the token under `[targets.threatjammer] bearer_token`,
/// wherever it comes from). A target enabled or disabled by a reload
/// waits for a restart, as its other keys do.
pub const LIVE_KEYS: [&str; 7] = [
    "[targets.threatjammer] api_url",
    "[targets.threatjammer] bearer_token",
    "[targets.threatjammer] ca_file",
    "[targets.threatjammer] allow_insecure_http",
    "[targets.threatjammer] category",
    "[targets.threatjammer] tags",
    "[targets.threatjammer] request_timeout",
];

/// A reloaded configuration, merged into the running one.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The running configuration with the keys of [`LIVE_KEYS`] taken from
    /// the new one: what the daemon runs with once it is applied.
    pub config: Config,
    /// The live keys whose value changed.
    pub applied: Vec<String>,
    /// The other keys whose value changed: they keep their running value
    /// until a restart.
    pub need_restart: Vec<String>,
}

/// Merges `new` into `running` (see the module doc).
pub fn merge(running: &Config, new: &Config) -> Merged {
    let mut config = running.clone();
    if let (Some(tj), Some(from)) = (
        config.targets.threatjammer.as_mut(),
        new.targets.threatjammer.as_ref(),
    ) {
        let (report, from_report) = (&mut tj.report, &from.report);
        report.api_url = from_report.api_url.clone();
        report.token = from_report.token.clone();
        report.ca_file = from_report.ca_file.clone();
        report.allow_insecure_http = from_report.allow_insecure_http;
        report.category = from_report.category.clone();
        report.tags = from_report.tags.clone();
        tj.schedule.request_timeout = from.schedule.request_timeout;
    }
    config.warnings = new.warnings.clone();
    config.notes = new.notes.clone();
    Merged {
        applied: changed_keys(running, &config),
        need_restart: changed_keys(&config, new),
        config,
    }
}

/// The keys whose values differ between `a` and `b`, as the file names
/// them (`state_dir`, `[input] poll_interval`, `[targets.name] key`), in
/// the file's order of sections. The token is compared itself (its
/// written form is redacted).
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (ka, kb) = (keys(a), keys(b));
    let mut changed: Vec<String> = ka
        .iter()
        .filter(|(k, v)| kb.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(kb.keys().filter(|k| !ka.contains_key(*k)).cloned())
        .collect();
    let token = "[targets.threatjammer] bearer_token";
    let token_of = |c: &Config| c.threatjammer().and_then(|tj| tj.report.token.clone());
    if token_of(a) != token_of(b) && !changed.iter().any(|k| k == token) {
        changed.push(token.to_string());
    }
    changed.sort_by_key(|k| order(k));
    changed
}

/// Where a key sorts: by its position in the file's layout, then by name.
fn order(key: &str) -> (usize, String) {
    const SECTIONS: [&str; 7] = [
        "state_dir",
        "[input]",
        "[filter]",
        "[storage]",
        "[queue]",
        "[admin]",
        "[targets",
    ];
    let at = SECTIONS
        .iter()
        .position(|s| key.starts_with(s))
        .unwrap_or(SECTIONS.len());
    (at, key.to_string())
}

/// Every key of `config` with its written value.
fn keys(config: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(config) {
        flatten(&mut Vec::new(), t, &mut out);
    }
    out
}

fn flatten(path: &mut Vec<String>, table: toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => {
                path.push(k);
                flatten(path, t, out);
                path.pop();
            }
            v if path.is_empty() => {
                out.insert(k, v);
            }
            v => {
                out.insert(format!("[{}] {k}", path.join(".")), v);
            }
        }
    }
}

/// Sends reloaded configurations to a running daemon (`tjfwd run`, on
/// SIGHUP; tests).
#[derive(Debug, Clone)]
pub struct Reloader(Arc<watch::Sender<Option<Arc<Config>>>>);

impl Reloader {
    /// Hands `config` (loaded and checked) to the daemon. Only the latest
    /// counts when several come before the daemon looks.
    pub fn reload(&self, config: Config) {
        self.0.send_replace(Some(Arc::new(config)));
    }
}

/// The reloaded configurations a daemon receives (see [`Reloader`]).
#[derive(Debug)]
pub struct Reloads(Option<watch::Receiver<Option<Arc<Config>>>>);

impl Reloads {
    /// A channel: what the [`Reloader`] sends, the [`Reloads`] receive.
    pub fn channel() -> (Reloader, Reloads) {
        let (tx, rx) = watch::channel(None);
        (Reloader(Arc::new(tx)), Reloads(Some(rx)))
    }

    /// None ever comes (the daemon is not reloaded).
    pub fn none() -> Reloads {
        Reloads(None)
    }

    /// The next configuration sent; never completes once the sender is
    /// gone.
    pub async fn next(&mut self) -> Arc<Config> {
        loop {
            let Some(rx) = &mut self.0 else {
                return std::future::pending().await;
            };
            if rx.changed().await.is_err() {
                self.0 = None;
                continue;
            }
            if let Some(config) = rx.borrow_and_update().clone() {
                return config;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;

    fn parse(text: &str) -> Config {
        Config::from_toml_str(text, None, &LoadOptions { dry_run: false }, None).unwrap()
    }

    const BASE: &str = r#"
state_dir = "/var/lib/tjfwd"
[targets.threatjammer]
api_url = "https://report.example.net/v1/ip"
bearer_token = "token-one"
[input]
cowrie_json = "/var/log/cowrie/cowrie.json"
"#;

    /// Every key of the file changed at once: the live ones are applied,
    /// every other one is reported as needing a restart and keeps its
    /// running value.
    #[test]
    fn a_reload_applies_the_live_keys_and_keeps_the_others() {
        let running = parse(BASE);
        let new = parse(
            r#"
state_dir = "/srv/tjfwd"
[targets.threatjammer]
api_url = "https://other.example.com/v1/ip"
bearer_token = "token-two"
allow_insecure_http = true
track_login = false
track_session = true
ttl = 3600
category = "OTHER"
tags = ["X"]
batch_size = 10
flush_interval = "10s"
max_requests_per_minute = 2
request_timeout = "5s"
max_backoff = "1m"
rereport_after = "1h"
[input]
cowrie_json = "/srv/cowrie.json"
start_at = "beginning"
poll_interval = "2s"
max_line_bytes = "2MiB"
listen_tcp = "127.0.0.1:5000"
max_connections = 2
[filter]
report_non_public = true
allowlist = ["192.0.2.0/24"]
[storage]
cache_capacity = "2MiB"
[queue]
max_pending = 5000
[admin]
listen = "127.0.0.1:9100"
"#,
        );
        let m = merge(&running, &new);
        let mut live: Vec<String> = LIVE_KEYS
            .iter()
            .filter(|k| **k != "[targets.threatjammer] ca_file") // needs a real file
            .map(|k| k.to_string())
            .collect();
        live.sort_by_key(|k| order(k));
        assert_eq!(m.applied, live);
        assert_eq!(
            m.need_restart,
            [
                "state_dir",
                "[input] cowrie_json",
                "[input] listen_tcp",
                "[input] max_connections",
                "[input] max_line_bytes",
                "[input] poll_interval",
                "[input] start_at",
                "[filter] allowlist",
                "[filter] report_non_public",
                "[storage] cache_capacity",
                "[queue] max_pending",
                "[admin] listen",
                "[targets.threatjammer] batch_size",
                "[targets.threatjammer] flush_interval",
                "[targets.threatjammer] max_backoff",
                "[targets.threatjammer] max_requests_per_minute",
                "[targets.threatjammer] rereport_after",
                "[targets.threatjammer] track_login",
                "[targets.threatjammer] track_session",
                "[targets.threatjammer] ttl",
            ]
        );
        // What the daemon runs with: the new live values, the old others.
        let tj = |c: &Config| c.threatjammer().unwrap().clone();
        let (merged, new_tj, running_tj) = (tj(&m.config), tj(&new), tj(&running));
        assert_eq!(merged.report.token, new_tj.report.token);
        assert_eq!(merged.report.api_url, new_tj.report.api_url);
        assert_eq!(
            merged.schedule.request_timeout,
            new_tj.schedule.request_timeout
        );
        assert_eq!(m.config.state_dir, running.state_dir);
        assert_eq!(m.config.input, running.input);
        assert_eq!(merged.schedule.batch_size, running_tj.schedule.batch_size);
        assert_eq!(merged.report.ttl, running_tj.report.ttl);
        assert!(changed_keys(&m.config, &running)
            .iter()
            .all(|k| LIVE_KEYS.contains(&k.as_str())));
    }

    /// A new token is a change even though its written form is redacted;
    /// the same configuration again changes nothing.
    #[test]
    fn the_token_alone_is_a_change_and_the_same_file_is_none() {
        let running = parse(BASE);
        let m = merge(&running, &parse(BASE));
        assert!(m.applied.is_empty() && m.need_restart.is_empty(), "{m:?}");
        let m = merge(&running, &parse(&BASE.replace("token-one", "token-two")));
        assert_eq!(m.applied, ["[targets.threatjammer] bearer_token"]);
        assert!(m.need_restart.is_empty());
    }

    #[tokio::test]
    async fn reloads_deliver_the_latest_configuration() {
        let (tx, mut rx) = Reloads::channel();
        tx.reload(Config::default_for_tests("/a".into()));
        tx.reload(Config::default_for_tests("/b".into()));
        assert_eq!(rx.next().await.state_dir, std::path::Path::new("/b"));
        drop(tx);
        let never = tokio::time::timeout(std::time::Duration::from_millis(50), rx.next()).await;
        assert!(never.is_err());
        let mut none = Reloads::none();
        let never = tokio::time::timeout(std::time::Duration::from_millis(50), none.next()).await;
        assert!(never.is_err());
    }
}
