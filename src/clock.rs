//! Time: the wall clock (ms since the Unix epoch, the unit of every time
//! stored on disk), and the clocks that no wall clock step moves.
//!
//! The wall clock is not monotonic: NTP steps it, a Raspberry Pi boots with
//! a stale one, a VM restored from a snapshot is behind. So
//!
//! - waits and windows within a run use a monotonic clock (tokio's
//!   `Instant`, which also lets tests pause it);
//! - a stored time is never trusted to be in the past: one ahead of the
//!   clock by more than [`FUTURE_TOLERANCE_MS`] was written before the
//!   clock stepped back, and what depends on it is decided as if it were
//!   unknown (see its users);
//! - the request log, which must hold the rate limit across restarts, is
//!   stored with the [`RequestClock`] of its writing: the boot's id and the
//!   time since boot (`CLOCK_BOOTTIME`, which counts real time, suspend
//!   included, and no step moves), from which [`restate`] gives each
//!   request its true age after a restart.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use migrations::v3::RequestClock;

/// How far ahead of the wall clock a stored time may be and still be
/// believed (clock slews and small corrections); beyond it, the clock was
/// stepped back since it was written.
pub const FUTURE_TOLERANCE_MS: u64 = 5_000;

/// Whether a stored time `t` is ahead of the clock reading `now_ms` by more
/// than [`FUTURE_TOLERANCE_MS`]: written before the clock stepped back.
pub fn from_the_future(t: u64, now_ms: u64) -> bool {
    t > now_ms.saturating_add(FUTURE_TOLERANCE_MS)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), all zero when it
/// cannot be read.
fn boot_id() -> [u8; 16] {
    static ID: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|t| parse_boot_id(t.trim()))
            .unwrap_or([0; 16])
    })
}

/// The 16 bytes of a boot id written as a UUID.
fn parse_boot_id(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// ms since boot (`CLOCK_BOOTTIME`).
fn boot_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec.max(0) as u64) * 1000 + (t.tv_nsec.max(0) as u64) / 1_000_000
}

/// The age, at `now`, of each time of a log written in the wall-clock frame
/// of `written` (None: a log from before request clocks were stored), as
/// times in the current wall-clock frame (`now.wall_ms - age`): never in
/// the future, whatever the wall clock did since.
///
/// - Same boot: a request's age is the boot time elapsed since the writing
///   plus how long before the writing it was (in the writing's frame), so
///   a step of the wall clock while tjfwd was stopped changes nothing.
/// - Another boot: it was before this boot, so at least the time since
///   boot plus that; its true age may be more (a lower bound keeps the
///   limit: the window then counts it too long, at most for one window
///   after boot).
/// - No request clock: the wall clock's word, a time ahead of it counted
///   as now.
pub fn restate(times: &[u64], written: Option<&RequestClock>, now: &RequestClock) -> Vec<u64> {
    times
        .iter()
        .map(|&t| {
            let age = match written {
                Some(w) if w.boot_id == now.boot_id && w.boot_id != [0; 16] => now
                    .boot_ms
                    .saturating_sub(w.boot_ms)
                    .saturating_add(w.wall_ms.saturating_sub(t)),
                Some(w) => now.boot_ms.saturating_add(w.wall_ms.saturating_sub(t)),
                None => now.wall_ms.saturating_sub(t),
            };
            now.wall_ms.saturating_sub(age)
        })
        .collect()
}

/// Now, in ms since the epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The clocks a component reads. Production uses the system's; tests of
/// time-driven logic use one that follows tokio's clock, so that a paused
/// runtime (`tokio::time::pause`) moves it as it moves timers, and whose
/// wall clock they can step.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// [`now_ms`], `CLOCK_BOOTTIME` and this boot's id.
    #[default]
    System,
    /// The wall clock reads `base_ms` at `start`, then goes as tokio's
    /// clock, plus the steps given to [`Clock::step`]; boot time is tokio's
    /// clock since `start` plus `boot_base_ms`, in a boot of id `boot_id`.
    Tokio {
        base_ms: u64,
        start: tokio::time::Instant,
        steps_ms: Arc<AtomicI64>,
        boot_id: [u8; 16],
        boot_base_ms: u64,
    },
}

impl Clock {
    /// A clock that reads `base_ms` now and follows tokio's clock.
    pub fn following_tokio(base_ms: u64) -> Clock {
        Clock::Tokio {
            base_ms,
            start: tokio::time::Instant::now(),
            steps_ms: Arc::default(),
            boot_id: [7; 16],
            boot_base_ms: 3_600_000,
        }
    }

    /// The same clock as seen after a reboot (tests): a new boot id, boot
    /// time counted from `uptime_ms` now.
    pub fn rebooted(&self, uptime_ms: u64) -> Clock {
        match self {
            Clock::System => Clock::System,
            Clock::Tokio { boot_id, .. } => Clock::Tokio {
                base_ms: self.now_ms(),
                start: tokio::time::Instant::now(),
                steps_ms: Arc::new(AtomicI64::new(0)),
                boot_id: boot_id.map(|b| b.wrapping_add(1)),
                boot_base_ms: uptime_ms,
            },
        }
    }

    /// Steps the wall clock by `delta_ms` (tests); the monotonic and boot
    /// clocks do not move. Shared by the clones of this clock.
    pub fn step(&self, delta_ms: i64) {
        if let Clock::Tokio { steps_ms, .. } = self {
            steps_ms.fetch_add(delta_ms, Ordering::SeqCst);
        }
    }

    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => now_ms(),
            Clock::Tokio {
                base_ms,
                start,
                steps_ms,
                ..
            } => {
                let t = base_ms.saturating_add(start.elapsed().as_millis() as u64);
                t.saturating_add_signed(steps_ms.load(Ordering::SeqCst))
            }
        }
    }

    /// Every clock at once: the wall clock, the boot's id and the time
    /// since boot.
    pub fn now_all(&self) -> RequestClock {
        match self {
            Clock::System => RequestClock {
                boot_id: boot_id(),
                boot_ms: boot_ms(),
                wall_ms: now_ms(),
            },
            Clock::Tokio {
                start,
                boot_id,
                boot_base_ms,
                ..
            } => RequestClock {
                boot_id: *boot_id,
                boot_ms: boot_base_ms.saturating_add(start.elapsed().as_millis() as u64),
                wall_ms: self.now_ms(),
            },
        }
    }

    /// Now, as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.now_ms())
    }
}

/// The latest time RFC 3339 can write (the last millisecond of the year
/// 9999), in ms since the epoch.
pub const MAX_WRITABLE_MS: u64 = 253_402_300_800_000 - 1;

/// `ms` (since the epoch) as a [`SystemTime`] that RFC 3339 can write:
/// later times are taken as [`MAX_WRITABLE_MS`]. Times of events come from
/// logs and requests: a timestamp of the year 30000 must not make the
/// formatting panic (humantime refuses years after 9999).
pub fn writable_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.min(MAX_WRITABLE_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: [u8; 16] = [9; 16];

    fn at(boot_ms: u64, wall_ms: u64) -> RequestClock {
        RequestClock {
            boot_id: B,
            boot_ms,
            wall_ms,
        }
    }

    #[test]
    fn boot_ids_parse_and_this_machine_has_one() {
        assert_eq!(
            parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            Some([
                0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
                0xe1, 0xf0
            ])
        );
        assert_eq!(parse_boot_id("nope"), None);
        assert_ne!(boot_id(), [0; 16]);
        let (a, b) = (boot_ms(), boot_ms());
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn restated_times_follow_real_time_across_wall_clock_steps() {
        // Written at boot 100 s, wall 10,000 s; requests 10 s and 1 s before.
        let written = at(100_000, 10_000_000);
        let log = [9_990_000, 9_999_000];
        // 5 s later in real time, the wall clock stepped back an hour.
        let now = at(105_000, 10_005_000 - 3_600_000);
        assert_eq!(
            restate(&log, Some(&written), &now),
            vec![now.wall_ms - 15_000, now.wall_ms - 6_000]
        );
        // ... or forward two days: the same ages, not two days.
        let now = at(105_000, 10_005_000 + 172_800_000);
        assert_eq!(
            restate(&log, Some(&written), &now),
            vec![now.wall_ms - 15_000, now.wall_ms - 6_000]
        );
        // After a reboot (20 s of uptime), at least the uptime old.
        let now = RequestClock {
            boot_id: [1; 16],
            boot_ms: 20_000,
            wall_ms: 50,
        };
        assert_eq!(restate(&log, Some(&written), &now), vec![0, 0]);
        let now = RequestClock {
            boot_id: [1; 16],
            boot_ms: 20_000,
            wall_ms: 20_000_000,
        };
        assert_eq!(
            restate(&log, Some(&written), &now),
            vec![20_000_000 - 30_000, 20_000_000 - 21_000]
        );
        // No request clock: the wall clock's word, never in the future.
        let now = at(0, 9_995_000);
        assert_eq!(restate(&log, None, &now), vec![9_990_000, 9_995_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_test_clock_steps_its_wall_clock_only() {
        let c = Clock::following_tokio(10_000_000);
        let before = c.now_all();
        c.clone().step(-3_600_000);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        let after = c.now_all();
        assert_eq!(after.wall_ms, 10_000_000 + 2_000 - 3_600_000);
        assert_eq!(after.boot_ms, before.boot_ms + 2_000);
        let r = c.rebooted(30_000);
        assert_ne!(r.now_all().boot_id, after.boot_id);
        assert_eq!(r.now_all().boot_ms, 30_000);
        assert_eq!(r.now_ms(), after.wall_ms);
    }
}
