//! What tjfwd mirrors of Cowrie 3.1.4 itself, beyond the INI rules: the
//! defaults built into it (those of its `cowrie.cfg.dist` that matter here),
//! the directory it runs in, which relative paths of cowrie.cfg are
//! relative to, and the files it reads there.

use std::path::{Path, PathBuf};

use super::ini::Ini;

/// The Cowrie 3.1.4 defaults tjfwd depends on (from its bundled
/// `cowrie.cfg.dist` and the plugin's fallbacks). `bearer_token` has no usable
/// default. `tags` has none in Cowrie's code, and is commented out in its
/// dist file: the documented value is used (and is tjfwd's default too).
/// `api_url` is not one: the dist file's `#api_url=` line is a comment, and
/// the plugin's fallback pointed at the Threat Jammer service, which shut
/// down in 2024 (its domain belongs to someone else now); tjfwd takes
/// `api_url` only when the operator set it.
///
/// `[output_abuseipdb]`: the dist file has `enabled = false` and every other
/// key commented out (`#api_key =`, no placeholder); the values below are
/// the plugin's fallbacks (`src/cowrie/output/abuseipdb.py`: `rereport_after`
/// 24 hours, `tolerance_window` 120 minutes, `tolerance_attempts` 10), so
/// that an operator moving from the plugin keeps its behaviour. `api_key`
/// has no default, nor has `dump_path` (the plugin needs it set; tjfwd
/// ignores it).
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
track_login = true
track_session = false
ttl = 86400
category = ABUSE
tags = COWRIE,LOGIN,SESSION

[output_abuseipdb]
enabled = false
rereport_after = 24
tolerance_window = 120
tolerance_attempts = 10
";

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

/// The files Cowrie reads, in its order (the last wins per key), for
/// Cowrie run in `cowrie_dir`.
pub(super) fn files_cowrie_reads(cowrie_dir: &Path) -> [PathBuf; 3] {
    [
        PathBuf::from("/etc/cowrie/cowrie.cfg"),
        cowrie_dir.join("etc/cowrie.cfg"),
        cowrie_dir.join("cowrie.cfg"),
    ]
}

impl Ini {
    /// Reads the embedded copy of Cowrie's defaults.
    pub fn read_defaults(&mut self) {
        self.read_text(EMBEDDED_DEFAULTS, None)
            .expect("the embedded Cowrie defaults are valid");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cowrie_cfg::tests::get;
    use crate::cowrie_cfg::{Origin, ABUSEIPDB_SECTION, PLUGIN_SECTION};

    use std::path::Path;

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
        // No default endpoint: the service it named is gone.
        assert_eq!(get(&i, PLUGIN_SECTION, "api_url"), None);
        assert_eq!(get(&i, PLUGIN_SECTION, "bearer_token"), None);
        assert_eq!(
            i.get(PLUGIN_SECTION, "ttl").unwrap().unwrap().origin,
            Origin::Defaults
        );
        let a = ABUSEIPDB_SECTION;
        assert!(!i.get_bool(a, "enabled").unwrap().unwrap().0);
        assert_eq!(get(&i, a, "api_key"), None);
        assert_eq!(get(&i, a, "dump_path"), None);
        assert_eq!(i.get_int(a, "tolerance_attempts").unwrap().unwrap().0, 10);
        assert_eq!(i.get_int(a, "tolerance_window").unwrap().unwrap().0, 120);
        assert_eq!(get(&i, a, "rereport_after").as_deref(), Some("24"));
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
}
