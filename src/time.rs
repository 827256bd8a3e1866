//! Time as the sans-IO core sees it: microseconds on a monotonic clock
//! that the daemon (or a test's virtual clock) passes in. Nothing here
//! reads a clock.
//!
//! Microseconds, not milliseconds: a burst's tail is flushed and probed
//! within a fraction of a millisecond on a LAN sync link, which a clock
//! counting whole milliseconds cannot schedule.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms.saturating_mul(1000))
    }

    pub const fn from_micros(us: u64) -> Instant {
        Instant(us)
    }

    /// Whole milliseconds since the origin (rounded down).
    pub fn millis(self) -> u64 {
        self.0 / 1000
    }

    pub fn micros(self) -> u64 {
        self.0
    }

    /// Time since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(micros(d)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(micros(d)))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(1000);
        assert_eq!(t + Duration::from_secs(1), Instant::from_millis(2000));
        assert_eq!(t - Duration::from_secs(5), Instant::ZERO);
        assert_eq!(Instant::from_millis(500).since(t), Duration::ZERO);
        assert_eq!(
            t.since(Instant::from_millis(250)),
            Duration::from_millis(750)
        );
        assert_eq!(
            Instant::from_millis(u64::MAX) + Duration::MAX,
            Instant(u64::MAX)
        );
    }

    #[test]
    fn microseconds_are_kept_and_milliseconds_round_down() {
        let t = Instant::from_millis(3) + Duration::from_micros(250);
        assert_eq!(t.micros(), 3250);
        assert_eq!(t.millis(), 3);
        assert_eq!(
            t.since(Instant::from_millis(3)),
            Duration::from_micros(250)
        );
    }
}
