//! How an error is shown, whatever its type.
//!
//! The convention of every error type in tjfwd: its message says what
//! failed and what to do, and its cause, if any, is its `source` (thiserror
//! `#[source]`/`#[from]`), which the message does not also interpolate.
//! Whoever shows an error shows its whole chain once, `what: cause: cause`:
//! `main` with anyhow's `{:#}`, and the library with [`chain`] where it logs
//! an error or hands its text on (the status, the control socket's
//! answers). A message that also named its cause printed it twice
//! ("…: Not a directory (os error 20); check …: Not a directory (os error
//! 20)").

use std::error::Error;
use std::fmt;

/// `e` and its causes, `what: cause: cause`, as `main` prints an error:
/// `tracing::warn!(error = %chain(&e), ...)`.
pub fn chain<'a>(e: &'a (dyn Error + 'a)) -> Chain<'a> {
    Chain(e)
}

/// See [`chain`].
pub struct Chain<'a>(&'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot use state directory /x (check that it exists)")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn the_chain_is_shown_once_as_main_shows_it() {
        let e = Outer {
            source: std::io::Error::from_raw_os_error(20),
        };
        let shown = chain(&e).to_string();
        assert_eq!(
            shown,
            "cannot use state directory /x (check that it exists): Not a directory (os error 20)"
        );
        assert_eq!(shown, format!("{:#}", anyhow::Error::new(e)));
        let plain = std::io::Error::other("disk full");
        assert_eq!(chain(&plain).to_string(), "disk full");
    }
}
