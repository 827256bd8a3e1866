//! FT-FW's round-trip estimate (RFC 6298's smoothed round trip and its
//! variance, in microseconds) and the two waits the tail probe takes from
//! it: the retransmission timeout an unanswered probe waits, and the quiet
//! period before a first probe, each within its bounds.

use std::time::Duration;

use crate::sync::ALIVE_INTERVAL;

/// Quiet time after the last data before the first probe, and the
/// timeout, before any round trip is measured.
pub(super) const QUIET_DEFAULT: Duration = Duration::from_millis(5);
const RTO_DEFAULT: Duration = Duration::from_millis(50);
/// Bounds of the quiet period and of the retransmission timeout.
pub(super) const QUIET_MIN: Duration = Duration::from_millis(3);
const QUIET_MAX: Duration = Duration::from_millis(50);
const RTO_MIN: Duration = Duration::from_micros(500);
/// The least spread the timeout allows above the smoothed round trip
/// (RFC 6298's clock granularity G): a steady LAN round trip must not
/// leave a timeout that the peer's scheduling alone exceeds.
const RTO_SPREAD_MIN: Duration = Duration::from_micros(250);

/// Smoothed round trip (RFC 6298's estimator, in microseconds).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rtt {
    srtt: Option<u64>,
    rttvar: u64,
}

impl Rtt {
    /// One round-trip sample.
    pub(crate) fn sample(&mut self, r: Duration) {
        let r = u64::try_from(r.as_micros()).unwrap_or(u64::MAX / 8);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                self.rttvar = (3 * self.rttvar + s.abs_diff(r)) / 4;
                self.srtt = Some((7 * s + r) / 8);
            }
        }
    }

    /// The smoothed round trip, once measured.
    pub(crate) fn smoothed(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_micros)
    }

    /// How long to wait for an answer.
    pub(crate) fn rto(&self) -> Duration {
        match self.srtt {
            None => RTO_DEFAULT,
            Some(s) => (Duration::from_micros(s)
                + Duration::from_micros(4 * self.rttvar).max(RTO_SPREAD_MIN))
            .clamp(RTO_MIN, ALIVE_INTERVAL),
        }
    }

    /// How long the link stays quiet before the first probe.
    pub(crate) fn quiet(&self) -> Duration {
        self.smoothed()
            .map_or(QUIET_DEFAULT, |s| s.clamp(QUIET_MIN, QUIET_MAX))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_estimator_follows_the_samples_within_bounds() {
        let mut r = Rtt::default();
        assert_eq!((r.rto(), r.quiet()), (RTO_DEFAULT, QUIET_DEFAULT));
        r.sample(ms(10));
        assert_eq!(r.smoothed(), Some(ms(10)));
        assert_eq!(r.rto(), ms(10 + 20), "srtt + 4 × rttvar (r/2)");
        for _ in 0..50 {
            r.sample(ms(10));
        }
        assert!(r.rto() < ms(15), "a steady link tightens it: {r:?}");
        r.sample(ms(0));
        assert!(r.rto() >= RTO_MIN && r.quiet() >= QUIET_MIN);
        for _ in 0..50 {
            r.sample(ms(5000));
        }
        assert_eq!(r.rto(), ALIVE_INTERVAL, "capped");
        assert_eq!(r.quiet(), QUIET_MAX, "capped");
        // A LAN's round trip is kept to the microsecond; its timeout is
        // the floor.
        let mut r = Rtt::default();
        r.sample(Duration::from_micros(60));
        assert_eq!(r.smoothed(), Some(Duration::from_micros(60)));
        assert_eq!(r.rto(), RTO_MIN);
    }
}
