//! How durations and sizes are written back as TOML values (for
//! `check-config` and `config import-cowrie`): forms the loader parses back
//! to the same value.

use std::time::Duration;

/// Bytes in a KiB, a MiB and a GiB: the units sizes are written in.
pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

pub(crate) fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(crate) fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}
