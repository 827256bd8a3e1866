//! Time as the sans-IO core sees it: milliseconds on a monotonic clock
//! that the daemon (or a test's virtual clock) passes in. Nothing here
//! reads a clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in milliseconds since an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }

    pub fn millis(self) -> u64 {
        self.0
    }

    /// Time since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.as_millis() as u64))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.as_millis() as u64))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant(1000);
        assert_eq!(t + Duration::from_secs(1), Instant(2000));
        assert_eq!(t - Duration::from_secs(5), Instant(0));
        assert_eq!(Instant(500).since(t), Duration::ZERO);
        assert_eq!(t.since(Instant(250)), Duration::from_millis(750));
    }
}
