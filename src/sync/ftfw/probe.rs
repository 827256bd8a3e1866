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

use std::time::Duration;

use crate::sync::tx_timing::TX_FULL;
use crate::sync::{ALIVE_INTERVAL, PEER_ALIVE};
use crate::time::Instant;
use crate::wire::Seq;

/// Quiet time after the last data before the first probe, and the
/// timeout, before any round trip is measured.
const QUIET_DEFAULT: Duration = Duration::from_millis(5);
const RTO_DEFAULT: Duration = Duration::from_millis(50);
/// Bounds of the quiet period and of the retransmission timeout.
const QUIET_MIN: Duration = Duration::from_millis(3);
const QUIET_MAX: Duration = Duration::from_millis(50);
const RTO_MIN: Duration = Duration::from_micros(500);
/// The least spread the timeout allows above the smoothed round trip
/// (RFC 6298's clock granularity G): a steady LAN round trip must not
/// leave a timeout that the peer's scheduling alone exceeds.
const RTO_SPREAD_MIN: Duration = Duration::from_micros(250);
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
    pub(crate) fn reset_backoff(&mut self) {
        self.unanswered = self.unanswered.min(1);
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

    #[test]
    fn probes_back_off_and_stop_without_an_answer() {
        let mut p = TailProbe::default();
        assert_eq!(p.due(false), None, "nothing unacknowledged");
        p.data_sent(Seq(1), Instant::from_millis(100));
        let mut at = p.due(true).unwrap();
        assert_eq!(
            at,
            Instant::from_millis(105),
            "a quiet period after the data"
        );
        let mut gaps = Vec::new();
        while let Some(next) = p.due(true) {
            gaps.push(next.since(at).as_millis() as u64);
            at = next;
            p.probed(Seq(7), at);
            assert!(gaps.len() <= MAX_PROBES as usize);
        }
        assert_eq!(gaps.len(), MAX_PROBES as usize);
        assert_eq!(&gaps[..5], &[0, 50, 100, 200, 400]);
        assert!(gaps.iter().all(|g| *g <= 1000), "capped: {gaps:?}");
        // An answer (even late) starts over, and measures nothing: the
        // probe went out more than once.
        assert_eq!(p.answered(Seq(6), at + ms(3)), Some(Seq(7)));
        assert_eq!(p.rtt().smoothed(), None);
        assert!(p.due(true).is_some());
    }

    #[test]
    fn a_restart_of_probing_keeps_the_outstanding_probe() {
        let t = Instant::from_millis;
        let mut p = TailProbe::default();
        // An answered probe, then more data and its probe, unanswered.
        p.data_sent(Seq(1), t(0));
        p.probed(Seq(2), t(5));
        assert_eq!(p.answered(Seq(1), t(6)), Some(Seq(2)));
        p.data_sent(Seq(2), t(10));
        p.probed(Seq(3), t(15));
        // A challenge restarts probing: the next probe is the repeat, one
        // timeout after the last, not a first probe held to the spacing.
        p.reset_backoff();
        assert_eq!(p.due(true), Some(t(15) + p.rtt().rto()));
        // And the outstanding probe's answer is still taken.
        assert_eq!(p.answered(Seq(2), t(16)), Some(Seq(3)));
        // Probing that had stopped starts again, with one probe out.
        for n in 0..MAX_PROBES + FAST_PROBES {
            p.probed(Seq(4), t(20 + u64::from(n)));
        }
        assert_eq!(p.due(true), None, "stopped");
        p.reset_backoff();
        assert!(p.due(true).is_some(), "started again");
    }

    #[test]
    fn a_peer_heard_lately_is_probed_at_the_timeout_before_any_backoff() {
        let mut p = TailProbe::default();
        p.heard(Instant::from_millis(90));
        p.data_sent(Seq(1), Instant::from_millis(100));
        let mut at = p.due(true).unwrap();
        let mut gaps = Vec::new();
        while let Some(next) = p.due(true) {
            gaps.push(next.since(at).as_millis() as u64);
            at = next;
            p.probed(Seq(7), at);
            assert!(gaps.len() <= (FAST_PROBES + MAX_PROBES) as usize);
        }
        // The first probe, then FAST_PROBES more repeats one (default)
        // timeout apart than a silent peer gets, then its doubling. Once
        // the peer has been silent for PEER_ALIVE it is gone: the silent
        // peer's bound applies.
        let fast = FAST_PROBES as usize;
        assert!(gaps[1..=fast + 1].iter().all(|g| *g == 50), "{gaps:?}");
        assert_eq!(&gaps[fast + 2..fast + 5], &[100, 200, 400]);
        assert!(gaps.len() > MAX_PROBES as usize, "{gaps:?}");
        assert!(gaps.len() <= fast + MAX_PROBES as usize, "{gaps:?}");
        // Heard 3 s or more before: a gone peer, backed off from the start
        // (the first wait after the first probe is one timeout).
        let mut p = TailProbe::default();
        p.heard(Instant::from_millis(0));
        p.data_sent(Seq(1), Instant::from_millis(3000));
        p.probed(Seq(7), Instant::from_millis(3005));
        p.probed(Seq(7), Instant::from_millis(3055));
        assert_eq!(p.due(true), Some(Instant::from_millis(3155)), "doubled");
    }

    #[test]
    fn a_nack_measures_the_round_trip_unless_it_may_answer_an_alive() {
        let mut p = TailProbe::default();
        // A NACK of 10..=11 provoked by 12, sent at 100, back at 104.
        p.nacked(
            Seq(12),
            Instant::from_millis(100),
            Instant::from_millis(104),
        );
        assert_eq!(p.rtt().smoothed(), Some(ms(4)));
        // An ALIVE announced 20: a NACK ending at 19 may answer it, sent
        // before 20 went out, and measures nothing.
        p.announced(Seq(20));
        p.nacked(
            Seq(20),
            Instant::from_millis(200),
            Instant::from_millis(201),
        );
        assert_eq!(p.rtt().smoothed(), Some(ms(4)));
        // Not newer than a NACK before it: maybe a repeat, sent later.
        p.nacked(
            Seq(18),
            Instant::from_millis(150),
            Instant::from_millis(210),
        );
        assert_eq!(p.rtt().smoothed(), Some(ms(4)));
        p.nacked(
            Seq(26),
            Instant::from_millis(298),
            Instant::from_millis(310),
        );
        assert_eq!(p.rtt().smoothed(), Some(ms(5)), "(7 × 4 + 12) / 8");
        p.probed(Seq(30), Instant::from_millis(300));
        p.nacked(
            Seq(30),
            Instant::from_millis(301),
            Instant::from_millis(302),
        );
        assert_eq!(p.rtt().smoothed(), Some(ms(5)), "the probe's number");
    }

    #[test]
    fn a_probe_chases_what_its_answer_made_us_resend() {
        let t = Instant::from_millis;
        let mut p = TailProbe::default();
        p.data_sent(Seq(9), t(0));
        p.probed(Seq(10), t(5));
        // Sent after the probe, before its answer.
        p.data_sent(Seq(10), t(8));
        assert_eq!(p.answered(Seq(9), t(9)), Some(Seq(10)));
        // The resend starts at number 11.
        p.chase(Seq(11), t(9));
        // Until the resent data is out, the quiet rule (4 ms measured)
        // after the last data.
        assert_eq!(p.due(true), Some(t(8 + 4)));
        // Out at the answer's instant: the probe follows at once.
        p.data_sent(Seq(11), t(9));
        assert_eq!(p.due(true), Some(t(9)));
        // The probe ends the chase.
        p.probed(Seq(12), t(9));
        assert_eq!(p.answered(Seq(11), t(13)), Some(Seq(12)));
        p.data_sent(Seq(12), t(16));
        assert_eq!(p.due(true), Some(t(20)), "quiet again");
    }

    #[test]
    fn after_a_pause_only_a_lossy_link_is_probed_at_once() {
        let us = Instant::from_micros;
        let mut p = TailProbe::default();
        // A clean link: the quiet rule, pause or not (the default before
        // any round trip is measured).
        p.data_sent(Seq(1), us(1_000));
        p.paused(us(1_200));
        assert_eq!(p.due(true), Some(us(1_000) + QUIET_DEFAULT));
        // A NACK (a loss, and a 200 µs round trip).
        p.nacked(Seq(5), us(2_000), us(2_200));
        p.data_sent(Seq(9), us(3_000));
        assert_eq!(
            p.due(true),
            Some(us(3_000) + QUIET_MIN),
            "no pause since the data: the quiet rule (200 µs raised to its floor)"
        );
        p.paused(us(3_200));
        assert_eq!(p.due(true), Some(us(3_200)), "at the pause");
        // Data after the pause: a burst goes on.
        p.data_sent(Seq(10), us(4_000));
        assert_eq!(p.due(true), Some(us(4_000) + QUIET_MIN));
        // No loss for LOSSY_FOR: clean again.
        let later = us(2_200) + LOSSY_FOR;
        p.data_sent(Seq(11), later);
        p.paused(later);
        assert_eq!(p.due(true), Some(later + QUIET_MIN));
        // Once probed, an unanswered probe waits for its timeout as ever.
        p.nacked(Seq(20), later, later + Duration::from_micros(200));
        p.data_sent(Seq(21), later + ms(1));
        p.paused(later + ms(1));
        p.probed(Seq(22), later + ms(1));
        assert_eq!(p.due(true), Some(later + ms(1) + p.rtt().rto()));
    }

    #[test]
    fn an_answer_must_reach_the_probe_and_measures_the_round_trip() {
        let mut p = TailProbe::default();
        p.data_sent(Seq(1), Instant::from_millis(0));
        assert_eq!(
            p.answered(Seq(9), Instant::from_millis(1)),
            None,
            "no probe out"
        );
        p.probed(Seq(10), Instant::from_millis(5));
        assert_eq!(
            p.answered(Seq(8), Instant::from_millis(7)),
            None,
            "short of it"
        );
        assert_eq!(p.answered(Seq(9), Instant::from_millis(12)), Some(Seq(10)));
        assert_eq!(p.rtt().smoothed(), Some(ms(7)));
        assert_eq!(
            p.answered(Seq(9), Instant::from_millis(13)),
            None,
            "answered once"
        );
        // The next probe waits for the quiet period after it, and on a
        // clean link for the spacing since this one.
        assert_eq!(
            p.due(true),
            Some(Instant::from_millis(5) + CLEAN_PROBE_SPACING)
        );
        // After a loss, the quiet period alone.
        p.nacked(Seq(5), Instant::from_millis(12), Instant::from_millis(14));
        let quiet = p.rtt().quiet();
        assert_eq!(p.due(true), Some(Instant::from_millis(5) + quiet));
    }

    #[test]
    fn a_burst_on_a_clean_link_is_probed_at_the_quiet_period() {
        let t = Instant::from_millis;
        let mut p = TailProbe::default();
        p.data_sent(Seq(9), t(0));
        p.probed(Seq(10), t(5));
        assert_eq!(p.answered(Seq(9), t(7)), Some(Seq(10)));
        let quiet = p.rtt().quiet();
        // A trickle after the probe: its next one waits for the spacing.
        for (i, n) in (10..10 + BURST_MESSAGES - 1).enumerate() {
            p.data_sent(Seq(n), t(8 + i as u64));
        }
        let last = t(8 + u64::from(BURST_MESSAGES) - 2);
        assert_eq!(p.due(true), Some(t(5) + CLEAN_PROBE_SPACING));
        // One message more makes it a burst: the quiet period after it.
        p.data_sent(Seq(10 + BURST_MESSAGES - 1), last);
        assert_eq!(p.due(true), Some(last + quiet));
    }

    #[test]
    fn a_nack_half_the_number_space_later_still_counts() {
        let mut p = TailProbe::default();
        let t = Instant::from_millis;
        p.nacked(Seq(100), t(0), t(4));
        assert_eq!(p.rtt().smoothed(), Some(ms(4)));
        // A clean link: the next NACK comes 2^31 + 5 numbers later (the
        // number after its gap went out, as every number does).
        p.data_sent(Seq(100 + (1 << 31) + 5), t(1000));
        p.nacked(Seq(100 + (1 << 31) + 5), t(1000), t(1020));
        assert_eq!(p.lost_at, Some(t(1020)), "the new loss is not recorded");
    }
}
