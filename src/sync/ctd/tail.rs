//! When to ask about a tail that may be lost, in conntrackd's FT-FW.
//!
//! conntrackd's protocol has no probe: a sender learns nothing of a lost
//! last message, and the receiver finds the gap only at the sender's next
//! message, its ALIVE or ACK after a second without sending (reference
//! §4.7). In a pair being migrated that second, or two or three when those
//! are lost too, is a window in which a failover loses the tail's flows.
//! So ctsyncd asks, from either side, a quiet period after the last data:
//!
//! - receiving from a conntrackd primary, it NACKs the numbers after the
//!   last one heard (the *query*), with the ACK of the run still open, as
//!   conntrackd acknowledges before it NACKs a gap. conntrackd moves
//!   whatever it sent in that range back to transmit, with new numbers and
//!   its entries' current states; a range past what it sent names nothing,
//!   and nothing is sent (it checks only that a NACK does not end before
//!   it starts);
//! - sending to a conntrackd backup, while data awaits its ACK, it sends
//!   an ALIVE (the *probe*, as ctsyncd's own FT-FW does): its number shows
//!   conntrackd the gap before it, which conntrackd NACKs at once, as any
//!   gap. A query of the backup's numbers goes with it: a NACK the backup
//!   sent last and lost is sent again.
//!
//! Nothing answers either when nothing was lost, so each is repeated
//! blindly, a few times, timed from the last data heard or sent:
//!
//! - on a link that lost something lately ([`LOSSY_FOR`]: a gap in the
//!   peer's numbers, or its NACK of ours), after each of [`SERIES`]: at
//!   20 % loss each way a round (the question and its answer) fails 36 %
//!   of the time, four in a row 1.7 %;
//! - on a clean link once, and at most every [`CLEAN_SPACING`] unless a
//!   burst ([`BURST_MESSAGES`]) came since the last time: a router's
//!   trickle of new flows, each alone in its datagram, draws at most four
//!   a second, not one per flow.
//!
//! Control messages do not start a series: a conntrackd primary sends an
//! ALIVE or an ACK every quiet second, and a query after each would double
//! an idle link's traffic for a tail that carries nothing to apply; and a
//! query after a query would have two ctsyncd nodes asking each other
//! forever.

use std::time::Duration;

use crate::time::Instant;

/// When the questions of a series go, after the last data (a lossy link;
/// a clean one asks the first only).
pub(crate) const SERIES: [Duration; 4] = [
    Duration::from_millis(5),
    Duration::from_millis(30),
    Duration::from_millis(150),
    Duration::from_millis(500),
];
/// A loss this recent makes the link lossy.
pub(crate) const LOSSY_FOR: Duration = Duration::from_secs(10);
/// On a clean link, the least time between two questions ...
pub(crate) const CLEAN_SPACING: Duration = Duration::from_millis(250);
/// ... unless this many messages came since the last one.
pub(crate) const BURST_MESSAGES: u32 = 48;

/// The timing of the query or of the probe.
#[derive(Debug, Clone, Default)]
pub(crate) struct TailTimer {
    /// The last data message heard (query) or sent (probe), and how many
    /// of its series went.
    last_data: Option<Instant>,
    sent: usize,
    /// When the last one went.
    last_query: Option<Instant>,
    /// Data messages since it.
    data_since_query: u32,
    /// The link is lossy until then.
    lossy_until: Option<Instant>,
}

impl TailTimer {
    /// A data message was heard (in sequence or after a gap) or sent at
    /// `now`: a new series starts.
    pub(crate) fn data(&mut self, now: Instant) {
        self.last_data = Some(now);
        self.sent = 0;
        self.data_since_query = self.data_since_query.saturating_add(1);
    }

    /// The link lost something at `now`.
    pub(crate) fn loss(&mut self, now: Instant) {
        self.lossy_until = Some(now + LOSSY_FOR);
    }

    /// Nothing to ask about (the rest of the series is dropped).
    pub(crate) fn reset(&mut self) {
        self.last_data = None;
    }

    /// When the next query is due, if one is. The link is lossy or clean
    /// as it was when the series started.
    pub(crate) fn due(&self) -> Option<Instant> {
        let data = self.last_data?;
        let lossy = self.lossy_until.is_some_and(|t| data < t);
        if self.sent >= if lossy { SERIES.len() } else { 1 } {
            return None;
        }
        let at = data + SERIES[self.sent];
        match self.last_query {
            Some(q)
                if !lossy
                    && self.data_since_query < BURST_MESSAGES
                    && at < q + CLEAN_SPACING =>
            {
                Some(q + CLEAN_SPACING)
            }
            _ => Some(at),
        }
    }

    /// Whether a query goes at `now` (it is then counted as sent).
    pub(crate) fn poll(&mut self, now: Instant) -> bool {
        if self.due().is_none_or(|at| now < at) {
            return false;
        }
        self.sent += 1;
        self.last_query = Some(now);
        self.data_since_query = 0;
        true
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// The times queries go, polled every millisecond until `until`.
    fn queries(q: &mut TailTimer, from: u64, until: u64) -> Vec<u64> {
        (from..until).filter(|&t| q.poll(ms(t))).collect()
    }

    #[test]
    fn a_clean_link_asks_once_a_lossy_one_four_times() {
        let mut q = TailTimer::default();
        assert_eq!(q.due(), None, "nothing heard, nothing to ask");
        q.data(ms(1000));
        assert_eq!(queries(&mut q, 1000, 3000), vec![1005]);
        q.loss(ms(3000));
        q.data(ms(3000));
        assert_eq!(queries(&mut q, 3000, 5000), vec![3005, 3030, 3150, 3500]);
        // Ten seconds after the gap the link is clean again.
        q.data(ms(14_000));
        assert_eq!(queries(&mut q, 14_000, 16_000), vec![14_005]);
    }

    #[test]
    fn each_message_starts_the_series_again() {
        let mut q = TailTimer::default();
        q.loss(ms(0));
        q.data(ms(0));
        assert_eq!(queries(&mut q, 0, 40), vec![5, 30]);
        q.data(ms(40));
        assert_eq!(queries(&mut q, 40, 100), vec![45, 70]);
    }

    #[test]
    fn a_clean_trickle_is_asked_at_most_every_spacing_a_burst_at_once() {
        let mut q = TailTimer::default();
        let mut sent = Vec::new();
        // One message every 20 ms for a second.
        for t in 0..1000 {
            if t % 20 == 0 {
                q.data(ms(t));
            }
            if q.poll(ms(t)) {
                sent.push(t);
            }
        }
        assert_eq!(sent, vec![5, 255, 505, 755]);
        // A burst right after a query is asked about at its quiet period.
        q.data(ms(1000));
        for _ in 0..BURST_MESSAGES {
            q.data(ms(1000));
        }
        assert_eq!(queries(&mut q, 1000, 1100), vec![1005]);
    }

    #[test]
    fn a_reset_stops_the_series() {
        let mut q = TailTimer::default();
        q.data(ms(0));
        q.reset();
        assert_eq!(queries(&mut q, 0, 1000), Vec::<u64>::new());
    }
}
