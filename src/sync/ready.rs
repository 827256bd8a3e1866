//! Whether a resync is complete, at both of its ends.
//!
//! A node that comes back (a restart, a crash, a reboot) asks its peer
//! for the whole state (`-n`, the notify script's backup step) and must
//! not take the virtual IPs back before it holds it: committed half-way,
//! the flows the rest carried are reset (keepalived issues 1076 and 2254).
//! conntrackd's protocol cannot say when a resync is complete, so its
//! operators guess a `preempt_delay` long enough for the largest table.
//! Between ctsyncd nodes the answerer says it:
//!
//! - the asker notes each number its RESYNC went out as (a lost one is
//!   sent again under a new number) and waits ([`Awaiting`]);
//! - the answerer ([`Answering`]) counts down the keys that were queued
//!   when it queued the bulk. The last of them goes out as number `W`.
//!   Everything up to `W` delivered (FT-FW: nothing numbered up to `W`
//!   still awaiting its ACK), it sends [`Msg::Synced`] with the RESYNC's
//!   number, then again at each of the next [`REPEATS`]` - 1` ticks: a
//!   control message is never resent, and a lost one would leave the
//!   asker waiting. A resend (a NACK, a timeout, a lost tail) restarts
//!   the count from the keys queued then: the resent keys are at its
//!   end, so `W` covers them. Changes made meanwhile queue behind the
//!   count and do not hold the answer back;
//! - the asker, hearing one of its own numbers from a proven session, is
//!   ready (`-s ready`, which keepalived's `track_script` runs).
//!
//! Waiting also ends when the node commits (`-c`, the notify script's
//! primary step: the node is the reference now, and a master that waits
//! would lower its priority for nothing). A peer that restarts while we
//! wait knows nothing of our request: it is asked again.
//!
//! Pure: the engine calls in with the numbers and the queue lengths.

use crate::wire::{Msg, Seq};

/// How many times [`Msg::Synced`] is sent for one answer: once when the
/// bulk is delivered, then at each tick. With 20 % loss, all five are
/// lost one time in 3 125 (three, one in 125); the asker then waits until
/// it commits or asks again: it never takes over on a word it did not
/// get.
pub(crate) const REPEATS: u8 = 5;

/// Most RESYNC numbers remembered at either end (a resend takes a number
/// of its own; a multicast link has at most 8 peers asking).
const NUMBERS: usize = 8;

/// The asker's side: the numbers its outstanding RESYNC went out as.
#[derive(Debug, Default, Clone)]
pub(crate) struct Awaiting {
    sent_as: heapless::Deque<Seq, NUMBERS>,
}

impl Awaiting {
    /// Our RESYNC went out as `seq`.
    pub(crate) fn sent_as(&mut self, seq: Seq) {
        if self.sent_as.is_full() {
            self.sent_as.pop_front();
        }
        let _ = self.sent_as.push_back(seq);
    }

    /// Whether `resync` answers our request.
    pub(crate) fn answered_by(&self, resync: Seq) -> bool {
        self.sent_as.iter().any(|s| *s == resync)
    }
}

/// The answerer's side: the RESYNCs its bulk answers, and how far the
/// bulk has gone.
#[derive(Debug, Clone)]
pub(crate) struct Answering {
    asked_as: heapless::Deque<Seq, NUMBERS>,
    /// Keys still queued ahead of the bulk's end.
    remaining: usize,
    /// The number the last of them went out as, once it has.
    through: Option<Seq>,
    /// Times [`Msg::Synced`] was sent (per asked number).
    told: u8,
    /// The engine's resend count when last looked at.
    resends: u64,
}

impl Answering {
    /// The peer's RESYNC numbered `resync` was answered with a bulk that
    /// left `queued` keys in the transmit queue.
    pub(crate) fn new(resync: Seq, queued: usize, resends: u64) -> Self {
        let mut a = Answering {
            asked_as: heapless::Deque::new(),
            remaining: 0,
            through: None,
            told: 0,
            resends,
        };
        a.also(resync, queued);
        a
    }

    /// Another RESYNC, answered with another bulk: one answer covers both
    /// once the later bulk is delivered.
    pub(crate) fn also(&mut self, resync: Seq, queued: usize) {
        if self.asked_as.is_full() {
            self.asked_as.pop_front();
        }
        let _ = self.asked_as.push_back(resync);
        self.restart(queued);
    }

    /// Counts down from the `queued` keys waiting now (a bulk, or a
    /// resend: either puts its keys at the queue's end).
    pub(crate) fn restart(&mut self, queued: usize) {
        self.remaining = queued;
        self.through = None;
        self.told = 0;
    }

    /// The engine's count of resent messages is `total`: if it moved,
    /// what was resent is queued again, behind `queued` keys in all.
    pub(crate) fn resends(&mut self, total: u64, queued: usize) {
        if total != self.resends {
            self.resends = total;
            self.restart(queued);
        }
    }

    /// `n` keys left the transmit queue, the last message numbered
    /// `last` (a key too big for any datagram leaves unnumbered: `last`
    /// is then later than needed, never earlier).
    pub(crate) fn popped(&mut self, n: usize, last: Seq) {
        if self.remaining == 0 || n == 0 {
            return;
        }
        if n >= self.remaining {
            self.remaining = 0;
            self.through = Some(last);
        } else {
            self.remaining -= n;
        }
    }

    /// The number the bulk's end went out as, if it has: until the
    /// count is done, or when nothing was queued (`next`: the number the
    /// transmit queue gives next).
    fn through(&self, next: Seq) -> Option<Seq> {
        match (self.remaining, self.through) {
            (0, Some(s)) => Some(s),
            (0, None) => Some(next.prev()),
            _ => None,
        }
    }

    /// The [`Msg::Synced`] to send now, if the bulk is delivered and it
    /// is time: `oldest_unacked` is the oldest number still awaiting its
    /// ACK (FT-FW's resend queue; None when nothing does, or in NOTRACK,
    /// which has no ACKs); `tick` says a repeat is due.
    pub(crate) fn tell(
        &mut self,
        next: Seq,
        oldest_unacked: Option<Seq>,
        tick: bool,
    ) -> Vec<Msg> {
        let Some(through) = self.through(next) else {
            return Vec::new();
        };
        if oldest_unacked.is_some_and(|o| o <= through) {
            return Vec::new();
        }
        if self.told >= REPEATS || (self.told > 0 && !tick) {
            return Vec::new();
        }
        self.told += 1;
        self.asked_as
            .iter()
            .map(|&resync| Msg::Synced { resync })
            .collect()
    }

    /// Whether every repeat went out (the answer can be forgotten).
    pub(crate) fn done(&self) -> bool {
        self.told >= REPEATS
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn synced(v: &[Msg]) -> Vec<u32> {
        v.iter()
            .map(|m| match m {
                Msg::Synced { resync } => resync.0,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn told_once_the_bulk_end_is_acknowledged_then_repeated_on_ticks() {
        let mut a = Answering::new(Seq(7), 2, 0);
        // Still queued: nothing to say.
        assert!(a.tell(Seq(100), None, true).is_empty());
        a.popped(1, Seq(100));
        assert!(a.tell(Seq(101), None, true).is_empty());
        a.popped(1, Seq(101));
        // Sent, not acknowledged.
        assert!(a.tell(Seq(102), Some(Seq(101)), true).is_empty());
        assert!(a.tell(Seq(102), Some(Seq(100)), true).is_empty());
        // Only later numbers await their ACK (changes after the bulk).
        assert_eq!(synced(&a.tell(Seq(105), Some(Seq(102)), false)), [7]);
        // Repeats wait for ticks.
        assert!(a.tell(Seq(105), None, false).is_empty());
        for _ in 2..REPEATS {
            assert_eq!(synced(&a.tell(Seq(105), None, true)), [7]);
            assert!(!a.done());
        }
        assert_eq!(synced(&a.tell(Seq(105), None, true)), [7]);
        assert!(a.done());
        assert!(a.tell(Seq(105), None, true).is_empty());
    }

    #[test]
    fn a_resend_moves_the_end_to_cover_it() {
        let mut a = Answering::new(Seq(7), 1, 4);
        a.popped(1, Seq(50));
        // The same count: nothing resent.
        a.resends(4, 9);
        // A NACK put 3 keys back (and 2 were queued by changes before).
        a.resends(7, 5);
        for s in 51..55 {
            a.popped(1, Seq(s));
            assert!(a.tell(Seq(s + 1), None, true).is_empty());
        }
        a.popped(1, Seq(55));
        assert!(a.tell(Seq(56), Some(Seq(55)), true).is_empty());
        assert_eq!(synced(&a.tell(Seq(56), None, true)), [7]);
    }

    #[test]
    fn an_empty_bulk_is_told_at_once_and_a_second_request_joins() {
        let mut a = Answering::new(Seq(3), 0, 0);
        a.also(Seq(9), 3);
        assert!(a.tell(Seq(20), None, true).is_empty());
        // Two datagrams: the second takes the count's end.
        a.popped(2, Seq(18));
        assert!(a.tell(Seq(20), None, true).is_empty());
        a.popped(4, Seq(22));
        assert!(a.tell(Seq(23), Some(Seq(22)), true).is_empty());
        assert_eq!(synced(&a.tell(Seq(23), Some(Seq(23)), true)), [3, 9]);
        let mut e = Answering::new(Seq(4), 0, 0);
        // Nothing queued: all up to next - 1 must be acknowledged.
        assert!(e.tell(Seq(20), Some(Seq(19)), true).is_empty());
        assert_eq!(synced(&e.tell(Seq(20), None, true)), [4]);
    }

    #[test]
    fn the_asker_knows_its_own_numbers_only() {
        let mut w = Awaiting::default();
        assert!(!w.answered_by(Seq(1)));
        for s in 1..=10 {
            w.sent_as(Seq(s));
        }
        // The oldest two gave way.
        assert!(!w.answered_by(Seq(2)));
        assert!(w.answered_by(Seq(3)) && w.answered_by(Seq(10)));
        assert!(!w.answered_by(Seq(11)));
    }
}
