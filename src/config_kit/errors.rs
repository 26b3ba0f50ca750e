//! Why a configuration is refused ([`ConfigError`]), and how toml's parse
//! errors are shown without the secrets they may quote.
//!
//! toml's own diagnostics quote the offending source line; before such an
//! error is shown, any line that may hold a secret is redacted
//! ([`render_parse_error`]), and the error is kept only as text (it is not
//! chained as a `source()`, which would print the original).

use std::io;
use std::path::PathBuf;

use super::secret::{looks_secret, REDACTED};

/// Why a configuration could not be loaded. The `Display` text always starts
/// with the file name and names the key at fault; it never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read the configuration file: {io}; check the path and its permissions", path.display())]
    Read {
        /// The file we tried to read, so the message can name it.
        path: PathBuf,
        /// What the OS said (kept as a field, not a `source`, to print it once).
        io: io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong
    /// type. `message` is toml's diagnostic with secrets redacted.
    #[error("{file}: {message}")]
    Parse {
        /// The configuration file, as given (or `<config>` when built from a string).
        file: String,
        /// toml's message with line, column and snippet; secret values redacted.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{file}: {message}")]
    Invalid {
        /// The configuration file, as given (or `<config>` when built from a string).
        file: String,
        /// The key at fault, like `[input] poll_interval`, for callers and tests.
        key: String,
        /// What is wrong and what to do; starts with the key.
        message: String,
    },
}

/// The lines of `text`, each redacted where it may show a secret, and the
/// removed values (to scrub from toml's message too).
fn redacted_lines(text: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut removed = Vec::new();
    // Closing delimiter of a multi-line string that started on a redacted line.
    let mut open_multiline: Option<&str> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(delim) = open_multiline {
            removed.push(line.trim().to_string());
            lines.push(REDACTED.to_string());
            if line.contains(delim) {
                open_multiline = None;
            }
            continue;
        }
        match redact_line(line) {
            Some((shown, value)) => {
                let v = value.trim();
                for delim in ["\"\"\"", "'''"] {
                    if let Some(rest) = v.strip_prefix(delim) {
                        if !rest.contains(delim) {
                            open_multiline = Some(delim);
                        }
                    }
                }
                removed.push(v.to_string());
                removed.push(v.trim_matches(|c| c == '"' || c == '\'').to_string());
                lines.push(shown);
            }
            None => lines.push(line.to_string()),
        }
    }
    (lines, removed)
}

/// If `line` has a key that looks like a secret (and is not a `..._file` key),
/// returns the line with everything after that key's `=` replaced, and the
/// replaced text.
fn redact_line(line: &str) -> Option<(String, String)> {
    let bytes = line.as_bytes();
    let is_key_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut i = 0;
    while i < bytes.len() {
        if !is_key_char(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_key_char(bytes[i]) {
            i += 1;
        }
        let word = line[start..i].to_ascii_lowercase();
        if word.ends_with("_file") || !looks_secret(&word) {
            continue;
        }
        return Some(match line[i..].find('=') {
            Some(eq) => {
                let cut = i + eq + 1;
                (
                    format!("{} \"{REDACTED}\"", &line[..cut]),
                    line[cut..].to_string(),
                )
            }
            None => (format!("{} {REDACTED}", &line[..i]), line[i..].to_string()),
        });
    }
    None
}

/// toml's diagnostic (same layout as toml's `Display`: position, snippet with
/// a caret, message), with any line that may hold a secret redacted in the
/// snippet, and removed values scrubbed from the message.
pub(crate) fn render_parse_error(text: &str, err: &toml::de::Error) -> String {
    let (lines, removed) = redacted_lines(text);
    let mut scrub: Vec<&str> = removed
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() >= 3)
        .collect();
    scrub.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let clean = |s: &str| {
        scrub
            .iter()
            .fold(s.to_string(), |acc, secret| acc.replace(secret, REDACTED))
    };

    let Some(span) = err.span() else {
        // No position: toml's Display has no snippet then, only the message
        // (and the key path).
        return clean(err.to_string().trim_end());
    };
    let (line, column) = position(text, span.start);
    let content = lines.get(line).map(String::as_str).unwrap_or("");
    let line_num = line + 1;
    let gutter = " ".repeat(line_num.to_string().len() + 1);
    // On a redacted line the original column may lie past the shortened text
    // (and would hint at the secret's length): keep the caret on the text.
    let caret = column.min(content.chars().count());
    let highlight = (span.end - span.start)
        .min(content.chars().count().saturating_sub(caret))
        .max(1);
    format!(
        "TOML parse error at line {line_num}, column {}\n{gutter}|\n{line_num} | {content}\n\
         {gutter}|{}{}\n{}",
        column + 1,
        " ".repeat(caret + 1),
        "^".repeat(highlight),
        clean(err.message().trim_end())
    )
}

/// Zero-based line and column (in characters) of byte `index` in `text`.
fn position(text: &str, index: usize) -> (usize, usize) {
    let index = index.min(text.len());
    let before = text.get(..index).unwrap_or(text);
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let column = before[line_start..].chars().count();
    (line, column)
}
