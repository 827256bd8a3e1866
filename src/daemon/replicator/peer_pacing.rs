//! When the loop reads the sync links during a conntrackd peer's burst.
//!
//! conntrackd sends every kernel event in a datagram of its own, so a
//! burst of its events reaches us as tens of thousands of datagrams a
//! second, each one a wake-up of the loop (the reactor's poll, a context
//! switch, an `epoll_ctl` to re-arm, a read that finds the socket empty):
//! as the backup of a conntrackd primary (a pair being migrated) ctsyncd
//! took more CPU per entry than conntrackd's own backup, almost all of it
//! waking up. During such a burst the links are read on a timer instead,
//! by the event socket's rule (`kernel::pacing`): one wake-up per
//! [`crate::kernel::pacing::GATHER`] serves every datagram that arrived
//! meanwhile. In `make bench`'s mixed pair (`results/wave25-2-*`) the
//! backup of a conntrackd 1.4.7 took 12.85 µs per entry against
//! conntrackd's own 16.30 (it took 30.75 against 18.00 in session 24's
//! run), the lag after the last flow unchanged.
//!
//! A peer that speaks ctsyncd's protocol sends full datagrams, a
//! millisecond or more apart in a burst, and its probes and answers are
//! worth reading at once (a lost tail is repaired in round trips): its
//! links are always read on readiness, and so is a TCP link (its stream
//! is read on readiness only).

use crate::daemon::deadline::{Deadline, ReadPause};
use crate::kernel::pacing::{AfterDrain, ReadPacing};
use crate::time::Instant;

pub(crate) struct PeerPacing {
    reads: ReadPacing,
    pause: ReadPause,
}

impl PeerPacing {
    pub(crate) fn new() -> PeerPacing {
        PeerPacing {
            reads: ReadPacing::default(),
            pause: ReadPause::new(),
        }
    }

    /// `read` datagrams were read and then the links found empty at
    /// `now`; `per_event`: the peer sends a datagram per event and every
    /// link is a datagram link (see the module notes).
    pub(crate) fn drained(
        &mut self,
        read: usize,
        per_event: bool,
        now: Instant,
    ) {
        self.pause.end();
        if !per_event {
            return;
        }
        for _ in 0..read {
            self.reads.read();
        }
        if let AfterDrain::Pause(p) = self.reads.drained(now) {
            self.pause.start(p);
        }
    }

    /// The timer to wait for instead of the links' readiness, during a
    /// pause.
    pub(crate) fn pause(&mut self) -> Option<&mut Deadline> {
        self.pause.timer()
    }

    /// The pause is over: the links are read now.
    pub(crate) fn tick_due(&mut self) {
        self.pause.end();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    const T0: Instant = Instant::from_millis(1000);

    fn at(us: u64) -> Instant {
        T0 + Duration::from_micros(us)
    }

    #[test]
    fn a_conntrackd_peers_burst_is_read_on_a_timer() {
        let mut p = PeerPacing::new();
        // Two datagrams read at one wake-up: a burst.
        p.drained(2, true, at(0));
        assert!(p.pause().is_some());
        // The pause ends when its timer fires; a read that then finds
        // one datagram, this soon after the last batch, keeps pausing.
        p.tick_due();
        assert!(p.pause().is_none());
        p.drained(1, true, at(250));
        assert!(p.pause().is_some());
    }

    #[test]
    fn a_ctsyncd_peer_or_a_tcp_link_is_always_read_on_readiness() {
        let mut p = PeerPacing::new();
        for read in [1, 2, 40, 63] {
            p.drained(read, false, at(0));
            assert!(p.pause().is_none(), "{read} read");
        }
        // A pause under way ends when the peer turns out not to send a
        // datagram per event (it switched to ctsyncd's protocol).
        p.drained(2, true, at(100));
        assert!(p.pause().is_some());
        p.drained(2, false, at(200));
        assert!(p.pause().is_none());
    }

    #[test]
    fn an_isolated_datagram_and_a_backlog_are_not_paused_for() {
        let mut p = PeerPacing::new();
        // One datagram, long after anything else: an ALIVE, a trickle.
        p.drained(1, true, at(0));
        assert!(p.pause().is_none());
        p.drained(1, true, at(10_000));
        assert!(p.pause().is_none());
        // A backlog: the next datagrams are read as soon as they come.
        p.drained(crate::kernel::pacing::GATHER_BELOW, true, at(10_100));
        assert!(p.pause().is_none());
    }
}
