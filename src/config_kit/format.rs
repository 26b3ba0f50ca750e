//! How values are written back as TOML (for `check-config` and `config
//! import-cowrie`): in forms the loader parses back to the same value.
//!
//! [`ser`] holds the `serialize_with` functions of the resolved sections'
//! `Serialize` derives: durations as humantime strings, sizes as `"32MiB"`,
//! addresses and URLs as their text, paths lossily as UTF-8, and unsigned
//! counts as TOML's i64, saturated.

use std::time::Duration;

/// Bytes in a KiB, a MiB and a GiB: the units sizes are written in.
pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * KIB;
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

/// `serialize_with` functions: each writes a resolved value the way its key
/// is written in the file. Those for `Option`s are used with
/// `skip_serializing_if = "Option::is_none"` (TOML has no null).
pub(crate) mod ser {
    use std::fmt::Display;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use serde::Serializer;

    use super::{format_duration, format_size};

    /// A duration as a humantime string: `"1h 30m"`.
    pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// A byte count as a size string: `"32MiB"`, `"1500B"`.
    pub(crate) fn size<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(*n))
    }

    /// A `usize` byte count as a size string.
    pub(crate) fn size_usize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(*n as u64))
    }

    /// An unsigned count as a TOML integer (an i64), `i64::MAX` if larger.
    pub(crate) fn saturating_i64<S: Serializer, N: Copy + TryInto<i64>>(
        n: &N,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_i64((*n).try_into().unwrap_or(i64::MAX))
    }

    /// A value as its `Display` text (a URL, a socket address).
    pub(crate) fn display<S: Serializer, T: Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// An optional value as its `Display` text.
    pub(crate) fn display_opt<S: Serializer, T: Display>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => display(v, s),
            None => s.serialize_none(),
        }
    }

    /// A list as the `Display` texts of its items (networks).
    pub(crate) fn display_seq<S: Serializer, T: Display>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(T::to_string))
    }

    /// A path as text; a part that is not UTF-8 is replaced (U+FFFD).
    pub(crate) fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    /// An optional path as text.
    pub(crate) fn path_opt<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => path(p, s),
            None => s.serialize_none(),
        }
    }
}
