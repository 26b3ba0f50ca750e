//! The `[queue]` section: bounds of the pending set.

use serde::{Deserialize, Serialize};

use crate::config_kit::{ser, ConfigError, Ctx};

/// Default of `[queue] max_pending`: two days of sending at the API's limit
/// (6,000 addresses a minute would be 8.6 M; 2 M is ~1 GiB of disk).
pub const DEFAULT_MAX_PENDING: u64 = 2_000_000;

/// Smallest accepted `[queue] max_pending` (one full batch).
pub const MIN_MAX_PENDING: u64 = 1000;

/// The `[queue]` section: bounds of the pending set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueLimits {
    /// At this many pending addresses the inputs stop reading (the file
    /// input stops advancing, the socket input stops reading its clients)
    /// until sending brings the number down: nothing is dropped.
    #[serde(serialize_with = "ser::saturating_i64")]
    pub max_pending: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// `[queue]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    /// Pending addresses at which the inputs pause.
    pub(super) max_pending: Option<i64>,
}

/// Checks `[queue]` as written and applies its defaults.
pub(super) fn validate(ctx: &Ctx, raw: RawQueue) -> Result<QueueLimits, ConfigError> {
    let key = "[queue] max_pending";
    let max_pending = match raw.max_pending {
        None => DEFAULT_MAX_PENDING,
        Some(n) if n >= MIN_MAX_PENDING as i64 => n as u64,
        Some(n) => {
            return Err(ctx.invalid(
                key,
                format!(
                    "{key} = {n} is too small: it must be at least {MIN_MAX_PENDING} \
                     (default {DEFAULT_MAX_PENDING})"
                ),
            ))
        }
    };
    Ok(QueueLimits { max_pending })
}
