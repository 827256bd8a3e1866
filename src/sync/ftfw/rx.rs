//! FT-FW's receiver for one peer: sequence tracking plus the
//! acknowledgement window, and the one rule for reporting what arrived.
//!
//! The rule, wherever a gap is found (a data message after missing ones,
//! or an ALIVE announcing numbers we never saw): acknowledge the run we
//! have (`ACK from..=gap-1`), then ask for the gap (`NACK gap`). Apart
//! from gaps, a run is acknowledged every `ACKWindowSize` messages and on
//! each tick. Any ACK restarts the window.
//!
//! An ACK covers the whole run since the last gap, not only what is new
//! since the last ACK: a lost ACK is repaired by the next one, so the
//! sender never resends what arrived (its tail probe treats what stays
//! unacknowledged as lost, see `probe`).
//!
//! Every ALIVE is answered (it may be the sender's tail probe): with the
//! gap it reveals, else with the open run's ACK, else by repeating the
//! last report when it reached the announced number (it may have been
//! lost).
//!
//! Each gap report also repeats the [`REPEATED`] reports before it, after
//! its own messages: a lost ACK otherwise costs the sender a resend of the
//! whole run it covered, and a lost NACK a wait for the tail probe; at
//! 20 % loss a report is lost one time in five, it and both repeats one
//! time in 125 (and `tx` echoes each datagram's reports in the next).
//! Repeats are harmless: an ACK or NACK of what the sender no longer
//! holds changes nothing. Only gap reports carry them, so a repeated NACK
//! always follows a newer one (the sender measures the round trip on new
//! NACKs only, see `probe`).

use crate::sync::Stats;
use crate::sync::rx::{Announced, Arrival, Gap, SeqTrack, WINDOW};
use crate::sync::tx::Transmit;
use crate::wire::{Msg, Seq};

/// What we received from one peer and have not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Rx {
    seq: SeqTrack,
    /// First number of the run not yet acknowledged (None: nothing new).
    ack_from: Option<Seq>,
    /// First number of the gapless run the next ACK covers.
    run_from: Option<Seq>,
    /// Messages until the next window ACK.
    left: u32,
    window: u32,
    /// The last ACK and NACK sent, repeated to a probe that finds
    /// nothing new.
    last: Report,
    /// The reports before it, newest first: with it, the ones repeated
    /// with each gap report.
    earlier: [Report; REPEATED - 1],
}

/// Earlier reports repeated with each gap report.
const REPEATED: usize = 2;

/// What the receiver last told the sender.
#[derive(Debug, Clone, Copy, Default)]
struct Report {
    ack: Option<(Seq, Seq)>,
    nack: Option<Gap>,
}

impl Report {
    /// The last number it covers.
    fn reaches(&self) -> Option<Seq> {
        self.nack.map(|g| g.to).or(self.ack.map(|(_, to)| to))
    }
}

impl Rx {
    pub(crate) fn new(window: u32) -> Self {
        Rx {
            seq: SeqTrack::default(),
            ack_from: None,
            run_from: None,
            left: window,
            window,
            last: Report::default(),
            earlier: [Report::default(); REPEATED - 1],
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
        self.run_from.get_or_insert(s);
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
            Announced::Nothing => {
                if !self.ack(next.prev(), tx) {
                    self.repeat_last(next, tx);
                }
            }
        }
    }

    /// The peer proved its session: expect `at` next (the oldest number
    /// it can resend); nothing of the old run is acknowledged any more.
    pub(crate) fn anchor(&mut self, at: Seq) {
        self.ack_from = None;
        self.run_from = None;
        self.left = self.window;
        self.last = Report::default();
        self.earlier = [Report::default(); REPEATED - 1];
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

    /// Acknowledge the run before the gap (again, if it was: the ACK
    /// travels with the NACK, and repairs a lost one), ask for the gap;
    /// the next run starts after it.
    fn report_gap(&mut self, gap: Gap, tx: &mut Transmit) {
        let before = gap.from.prev();
        let report = Report {
            ack: self.covered_from(before).map(|from| (from, before)),
            nack: Some(gap),
        };
        send(report, tx);
        for earlier in std::iter::once(self.last).chain(self.earlier) {
            // What the new report says already need not go twice.
            let ack = earlier.ack.filter(|(f, t)| {
                !report.ack.is_some_and(|(from, to)| {
                    f.in_range(from, to) && t.in_range(from, to)
                })
            });
            send(Report { ack, ..earlier }, tx);
        }
        self.remember(report);
        self.ack_from = None;
        self.left = self.window;
        self.run_from = Some(gap.to.next());
    }

    /// `report` is the last one sent; the one before it joins the earlier.
    fn remember(&mut self, report: Report) {
        let before = std::mem::replace(&mut self.last, report);
        self.earlier.rotate_right(1);
        if let Some(newest) = self.earlier.first_mut() {
            *newest = before;
        }
    }

    /// Repeats the last report if it reached the number before `next`:
    /// nothing arrived since, and it may have been lost.
    fn repeat_last(&mut self, next: Seq, tx: &mut Transmit) {
        if self.last.reaches() == Some(next.prev()) {
            send(self.last, tx);
        }
    }

    /// Acknowledges the run up to `to` when something in it is new; false
    /// when nothing is.
    fn ack(&mut self, to: Seq, tx: &mut Transmit) -> bool {
        if self.ack_from.take().is_none() {
            return false;
        }
        let Some(from) = self.covered_from(to) else {
            return false;
        };
        let report = Report {
            ack: Some((from, to)),
            nack: None,
        };
        send(report, tx);
        self.remember(report);
        self.left = self.window;
        true
    }

    /// Where an ACK up to `to` starts: the run's first number, no further
    /// back than the window (so the range never wraps). None when the run
    /// holds nothing up to `to`.
    fn covered_from(&self, to: Seq) -> Option<Seq> {
        let from = self.run_from?;
        if to < from {
            return None;
        }
        Some(if to - from > WINDOW {
            Seq(to.0.wrapping_sub(WINDOW))
        } else {
            from
        })
    }
}

/// Sends `report`'s ACK, then its NACK.
fn send(report: Report, tx: &mut Transmit) {
    if let Some((from, to)) = report.ack {
        tx.control(Msg::Ack { from, to });
    }
    if let Some(g) = report.nack {
        tx.control(Msg::Nack {
            from: g.from,
            to: g.to,
        });
    }
}
