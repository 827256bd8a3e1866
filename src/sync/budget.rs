//! A token bucket on the time the caller passes in: at most a burst at
//! once, then one per period. The challenge gate sends its challenges and
//! answers through such budgets: without a key any datagram can ask for
//! them, and what forged datagrams cost must be bounded by the time, not
//! by how many the forger sends.
//!
//! Kept as the time the next one would be due if spent at the steady rate
//! (the generic cell rate algorithm), so it needs no counter and tells
//! when the next one may go without being given the time.

use std::time::Duration;

use crate::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Budget {
    burst: u32,
    every: Duration,
    /// When the next one would be due had every one spent so far gone at
    /// the steady rate.
    due: Instant,
}

impl Budget {
    /// `burst` at once (at least one), then one per `every`.
    pub(crate) fn new(burst: u32, every: Duration) -> Self {
        Budget {
            burst: burst.max(1),
            every,
            due: Instant::ZERO,
        }
    }

    /// The earliest time one may be spent.
    pub(crate) fn ready_at(&self) -> Instant {
        self.due - self.every.saturating_mul(self.burst - 1)
    }

    /// Spends one at `now`; false when the budget is spent.
    pub(crate) fn spend(&mut self, now: Instant) -> bool {
        if now < self.ready_at() {
            return false;
        }
        self.due = self.due.max(now) + self.every;
        true
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_burst_then_one_per_period() {
        let ms = Instant::from_millis;
        let mut b = Budget::new(3, Duration::from_millis(100));
        let at = ms(5000);
        assert!((0..3).all(|_| b.spend(at)), "the burst");
        assert!(!b.spend(at) && !b.spend(ms(5099)), "then spent");
        assert_eq!(b.ready_at(), ms(5100));
        assert!(b.spend(ms(5100)) && !b.spend(ms(5100)));
        // Unspent, it fills up to the burst again, no further.
        let later = ms(9000);
        assert!(b.ready_at() <= later);
        assert_eq!((0..10).filter(|_| b.spend(later)).count(), 3);
        // However often it is asked, one per period: at 100, 200 … 1000
        // ms after the burst.
        let spent = (1..=100_000u64)
            .filter(|i| b.spend(later + Duration::from_micros(i * 10)))
            .count();
        assert_eq!(spent, 10);
    }
}
