//! FT-FW's receiver for one peer: sequence tracking plus the
//! acknowledgement window, and the one rule for reporting what arrived.
//!
//! The rule, wherever a gap is found (a data message after missing ones,
//! or an ALIVE announcing numbers we never saw): acknowledge the run we
//! have (`ACK from..=gap-1`), then ask for the gap (`NACK gap`). Apart
//! from gaps, a run is acknowledged every `ACKWindowSize` messages and on
//! each tick. Any ACK restarts the window.

use crate::sync::Stats;
use crate::sync::rx::{Announced, Arrival, Gap, SeqTrack};
use crate::sync::tx::Transmit;
use crate::wire::{Msg, Seq};

/// What we received from one peer and have not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Rx {
    seq: SeqTrack,
    /// First number of the run not yet acknowledged.
    ack_from: Option<Seq>,
    /// Messages until the next window ACK.
    left: u32,
    window: u32,
}

impl Rx {
    pub(crate) fn new(window: u32) -> Self {
        Rx {
            seq: SeqTrack::default(),
            ack_from: None,
            left: window,
            window,
        }
    }

    /// Data message `s` arrived; true to apply it. Late messages are
    /// dropped: the sender resends them with new numbers.
    pub(crate) fn data(
        &mut self,
        s: Seq,
        stats: &mut Stats,
        tx: &mut Transmit,
    ) -> bool {
        match self.seq.arrive(s) {
            Arrival::InOrder => {}
            Arrival::Late => {
                stats.before += 1;
                return false;
            }
            Arrival::After(gap) => {
                stats.lost += gap.len();
                self.report_gap(gap, tx);
            }
            Arrival::OutOfWindow => {
                stats.out_of_window += 1;
                return false;
            }
        }
        self.ack_from.get_or_insert(s);
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            self.ack(s, tx);
        }
        true
    }

    /// The peer's ALIVE says its next number is `next`.
    pub(crate) fn alive(
        &mut self,
        next: Seq,
        stats: &mut Stats,
        tx: &mut Transmit,
    ) {
        match self.seq.alive(next) {
            Announced::Gap(gap) => {
                stats.lost += gap.len();
                self.report_gap(gap, tx);
            }
            Announced::OutOfWindow => stats.out_of_window += 1,
            Announced::Nothing => {}
        }
    }

    /// The peer proved its session: expect `at` next (the oldest number
    /// it can resend); nothing of the old run is acknowledged any more.
    pub(crate) fn anchor(&mut self, at: Seq) {
        self.ack_from = None;
        self.left = self.window;
        self.seq.anchor(at);
    }

    /// The number expected next.
    pub(crate) fn expects(&self) -> Option<Seq> {
        self.seq.next()
    }

    /// The tick: acknowledges the open run, if any. True when it did.
    pub(crate) fn tick(&mut self, tx: &mut Transmit) -> bool {
        match self.seq.next() {
            Some(next) => self.ack(next.prev(), tx),
            None => false,
        }
    }

    /// Acknowledge what we have, ask for the gap.
    fn report_gap(&mut self, gap: Gap, tx: &mut Transmit) {
        self.ack(gap.from.prev(), tx);
        tx.control(Msg::Nack {
            from: gap.from,
            to: gap.to,
        });
    }

    /// Acknowledges the open run up to `to`; false when none is open.
    fn ack(&mut self, to: Seq, tx: &mut Transmit) -> bool {
        let Some(from) = self.ack_from.take() else {
            return false;
        };
        tx.control(Msg::Ack { from, to });
        self.left = self.window;
        true
    }
}
