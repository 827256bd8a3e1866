//! FT-FW's tail probe: how a sender learns, within a few round trips,
//! that the end of a burst never arrived (or that the NACK or ACK about
//! it was lost), instead of waiting for the retransmission timer.
//!
//! - After a short quiet period with unacknowledged data, the sender
//!   announces its next number (an ALIVE: the *probe*). The quiet period
//!   is longer than the gaps between a burst's datagrams, so a burst is
//!   not probed between them. But once the node's inputs paused (the
//!   likely end of a burst) on a link that lost something lately
//!   ([`LOSSY_FOR`]), the probe goes at once, in a datagram of its own
//!   after the tail's: it is lost with the tail only one time in
//!   twenty-five (at 20 % loss), and a lost tail costs a round trip. A
//!   clean link pays nothing; a lossy one, a probe and its answer per
//!   pause. On a clean link a first probe also waits until
//!   [`CLEAN_PROBE_SPACING`] has passed since the last one: a router's
//!   trickle of changes, each alone in a datagram and each followed by a
//!   quiet period, was probed after every change (a probe and its answer:
//!   two datagrams and two wake-ups on each side per change, three times
//!   conntrackd's CPU per change); a burst after a quiet spell is probed
//!   as before. The receiver
//!   answers every ALIVE with what it knows: it NACKs a tail it never
//!   saw, ACKs its open run, or repeats its last report (`rx`).
//! - An answer (an ACK or NACK reaching the probe's last number) proves
//!   the receiver has seen every number before the probe: whatever is
//!   still unacknowledged below it was in a gap whose NACK got lost, and
//!   is resent at once.
//! - An answer that makes the sender resend starts a *chase*: the next
//!   probe goes as soon as the resent data is out (in a datagram of its
//!   own, after it), not a quiet period later: a tail lost again costs a
//!   round trip, not a quiet period more.
//! - An unanswered probe is repeated after a retransmission timeout taken
//!   from the measured round trip (probe to answer; Karn's rule: only a
//!   probe sent once is a sample; and data to the NACK it provokes, so
//!   the first tail already has a measured timeout). Backing off is for a
//!   peer that is gone, not for a lossy link: while the peer was heard
//!   within [`PEER_ALIVE`] before the probe, [`FAST_PROBES`] more repeats
//!   come one timeout apart (at 20 % loss each way a round fails 36 % of
//!   the time, and doubling made three failures in a row cost seven
//!   timeouts). After those, and from the start for a peer not heard, the
//!   wait doubles each time, capped at [`ALIVE_INTERVAL`]; probing stops
//!   after [`MAX_PROBES`] unanswered ones (plus the fast ones): a peer
//!   that is gone sees a bounded number of probes.
//!
//! The round trip the waits are taken from is `rtt`'s; the unit tests
//! are in `test`.

mod rtt;
#[cfg(test)]
mod test;

use std::time::Duration;

use crate::sync::tx_timing::TX_FULL;
use crate::sync::{ALIVE_INTERVAL, PEER_ALIVE};
use crate::time::Instant;
use crate::wire::Seq;
use rtt::Rtt;

/// On a clean link, the least time between two first probes: a steady
/// trickle of changes (a router's new flows, each alone in its datagram
/// and followed by a quiet period) is probed at most this often, not
/// after each change. A tail lost in a trickle is found within it. At
/// 50 ms a trickle of 60 flows a second still drew a probe and its
/// answer every three flows; at 250 ms one every fifteen, for 15 % less
/// of the sender's CPU and a third fewer system calls
/// (`results/wave24-1-probe-spacing.md`), while a lost tail is still
/// found four times sooner than conntrackd's one-second ALIVE finds it.
pub(crate) const CLEAN_PROBE_SPACING: Duration = Duration::from_millis(250);
/// ... unless this many messages went out since the last probe: a burst
/// (a datagram's worth, [`TX_FULL`]), whose lost tail is worth
/// a probe at the quiet period, not a trickle's. Without it a burst that
/// began within the spacing of the last probe (a trickle's, an earlier
/// burst's) would have a lost tail found only when the spacing ran out,
/// up to 250 ms instead of a few milliseconds.
const BURST_MESSAGES: u32 = TX_FULL as u32;
/// A NACK (or an answer that made us resend) this recent makes the link
/// lossy for the pause rule.
pub(crate) const LOSSY_FOR: Duration = Duration::from_secs(10);
/// How far the numbers sent may go past the last NACKed one before it is
/// forgotten. NACKs are told new from repeats by wrapping order, good
/// only within 2^31: on a clean link the next loss may come that far on,
/// and against a number kept so long a new NACK read as an old repeat.
/// A quarter of the space keeps the order right for any NACK of a number
/// still resendable (the window is 2^18).
const NACKED_FORGOTTEN: u32 = 1 << 30;
/// Probes sent without an answer before probing stops (until an answer,
/// or the peer restarts); the retransmission timer still runs.
pub(crate) const MAX_PROBES: u32 = 10;
/// Repeats one timeout apart, beyond the one a silent peer gets, before
/// any backing off, for a peer heard lately: the chance that this many
/// rounds in a row fail at 20 % loss each way is 0.36^9, about 1 in
/// 10 000.
pub(crate) const FAST_PROBES: u32 = 8;

/// The sender's probing state.
#[derive(Debug, Clone, Default)]
pub(crate) struct TailProbe {
    rtt: Rtt,
    /// When the last data message went out, and its number.
    last_data: Instant,
    last_seq: Option<Seq>,
    /// When the node's inputs last paused.
    paused_at: Option<Instant>,
    /// When the peer last NACKed something new, or answered a probe in a
    /// way that made us resend.
    lost_at: Option<Instant>,
    /// The last probe: the number it announced, and when it went out.
    last: Option<(Seq, Instant)>,
    /// Probes sent since the peer last answered one.
    unanswered: u32,
    /// When the peer was last heard (any datagram).
    heard: Option<Instant>,
    /// The number the last ALIVE (probe or keepalive) announced.
    announced: Option<Seq>,
    /// The highest number after a NACKed gap so far; forgotten once the
    /// numbers sent are [`NACKED_FORGOTTEN`] past it.
    nacked: Option<Seq>,
    /// When an answer made us resend, the number the resent data starts
    /// at: the next probe follows it.
    chase: Option<Seq>,
}

impl TailProbe {
    pub(crate) fn rtt(&self) -> &Rtt {
        &self.rtt
    }

    /// A round trip measured elsewhere (a challenge and its answer).
    pub(crate) fn round_trip_sample(&mut self, r: Duration) {
        self.rtt.sample(r);
    }

    /// A datagram came from the peer at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// Unanswered probes repeated one timeout apart before backing off,
    /// beyond the first: [`FAST_PROBES`] when the peer had been heard
    /// lately when the last probe went out, else none.
    fn fast_probes(&self, probed_at: Instant) -> u32 {
        match self.heard {
            Some(h) if probed_at.since(h) < PEER_ALIVE => FAST_PROBES,
            _ => 0,
        }
    }

    /// The node's inputs paused at `now`.
    pub(crate) fn paused(&mut self, now: Instant) {
        self.paused_at = Some(now);
    }

    /// Data message `seq` went out at `now`.
    pub(crate) fn data_sent(&mut self, seq: Seq, now: Instant) {
        self.last_data = now;
        self.last_seq = Some(seq);
        if self.nacked.is_some_and(|n| seq - n >= NACKED_FORGOTTEN) {
            self.nacked = None;
        }
    }

    /// When the first probe is due after the link went quiet at `from`:
    /// the quiet period later, or at a pause that came since, on a link
    /// that lost something lately; on a clean link no sooner than
    /// [`CLEAN_PROBE_SPACING`] after the last probe (see the module
    /// notes).
    fn first_probe(&self, from: Instant) -> Instant {
        let quiet = from + self.rtt.quiet();
        let lossy =
            |at: Instant| self.lost_at.is_some_and(|t| at.since(t) < LOSSY_FOR);
        match (self.paused_at, self.last) {
            (Some(p), _) if p >= from && lossy(p) => quiet.min(p),
            (_, Some((next, probed)))
                if !lossy(quiet) && !self.burst_since(next) =>
            {
                quiet.max(probed + CLEAN_PROBE_SPACING)
            }
            _ => quiet,
        }
    }

    /// Whether [`BURST_MESSAGES`] or more went out from number `next` on.
    fn burst_since(&self, next: Seq) -> bool {
        self.last_seq
            .is_some_and(|s| s >= next && s - next >= BURST_MESSAGES - 1)
    }

    /// When the next probe is due, given that something is still
    /// unacknowledged (`waiting`). None: no probe.
    pub(crate) fn due(&self, waiting: bool) -> Option<Instant> {
        if !waiting {
            return None;
        }
        match self.last {
            Some((_, at)) if self.unanswered > 0 => {
                let fast = self.fast_probes(at);
                if self.unanswered >= fast + MAX_PROBES {
                    return None;
                }
                let doublings = (self.unanswered - 1).saturating_sub(fast);
                let backoff = self
                    .rtt
                    .rto()
                    .saturating_mul(1 << doublings.min(16))
                    .min(ALIVE_INTERVAL);
                Some(at + backoff)
            }
            Some((_, at)) => {
                let quiet = self.first_probe(self.last_data.max(at));
                // By number, not time: data sent at the answer's instant
                // may have gone before the resend was queued.
                match (self.chase, self.last_seq) {
                    (Some(c), Some(s)) if s >= c => Some(self.last_data),
                    _ => Some(quiet),
                }
            }
            None => Some(self.first_probe(self.last_data)),
        }
    }

    /// An answer at `now` made us resend, from number `next` on: chase it
    /// (see the module notes).
    pub(crate) fn chase(&mut self, next: Seq, now: Instant) {
        self.chase = Some(next);
        self.lost_at = Some(now);
    }

    /// An ALIVE that is no probe (the keepalive) announces `next`.
    pub(crate) fn announced(&mut self, next: Seq) {
        self.announced = Some(next);
    }

    /// The peer NACKed a gap at `now`; `after_gap`, the number after it,
    /// went out at `sent`. The receiver NACKs a gap as soon as the message
    /// after it arrives, so that is a round trip (numbers are never sent
    /// twice: Karn's rule holds) — unless `after_gap` is the number an
    /// ALIVE announced: then the NACK may answer the ALIVE, sent before
    /// that number went out; or the NACK is not newer than one before it:
    /// then it may be a repeat (`rx`), sent later than its gap was found.
    pub(crate) fn nacked(
        &mut self,
        after_gap: Seq,
        sent: Instant,
        now: Instant,
    ) {
        if self.nacked.is_some_and(|n| after_gap <= n) {
            return;
        }
        self.nacked = Some(after_gap);
        self.lost_at = Some(now);
        if self.announced != Some(after_gap) {
            self.rtt.sample(now.since(sent));
        }
    }

    /// A probe announcing `next` goes out at `now`.
    pub(crate) fn probed(&mut self, next: Seq, now: Instant) {
        self.chase = None;
        self.announced = Some(next);
        self.last = Some((next, now));
        self.unanswered += 1;
    }

    /// The peer reported (ACK or NACK) up to `to` at `now`. When that
    /// answers the outstanding probe, returns the probe's number: the
    /// peer has seen everything before it.
    pub(crate) fn answered(&mut self, to: Seq, now: Instant) -> Option<Seq> {
        let (next, at) = self.last?;
        if self.unanswered == 0 || to < next.prev() {
            return None;
        }
        if self.unanswered == 1 {
            self.rtt.sample(now.since(at));
        }
        self.unanswered = 0;
        Some(next)
    }

    /// The peer's datagrams stopped and came back (or it restarted):
    /// probing may start again, one timeout after the last probe. A probe
    /// still unanswered stays outstanding: its answer is still taken (a
    /// challenge, forged or not, must not make us ignore it and probe
    /// again), and its repeat is not held to the clean link's spacing as a
    /// first probe would be (with the probes counted from zero, the lossy
    /// simulation's start-up, where a challenge restarts probing, had a
    /// burst's tail wait for the spacing: p99 of 2000 seeds 150 → 256 ms
    /// at 250 ms).
    /// Nothing sent awaits an answer any more (given up, not answered):
    /// the probes about it are over.
    pub(crate) fn nothing_outstanding(&mut self) {
        self.last = None;
        self.unanswered = 0;
        self.chase = None;
    }

    pub(crate) fn reset_backoff(&mut self) {
        self.unanswered = self.unanswered.min(1);
    }
}
