//! When the node's queued changes leave, and when they paused: the
//! transmit rule the node applies to its engine, kept here, below the
//! node, so the lossy-link simulation (`test_lossy`) runs the very same
//! rule.
//!
//! - Changes wait for more, to leave in full datagrams: at most
//!   [`TX_COALESCE`] after the oldest, and no longer than [`TX_IDLE`]
//!   after the last input (a burst's tail leaves as soon as nothing more
//!   follows). A datagram's worth ([`TX_FULL`] keys) leaves at once.
//! - What the peer waits for (a report, a probe, a resend: the engine's
//!   `is_urgent`) leaves at once: a loss is repaired in round trips, not
//!   coalescing periods.
//! - The moment the inputs paused for [`TX_IDLE`] while something is
//!   unacknowledged is reported too: the likely end of a burst, after
//!   which FT-FW probes its tail within a few round trips on a lossy
//!   link. Also when what was queued left before the pause (a full
//!   datagram, a resend a NACK asked for): a burst whose last datagram was
//!   full, or left with a resend, was not probed before FT-FW's quiet
//!   period (3 ms or more), in half the seeds of the lossy simulation. An
//!   engine with nothing sent to wait for (a receiver, say) is not woken
//!   for it.

use std::time::Duration;

use crate::time::Instant;

/// Changes wait at most this long for more to fill a datagram: a burst of
/// kernel events then leaves in full datagrams instead of one each.
pub const TX_COALESCE: Duration = Duration::from_millis(2);
/// ... but no longer than this after the last input: a burst's tail
/// leaves as soon as nothing more follows, instead of waiting out
/// [`TX_COALESCE`] (see the module notes). Longer than the gaps between the
/// events of one read of the event socket. The event loop does not look at
/// the node's deadlines during its gather pause (`kernel::pacing::GATHER`),
/// and runs those due right after a read, which has just given this one
/// news: during a burst it is looked at only once a read finds nothing,
/// and the burst leaves in full datagrams (or after [`TX_COALESCE`]);
/// events further apart than the pause leave once per read.
pub const TX_IDLE: Duration = Duration::from_micros(50);
/// Keys that fill about one datagram: send at once.
pub const TX_FULL: usize = 48;

/// The two transmit deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TxTiming {
    /// [`TX_COALESCE`] after the oldest change waiting.
    due: Option<Instant>,
    /// [`TX_IDLE`] after the last input that may give something to send.
    quiet: Option<Instant>,
}

/// What the engine holds, as the rule needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxState {
    /// Something waits to be sent.
    pub(crate) pending: bool,
    /// Keys queued.
    pub(crate) keys: usize,
    /// Something waiting is a report, a probe or a resend.
    pub(crate) urgent: bool,
    /// Nothing waits to be sent or acknowledged.
    pub(crate) idle: bool,
    /// Something sent waits to be acknowledged.
    pub(crate) unacked: bool,
}

/// What to do at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxStep {
    /// Send everything queued now.
    pub(crate) flush: bool,
    /// The inputs paused (tell the engine, before sending).
    pub(crate) paused: bool,
}

impl TxTiming {
    /// An input came at `now` that may give something to send.
    pub(crate) fn news(&mut self, now: Instant) {
        self.quiet = Some(now + TX_IDLE);
    }

    /// The inputs paused at `now` (the loop read the event socket empty,
    /// no burst under way): the quiet deadline, if one runs, comes now.
    pub(crate) fn inputs_paused(&mut self, now: Instant) {
        if let Some(q) = &mut self.quiet {
            *q = (*q).min(now);
        }
    }

    /// The rule at `now`, after an input or at a deadline.
    pub(crate) fn step(&mut self, now: Instant, s: TxState) -> TxStep {
        let paused = self.quiet.is_some_and(|q| now >= q);
        if !s.pending {
            self.due = None;
            if paused || s.idle {
                self.quiet = None;
            }
            return TxStep {
                flush: false,
                paused,
            };
        }
        let due = *self.due.get_or_insert(now + TX_COALESCE);
        let quiet = *self.quiet.get_or_insert(now + TX_IDLE);
        if now < due.min(quiet) && s.keys < TX_FULL && !s.urgent {
            return TxStep {
                flush: false,
                paused: false,
            };
        }
        self.due = None;
        // What leaves before the pause (a full datagram, a resend a NACK
        // asked for) will wait for its acknowledgement: the pause is still
        // worth reporting, or a lost resend waits for FT-FW's quiet
        // period (3 ms or more) instead of a probe at the pause.
        if paused || !(s.keys > 0 || s.unacked) {
            self.quiet = None;
        }
        TxStep {
            flush: true,
            paused,
        }
    }

    /// Makes what waits leave at the next step (tests, and a node about
    /// to flush its internal cache: `node::control`).
    pub(crate) fn due_now(&mut self, now: Instant) {
        self.due = Some(now);
    }

    /// The next deadline, if any.
    pub(crate) fn poll_at(&self) -> Option<Instant> {
        match (self.due, self.quiet) {
            (Some(d), Some(q)) => Some(d.min(q)),
            (d, q) => d.or(q),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const T0: Instant = Instant::from_millis(1000);

    /// Sent and waiting for its acknowledgement; nothing queued.
    const SENT: TxState = TxState {
        pending: false,
        keys: 0,
        urgent: false,
        idle: false,
        unacked: true,
    };

    fn state(keys: usize, urgent: bool) -> TxState {
        TxState {
            pending: keys > 0 || urgent,
            keys,
            urgent,
            idle: false,
            unacked: false,
        }
    }

    fn at(us: u64) -> Instant {
        T0 + Duration::from_micros(us)
    }

    #[test]
    fn changes_wait_for_more_until_a_pause_or_the_coalescing_period() {
        let mut t = TxTiming::default();
        // Changes a little closer than TX_IDLE: each puts the pause off.
        let gap = TX_IDLE.as_micros() as u64 * 9 / 10;
        let coalesce = TX_COALESCE.as_micros() as u64;
        let mut i = 0;
        while i * gap < coalesce {
            t.news(at(i * gap));
            assert!(!t.step(at(i * gap), state(1, false)).flush, "change {i}");
            let quiet = at(i * gap) + TX_IDLE;
            assert_eq!(t.poll_at(), Some(quiet.min(T0 + TX_COALESCE)));
            i += 1;
        }
        // The coalescing period ran out (not a pause).
        let s = t.step(T0 + TX_COALESCE, state(1, false));
        assert_eq!((s.flush, s.paused), (true, false));
        // The tail: the pause sends it, and says so.
        t.news(at(2100));
        assert!(!t.step(at(2100), state(1, false)).flush);
        assert_eq!(t.poll_at(), Some(at(2100) + TX_IDLE));
        let s = t.step(at(2100) + TX_IDLE, state(1, false));
        assert_eq!((s.flush, s.paused), (true, true));
        assert_eq!(t.poll_at(), None);
    }

    #[test]
    fn a_full_datagram_and_what_the_peer_waits_for_leave_at_once() {
        let mut t = TxTiming::default();
        t.news(T0);
        let s = t.step(T0, state(TX_FULL, false));
        assert_eq!((s.flush, s.paused), (true, false));
        t.news(T0);
        let s = t.step(T0, state(0, true));
        assert_eq!((s.flush, s.paused), (true, false));
    }

    #[test]
    fn a_pause_with_nothing_queued_is_reported_once_unless_idle() {
        let mut t = TxTiming::default();
        // Sent, unacknowledged: the pause is still worth a wake-up.
        let sent = SENT;
        t.news(T0);
        assert!(!t.step(T0, sent).paused);
        assert_eq!(t.poll_at(), Some(T0 + TX_IDLE));
        assert!(t.step(T0 + TX_IDLE, sent).paused);
        assert_eq!(t.poll_at(), None, "once");
        // Nothing unacknowledged (a receiver's datagram input): no wake-up.
        let idle = TxState {
            idle: true,
            unacked: false,
            ..sent
        };
        t.news(T0);
        assert!(!t.step(T0, idle).paused);
        assert_eq!(t.poll_at(), None);
    }

    #[test]
    fn a_pause_after_what_left_early_is_still_reported() {
        // A NACK came (news) and its resend left at once: the pause after
        // it is what lets FT-FW probe that resend's fate.
        let mut t = TxTiming::default();
        t.news(T0);
        let s = t.step(T0, state(3, true));
        assert_eq!((s.flush, s.paused), (true, false));
        assert_eq!(t.poll_at(), Some(T0 + TX_IDLE));
        let sent = SENT;
        assert!(!t.step(T0 + TX_IDLE / 2, sent).paused);
        assert!(t.step(T0 + TX_IDLE, sent).paused);
        assert_eq!(t.poll_at(), None, "once");
        // So is a pause after a full datagram.
        t.news(T0);
        assert!(t.step(T0, state(TX_FULL, false)).flush);
        assert!(t.step(T0 + TX_IDLE, sent).paused);
        // A report alone (a receiver's ACK) leaves nothing to wait for:
        // no wake-up at the pause.
        t.news(T0);
        assert!(t.step(T0, state(0, true)).flush);
        assert_eq!(t.poll_at(), None);
    }
}
