//! The tools every section of the configuration is written with, below both
//! [`crate::config`] (the file: its layout, the sections that are not a
//! target's, the loader) and [`crate::targets`] (each target's own section),
//! so that neither has to import the other to check a key.
//!
//! - `context`: [`Ctx`], the state shared while a file is checked (the file
//!   named in messages, the directory relative paths are joined to, the
//!   warnings collected so far) and the checks of values common to several
//!   sections (paths, durations, sizes).
//! - `errors`: [`ConfigError`], and toml's parse errors rendered with any
//!   line that may hold a secret redacted (`render_parse_error`).
//! - `secret`: [`Secret`], and which key names are taken for secrets
//!   (`looks_secret`).
//! - `credential`: a secret given inline, in a file, in an environment
//!   variable or as a systemd credential, read once and checked
//!   (`resolve_secret`).
//! - `format`: durations and sizes written back as TOML, and the
//!   `serialize_with` functions of the sections (`ser`).
//!
//! Invariants: every refusal is a [`ConfigError::Invalid`] whose message
//! starts with the file and the key at fault and says what to write
//! instead; a [`Secret`] prints and serializes only as `<redacted>`, and no
//! message built here quotes a value whose key `looks_secret`; what
//! `format` writes, the checks of `context` read back to the same value.
//!
//! This module names no section and uses no other module of tjfwd.

mod context;
mod credential;
mod errors;
mod format;
mod secret;

pub use context::{Ctx, SecretSources};
pub(crate) use credential::{resolve_secret, secret_readers, SecretSpec};
pub(crate) use errors::render_parse_error;
pub use errors::ConfigError;
pub(crate) use format::{format_duration, format_size, ser, KIB, MIB};
pub use secret::Secret;
pub(crate) use secret::{looks_secret, REDACTED};
