//! [`Secret`], the type of the bearer token, and what redaction means here.
//!
//! A `Secret` prints and serializes as `<redacted>` (`Debug`, `Display`,
//! `Serialize`); only [`Secret::expose`] gives the value, where it is
//! actually sent.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// What a redacted secret is shown as.
pub(crate) const REDACTED: &str = "<redacted>";

/// A value that must never be printed (a target's bearer token or API key).
/// `Debug` and `Display` print `<redacted>`, and it serializes as the string
/// `<redacted>` (so a serialized [`Config`](crate::config::Config) never holds it);
/// use [`Secret::expose`] only where the value is actually sent.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret value itself, for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Parts of key names that suggest the value is a secret. Over-redaction is
/// harmless (it only hides part of a snippet), under-redaction is not; a typo
/// such as `bearer_tokn` must be covered too, hence substrings.
const SENSITIVE_WORDS: [&str; 8] = [
    "token",
    "secret",
    "passw",
    "bearer",
    "apikey",
    "api_key",
    "auth",
    "credential",
];

/// Whether a key's name suggests that its value is a secret: it contains
/// one of [`SENSITIVE_WORDS`], in any case. Used for tjfwd.toml (redaction of
/// toml's parse errors) and for cowrie.cfg (values never quoted nor copied).
pub(crate) fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_WORDS.iter().any(|w| key.contains(w))
}
