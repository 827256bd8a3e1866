//! Warnings about a failure that repeats (a full descriptor table, a
//! full disk): at most one per [`EVERY`], saying how many failures it
//! stands for, so that the log is not flooded and nothing is hidden.

use std::time::{Duration, Instant};

/// At most one report per this long.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// Counts failures between reports.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    since_report: u64,
    reported_at: Option<Instant>,
}

impl Throttle {
    /// A failure at `now`: the failures to report (this one included,
    /// and those since the last report), or None when a report was made
    /// less than [`EVERY`] ago.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<u64> {
        self.since_report += 1;
        if self
            .reported_at
            .is_some_and(|t| now.duration_since(t) < EVERY)
        {
            return None;
        }
        self.reported_at = Some(now);
        Some(std::mem::take(&mut self.since_report))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn one_report_per_period_with_the_failures_since_the_last() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.failed(t0), Some(1));
        assert_eq!(t.failed(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.failed(t0 + Duration::from_secs(59)), None);
        assert_eq!(t.failed(t0 + EVERY), Some(3));
        assert_eq!(t.failed(t0 + EVERY), None);
    }
}
