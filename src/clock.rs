//! Wall-clock time in milliseconds since the Unix epoch: the unit of every
//! time stored on disk (it must mean the same after a restart).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
