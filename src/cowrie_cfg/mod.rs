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
//!    (`[output_jsonlog] logfile`, relative to the Cowrie directory), every
//!    key of `[output_threatjammer]`, and those of `[output_abuseipdb]`
//!    (`api_key`; `rereport_after` in hours, `tolerance_window` in minutes
//!    and `tolerance_attempts`, converted to AbuseIPDB's `rereport_after`,
//!    `attempts_window` and `min_attempts`, the plugin's defaults where
//!    cowrie.cfg sets none; `dump_path` ignored with a note).
//! 3. [`load_config`] / [`import_toml`]: a [`Config`] whose Threat Jammer
//!    report keys, AbuseIPDB's key and thresholds and `[input] cowrie_json`
//!    come from cowrie.cfg (checked by the same rules as the TOML keys, see
//!    `crate::config`), or the equivalent TOML text.
//!
//! Both plugin sections are read whether Cowrie's plugin is enabled or not
//! (`enabled = true` draws a warning: Cowrie and tjfwd would both report).
//! Each target is enabled from cowrie.cfg only by a real secret there
//! (Threat Jammer: a `bearer_token` other than Cowrie's placeholder
//! [`PLACEHOLDER_TOKEN`]; AbuseIPDB: a non-empty `api_key`, the dist file
//! has no placeholder), by the target's environment variable or systemd
//! credential, or by its `[targets.<name>]` table in the TOML file given
//! with cowrie.cfg, which may then set the target's other keys but not
//! those cowrie.cfg supplies. `rereport_after` under 15 minutes (0
//! included) is raised to 15 minutes with a warning, as Cowrie's plugin
//! raises it (AbuseIPDB refuses a second report within 15 minutes).
//!
//! The files follow these layers: `ini.rs` (the reader: syntax, sections,
//! `[DEFAULT]`, files on top of each other, the environment),
//! `interpolate.rs` (reading one value: interpolation, booleans, integers),
//! `layout.rs` (Cowrie's embedded defaults, the directory it runs in, the
//! files it reads), `outputs.rs` (one reader per output section tjfwd takes:
//! `[output_jsonlog]`, `[output_socketlog]`, `[output_threatjammer]`,
//! `[output_abuseipdb]`, each with its warnings), `settings.rs` ([`CowrieSettings`]: the layers read,
//! the readers called in turn, the remarks about the whole), `translate.rs`
//! (settings to [`Config`]) and `import.rs` ([`import_toml`]'s text);
//! `tests.rs` has the helpers the tests share. Taking one more output
//! section of cowrie.cfg is a reader in `outputs.rs`, called from
//! `settings.rs`.
//!
//! The dependency runs one way: this module uses `crate::config` (its
//! loader through `Supplied`), `crate::targets::threatjammer::config`
//! (`RawThreatJammer`, the section `[output_threatjammer]` becomes),
//! `crate::targets::abuseipdb::config` (`FromCowrie`, what
//! `[output_abuseipdb]` becomes) and
//! `crate::config_kit` (`Secret`, the formats of durations and sizes);
//! none of them uses this module.
//!
//! Only the keys tjfwd needs are interpolated and converted, as Cowrie itself
//! only evaluates the values it reads: a broken value elsewhere in cowrie.cfg
//! is not tjfwd's concern.
//!
//! The bearer token and the AbuseIPDB key never appear in a message, a
//! warning, a `Debug` output or the imported TOML (which names a file for
//! each): parse errors do not quote lines, interpolation errors do
//! not quote values, and [`Value`]'s `Debug` hides its text.

mod import;
mod ini;
mod interpolate;
mod layout;
mod outputs;
mod settings;
#[cfg(test)]
mod tests;
mod translate;

use std::path::Path;

use crate::config::{Config, ConfigError, LoadOptions, TOKEN_ENV};

pub use import::{import_settings, import_toml, Imported};
pub use ini::{Ini, IniError, Origin};
pub use interpolate::{parse_bool, parse_int, Value};
pub use layout::cowrie_dir_for;
pub use settings::CowrieSettings;

/// The Cowrie version whose configuration rules and defaults are mirrored.
pub const COWRIE_VERSION: &str = "3.1.4";

/// The placeholder of `[output_threatjammer] bearer_token` in Cowrie's
/// `cowrie.cfg.dist`: it means "no token".
pub const PLACEHOLDER_TOKEN: &str = "THREATJAMMER_API_TOKEN";

/// Where `tjfwd config import-cowrie` tells the operator to put the token.
pub const SUGGESTED_TOKEN_FILE: &str = "/etc/tjfwd/token";

/// The section of Cowrie's Threat Jammer plugin.
pub const PLUGIN_SECTION: &str = "output_threatjammer";

/// The section of Cowrie's AbuseIPDB plugin.
pub const ABUSEIPDB_SECTION: &str = "output_abuseipdb";

/// Where `tjfwd config import-cowrie` tells the operator to put the
/// AbuseIPDB API key.
pub const SUGGESTED_ABUSEIPDB_KEY_FILE: &str = "/etc/tjfwd/abuseipdb_key";

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
