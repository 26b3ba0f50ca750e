//! The `[storage]` section: tuning of the sled database.

use serde::{Deserialize, Serialize};

use crate::config_kit::{ser, ConfigError, Ctx, MIB};

const DEFAULT_CACHE_CAPACITY: u64 = 32 * MIB;
const MIN_CACHE_CAPACITY: u64 = MIB;

/// The `[storage]` section: the sled database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// Bytes of sled's page cache.
    #[serde(serialize_with = "ser::size")]
    pub cache_capacity: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// `[storage]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    /// A size string ("32MiB") or an integer number of bytes.
    pub(super) cache_capacity: Option<toml::Value>,
}

/// Checks `[storage]` as written and applies its defaults.
pub(super) fn validate(ctx: &Ctx, raw: RawStorage) -> Result<Storage, ConfigError> {
    let key = "[storage] cache_capacity";
    let cache_capacity = ctx.size(key, raw.cache_capacity, DEFAULT_CACHE_CAPACITY)?;
    if cache_capacity < MIN_CACHE_CAPACITY {
        return Err(ctx.invalid(
            key,
            format!(
                "{key} = {cache_capacity} bytes is too small: it must be at least 1MiB \
                 (default 32MiB)"
            ),
        ));
    }
    Ok(Storage { cache_capacity })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse_ok, refused};

    #[test]
    fn cache_capacity_forms_and_refusals() {
        assert_eq!(
            parse_ok("[storage]\ncache_capacity = \"1 GiB\"")
                .storage
                .cache_capacity,
            1 << 30
        );
        assert_eq!(
            parse_ok("[storage]\ncache_capacity = 2097152")
                .storage
                .cache_capacity,
            2 << 20
        );
        let msg = refused(
            "[storage]\ncache_capacity = \"lots\"",
            "[storage] cache_capacity",
        );
        assert!(msg.contains("\"lots\""), "{msg}");
        let msg = refused(
            "[storage]\ncache_capacity = \"512KiB\"",
            "[storage] cache_capacity",
        );
        assert!(msg.contains("1MiB"), "{msg}");
        refused("[storage]\ncache_capacity = -1", "[storage] cache_capacity");
    }
}
