//! Wall-clock time in milliseconds since the Unix epoch: the unit of every
//! time stored on disk (it must mean the same after a restart).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall clock a component reads. Production uses the system's; tests
/// of time-driven logic use one that follows tokio's clock, so that a
/// paused runtime (`tokio::time::pause`) moves it as it moves timers.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// [`now_ms`].
    #[default]
    System,
    /// `base_ms` at `start`, then as tokio's clock goes.
    Tokio {
        base_ms: u64,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `base_ms` now and follows tokio's clock.
    pub fn following_tokio(base_ms: u64) -> Clock {
        Clock::Tokio {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }

    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => now_ms(),
            Clock::Tokio { base_ms, start } => {
                base_ms.saturating_add(start.elapsed().as_millis() as u64)
            }
        }
    }

    /// Now, as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.now_ms())
    }
}
