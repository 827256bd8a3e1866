//! FT-FW, conntrackd's reliable mode (reference §4.7), with two fixes.
//!
//! - The receiver ([`rx`]) applies in-order and after-gap messages, drops
//!   late ones, NACKs gaps and ACKs what it got (every `ACKWindowSize`
//!   messages and each tick).
//! - The sender keeps sent keys in the [`ResendQueue`] until ACKed,
//!   resends on NACK, probes a quiet link's tail and resends what an
//!   answered probe shows missing ([`probe`]: a lost tail, NACK or ACK
//!   costs a few round trips), and as a last resort resends what stays
//!   unacknowledged for [`RETRANSMIT_AFTER`] while a peer is alive, so a
//!   lost NACK or ACK cannot lose data (conntrackd loses it).
//! - A report no receiver sends (an ACK or NACK reaching a number we
//!   never sent, spanning more than the receive window, or ending before
//!   it starts) is refused and counted, and changes nothing: read, it
//!   answered the tail probe, with a round-trip sample, resent the whole
//!   queue, or (an ACK) released entries the peer never got.
//! - A peer's restart (new session) resets its tracking, and what the
//!   resend queue held goes again under new numbers (it may never have
//!   reached the peer: sent while it was down, or into a TCP connection
//!   that died with it). The reports of its old numbers, waiting or
//!   echoed, are dropped by the engine (`tx`).
//! - While a peer is heard, no more goes out unacknowledged than the
//!   resend queue holds (`room`): the rest waits in the transmit queue for
//!   ACKs, and nothing the peer may lack gives way to the queue's bound.
//! - While no peer has been heard for [`PEER_ALIVE`], the resend queue
//!   keeps at most [`SILENT_HOLD`] entries' states (half its bound if
//!   that is less): past them, it gives those up, keeps no more, and the
//!   peer gets a bulk update (the whole cache) when it is heard again.
//!   DELs are still kept (no bulk carries them). After a failover the old
//!   primary is gone, and a queue of its unacknowledged sends (the notify
//!   script's `-B`: every entry) held up to `ResendQueueSize` keys, about
//!   9 MB at 100 000, for a peer that comes back restarted and gets the
//!   bulk (a restart keeps it owed). A peer cut off for long with
//!   its session intact gets the bulk instead of the NACKed resends,
//!   which the queue's bound could not all keep.
//! - Datagrams carry the HELLO handshake.

mod probe;
mod resend;
mod rx;

#[cfg(test)]
pub(crate) use probe::CLEAN_PROBE_SPACING;
pub(crate) use resend::ResendQueue;

use super::mode::{Cx, SyncMode};
use super::rx::WINDOW;
use super::session::{Contact, Peers};
use super::tx::Sent;
use super::{
    ALIVE_INTERVAL, Key, PEER_ALIVE, RETRANSMIT_AFTER, RoundTrip, Source, Stats,
};
use crate::time::Instant;
use crate::wire::{Msg, Seq};

/// Entries' states the resend queue keeps while no peer is heard; at
/// most half its bound, so that a silence ends in a bulk before the bound
/// drops anything.
pub(crate) const SILENT_HOLD: usize = 4096;

/// Whether a state just sent to a peer not heard is kept for resending,
/// in a resend queue of `bound` holding `held`: up to [`SILENT_HOLD`] (half
/// the bound if that is less); past them, those are given up
/// (`give_up` returns how many), `owed` says the peer gets a bulk when
/// heard again, and nothing more is kept. Both protocols' engines.
pub(crate) fn keep_for_silent_peer(
    owed: &mut bool,
    (held, bound): (usize, usize),
    give_up: impl FnOnce() -> usize,
    stats: &mut Stats,
) -> bool {
    if *owed {
        stats.given_up_silent += 1;
        return false;
    }
    if held < SILENT_HOLD.min(bound / 2).max(1) {
        return true;
    }
    let n = give_up() + 1;
    stats.given_up_silent += n as u64;
    *owed = true;
    log::info!(
        "peer silent: {n} unacknowledged entries given up; it gets a bulk update when heard again"
    );
    false
}

pub(crate) struct FtFw {
    peers: Peers<rx::Rx>,
    resend: ResendQueue,
    /// States given up while no peer was heard: the peer gets a bulk
    /// update when heard again.
    owed_bulk: bool,
    probe: probe::TailProbe,
    ack_window: u32,
    /// The report being read (see [`FtFw::reported`]): the highest
    /// number its ranges reach, and how many messages its NACKs had us
    /// resend.
    report: Option<(Seq, usize)>,
}

impl FtFw {
    pub(crate) fn new(ack_window: u32, resend_queue_size: usize) -> Self {
        FtFw {
            peers: Peers::new(),
            resend: ResendQueue::new(resend_queue_size),
            owed_bulk: false,
            probe: probe::TailProbe::default(),
            ack_window,
            report: None,
        }
    }
}

impl FtFw {
    /// One range of a report reached `to` (a NACK making us resend
    /// `resent`). Whether the report answers our probe, and what it
    /// leaves unacknowledged, is decided once the whole datagram is read
    /// (`datagram_end`): a report lists its newest range first, and
    /// answering at that range resent everything the older ranges after
    /// it acknowledge (467 messages the peer held, in one capture).
    fn reported(&mut self, to: Seq, resent: usize) {
        self.report = Some(match self.report {
            Some((t, r)) => (if to > t { to } else { t }, r + resent),
            None => (to, resent),
        });
    }

    /// The peer reported up to `to` (its NACK making us resend
    /// `resent`): if that answers our probe, what is still unacknowledged
    /// before it was lost (with its NACK) and goes again now, and the next
    /// probe chases what was resent.
    fn probe_answered(&mut self, to: Seq, resent: usize, cx: &mut Cx<'_>) {
        let Some(next) = self.probe.answered(to, cx.now) else {
            return;
        };
        let mut resent = resent;
        for sent in self.resend.take(|s, _| s < next) {
            cx.stats.tail_resent += 1;
            cx.tx.requeue(sent, cx.stats);
            resent += 1;
        }
        if resent > 0 {
            self.probe.chase(cx.tx.next_seq(), cx.now);
        }
    }
}

/// Whether a report of `from..=to` is one no receiver sends (corrupt or
/// forged), counted as such. One reaching a number we never sent would
/// answer our probe as if the peer had seen our tail, resending all we
/// hold, and measure a round trip from it; an ACK would release what
/// was never acknowledged. A receiver's gaps and runs are bounded by
/// the window, so one spanning more is refused too: with a corrupt
/// `from` far back, an ACK released everything held up to its end,
/// what the peer lacked with it, and a NACK resent all of it. One
/// ending before it starts is a malformed header, as conntrackd counts
/// it: its range is empty (or, by wrapping order, the numbers half the
/// space away), but its end would answer our probe as well, and a
/// NACK's measure a round trip from the number after it.
fn refused(from: Seq, to: Seq, cx: &mut Cx<'_>) -> bool {
    if to < from {
        cx.stats.malformed += 1;
        cx.stats.bad_header += 1;
        return true;
    }
    if to >= cx.tx.next_seq() || to - from > WINDOW {
        cx.stats.out_of_window += 1;
        return true;
    }
    false
}

impl SyncMode for FtFw {
    fn heard(&mut self, now: Instant, peer: u64, session: u32) -> Contact {
        let window = self.ack_window;
        self.probe.heard(now);
        self.peers.heard(now, peer, session, || rx::Rx::new(window))
    }

    fn moved(&mut self, from: u64, to: u64) {
        self.peers.moved(from, to);
    }

    fn peer_restarted(&mut self, cx: &mut Cx<'_>) {
        // What it never acknowledged may never have reached it: sent
        // while it was down, or written into a TCP connection that died
        // with it. A peer that kept what it wrote (the kernel's table,
        // without an external cache) and asks no resync got it from
        // nothing but anti-entropy, up to a period later: it goes again
        // now, under new numbers, each with its newest state (a DEL for
        // what is gone; a bulk the peer asks for coalesces with it). Our
        // RESYNC request does not: the engine asks again if it still
        // waits. Its old numbers are void either way.
        for sent in self.resend.take(|_, _| true) {
            if matches!(sent, Sent::Key(_)) {
                cx.tx.requeue(sent, cx.stats);
            }
        }
        // A bulk owed for what was given up while it was silent stays
        // owed (the engine sends it once the new session is proven), as
        // for a peer heard for the first time: one that asks no resync
        // got those states from nothing else (without an external cache
        // no anti-entropy runs), and one that asks has its bulk coalesce
        // with it.
        self.probe.reset_backoff();
    }

    fn take_owed_bulk(&mut self) -> bool {
        std::mem::take(&mut self.owed_bulk)
    }

    fn drain_resend(&mut self) -> Vec<Sent> {
        self.resend.take(|_, _| true)
    }

    fn data(&mut self, peer: u64, seq: Seq, cx: &mut Cx<'_>) -> bool {
        match self.peers.rx_mut(peer) {
            Some(rx) => rx.data(seq, cx.stats, cx.tx),
            None => false,
        }
    }

    fn control(&mut self, peer: u64, msg: Msg, cx: &mut Cx<'_>) {
        match msg {
            Msg::Ack { from, to } | Msg::Nack { from, to }
                if refused(from, to, cx) => {}
            Msg::Ack { from, to } => {
                self.resend.ack(from, to);
                self.reported(to, 0);
            }
            Msg::Nack { from, to } => {
                // A NACK of which we hold no entry tells nothing of the
                // link now: no round trip, no loss. Acknowledged numbers:
                // no receiver NACKs those, and a repeat comes after a
                // newer NACK. Numbers whose entries went again under
                // later ones: the NACK resends nothing, and it may come
                // any time later (forged); a real one (a datagram of such
                // sends lost) costs one sample, not the estimate.
                if self.resend.keeps_any(from, to)
                    && let Some(at) = self.resend.sent_at(to.next())
                {
                    self.probe.nacked(to.next(), at, cx.now);
                }
                let resent = self.resend.take(|s, _| s.in_range(from, to));
                let n = resent.len();
                for sent in resent {
                    cx.tx.requeue(sent, cx.stats);
                }
                self.reported(to, n);
            }
            Msg::Alive { next } => {
                if let Some(rx) = self.peers.rx_mut(peer) {
                    rx.alive(next, cx.stats, cx.tx);
                }
            }
            _ => cx.stats.malformed += 1,
        }
    }

    fn datagram_end(&mut self, cx: &mut Cx<'_>) {
        if let Some((to, resent)) = self.report.take() {
            self.probe_answered(to, resent, cx);
        }
    }

    fn tick(&mut self, now: Instant, _: &dyn Source, cx: &mut Cx<'_>) {
        let mut acked = false;
        for rx in self.peers.rx_all() {
            acked |= rx.tick(cx.tx);
        }
        if self.peers.any_heard(now, PEER_ALIVE) {
            let due = |_, at| now.since(at) >= RETRANSMIT_AFTER;
            for sent in self.resend.take(due) {
                cx.tx.requeue(sent, cx.stats);
            }
        }
        // An ACK already tells the peer we are here.
        if !acked && now.since(cx.tx.last_tx()) >= ALIVE_INTERVAL {
            let next = cx.tx.next_seq();
            self.probe.announced(next);
            cx.tx.control(Msg::Alive { next });
        }
    }

    fn sent(
        &mut self,
        seq: Seq,
        what: Sent,
        gone: bool,
        now: Instant,
        stats: &mut Stats,
    ) {
        let state = matches!(what, Sent::Key(_)) && !gone;
        if state
            && !self.peers.any_heard(now, PEER_ALIVE)
            && !keep_for_silent_peer(
                &mut self.owed_bulk,
                (self.resend.len(), self.resend.bound()),
                || self.resend.give_up_present(),
                stats,
            )
        {
            return;
        }
        self.resend.push(seq, what, gone, now, stats);
        self.probe.data_sent(seq, now);
    }

    /// While a peer is heard, no more goes out unacknowledged than the
    /// resend queue holds: past its bound it dropped the oldest of what
    /// the peer had not acknowledged yet, which no NACK could bring back.
    /// A bulk larger than the queue (a resync's answer, `-B`) went out
    /// at once and lost its head that way before any ACK could come, and
    /// a datagram of it lost on the link left the peer without those
    /// entries, told all the same that its resync was complete. A silent
    /// peer is not waited for (see [`SILENT_HOLD`]).
    fn room(&self, now: Instant) -> Option<usize> {
        self.peers
            .any_heard(now, PEER_ALIVE)
            .then(|| self.resend.bound().saturating_sub(self.resend.len()))
    }

    fn paused(&mut self, now: Instant) {
        self.probe.paused(now);
    }

    fn wake_at(&self) -> Option<Instant> {
        self.probe.due(self.resend.len() > 0)
    }

    fn wake(&mut self, now: Instant, cx: &mut Cx<'_>) {
        // No liveness test: unanswered probes back off and stop on their
        // own, and the first ones after an outage are what finds it over.
        if self
            .probe
            .due(self.resend.len() > 0)
            .is_some_and(|t| t <= now)
        {
            let next = cx.tx.next_seq();
            self.probe.probed(next, now);
            cx.stats.probes_sent += 1;
            cx.tx.control(Msg::Alive { next });
        }
    }

    fn anchor(&mut self, peer: u64, from: Seq, first_held: Option<Seq>) {
        // Everything from the peer's oldest resendable number can still
        // come, by NACK if need be; what we held may be older still.
        let at = match first_held {
            Some(h) if h < from => h,
            _ => from,
        };
        if let Some(rx) = self.peers.rx_mut(peer) {
            rx.anchor(at);
        }
    }

    fn expects(&self, peer: u64) -> Option<Seq> {
        self.peers.rx(peer).and_then(|rx| rx.expects())
    }

    fn resume_from(&self) -> Option<Seq> {
        self.resend.oldest()
    }

    fn answers_resync(&self) -> bool {
        true
    }

    fn says_hello(&self) -> bool {
        true
    }

    /// Our probes went unanswered while the peer could not read them:
    /// once our answer proves us, probing starts over (its backoff had
    /// stopped it after MAX_PROBES, and a lost NACK after the proof then
    /// waited for the next keepalive).
    fn challenged(&mut self) {
        self.probe.reset_backoff();
    }

    fn round_trip_sample(&mut self, rtt: std::time::Duration) {
        self.probe.round_trip_sample(rtt);
    }

    fn round_trip(&self) -> Option<RoundTrip> {
        let rtt = self.probe.rtt();
        rtt.smoothed().map(|smoothed| RoundTrip {
            smoothed,
            timeout: rtt.rto(),
        })
    }

    fn resend_queue(&self) -> Option<&ResendQueue> {
        Some(&self.resend)
    }

    fn give_up_states(&mut self, which: &dyn Fn(&Key) -> bool) -> usize {
        let n = self.resend.give_up_states(which);
        if n > 0 && self.resend.len() == 0 {
            // Nothing the last probes asked about is awaited any more: the
            // next data is probed as after a quiet link, not at once by
            // the backoff of probes about what was given up.
            self.probe.nothing_outstanding();
        }
        n
    }
}
