//! `tjfwd status`: where tjfwd stands, for people and for monitoring.
//!
//! Exit code: 0 healthy, 1 degraded (the API refuses our requests, or sends
//! have been failing for longer than five flush intervals), 2 not running or
//! an error.

use crate::commands::{print, Backend, CommandError};
use crate::config::Config;

/// Prints the status; returns the exit code.
pub fn run(config: &Config, json: bool) -> Result<u8, CommandError> {
    let snapshot = Backend::open(config)?.status()?;
    if json {
        print(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&snapshot).expect("plain data serializes")
        ))?;
    } else {
        print(snapshot.human())?;
    }
    Ok(snapshot.exit_code())
}
